"""The job runner: run a workload on a ready cluster (Jobs API) or as a RayJob, and report it as events.

One follow loop for every caller. ``dmp job submit`` prints the events; the Dagster Pipes client turns
them into event-log lines, observations and materialization metadata. Both modes report the same
:mod:`~discord_ml_platform.jobs.events`:

* :class:`ClusterTarget` (RayCluster mode): the job is submitted to the cluster's Jobs API, its logs
  are followed from the dashboard while the status is polled, and the cluster's resource use is
  sampled.
* :class:`RayJobTarget` (RayJob mode): a RayJob is rendered from the spec and created; each change of
  its status is a :class:`~discord_ml_platform.jobs.events.JobPhase`, the logs of every attempt are
  followed through that attempt's dashboard, and a failed attempt that the cluster manager retries
  is an :class:`~discord_ml_platform.jobs.events.AttemptFailed`, not an end.

Closing the event generator before it finishes (the consumer stopped, an error or an interrupt) stops
the job when ``stop_on_exit`` is set (the Ray job is stopped; the RayJob deleted or suspended),
else leaves it running (``dmp job submit`` detaching on Ctrl-C).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
import time
from collections import deque
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from discord_ml_platform.backends.rayjobs import RayJobOptions, RayJobs, RayJobState, rayjob_submission_id
from discord_ml_platform.jobs.client import LogFollower, RayJobError, job_client, stop_job, submit_job
from discord_ml_platform.jobs.events import (
    AttemptFailed,
    JobEvent,
    JobFinished,
    JobPhase,
    JobResult,
    JobSubmitted,
    LogLine,
    Metric,
    Notice,
    Workload,
)
from discord_ml_platform.jobs.pipes_protocol import EPOCH_METRICS, find_pipes_message

if TYPE_CHECKING:
    from discord_ml_platform.spec import ClusterSpec

log = logging.getLogger(__name__)
STOP_WAIT_S = 30.0
RAYJOB_DELETE_WAIT_S = 10.0


@dataclass(frozen=True)
class ClusterTarget:
    """A ready cluster whose Jobs API takes the job (RayCluster mode)."""

    name: str
    dashboard_url: str


@dataclass(frozen=True)
class RayJobTarget:
    """A RayJob that creates its own cluster from ``spec`` (RayJob mode).

    Attributes:
        jobs: The RayJobs of the spec's namespace (``backend.rayjobs(namespace)``).
        spec: The cluster to create; its ``name`` is the RayJob's name.
        options: Shutdown, TTL, deadline, retries, and what stopping early does.
    """

    jobs: RayJobs
    spec: ClusterSpec
    options: RayJobOptions


JobTarget = ClusterTarget | RayJobTarget


class _Lines:
    """Lines from follower threads, turned into events the run's generator yields in order.

    Keeps the last ``tail`` plain lines for failure messages. With ``hold_closed`` the Pipes
    ``closed`` message is held back until :meth:`release_closed`: in RayJob mode each retried attempt
    sends its own, and only the last attempt's may close the consumer's Pipes session.
    """

    def __init__(self, tail: int, hold_closed: bool = False) -> None:
        self._events: queue.SimpleQueue[JobEvent] = queue.SimpleQueue()
        self._recent: deque[str] = deque(maxlen=max(tail, 1))
        self._tail = tail
        self._hold_closed = hold_closed
        self._closed: LogLine | None = None
        self._lock = threading.Lock()
        self.count = 0

    def put(self, text: str) -> None:
        """Take one line (called from a follower thread)."""
        message = find_pipes_message(text)
        with self._lock:
            self.count += 1
            if message is None:
                self._recent.append(text)
                self._events.put(LogLine(text))
                return
            line = LogLine(text, message)
            if self._hold_closed and message.get("method") == "closed":
                self._closed = line
                return
            self._events.put(line)
            metric = _metric_of(message)
            if metric is not None:
                self._events.put(metric)

    def drain(self) -> Iterator[JobEvent]:
        """The events collected since the last call."""
        while True:
            try:
                yield self._events.get_nowait()
            except queue.Empty:
                return

    def take_closed(self) -> LogLine | None:
        """The held-back ``closed`` message of the attempt that just ended, if any."""
        with self._lock:
            closed, self._closed = self._closed, None
        return closed

    def release_closed(self) -> None:
        """The last attempt ended: deliver its ``closed`` message."""
        closed = self.take_closed()
        if closed is not None:
            self._events.put(closed)

    def tail(self) -> tuple[str, ...]:
        """The last plain lines."""
        with self._lock:
            return tuple(self._recent)[-self._tail :] if self._tail else ()


def _metric_of(message: dict[str, Any]) -> Metric | None:
    payload = (message.get("params") or {}).get("payload")
    if message.get("method") != "report_custom_message" or not isinstance(payload, dict):
        return None
    if payload.get("kind") != EPOCH_METRICS:
        return None
    values = {k: v for k, v in payload.items() if k != "kind" and isinstance(v, (int, float, str))}
    return Metric(values)


def closed_error(line: LogLine) -> str:
    """The exception a Pipes ``closed`` message reports, in one line."""
    error = ((line.pipes or {}).get("params") or {}).get("exception") or {}
    return f"{error.get('name') or 'no exception'}: {error.get('message') or ''}".strip().rstrip(":")


class JobRunner:
    """Runs workloads and reports them as :mod:`~discord_ml_platform.jobs.events`.

    Args:
        auth_mode: ``RAY_AUTH_MODE`` of the Jobs API clients.
        poll_interval_s: How often the job's status is polled (and lines handed on).
        usage_interval_s: How often a cluster's resource use is sampled; ``None`` not at all.
        job_timeout_s: Longest a job may run; then it is stopped and :class:`RayJobError` raised.
        stop_on_exit: Whether closing the event generator early stops the job (else it keeps running).
        log_tail: Plain lines kept for :attr:`JobResult.tail`.
    """

    def __init__(
        self,
        *,
        auth_mode: str = "disabled",
        poll_interval_s: float = 0.25,
        usage_interval_s: float | None = 1.0,
        job_timeout_s: float | None = None,
        stop_on_exit: bool = True,
        log_tail: int = 40,
    ) -> None:
        self.auth_mode = auth_mode
        self.poll_interval_s = poll_interval_s
        self.usage_interval_s = usage_interval_s
        self.job_timeout_s = job_timeout_s
        self.stop_on_exit = stop_on_exit
        self.log_tail = log_tail

    def run(self, target: JobTarget, workload: Workload) -> Generator[JobEvent, None, None]:
        """Run ``workload`` on ``target`` and yield its events, :class:`JobFinished` last.

        Raises:
            RayJobError: the job could not be submitted, or ran past ``job_timeout_s`` (it is stopped).
            ClusterError: the RayJob could not be created.
        """
        if isinstance(target, RayJobTarget):
            return self._as_rayjob(target, workload)
        return self._on_cluster(target, workload)

    def submit(self, target: ClusterTarget, workload: Workload) -> str:
        """Submit ``workload`` to the cluster without following it; return the submission id."""
        client = job_client(target.dashboard_url, self.auth_mode)
        return _submit(client, workload)

    # --- RayCluster mode -----------------------------------------------------------------------

    def _on_cluster(self, target: ClusterTarget, workload: Workload) -> Generator[JobEvent, None, None]:
        from discord_ml_platform.jobs.usage import UsageSampler

        client = job_client(target.dashboard_url, self.auth_mode)
        job_id = _submit(client, workload)
        started = time.monotonic()
        yield JobSubmitted(job_id, target.name, workload.entrypoint)
        lines = _Lines(self.log_tail)
        follower = LogFollower(client, job_id, lines.put).start()
        sampler = UsageSampler(target.dashboard_url, self.usage_interval_s) if self.usage_interval_s else None
        try:
            with sampler if sampler is not None else contextlib.nullcontext():
                while True:
                    yield from lines.drain()
                    info = client.get_job_info(job_id)
                    if info.status.is_terminal():
                        break
                    self._check_deadline(started, f"Ray job {job_id}")
                    time.sleep(self.poll_interval_s)
            follower.finish()  # the job's last lines, without waiting for Ray to close the stream
        except BaseException:  # GeneratorExit when the consumer stops early, interrupts, errors
            if self.stop_on_exit:
                final = stop_job(client, job_id, wait_s=STOP_WAIT_S)
                log.warning("stopped Ray job %s (status %s) because its consumer ended early", job_id, final)
            raise
        yield from lines.drain()
        status = str(info.status.value)
        yield JobFinished(
            JobResult(
                job_id=job_id,
                target=target.name,
                status=status,
                message=info.message or "",
                succeeded=status == "SUCCEEDED",
                duration_s=time.monotonic() - started,
                log_lines=lines.count,
                tail=lines.tail(),
                cluster_name=target.name,
                dashboard_url=target.dashboard_url,
                usage=sampler.summary() if sampler is not None else {},
            )
        )

    # --- RayJob mode ---------------------------------------------------------------------------

    def _as_rayjob(self, target: RayJobTarget, workload: Workload) -> Generator[JobEvent, None, None]:
        jobs, spec, options = target.jobs, target.spec, target.options
        name = spec.name
        job_id = workload.submission_id or rayjob_submission_id(name)
        manifest = jobs.render(
            spec,
            entrypoint=workload.entrypoint,
            runtime_env=dict(workload.runtime_env) or None,
            submission_id=job_id,
            job_metadata=dict(workload.metadata),
            shutdown_after_job_finishes=options.shutdown_after_job_finishes,
            ttl_seconds_after_finished=options.ttl_seconds_after_finished,
            active_deadline_seconds=options.active_deadline_seconds,
            backoff_limit=options.backoff_limit,
        )
        jobs.create(manifest)
        started = time.monotonic()
        yield JobSubmitted(job_id, f"{spec.namespace}/{name}", workload.entrypoint, rayjob=True)
        lines = _Lines(self.log_tail, hold_closed=True)
        attempts = _AttemptFollower(lines, self.auth_mode)
        state = RayJobState(name, spec.namespace)
        last: tuple[str, str] | None = None
        failures = 0
        try:
            for state in jobs.follow(name, self.poll_interval_s):
                if state.phase() != last:
                    last = state.phase()
                    yield JobPhase(_phase_line(state), *last, reason=state.reason, cluster_name=state.cluster_name)
                if state.failed_attempts > failures and not state.finished:
                    failures = state.failed_attempts
                    yield AttemptFailed(failures, options.backoff_limit + 1, state.reason)
                yield from attempts.update(state)
                yield from lines.drain()
                self._check_deadline(started, f"RayJob {name}")
            yield from attempts.end(superseded=False)  # the last lines, while the cluster is kept for the TTL
        except BaseException:
            if self.stop_on_exit:
                _stop_rayjob(jobs, name, options.on_terminate)
            raise
        finally:
            attempts.close()
        lines.release_closed()
        yield from lines.drain()
        yield JobFinished(
            JobResult(
                job_id=job_id,
                target=f"{spec.namespace}/{name}",
                status=state.job_status,
                message=state.message or ("" if state.exists else "the RayJob was deleted before it finished"),
                succeeded=state.succeeded,
                duration_s=time.monotonic() - started,
                log_lines=lines.count,
                tail=lines.tail(),
                cluster_name=state.cluster_name,
                dashboard_url=state.dashboard_url,
                rayjob=name,
                deployment_status=state.deployment_status if state.exists else "Deleted",
                reason=state.reason,
                attempts=state.failed_attempts + state.succeeded_attempts,
                failed_attempts=state.failed_attempts,
            )
        )

    def _check_deadline(self, started: float, what: str) -> None:
        if self.job_timeout_s is not None and time.monotonic() - started > self.job_timeout_s:
            raise RayJobError(f"{what} exceeded job_timeout_s={self.job_timeout_s:g}")


def _submit(client: Any, workload: Workload) -> str:
    return submit_job(
        client,
        workload.entrypoint,
        runtime_env=workload.runtime_env,
        metadata=workload.metadata,
        submission_id=workload.submission_id,
        entrypoint_num_cpus=workload.entrypoint_num_cpus,
    )


class _AttemptFollower:
    """Follows the logs of every attempt of one RayJob in turn, into one :class:`_Lines`.

    The cluster manager runs each attempt (``backoffLimit``) on a new cluster with the same job id,
    so each gets its own :class:`LogFollower` on that cluster's dashboard, started once the attempt's
    job is submitted. A retried attempt's Pipes ``closed`` message is dropped (reported as a
    :class:`Notice`), so the consumer's session stays open for the next attempt.
    """

    def __init__(self, lines: _Lines, auth_mode: str) -> None:
        self._lines = lines
        self._auth_mode = auth_mode
        self._follower: LogFollower | None = None
        self._cluster = ""
        self.attempts = 0

    def update(self, state: RayJobState) -> Iterator[JobEvent]:
        """Follow the attempt ``state`` shows once its job is submitted; end the previous one first."""
        if state.retrying:
            yield from self.end(superseded=True)
            return
        if not state.submitted or state.cluster_name == self._cluster:
            return
        yield from self.end(superseded=True)  # a new attempt whose Retrying fell between two polls
        try:
            client = job_client(state.dashboard_url, self._auth_mode)
            self._follower = LogFollower(client, state.job_id, self._lines.put).start()
        except Exception as err:  # dashboard busy or already gone (short job, short TTL): next poll
            yield Notice(f"cannot follow the logs of Ray job {state.job_id} yet: {err}")
            return
        self._cluster = state.cluster_name
        self.attempts += 1

    def end(self, *, superseded: bool) -> Iterator[JobEvent]:
        """End the current attempt's follower; a superseded attempt's ``closed`` message is dropped."""
        if self._follower is not None:
            self._follower.finish()
            self._follower = None
        if superseded:
            closed = self._lines.take_closed()
            if closed is not None:
                yield Notice(
                    f"attempt {self.attempts} of the RayJob failed: {closed_error(closed)}; "
                    "KubeRay retries it on a new cluster"
                )

    def close(self) -> None:
        """Stop following (the follower thread is a daemon; it ends with its stream)."""
        self._follower = None


def _phase_line(state: RayJobState) -> str:
    """One line per change of ``(jobDeploymentStatus, jobStatus)``."""
    deployment, job = state.phase()
    return (
        f"rayjob {state.name} [{deployment}] job {job}"
        + (f" ({state.reason})" if state.reason else "")
        + (f" cluster {state.cluster_name}" if state.cluster_name else "")
        + (f": {state.message}" if state.message else "")
    )


def _stop_rayjob(jobs: RayJobs, name: str, how: str) -> None:
    """The consumer ended before the RayJob: hand its cluster back through the cluster manager (never raise)."""
    try:
        if how == "suspend":
            jobs.suspend(name)
            log.warning("suspended RayJob %s because its consumer ended early; its cluster is deleted", name)
        else:
            jobs.delete(name, wait_s=RAYJOB_DELETE_WAIT_S)
            log.warning("deleted RayJob %s because its consumer ended early; its cluster goes with it", name)
    except Exception as err:  # the cleanup sensor and the RayJob's deadline still apply
        log.error("could not stop RayJob %s: %s", name, err)


__all__ = ["ClusterTarget", "JobRunner", "JobTarget", "RayJobTarget", "closed_error"]
