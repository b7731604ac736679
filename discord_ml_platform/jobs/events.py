"""What the job runner reports while a workload runs: typed events the CLI and Dagster both consume.

A run yields, in order: one :class:`JobSubmitted`; then, as they happen, :class:`JobPhase` (a RayJob's
status changed), :class:`LogLine` (one line of the driver's output, with the Pipes message it carries,
if any), :class:`Metric` (a per-epoch metrics message), :class:`AttemptFailed` (a RayJob attempt failed
and is retried) and :class:`Notice` (something a person should know, e.g. logs not readable yet); and
last one :class:`JobFinished` with the :class:`JobResult`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Workload:
    """A command to run as a Ray job.

    Attributes:
        entrypoint: Shell command of the driver, run with the cluster's ``python`` on ``PATH``.
        runtime_env: Ray runtime env (``env_vars``, ``working_dir``, ``pip``...).
        metadata: Ray job metadata (who submitted it, which run).
        submission_id: Id to give the job; generated when ``None``.
        entrypoint_num_cpus: CPUs reserved for the driver.
    """

    entrypoint: str
    runtime_env: Mapping[str, Any] = field(default_factory=dict)
    metadata: Mapping[str, str] = field(default_factory=dict)
    submission_id: str | None = None
    entrypoint_num_cpus: float | None = None


@dataclass(frozen=True)
class JobSubmitted:
    """The job was handed over: to a cluster's Jobs API, or to the cluster manager as a RayJob."""

    job_id: str
    target: str
    entrypoint: str
    rayjob: bool = False


@dataclass(frozen=True)
class JobPhase:
    """A RayJob's ``(jobDeploymentStatus, jobStatus)`` changed; ``description`` says it in one line."""

    description: str
    deployment_status: str
    job_status: str
    reason: str = ""
    cluster_name: str = ""


@dataclass(frozen=True)
class LogLine:
    """One line of the job's output, as it arrived; ``pipes`` is the Dagster Pipes message it carries."""

    text: str
    pipes: Mapping[str, Any] | None = None


@dataclass(frozen=True)
class Metric:
    """Metrics the driver reported for one step of its work (an ``epoch_metrics`` Pipes message)."""

    values: Mapping[str, int | float | str]


@dataclass(frozen=True)
class AttemptFailed:
    """A RayJob attempt failed and the cluster manager runs the job again on a new cluster."""

    attempt: int
    attempts_allowed: int
    reason: str


@dataclass(frozen=True)
class Notice:
    """Something a person should know that is not the job's own output."""

    message: str


@dataclass(frozen=True)
class JobResult:
    """How a job ended.

    Attributes:
        job_id: The Ray submission id.
        target: The cluster (or RayJob) it ran on.
        status: Ray's final job status (``SUCCEEDED``, ``FAILED``, ``STOPPED``; ``""`` if it never ran).
        message: Ray's (or KubeRay's) message about the end.
        succeeded: Whether the job succeeded.
        duration_s: Seconds from submission to the end.
        log_lines: Lines of output seen.
        tail: The last plain (non-Pipes) lines, for failure messages.
        cluster_name: The cluster it last ran on.
        dashboard_url: That cluster's dashboard, when known.
        rayjob: The RayJob's name in RayJob mode, else ``None``.
        deployment_status: The RayJob's final ``jobDeploymentStatus``.
        reason: The cluster manager's reason for a failure (``AppFailed``, ``DeadlineExceeded``...).
        attempts: Attempts made (more than one with RayJob retries).
        failed_attempts: Attempts that failed.
        usage: Resource use sampled while the job ran (RayCluster mode).
    """

    job_id: str
    target: str
    status: str
    message: str
    succeeded: bool
    duration_s: float
    log_lines: int
    tail: tuple[str, ...] = ()
    cluster_name: str = ""
    dashboard_url: str = ""
    rayjob: str | None = None
    deployment_status: str = ""
    reason: str = ""
    attempts: int = 1
    failed_attempts: int = 0
    usage: Mapping[str, float | int | None] = field(default_factory=dict)

    def describe(self) -> str:
        """One line: what ran where and how it ended."""
        where = f"RayJob {self.rayjob}" if self.rayjob else f"Ray job {self.job_id} on {self.target}"
        state = self.deployment_status or self.status or "gone"
        if self.rayjob and self.status:
            state += f", job {self.status}"
        text = f"{where} {state}"
        if self.reason:
            text += f" ({self.reason})"
        if self.message:
            text += f": {self.message}"
        return text


@dataclass(frozen=True)
class JobFinished:
    """The last event of a run."""

    result: JobResult


JobEvent = JobSubmitted | JobPhase | LogLine | Metric | AttemptFailed | Notice | JobFinished
"""Every event a run yields."""
