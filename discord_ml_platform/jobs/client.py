"""Ray Jobs API helpers: submit, follow logs line by line, wait, stop. Nothing Dagster-specific."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient


AGENT_WAIT_S = 60


class RayJobError(RuntimeError):
    """A Ray job failed, was stopped, or could not be submitted."""


@dataclass(frozen=True)
class JobOutcome:
    """How a Ray job ended."""

    job_id: str
    status: str
    message: str
    duration_s: float

    @property
    def succeeded(self) -> bool:
        """True when the job's status is SUCCEEDED."""
        return self.status == "SUCCEEDED"


def job_client(dashboard_url: str, auth_mode: str = "disabled", connect_timeout_s: float = 30) -> JobSubmissionClient:
    """A ``JobSubmissionClient`` for a cluster's dashboard, with Ray's auth mode set explicitly.

    The client checks the dashboard when built; a busy head (a just-started cluster on a loaded
    machine) can refuse that for a moment, so connection errors are retried for
    ``connect_timeout_s``.
    """
    # Ray 2.60 reads RAY_AUTH_MODE when building the client; without it a stray ~/.ray/auth_token
    # turns token auth on against a cluster that has it off.
    os.environ["RAY_AUTH_MODE"] = auth_mode
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from ray.job_submission import JobSubmissionClient

    # The SDK logs every websocket close at INFO on its own handler; that is noise in a CLI or
    # a Dagster run, whose job outcome we report ourselves.
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    deadline = time.monotonic() + connect_timeout_s
    delay = 0.25
    while True:
        try:
            return JobSubmissionClient(dashboard_url)
        except ConnectionError:
            if time.monotonic() + delay > deadline:
                raise
            time.sleep(delay)
            delay = min(delay * 2, 2.0)


def submit_job(
    client: JobSubmissionClient,
    entrypoint: str,
    *,
    runtime_env: Mapping[str, Any] | None = None,
    metadata: Mapping[str, str] | None = None,
    submission_id: str | None = None,
    entrypoint_num_cpus: float | None = None,
) -> str:
    """Submit ``entrypoint`` as a Ray job and return its submission id.

    Idempotent under retries: the submission id is chosen here, so when a busy head drops the
    connection mid-request we can submit again and treat "already exists" as the first attempt
    having landed. A just-started head also answers before its job agent has registered ("No
    available agent to submit job"); both are retried for ``AGENT_WAIT_S`` seconds.
    """
    submission_id = submission_id or f"dmp-{uuid.uuid4().hex[:20]}"
    deadline = time.monotonic() + AGENT_WAIT_S
    retried = False
    while True:
        try:
            return client.submit_job(
                entrypoint=entrypoint,
                runtime_env=dict(runtime_env or {}),
                metadata=dict(metadata or {}),
                submission_id=submission_id,
                entrypoint_num_cpus=entrypoint_num_cpus,
            )
        except Exception as err:  # the SDK raises bare RuntimeError/ConnectionError on any failure
            text = str(err)
            if retried and "already exists" in text:
                return submission_id  # an earlier attempt landed before its answer was lost
            transient = "No available agent" in text or "Connection aborted" in text or isinstance(err, ConnectionError)
            if transient and time.monotonic() < deadline:
                retried = True
                time.sleep(0.5)
                continue
            raise RayJobError(f"could not submit Ray job {entrypoint!r}: {err}") from err


class LogFollower:
    """Follows a job's logs in a background thread and calls ``on_line`` for each complete line.

    Lines arrive while the job runs (the Jobs API streams them over a websocket), not at the end.
    """

    def __init__(self, client: JobSubmissionClient, job_id: str, on_line: Callable[[str], None]):
        self._client = client
        self._job_id = job_id
        self._on_line = on_line
        self._thread = threading.Thread(target=self._run, name=f"ray-job-logs-{job_id}", daemon=True)
        self._lock = threading.Lock()
        self._closed = False
        self.error: BaseException | None = None
        self.lines = 0

    def start(self) -> LogFollower:
        """Start following."""
        self._thread.start()
        return self

    def join(self, timeout_s: float) -> None:
        """Wait for the stream to end (it ends by itself when the job reaches a terminal state)."""
        self._thread.join(timeout_s)

    def finish(self, grace_s: float = 1.0) -> None:
        """Deliver every remaining line of a finished job, without waiting for the stream to close.

        Ray closes the log stream several seconds after a job ends. After ``grace_s`` we stop
        taking lines from the stream and emit the rest from the job's complete log instead: logs
        are append-only and the stream delivers them in order, so the lines not yet emitted are
        exactly those after the first ``self.lines`` of the full log.
        """
        self._thread.join(grace_s)
        if not self._thread.is_alive():
            return
        with self._lock:
            self._closed = True
            emitted = self.lines
        try:
            remaining = self._client.get_job_logs(self._job_id).split("\n")
        except Exception as err:  # cluster gone: what was streamed is all we have
            self.error = err
            return
        if remaining and remaining[-1] == "":
            remaining.pop()
        for line in remaining[emitted:]:
            self._deliver(line)

    @property
    def running(self) -> bool:
        """Whether the follower thread still runs."""
        return self._thread.is_alive()

    def _emit(self, line: str) -> None:
        with self._lock:
            if self._closed:  # finish() took over; it emits this line from the full log
                return
            self.lines += 1
        self._deliver(line)

    def _deliver(self, line: str) -> None:
        try:
            self._on_line(line)
        except Exception as err:  # a broken handler must not kill the stream
            self.error = err

    def _run(self) -> None:
        async def follow() -> None:
            pending = ""
            async for chunk in self._client.tail_job_logs(self._job_id):
                pending += chunk
                *complete, pending = pending.split("\n")
                for line in complete:
                    self._emit(line)
            if pending:
                self._emit(pending)

        try:
            asyncio.run(follow())
        except Exception as err:  # connection lost when the cluster goes away: record, don't raise
            self.error = err


def wait_for_job(
    client: JobSubmissionClient,
    job_id: str,
    *,
    timeout_s: float | None = None,
    poll_s: float = 0.25,
    should_continue: Callable[[], bool] | None = None,
) -> JobOutcome:
    """Poll until the job is terminal; raise ``TimeoutError`` after ``timeout_s``."""
    started = time.monotonic()
    while True:
        info = client.get_job_info(job_id)
        if info.status.is_terminal():
            return JobOutcome(job_id, str(info.status.value), info.message or "", time.monotonic() - started)
        if timeout_s is not None and time.monotonic() - started > timeout_s:
            raise TimeoutError(f"Ray job {job_id} still {info.status.value} after {timeout_s:.0f}s")
        if should_continue is not None and not should_continue():
            raise RayJobError(f"stopped waiting for Ray job {job_id}")
        time.sleep(poll_s)


def stop_job(client: JobSubmissionClient, job_id: str, *, wait_s: float = 30) -> str:
    """Stop a job if it still runs and wait until it is terminal; return its final status."""
    with contextlib.suppress(Exception):  # already finished or cluster gone: nothing to stop
        client.stop_job(job_id)
    deadline = time.monotonic() + wait_s
    status = "UNKNOWN"
    while time.monotonic() < deadline:
        try:
            info = client.get_job_info(job_id)
        except Exception:
            return status
        status = str(info.status.value)
        if info.status.is_terminal():
            return status
        time.sleep(0.2)
    return status
