"""``RayClusterResource``: the run's Ray cluster, whose shape is set once per run.

The resource owns only the cluster's life (dagster-ray's ``RayResource.yield_for_execution`` is the
model): at the start of the run it validates the whole run config (every op's config, its own shape
against the catalog and the policy in effect) before anything exists; the cluster is created on first
use from a ``ClusterSpec`` built by the platform core, shared by the run's steps, and deleted when the
resource is torn down: on success, on failure, and on termination (Dagster's interrupt is a
``BaseException``, so teardown sits in a ``finally``). In RayJob mode it creates no cluster: each step's
workload becomes a RayJob whose cluster the cluster manager creates and deletes.

Where clusters live (backend, namespace, kubeconfig) and which mode runs come from the platform
(``DMP_*``); the fields of the same names override them for one resource. The Launchpad's
``gpu_pool`` choices are the catalog in effect: :func:`ray_cluster_resource_type` narrows the field
to it when the code location loads.
"""

from __future__ import annotations

import time
from collections.abc import Generator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any, ClassVar, Literal

import dagster as dg
from pydantic import Field, PrivateAttr, ValidationError, create_model

from discord_ml_platform.backends import ClusterBackend, ClusterEndpoints, ClusterHandle, PhaseEvent
from discord_ml_platform.backends.rayjobs import RayJobCapable, RayJobOptions, rayjob_name
from discord_ml_platform.jobs.runner import ClusterTarget, JobTarget, RayJobTarget
from discord_ml_platform.platform import Platform, current_platform
from discord_ml_platform.settings import BackendName, ClusterMode
from discord_ml_platform.spec import ClusterSpec, GpuCatalog, SpecError
from discord_ml_platform.spec.errors import validation_problems
from discord_ml_platform.spec.labels import CLUSTER_RESOURCE_KEY, GPU_POOL_RUN_TAG
from resources.preflight import ConfigProblem, RunConfigPreflight, RunConfigProblems, resource_problems
from resources.run_tags import DEFAULT_GPU_POOL

StepContext = dg.AssetExecutionContext | dg.OpExecutionContext


class RayJobConfig(dg.Config, RayJobOptions):
    """RayJob mode: shutdown, TTL, deadline, retries, and what ending a step early does."""


def cluster_metadata(
    spec: ClusterSpec,
    *,
    name: str,
    backend: str,
    mode: str,
    namespace: str,
    hourly_price_usd: float,
    held_seconds: float,
    dashboard_url: str | None,
) -> dict[str, Any]:
    """Materialization metadata every Ray step reports about its cluster, whatever the mode.

    Args:
        spec: The cluster's shape.
        name: The cluster's name (the run's cluster, or the one KubeRay created for a RayJob).
        backend: Where it ran (``local``, ``kuberay``).
        mode: ``raycluster`` or ``rayjob``.
        namespace: Where it lived.
        hourly_price_usd: Its catalog price per hour.
        held_seconds: How long it was held: the estimated cost is for this long.
        dashboard_url: The Ray dashboard (``None``: none is known, and no link is reported).
    """
    metadata: dict[str, Any] = {
        "cluster_name": name,
        "cluster_backend": backend,
        "cluster_mode": mode,
        "cluster_namespace": namespace,
        "gpu_type": spec.gpu_type,
        "gpu_count": spec.total_gpus,
        "cluster_workers": spec.workers,
        "image": spec.image,
        "hourly_price_usd": round(hourly_price_usd, 4),
        "estimated_cost_usd": round(hourly_price_usd * held_seconds / 3600, 6),
    }
    if dashboard_url is not None:
        metadata["ray_dashboard"] = dg.MetadataValue.url(dashboard_url)
    return metadata


