"""The ``ClusterBackend`` protocol shared by every place a Ray cluster can live."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, runtime_checkable

from discord_ml_platform.spec import ClusterSpec


class ClusterError(RuntimeError):
    """A cluster could not be created, become ready, or be deleted."""


class ClusterNotReadyError(ClusterError):
    """The cluster did not become ready; the message says which phase it was stuck in and why."""


class HeadFailedError(ClusterNotReadyError):
    """The head's Ray container failed (crash loop, OOM kill, an error exit, a failing readiness probe).

    Attributes:
        pod: The head pod.
        container: Its Ray container.
        reason: What the kubelet reported: ``CrashLoopBackOff``, ``OOMKilled``, ``Error``, ``Unhealthy``.
        previous: Whether the failed container's output is the previous container's log (it was restarted).
        log_tail: The container's last log lines, once fetched.
    """

    def __init__(
        self, message: str, *, pod: str, container: str, reason: str, previous: bool, log_tail: str = ""
    ) -> None:
        super().__init__(message)
        self.pod = pod
        self.container = container
        self.reason = reason
        self.previous = previous
        self.log_tail = log_tail


@dataclass(frozen=True)
class ClusterHandle:
    """Identifies one cluster of a backend."""

    name: str
    namespace: str
    backend: str


@dataclass(frozen=True)
class PhaseEvent:
    """One step of a cluster's way to ready, reported while waiting.

    Attributes:
        phase: short machine-readable phase, e.g. ``pending``, ``image-pull``, ``head-ready``,
            ``workers``, ``ready``.
        message: what a person needs to know, e.g. why pods are pending.
        ready_workers: workers that joined so far.
        desired_workers: workers asked for.
        at: when the phase was observed.
    """

    phase: str
    message: str
    ready_workers: int
    desired_workers: int
    at: datetime


@dataclass(frozen=True)
class ClusterEndpoints:
    """Where to reach a ready cluster."""

    dashboard_url: str
    gcs_address: str
    client_address: str | None = None


@dataclass(frozen=True)
class ClusterInfo:
    """A cluster as ``list`` reports it."""

    handle: ClusterHandle
    labels: Mapping[str, str]
    status: str
    created_at: datetime
    desired_workers: int
    ready_workers: int
    endpoints: ClusterEndpoints | None = None
    details: Mapping[str, object] = field(default_factory=dict)


PhaseCallback = Callable[[PhaseEvent], None]


@runtime_checkable
class ClusterBackend(Protocol):
    """Creates, watches and deletes Ray clusters. Implementations: ``local`` and ``kuberay``.

    Get one from the platform core (``Platform.backend()``, a context manager that closes it). A
    backend that can also run RayJobs implements
    :class:`~discord_ml_platform.backends.rayjobs.RayJobCapable`.
    """

    name: str

    def create(self, spec: ClusterSpec) -> ClusterHandle:
        """Request a cluster for ``spec``; idempotent for the same name. Returns at once."""
        ...

    def wait_ready(
        self, handle: ClusterHandle, timeout_s: float, on_phase: PhaseCallback | None = None
    ) -> ClusterEndpoints:
        """Block until head and all workers are up, reporting phases; raise ``ClusterNotReadyError``."""
        ...

    def endpoints(self, handle: ClusterHandle) -> ClusterEndpoints:
        """Endpoints of a ready cluster."""
        ...

    def list(self, label_selector: Mapping[str, str] | None = None) -> list[ClusterInfo]:
        """Clusters of this backend whose labels match ``label_selector`` (all when ``None``)."""
        ...

    def delete(self, handle: ClusterHandle, timeout_s: float = 60) -> None:
        """Delete the cluster and everything it started; a missing cluster is not an error."""
        ...

    def close(self) -> None:
        """Release what the backend holds (API connections); clusters are not touched."""
        ...
