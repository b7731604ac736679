"""``RayClusterResource``: a Ray cluster per Dagster run, on the local or the KubeRay backend.

The cluster is created on first use from a ``ClusterSpec``, shared by the run's steps that run in
the same process, and deleted when the resource is torn down: on success, on failure, and on run
termination (Dagster's interrupt is a ``BaseException``, so teardown sits in a ``finally``).
Clusters carry the run id and an expiry as labels, so the cleanup sensor removes anything a killed
process left behind.
"""

from __future__ import annotations

import os
import time
from collections.abc import Generator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Literal

import dagster as dg
from pydantic import Field, PrivateAttr

from discord_ml_platform.backends import ClusterBackend, ClusterEndpoints, ClusterHandle, PhaseEvent, get_backend
from discord_ml_platform.spec import DEFAULT_CATALOG, ClusterSpec
from resources.rayjob_mode import RayJobOptions


@dataclass
class RunningCluster:
    """A ready cluster and what it cost to get it."""

    spec: ClusterSpec
    handle: ClusterHandle
    endpoints: ClusterEndpoints
    backend_name: str
    auth_mode: str
    requested_at: float
    ready_at: float
    phases: list[PhaseEvent] = field(default_factory=list)

    @property
    def seconds_to_ready(self) -> float:
        """Time from the create request until the cluster was ready."""
        return self.ready_at - self.requested_at

    def gpu_hours(self, until: float | None = None) -> float:
        """GPU-hours held from request until ``until`` (default now)."""
        return self.spec.total_gpus * ((until or time.time()) - self.requested_at) / 3600

    def cost_usd(self, until: float | None = None) -> float:
        """Estimated cost from the catalog price since the request."""
        hours = ((until or time.time()) - self.requested_at) / 3600
        return self.spec.hourly_price(DEFAULT_CATALOG) * hours

    def metadata(self) -> dict[str, Any]:
        """Materialization metadata describing the cluster and its cost so far."""
        now = time.time()
        return {
            "cluster_name": self.handle.name,
            "cluster_backend": self.backend_name,
            "cluster_namespace": self.handle.namespace,
            "gpu_type": self.spec.gpu_type,
            "gpu_count": self.spec.total_gpus,
            "cluster_workers": self.spec.workers,
            "seconds_to_ready": round(self.seconds_to_ready, 2),
            "cluster_wall_seconds": round(now - self.requested_at, 2),
            "gpu_hours": round(self.gpu_hours(now), 6),
            "estimated_cost_usd": round(self.cost_usd(now), 6),
            "ray_dashboard": dg.MetadataValue.url(self.endpoints.dashboard_url),
        }


def cluster_name_for_run(run_id: str, suffix: str = "") -> str:
    """A DNS-1123 cluster name derived from a Dagster run id."""
    base = f"dmp-{run_id.replace('-', '')[:12]}"
    return f"{base}-{suffix}"[:47].rstrip("-") if suffix else base