@dataclass
class RunningCluster:
    """A ready cluster and what it cost to get it."""

    spec: ClusterSpec
    handle: ClusterHandle
    endpoints: ClusterEndpoints
    backend_name: str
    requested_at: float
    ready_at: float
    hourly_price_usd: float = 0.0
    phases: list[PhaseEvent] = field(default_factory=list)

    @property
    def seconds_to_ready(self) -> float:
        """Time from the create request until the cluster was ready."""
        return self.ready_at - self.requested_at

    def gpu_hours(self, until: float | None = None) -> float:
        """GPU-hours held from request until ``until`` (default now)."""
        return self.spec.total_gpus * ((until or time.time()) - self.requested_at) / 3600

    def cost_usd(self, until: float | None = None) -> float:
        """Estimated cost since the request, at the catalog price in effect when it was created."""
        return self.hourly_price_usd * ((until or time.time()) - self.requested_at) / 3600

    def target(self) -> ClusterTarget:
        """Where the job runner submits jobs."""
        return ClusterTarget(self.handle.name, self.endpoints.dashboard_url)

    def metadata(self) -> dict[str, Any]:
        """Materialization metadata describing the cluster and its cost so far."""
        now = time.time()
        return {
            **cluster_metadata(
                self.spec,
                name=self.handle.name,
                backend=self.backend_name,
                mode="raycluster",
                namespace=self.handle.namespace,
                hourly_price_usd=self.hourly_price_usd,
                held_seconds=now - self.requested_at,
                dashboard_url=self.endpoints.dashboard_url,
            ),
            "seconds_to_ready": round(self.seconds_to_ready, 2),
            "cluster_wall_seconds": round(now - self.requested_at, 2),
            "gpu_hours": round(self.gpu_hours(now), 6),
        }


def cluster_name_for_run(run_id: str, suffix: str = "") -> str:
    """A DNS-1123 cluster name derived from a Dagster run id."""
    base = f"dmp-{run_id.replace('-', '')[:12]}"
    return f"{base}-{suffix}"[:47].rstrip("-") if suffix else base


# Resource field -> ClusterSpec field, for the shape the Launchpad sets.
SHAPE_FIELDS = {
    "gpu_pool": "gpu_type",
    "workers": "workers",
    "gpus_per_worker": "gpus_per_worker",
    "cpus_per_worker": "cpus_per_worker",
    "memory_per_worker": "memory_per_worker",
    "head_cpus": "head_cpus",
    "head_memory": "head_memory",
    "image": "image",
    "owner": "owner",
    "team": "team",
    "namespace": "namespace",
}


