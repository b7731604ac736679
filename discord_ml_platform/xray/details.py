"""What a cluster page shows beyond the listing: Ray jobs (Jobs API) and the tail of its logs.

Both talk to things that may not answer (a head that is still starting, a pod without logs), so
each call runs with a deadline and comes back with an ``error`` text instead of raising.
"""

from __future__ import annotations

import concurrent.futures
import logging
import socket
from collections import deque
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit

from discord_ml_platform.backends import ClusterBackend, ClusterInfo
from discord_ml_platform.xray.models import JobList, JobView, LogTail

log = logging.getLogger(__name__)
T = TypeVar("T")
_POOL = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="xray-details")


def with_deadline(fn: Callable[[], T], timeout_s: float) -> T:
    """Run ``fn`` in a worker thread and give up waiting after ``timeout_s`` (raises ``TimeoutError``)."""
    future = _POOL.submit(fn)
    try:
        return future.result(timeout=timeout_s)
    except concurrent.futures.TimeoutError:
        raise TimeoutError(f"no answer within {timeout_s:.0f}s") from None


def _time(ms: Any) -> str | None:
    if not ms:
        return None
    try:
        return datetime.fromtimestamp(int(ms) / 1000, tz=UTC).isoformat()
    except (TypeError, ValueError, OverflowError):
        return None


def _unreachable(url: str, timeout_s: float = 1.0) -> str | None:
    """Why a TCP connection to ``url``'s host and port fails, or ``None`` when it connects."""
    parts = urlsplit(url)
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
        with socket.create_connection((parts.hostname or "", port), timeout=timeout_s):
            return None
    except (OSError, ValueError) as err:
        return getattr(err, "strerror", None) or str(err) or type(err).__name__


def list_jobs(info: ClusterInfo, auth_mode: str = "disabled", timeout_s: float = 8.0) -> JobList:
    """The Ray jobs of a cluster, newest first, through its dashboard's Jobs API."""
    if info.endpoints is None:
        return JobList(error="the cluster has no dashboard address yet")
    unreachable = _unreachable(info.endpoints.dashboard_url)
    if unreachable:  # fail in a second instead of waiting out the SDK's connection retries
        return JobList(error=f"the Jobs API at {info.endpoints.dashboard_url} did not answer: {unreachable}")

    def fetch() -> list[Any]:
        from discord_ml_platform.jobs import job_client

        return list(job_client(info.endpoints.dashboard_url, auth_mode).list_jobs())  # type: ignore[union-attr]

    try:
        jobs = with_deadline(fetch, timeout_s)
    except Exception as err:
        return JobList(error=f"the Jobs API at {info.endpoints.dashboard_url} did not answer: {err}")
    views = [
        JobView(
            submission_id=getattr(job, "submission_id", None),
            job_id=getattr(job, "job_id", None),
            status=str(getattr(getattr(job, "status", None), "value", getattr(job, "status", "UNKNOWN"))),
            entrypoint=getattr(job, "entrypoint", None),
            message=getattr(job, "message", None),
            start_time=_time(getattr(job, "start_time", None)),
            end_time=_time(getattr(job, "end_time", None)),
        )
        for job in jobs
    ]
    return JobList(jobs=sorted(views, key=lambda j: j.start_time or "", reverse=True))


def tail_file(path: Path, lines: int) -> list[str]:
    """The last ``lines`` lines of a text file (read in a stream, never whole into memory)."""
    with path.open("r", encoding="utf-8", errors="replace") as handle:
        return [line.rstrip("\n") for line in deque(handle, maxlen=lines)]


def tail_logs(
    backend: ClusterBackend, info: ClusterInfo, lines: int = 200, timeout_s: float = 8.0, auth_mode: str = "disabled"
) -> LogTail:
    """The tail of the cluster's head log.

    Local clusters: the head's log file. KubeRay: the head pod's container log through the
    backend's Kubernetes client. Otherwise (or when that fails): the newest Ray job's log.
    """
    details: Mapping[str, Any] = info.details if isinstance(info.details, Mapping) else {}
    if details.get("log_dir"):
        head_log = Path(str(details["log_dir"])) / "head.log"
        try:
            return LogTail(source="head.log", lines=tail_file(head_log, lines))
        except OSError as err:
            return LogTail(source="head.log", error=f"cannot read the head log: {err.strerror or err}")
    core = _core_api(backend)
    pod_error = None
    if core is not None:
        try:
            return with_deadline(lambda: _head_pod_log(core, info, lines), timeout_s)
        except Exception as err:
            pod_error = f"head pod log unavailable: {_short(err)}"
    job_tail = _latest_job_log(info, lines, timeout_s, auth_mode)
    if job_tail.lines or pod_error is None:
        return job_tail
    return LogTail(source=job_tail.source, error="; ".join(e for e in (pod_error, job_tail.error) if e))


def _short(err: BaseException) -> str:
    status = getattr(err, "status", None)
    reason = getattr(err, "reason", None)
    return f"HTTP {status} {reason}" if status else (str(err) or type(err).__name__)


def _core_api(backend: ClusterBackend) -> Any:
    # The kuberay backend keeps a CoreV1Api as ``core``; the protocol does not promise one.
    return getattr(backend, "core", None)


def _head_pod_log(core: Any, info: ClusterInfo, lines: int) -> LogTail:
    ns, name = info.handle.namespace, info.handle.name
    pods = core.list_namespaced_pod(
        ns, label_selector=f"ray.io/cluster={name},ray.io/node-type=head", _request_timeout=(3, 5)
    )
    if not pods.items:
        return LogTail(source="head pod", error="no head pod yet")
    pod = pods.items[0].metadata.name
    # Raw: the client would turn the text/plain body into the repr of its bytes (one "b'...'" line).
    response = core.read_namespaced_pod_log(pod, ns, tail_lines=lines, _request_timeout=(3, 5), _preload_content=False)
    data = getattr(response, "data", response)
    text = data.decode("utf-8", errors="replace") if isinstance(data, bytes) else str(data)
    return LogTail(source=f"pod {pod}", lines=text.splitlines()[-lines:])


def _latest_job_log(info: ClusterInfo, lines: int, timeout_s: float, auth_mode: str) -> LogTail:
    jobs = list_jobs(info, auth_mode, timeout_s)
    if not jobs.jobs:
        return LogTail(error=jobs.error or "no logs: the cluster ran no Ray job yet")
    newest = jobs.jobs[0]
    job_id = newest.submission_id or newest.job_id
    endpoints = info.endpoints
    if not job_id or endpoints is None:  # list_jobs answered, so both are known; a guard for the types
        return LogTail(error="no logs: the newest Ray job has no id")

    def fetch() -> str:
        from discord_ml_platform.jobs import job_client

        return str(job_client(endpoints.dashboard_url, auth_mode).get_job_logs(job_id))

    try:
        text = with_deadline(fetch, timeout_s)
    except Exception as err:
        return LogTail(source=f"job {job_id}", error=f"cannot read the job's log: {err}")
    return LogTail(source=f"job {job_id}", lines=text.splitlines()[-lines:])