class RayClusterResource(dg.ConfigurableResource):
    """Provides a Ray cluster per run on the ``local`` (Ray processes) or ``kuberay`` backend."""

    backend: Literal["local", "kuberay"] = Field(
        default="local", description="Where clusters run: 'local' Ray processes or 'kuberay' on Kubernetes."
    )
    namespace: str = Field(default="ray", description="Kubernetes namespace for KubeRay clusters.")
    ray_auth_mode: str = Field(default="disabled", description="RAY_AUTH_MODE for the cluster and every client.")
    ready_timeout_s: float = Field(
        default=600, gt=0, le=7200, description="Seconds to wait for the cluster to be ready."
    )
    local_state_dir: str | None = Field(
        default=None, description="Local backend: where cluster records and logs go (default ~/.dmp/local-clusters)."
    )
    kubeconfig: str | None = Field(
        default=None, description="KubeRay backend: kubeconfig path (default: in-cluster or ~/.kube/config)."
    )
    kube_context: str | None = Field(default=None, description="KubeRay backend: kubeconfig context.")
    image: str | None = Field(default=None, description="Ray image for KubeRay pods (default: the spec's).")
    owner: str | None = Field(default=None, description="Owner label (default: the run's user tag or $USER).")
    team: str = Field(default="ml-platform", description="Team label for cost attribution.")
    ttl_hours: float = Field(
        default=8, gt=0, le=168, description="Expiry after which the sweeper deletes a leaked cluster."
    )
    mode: Literal["raycluster", "rayjob"] = Field(
        default="raycluster",
        description="'raycluster': the run creates a cluster, runs its jobs on it and deletes it at the end. "
        "'rayjob' (kuberay backend): each workload is a KubeRay RayJob whose cluster KubeRay creates "
        "and deletes, even if this process dies. See docs/rayjob-mode.md.",
    )
    rayjob: RayJobOptions = Field(
        default_factory=RayJobOptions,
        description="RayJob mode: shutdown, TTL, deadline, retries, what termination does.",
    )

    _clusters: dict[str, RunningCluster] = PrivateAttr(default_factory=dict)
    _log: Any = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)

    def build_backend(self) -> ClusterBackend:
        """The configured backend."""
        if self.backend == "local":
            from pathlib import Path

            return get_backend(
                "local",
                state_dir=Path(self.local_state_dir) if self.local_state_dir else None,
                auth_mode=self.ray_auth_mode,
            )
        # Namespace-scoped: the run pods' Role grants list/watch in the Ray namespace only.
        return get_backend("kuberay", kubeconfig=self.kubeconfig, context=self.kube_context, namespace=self.namespace)

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Generator[RayClusterResource, None, None]:
        """Yield the resource; on the way out, delete every cluster it created, whatever happened."""
        self._clusters = {}
        self._log = context.log
        self._run_id = context.run.run_id if context.run else None
        try:
            yield self
        finally:  # also on DagsterExecutionInterruptedError, a BaseException
            self.delete_all()

    def spec_for_run(self, run_id: str | None, **fields: Any) -> ClusterSpec:
        """A validated ``ClusterSpec`` for this run with the resource's owner, team, image and TTL."""
        from datetime import timedelta

        run_id = run_id or self._run_id or "adhoc"
        values: dict[str, Any] = {
            "name": cluster_name_for_run(run_id),
            "namespace": self.namespace,
            "owner": self.owner or os.environ.get("USER", "unknown"),
            "team": self.team,
            "run_id": run_id,
            "ttl": timedelta(hours=self.ttl_hours),
        }
        if self.image:
            values["image"] = self.image
        values.update(fields)
        return ClusterSpec.model_validate(values)

    def get_cluster(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext, spec: ClusterSpec
    ) -> RunningCluster:
        """Return the run's cluster named ``spec.name``, creating it and waiting until ready if needed."""
        if spec.name in self._clusters:
            return self._clusters[spec.name]
        backend = self.build_backend()
        log = context.log
        requested = time.time()
        log.info(
            f"requesting {self.backend} Ray cluster {spec.name}: {spec.workers} worker(s) of "
            f"{spec.gpu_type} x{spec.gpus_per_worker}, {spec.cpus_per_worker} CPU, {spec.memory_per_worker}"
        )
        phases: list[PhaseEvent] = []

        def on_phase(event: PhaseEvent) -> None:
            phases.append(event)
            log.info(f"cluster {spec.name} [{event.phase}] {event.message}")

        handle = backend.create(spec)
        # Registered before waiting, so teardown deletes it even if waiting fails or is interrupted.
        cluster = RunningCluster(
            spec, handle, ClusterEndpoints("", ""), self.backend, self.ray_auth_mode, requested, requested, phases
        )
        self._clusters[spec.name] = cluster
        cluster.endpoints = backend.wait_ready(handle, self.ready_timeout_s, on_phase)
        cluster.ready_at = time.time()
        log.info(f"cluster {spec.name} ready in {cluster.seconds_to_ready:.1f}s at {cluster.endpoints.dashboard_url}")
        return cluster

    def delete_all(self) -> None:
        """Delete every cluster this resource created in this run."""
        if not self._clusters:
            return
        backend = self.build_backend()
        for name, cluster in list(self._clusters.items()):
            started = time.time()
            try:
                backend.delete(cluster.handle)
                if self._log:
                    self._log.info(
                        f"deleted Ray cluster {name} in {time.time() - started:.1f}s "
                        f"(held {time.time() - cluster.requested_at:.0f}s, "
                        f"{cluster.gpu_hours():.4f} GPU-hours, ~${cluster.cost_usd():.4f})"
                    )
            except Exception as err:  # keep deleting the others; the sweeper retries by label
                if self._log:
                    self._log.error(f"could not delete Ray cluster {name}: {err}")
            finally:
                self._clusters.pop(name, None)

    @contextmanager
    def ephemeral_cluster(
        self, context: dg.AssetExecutionContext | dg.OpExecutionContext, spec: ClusterSpec
    ) -> Iterator[RunningCluster]:
        """A cluster that lives only for the ``with`` block (deleted on any exit)."""
        try:
            yield self.get_cluster(context, spec)
        finally:
            cluster = self._clusters.pop(spec.name, None)
            if cluster is not None:
                self.build_backend().delete(cluster.handle)