class RayClusterResource(dg.ConfigurableResource):
    """The run's Ray cluster (or, in RayJob mode, the shape of each step's RayJob cluster).

    Set the shape once per run in the Launchpad under ``resources.ray_cluster.config``; every Ray
    step of the run uses it.
    """

    gpu_pool: str = Field(default=DEFAULT_GPU_POOL, description="GPU pool of the workers, from the catalog in effect.")
    workers: int = Field(
        default=2, description="Worker nodes besides the head; Ray Train runs one worker per GPU (one per node on cpu)."
    )
    gpus_per_worker: int = Field(
        default=0, description="GPUs per worker node: 0 on the cpu pool, 1 or more on a GPU pool."
    )
    cpus_per_worker: float = Field(default=1, description="CPUs per worker node.")
    memory_per_worker: str = Field(
        default="2Gi", description="Memory per worker node, a Kubernetes quantity such as 8Gi."
    )
    head_cpus: float = Field(default=1, description="CPUs of the head node.")
    head_memory: str = Field(default="2Gi", description="Memory of the head node, a Kubernetes quantity.")
    image: str | None = Field(default=None, description="Ray image; default: the pool's, else the platform's image.")
    ttl_hours: float = Field(
        default=8,
        gt=0,
        le=168,
        description="Expiry after which the sweeper deletes a cluster a killed run left behind.",
    )
    ready_timeout_s: float = Field(
        default=600, gt=0, le=7200, description="Seconds to wait for the cluster to be ready."
    )
    mode: ClusterMode | None = Field(
        default=None,
        description="'raycluster': the run creates a cluster, runs its steps' jobs on it and deletes it at the end. "
        "'rayjob' (kuberay): each step is a KubeRay RayJob whose cluster KubeRay creates and deletes, even if this "
        "process dies. Default: $DMP_CLUSTER_MODE, else raycluster.",
    )
    rayjob: RayJobConfig = Field(
        default_factory=RayJobConfig, description="RayJob mode: shutdown, TTL, deadline, retries, termination."
    )
    owner: str | None = Field(
        default=None, description="Owner label; default: the run's user, else $DMP_OWNER or $USER."
    )
    team: str | None = Field(default=None, description="Team label for cost attribution; default $DMP_TEAM.")
    backend: BackendName | None = Field(
        default=None, description="Where clusters run; default $DMP_BACKEND, else local."
    )
    namespace: str | None = Field(default=None, description="Kubernetes namespace; default $DMP_NAMESPACE.")
    kubeconfig: str | None = Field(default=None, description="kuberay: kubeconfig path; default $DMP_KUBECONFIG.")
    kube_context: str | None = Field(
        default=None, description="kuberay: kubeconfig context; default $DMP_KUBE_CONTEXT."
    )

    # Set by ray_cluster_resource_type for the code location: every op config the run may carry.
    preflight: ClassVar[RunConfigPreflight] = RunConfigPreflight({})

    _platform: Platform | None = PrivateAttr(default=None)
    _backend: ClusterBackend | None = PrivateAttr(default=None)
    _clusters: dict[str, RunningCluster] = PrivateAttr(default_factory=dict)
    _log: Any = PrivateAttr(default=None)
    _run_id: str | None = PrivateAttr(default=None)
    _run_owner: str | None = PrivateAttr(default=None)

    # --- the run's life ------------------------------------------------------------------------

    @contextmanager
    def yield_for_execution(self, context: dg.InitResourceContext) -> Generator[RayClusterResource, None, None]:
        """Check the run config, yield the resource, and delete every cluster it created on the way out.

        Raises:
            RunConfigProblems: an op's config or this resource's shape is invalid (nothing was created).
        """
        self._log = context.log
        run = context.dagster_run
        self._run_id = run.run_id if run else None
        self._run_owner = run.tags.get("dagster/user") if run else None
        self._platform = self._resolve_platform()
        problems = self.preflight.problems(run.run_config if run else {})
        problems += resource_problems(CLUSTER_RESOURCE_KEY, self.shape_problems())
        if problems:
            raise RunConfigProblems(problems)
        if run is not None and context.instance is not None:
            self._tag_gpu_pool(context.instance, context.log, run.run_id, run.tags)
        self._clusters = {}
        self._backend = self.platform.open_backend(self.backend, namespace=self.namespace)
        try:
            yield self
        finally:  # also on DagsterExecutionInterruptedError, a BaseException
            try:
                self.delete_all()
            finally:
                self._backend.close()
                self._backend = None

    @property
    def platform(self) -> Platform:
        """The platform in effect for this resource (its overrides applied)."""
        if self._platform is None:
            self._platform = self._resolve_platform()
        return self._platform

    @property
    def effective_mode(self) -> ClusterMode:
        """``raycluster`` or ``rayjob``: the field, else ``DMP_CLUSTER_MODE``."""
        return self.mode or self.platform.settings.cluster_mode

    def _resolve_platform(self) -> Platform:
        return current_platform().with_settings(
            backend=self.backend, namespace=self.namespace, kubeconfig=self.kubeconfig, kube_context=self.kube_context
        )

    def check_run_config(self, run_config: Mapping[str, Any]) -> list[ConfigProblem]:
        """Every problem a run of ``run_config`` would stop at when it starts, found without starting it.

        For launchers that validate before they launch (``dmp run``): the run's op configs, and this
        resource configured with the run config's ``resources.ray_cluster.config`` over its own values.

        Returns:
            ``(path in the run config, problem)`` pairs; empty when the run config is valid.
        """
        problems = self.preflight.problems(run_config)
        entry = ((run_config.get("resources") or {}).get(CLUSTER_RESOURCE_KEY) or {}).get("config") or {}
        try:
            configured = type(self).model_validate({**self.model_dump(exclude_unset=True), **entry})
        except ValidationError as err:
            return problems + resource_problems(
                CLUSTER_RESOURCE_KEY, [(p.field, p.message) for p in validation_problems(err)]
            )
        return problems + resource_problems(CLUSTER_RESOURCE_KEY, configured.shape_problems())

    def shape_problems(self) -> list[tuple[str, str]]:
        """``(resource field, problem)`` for every way this shape breaks the catalog, policy or mode."""
        found: list[tuple[str, str]] = []
        try:
            self.spec_for_run(self._run_id or "preflight")
        except SpecError as err:
            by_spec_field = {spec: res for res, spec in SHAPE_FIELDS.items()}
            found += [(by_spec_field.get(p.field, p.field), p.message) for p in err.problems]
        # Decided from the backend's class: opening one (a kuberay backend builds a Kubernetes API
        # client) only to ask this is waste; job_target checks the opened backend again.
        if self.effective_mode == "rayjob":
            backend_class = self.platform.backend_class(self.backend)
            if not issubclass(backend_class, RayJobCapable):
                found.append(
                    (
                        "mode",
                        f"'rayjob' needs a backend that runs RayJobs (kuberay); this run uses {backend_class.name!r}",
                    )
                )
        return found

    def _tag_gpu_pool(self, instance: dg.DagsterInstance, log: Any, run_id: str, tags: Mapping[str, str]) -> None:
        # The run coordinator tags runs from their config before they queue; a run launched another
        # way (execute_in_process) may carry the job's default: put the pool it really uses on it.
        if tags.get(GPU_POOL_RUN_TAG) != self.gpu_pool:
            if log is not None:
                log.warning(
                    f"run tag {GPU_POOL_RUN_TAG}={tags.get(GPU_POOL_RUN_TAG)!r} but the run uses the {self.gpu_pool!r} "
                    "pool; retagged (per-pool run limits apply when the run coordinator sets the tag at launch)"
                )
            instance.add_run_tags(run_id, {GPU_POOL_RUN_TAG: self.gpu_pool})

    # --- specs ---------------------------------------------------------------------------------

    def shape(self) -> dict[str, Any]:
        """The ``ClusterSpec`` fields this resource sets (unset ones left to the platform)."""
        values = {spec: getattr(self, res) for res, spec in SHAPE_FIELDS.items()}
        values["owner"] = self.owner or self._run_owner
        return {key: value for key, value in values.items() if value is not None}

    def spec_for_run(self, run_id: str | None = None, **overrides: Any) -> ClusterSpec:
        """The run's ``ClusterSpec``: this resource's shape, ``overrides`` on top, checked by the platform.

        Raises:
            SpecError: the spec breaks the catalog or the policy in effect.
        """
        run_id = run_id or self._run_id or "adhoc"
        fields = {
            "name": cluster_name_for_run(run_id),
            "run_id": run_id,
            "ttl": timedelta(hours=self.ttl_hours),
            **self.shape(),
            **overrides,
        }
        return self.platform.cluster_spec(fields)

    @property
    def train_workers(self) -> int:
        """Ray Train workers this shape holds: one per GPU, or one per worker node without GPUs."""
        return max(self.workers, 1) * max(self.gpus_per_worker, 1)

    @property
    def uses_gpus(self) -> bool:
        """Whether workers hold GPUs."""
        return self.gpus_per_worker > 0

    # --- clusters ------------------------------------------------------------------------------

    def job_target(
        self, context: StepContext, spec: ClusterSpec | None = None
    ) -> tuple[JobTarget, RunningCluster | None]:
        """Where the step's workload runs, by mode: the run's cluster, or a RayJob of its own.

        Returns:
            The job runner's target, and the running cluster in RayCluster mode (``None`` in RayJob mode).
        """
        spec = spec or self.spec_for_run(context.run_id)
        if self.effective_mode != "rayjob":
            cluster = self.get_cluster(context, spec)
            return cluster.target(), cluster
        backend = self._open()
        if not isinstance(backend, RayJobCapable):  # the backstop: shape_problems stops such a run at its start
            raise dg.Failure(f"mode='rayjob' needs the kuberay backend (KubeRay runs the RayJob); got {backend.name!r}")
        step = f"{context.run_id}/{op_context(context).get_step_execution_context().step.key}"
        job_spec = spec.model_copy(update={"name": rayjob_name(spec.name, step)})
        return RayJobTarget(backend.rayjobs(job_spec.namespace), job_spec, self.rayjob), None

    def get_cluster(self, context: StepContext, spec: ClusterSpec | None = None) -> RunningCluster:
        """The run's cluster named ``spec.name``, created and waited for on first use."""
        spec = spec or self.spec_for_run(context.run_id)
        if spec.name in self._clusters:
            return self._clusters[spec.name]
        backend = self._open()
        log = context.log
        requested = time.time()
        log.info(
            f"requesting {backend.name} Ray cluster {spec.name}: {spec.workers} worker(s) of {spec.gpu_type} "
            f"x{spec.gpus_per_worker}, {spec.cpus_per_worker} CPU, {spec.memory_per_worker}, image {spec.image}"
        )
        phases: list[PhaseEvent] = []

        def on_phase(event: PhaseEvent) -> None:
            phases.append(event)
            log.info(f"cluster {spec.name} [{event.phase}] {event.message}")

        # Registered by name before the create request: a create the server committed but answered
        # with an error (or that an interrupt cut short) is still deleted at teardown.
        handle = ClusterHandle(spec.name, spec.namespace, backend.name)
        cluster = RunningCluster(
            spec,
            handle,
            ClusterEndpoints("", ""),
            backend.name,
            requested,
            requested,
            hourly_price_usd=self.platform.hourly_price(spec),
            phases=phases,
        )
        self._clusters[spec.name] = cluster
        cluster.handle = backend.create(spec)
        cluster.endpoints = backend.wait_ready(cluster.handle, self.ready_timeout_s, on_phase)
        cluster.ready_at = time.time()
        log.info(f"cluster {spec.name} ready in {cluster.seconds_to_ready:.1f}s at {cluster.endpoints.dashboard_url}")
        return cluster

    def delete_all(self) -> None:
        """Delete every cluster this resource created (or asked for) in this run.

        Every cluster is attempted, even when an interrupt arrives while another is being deleted
        (a second Ctrl-C, Dagster terminating the run twice): the first interrupt is re-raised once
        all are done, so nothing is left to the sweeper that could be deleted now.
        """
        if not self._clusters:
            return
        backend = self._open()
        interrupted: BaseException | None = None
        for name, cluster in list(self._clusters.items()):
            started = time.time()
            for _attempt in range(2):  # an interrupt cut the first attempt short: once more
                try:
                    backend.delete(cluster.handle)
                    if self._log:
                        self._log.info(
                            f"deleted Ray cluster {name} in {time.time() - started:.1f}s "
                            f"(held {time.time() - cluster.requested_at:.0f}s, "
                            f"{cluster.gpu_hours():.4f} GPU-hours, ~${cluster.cost_usd():.4f})"
                        )
                    break
                except Exception as err:  # keep deleting the others; the sweeper retries by label
                    if self._log:
                        self._log.error(f"could not delete Ray cluster {name}: {err}")
                    break
                except BaseException as err:  # an interrupt: finish every cluster first, then let it through
                    interrupted = interrupted or err
                    if self._log:
                        self._log.warning(f"interrupted while deleting Ray cluster {name}; finishing the deletion")
            self._clusters.pop(name, None)
        if interrupted is not None:
            raise interrupted

    def _open(self) -> ClusterBackend:
        # Outside a run (direct calls in tests) the backend opens on first use and lives with the resource.
        if self._backend is None:
            self._backend = self.platform.open_backend(self.backend, namespace=self.namespace)
        return self._backend


