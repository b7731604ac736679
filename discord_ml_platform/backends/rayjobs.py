"""RayJobs as a backend capability: the protocol, the state a client acts on, and the options of one.

A backend that can hand a workload to its cluster manager as a job that owns its cluster (KubeRay's
``ray.io/v1`` RayJob) implements :class:`RayJobCapable`; the job runner, the CLI and the cleanup
sensor use RayJobs only through these types, never through a backend's name or attributes.

Status fields read (KubeRay v1 ``RayJobStatus``): ``jobDeploymentStatus`` (``Initializing``,
``Running``, ``Complete``, ``Failed``, ``Suspending``, ``Suspended``, ``Retrying``, ``Waiting``,
``ValidationFailed``), ``jobStatus`` (Ray's ``PENDING``, ``RUNNING``, ``SUCCEEDED``, ``FAILED``,
``STOPPED``), ``reason`` (``SubmissionFailed``, ``DeadlineExceeded``, ``AppFailed``,
``JobDeploymentStatusTransitionGracePeriodExceeded``, ``ValidationFailed``), ``message``,
``jobId``, ``rayClusterName``, ``dashboardURL`` (``host:port``, no scheme), ``startTime``,
``endTime``, ``succeeded``/``failed``. ``Retrying`` (and ``New`` after a failure) is not an end: with
``backoffLimit`` KubeRay runs the job again on a new cluster, with a new ``dashboardURL``.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from discord_ml_platform.backends.kuberay_status import parse_time
from discord_ml_platform.spec import ClusterSpec

TERMINAL_DEPLOYMENT = frozenset({"Complete", "Failed", "ValidationFailed"})
TERMINAL_JOB = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
# A Ray job has been submitted once Ray reports any status for it: its logs can be followed.
SUBMITTED_JOB = frozenset({"PENDING", "RUNNING", *TERMINAL_JOB})


@dataclass(frozen=True)
class RayJobState:
    """The parts of a RayJob's status a client acts on.

    Attributes:
        name: The RayJob's name.
        namespace: Its namespace.
        deployment_status: ``jobDeploymentStatus`` (``""`` before the operator saw it).
        job_status: ``jobStatus``, the Ray job's status (``""`` before submission).
        reason: ``reason`` of a ``Failed`` deployment.
        message: ``message``.
        job_id: ``jobId``, the Ray submission id.
        cluster_name: ``rayClusterName``.
        dashboard_url: ``dashboardURL`` with an ``http://`` scheme (``""`` until known).
        exists: ``False`` once the RayJob is gone.
        failed_attempts: ``status.failed``, attempts that failed (with ``backoffLimit``, a retry follows each
            but the last).
        succeeded_attempts: ``status.succeeded``, attempts that ended ``Complete``.
    """

    name: str
    namespace: str
    deployment_status: str = ""
    job_status: str = ""
    reason: str = ""
    message: str = ""
    job_id: str = ""
    cluster_name: str = ""
    dashboard_url: str = ""
    exists: bool = True
    failed_attempts: int = 0
    succeeded_attempts: int = 0

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> RayJobState:
        """Read a RayJob (as a dict)."""
        meta = obj.get("metadata") or {}
        status = obj.get("status") or {}
        url = str(status.get("dashboardURL") or "")
        if url and "://" not in url:
            url = f"http://{url}"
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", "default"),
            deployment_status=str(status.get("jobDeploymentStatus") or ""),
            job_status=str(status.get("jobStatus") or ""),
            reason=str(status.get("reason") or ""),
            message=str(status.get("message") or ""),
            job_id=str(status.get("jobId") or (obj.get("spec") or {}).get("jobId") or ""),
            cluster_name=str(status.get("rayClusterName") or ""),
            dashboard_url=url,
            failed_attempts=int(status.get("failed") or 0),
            succeeded_attempts=int(status.get("succeeded") or 0),
        )

    @property
    def finished(self) -> bool:
        """The deployment reached ``Complete``/``Failed``, or the RayJob is gone."""
        return not self.exists or self.deployment_status in TERMINAL_DEPLOYMENT

    @property
    def succeeded(self) -> bool:
        """``Complete`` with the Ray job ``SUCCEEDED``."""
        return self.exists and self.deployment_status == "Complete" and self.job_status == "SUCCEEDED"

    @property
    def retrying(self) -> bool:
        """KubeRay is replacing a failed attempt (``Retrying``, or ``New`` after a failure): not an end."""
        return self.exists and (
            self.deployment_status == "Retrying" or (self.deployment_status in ("", "New") and self.failed_attempts > 0)
        )

    @property
    def submitted(self) -> bool:
        """The Ray job exists on the cluster (its logs can be read through ``dashboard_url``)."""
        return bool(self.dashboard_url and self.job_id and self.job_status in SUBMITTED_JOB)

    def phase(self) -> tuple[str, str]:
        """``(deployment status, job status)``: what a follower reports when it changes."""
        return (self.deployment_status or "New", self.job_status or "-")

    def describe(self) -> str:
        """One line for logs and failure messages."""
        if not self.exists:
            return f"RayJob {self.namespace}/{self.name} is gone"
        text = f"RayJob {self.namespace}/{self.name}: {self.deployment_status or 'New'}, job {self.job_status or '-'}"
        if self.reason:
            text += f", reason {self.reason}"
        if self.failed_attempts:
            text += f", {self.failed_attempts} failed attempt(s)"
        if self.cluster_name:
            text += f", cluster {self.cluster_name}"
        if self.message:
            text += f": {self.message}"
        return text


@dataclass(frozen=True)
class RayJobInfo:
    """A RayJob as :meth:`KubeRayJobs.list` reports it (what the cleanup sensor decides on).

    Attributes:
        name: The RayJob's name.
        namespace: Its namespace.
        labels: Its labels (the platform's owner, run id and expiry among them).
        created_at: ``metadata.creationTimestamp`` (UTC).
        state: Its status.
    """

    name: str
    namespace: str
    labels: dict[str, str]
    created_at: datetime
    state: RayJobState

    @classmethod
    def from_object(cls, obj: dict[str, Any]) -> RayJobInfo:
        """Read a RayJob (as a dict)."""
        meta = obj.get("metadata") or {}
        return cls(
            name=meta.get("name", ""),
            namespace=meta.get("namespace", "default"),
            labels=dict(meta.get("labels") or {}),
            # Unknown: now, as young as can be, so no grace period is skipped.
            created_at=parse_time(meta.get("creationTimestamp")),
            state=RayJobState.from_object(obj),
        )


def rayjob_submission_id(name: str) -> str:
    """A Ray submission id for a RayJob, set on ``spec.jobId`` so the client knows it up front."""
    return f"{name}-{uuid.uuid4().hex[:8]}"


def rayjob_name(cluster_name: str, step_key: str) -> str:
    """A RayJob name per step of a run: the run's cluster name plus a hash of the step.

    Kept at most 41 characters, so KubeRay's ``<name>-<5 chars>`` cluster name stays within 47.
    """
    digest = hashlib.sha256(step_key.encode()).hexdigest()[:5]
    return f"{cluster_name[:35].rstrip('-')}-{digest}"


class RayJobOptions(BaseModel):
    """How the cluster manager treats a RayJob. Defaults are safe: the cluster is removed after the
    job, kept a short while for its logs, and a job cannot run forever."""

    model_config = ConfigDict(frozen=True)

    shutdown_after_job_finishes: bool = Field(
        default=True, description="Delete the cluster after the job ends (after ttl_seconds_after_finished)."
    )
    ttl_seconds_after_finished: int = Field(
        default=60,
        ge=0,
        le=86400,
        description="Seconds the finished job's cluster is kept (its logs stay readable) before KubeRay deletes it.",
    )
    active_deadline_seconds: int | None = Field(
        default=6 * 3600,
        ge=1,
        le=7 * 86400,
        description="KubeRay stops the job and fails the RayJob (DeadlineExceeded) after this many seconds; "
        "None for no deadline.",
    )
    backoff_limit: int = Field(default=0, ge=0, le=100, description="Retries of the whole job, each on a new cluster.")
    on_terminate: Literal["delete", "suspend"] = Field(
        default="delete",
        description="What ending the step early does to the RayJob: 'delete' it (and its cluster) or 'suspend' it "
        "(KubeRay stops the job and deletes the cluster, the RayJob stays for inspection).",
    )


class RayJobs(Protocol):
    """RayJobs in one namespace (implemented by :class:`~discord_ml_platform.backends.kuberay_rayjob.KubeRayJobs`)."""

    namespace: str

    def render(self, spec: ClusterSpec, *, entrypoint: str, **job: Any) -> dict[str, Any]:
        """The RayJob manifest for ``spec`` running ``entrypoint``."""
        ...

    def create(self, manifest: dict[str, Any]) -> RayJobState:
        """Create the RayJob ``manifest``."""
        ...

    def get(self, name: str) -> RayJobState:
        """The RayJob's state (``exists=False`` once it is gone)."""
        ...

    def follow(self, name: str, poll_s: float = 0.25) -> Iterator[RayJobState]:
        """The RayJob's state every ``poll_s`` until it is finished (last state included)."""
        ...

    def list(
        self, label_selector: dict[str, str] | None = None, *, all_namespaces: bool | None = None
    ) -> list[RayJobInfo]:
        """RayJobs whose labels match, in :attr:`namespace` or every namespace (``None``: the scope it was made with)."""
        ...

    def suspend(self, name: str) -> None:
        """Stop the job and delete its cluster, keeping the RayJob."""
        ...

    def delete(self, name: str, *, namespace: str | None = None, wait_s: float = 0, poll_s: float = 0.2) -> bool:
        """Delete the RayJob and with it its cluster; ``True`` if it existed."""
        ...


@runtime_checkable
class RayJobCapable(Protocol):
    """A backend whose cluster manager can run a workload as a RayJob that owns its cluster."""

    def rayjobs(self, namespace: str | None = None) -> RayJobs:
        """The RayJobs of ``namespace``; ``None``: the backend's scope (its namespace, or every namespace
        for listing when the backend lists every namespace)."""
        ...