def op_context(context: StepContext) -> dg.OpExecutionContext:
    """The op context of a step's context (an asset's context wraps one)."""
    return context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context


def ray_cluster_resource_type(
    catalog: GpuCatalog, preflight: RunConfigPreflight | None = None
) -> type[RayClusterResource]:
    """``RayClusterResource`` whose ``gpu_pool`` is a choice of ``catalog``'s pools (the Launchpad's
    drop-down) and whose run-start check knows the code location's op configs."""
    pools = tuple(catalog.names())
    default = DEFAULT_GPU_POOL if DEFAULT_GPU_POOL in pools else pools[0]
    choice: Any = Literal[pools]  # a Literal of the catalog in effect: Dagster shows it as a choice
    resource_type = create_model(
        "RayClusterResource",
        __base__=RayClusterResource,
        __module__=__name__,
        __doc__=RayClusterResource.__doc__,
        gpu_pool=(choice, Field(default=default, description=RayClusterResource.model_fields["gpu_pool"].description)),
    )
    if preflight is not None:
        resource_type.preflight = preflight
    return resource_type


__all__ = [
    "RayClusterResource",
    "RayJobConfig",
    "RunningCluster",
    "StepContext",
    "cluster_metadata",
    "cluster_name_for_run",
    "op_context",
    "ray_cluster_resource_type",
]
