"""Compile a ``ClusterSpec`` into KubeRay ``ray.io/v1`` manifests (RayCluster, RayJob). Pure, no I/O.

The CLI's ``--dry-run``, the KubeRay backend and the dashboard all call these functions, so what a
user previews is what gets created. The spec is checked against the platform policy first
(:func:`~discord_ml_platform.spec.policy.check_policy`); nothing is rendered for a spec that breaks it.
"""

from __future__ import annotations

import math
from datetime import UTC, datetime
from typing import Any

import yaml

from discord_ml_platform.spec.catalog import DEFAULT_CATALOG, GpuCatalog, GpuType
from discord_ml_platform.spec.cluster_spec import ClusterSpec
from discord_ml_platform.spec.errors import PolicyViolation, Violation
from discord_ml_platform.spec.labels import EXPIRES_AT, OWNER, PREFIX, TEAM, cluster_labels
from discord_ml_platform.spec.policy import DEFAULT_POLICY, SecurityPolicy, check_policy, effective_service_account
from discord_ml_platform.spec.quantities import quantity_to_bytes
from discord_ml_platform.spec.render_pod import (
    AUTOSCALER_TOKEN_VOLUME,
    HEAD_PORTS,
    SERVICE_ACCOUNT_MOUNT,
    Manifest,
    render_autoscaler_token_volume,
    render_container_security_context,
    render_env,
    render_pod_template,
    render_ray_container,
    render_resources,
    render_volume_mounts,
    render_volumes,
)

API_VERSION = "ray.io/v1"
CREATED_AT = f"{PREFIX}/created-at"
HEAD_CONTAINER = "ray-head"
WORKER_CONTAINER = "ray-worker"
SUBMITTER_CONTAINER = "ray-job-submitter"
# The autoscaler sidecar and the job submitter only talk to the API server / dashboard.
AUTOSCALER_CPUS, AUTOSCALER_MEMORY = 0.5, 512 * 2**20
SUBMITTER_CPUS, SUBMITTER_MEMORY = 0.5, 1 * 2**30


def _utc(moment: datetime) -> datetime:
    # A naive time is taken as UTC, so output never depends on the machine's time zone.
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _num(value: float) -> str:
    """A number for rayStartParams: ``2.0`` becomes ``"2"``."""
    return str(int(value)) if float(value).is_integer() else str(value)


def render_labels(spec: ClusterSpec, created_at: datetime) -> dict[str, str]:
    """The platform labels every object and pod template of ``spec`` carries."""
    return cluster_labels(
        name=spec.name,
        owner=spec.owner,
        team=spec.team,
        gpu_type=spec.gpu_type,
        expires_at=spec.expires_at(_utc(created_at)),
        run_id=spec.run_id,
        deployment=spec.deployment,
        extra=spec.labels,
    )


def render_metadata(spec: ClusterSpec, created_at: datetime) -> Manifest:
    """Object metadata: name, namespace, labels, and annotations that keep what labels cannot hold
    (the owner and team verbatim, times in ISO 8601)."""
    created = _utc(created_at)
    return {
        "name": spec.name,
        "namespace": spec.namespace,
        "labels": render_labels(spec, created),
        "annotations": {
            OWNER: spec.owner,
            TEAM: spec.team,
            CREATED_AT: created.isoformat(),
            EXPIRES_AT: spec.expires_at(created).isoformat(),
        },
    }


def worker_group_name(gpu: GpuType) -> str:
    """``workers`` on a CPU pool, ``gpu-<type>`` on an accelerator pool."""
    return f"gpu-{gpu.name}" if gpu.has_gpus else "workers"


def head_pool(catalog: GpuCatalog) -> GpuType | None:
    """Where the head runs: the catalog's ``cpu`` pool if it has one (the head holds no GPUs)."""
    return catalog.types.get("cpu")


def render_head_group(
    spec: ClusterSpec, *, catalog: GpuCatalog, policy: SecurityPolicy, labels: dict[str, str]
) -> Manifest:
    """``headGroupSpec``: the head pod, which schedules no GPU work and serves GCS, dashboard, client."""
    memory = quantity_to_bytes(spec.head_memory)
    store = spec.object_store_bytes(spec.head_memory)
    container = render_ray_container(
        name=HEAD_CONTAINER,
        image=spec.image,
        policy=policy,
        resources=render_resources(spec.head_cpus, memory),
        env=render_env(policy, spec.env),
        ports=HEAD_PORTS,
    )
    volumes = render_volumes(memory, store, policy)
    if spec.autoscaling:
        volumes.append(render_autoscaler_token_volume())
    template = render_pod_template(
        labels=labels,
        containers=[container],
        volumes=volumes,
        policy=policy,
        service_account=effective_service_account(spec, policy),
        pool=head_pool(catalog),
    )
    return {
        "rayStartParams": {
            "dashboard-host": "0.0.0.0",
            # `ray start --num-cpus` takes an integer; a fractional head rounds down.
            "num-cpus": str(math.floor(spec.head_cpus)),
            "num-gpus": "0",
            "object-store-memory": str(store),
        },
        "template": template,
    }


def replica_bounds(spec: ClusterSpec) -> tuple[int, int, int]:
    """``(replicas, minReplicas, maxReplicas)``; a bound left unset means no scaling on that side."""
    low = spec.min_workers if spec.min_workers is not None else spec.workers
    high = spec.max_workers if spec.max_workers is not None else spec.workers
    return spec.workers, low, high


def render_worker_group(
    spec: ClusterSpec, *, catalog: GpuCatalog, policy: SecurityPolicy, labels: dict[str, str]
) -> Manifest | None:
    """The one ``workerGroupSpecs`` entry, or ``None`` for a head-only cluster that never scales."""
    replicas, low, high = replica_bounds(spec)
    if high == 0:
        return None
    gpu = spec.gpu(catalog)
    memory_quantity = spec.memory_per_worker or "0"
    memory = quantity_to_bytes(memory_quantity)
    store = spec.object_store_bytes(memory_quantity)
    cpus = spec.cpus_per_worker or gpu.cpus_per_gpu
    gpus = spec.gpus_per_worker if gpu.has_gpus else 0
    container = render_ray_container(
        name=WORKER_CONTAINER,
        image=spec.image,
        policy=policy,
        resources=render_resources(cpus, memory, gpus, gpu.resource_name),
        env=render_env(policy, spec.env, gpus=gpus > 0),
    )
    template = render_pod_template(
        labels=labels,
        containers=[container],
        volumes=render_volumes(memory, store, policy),
        policy=policy,
        service_account=effective_service_account(spec, policy),
        pool=gpu,
    )
    return {
        "groupName": worker_group_name(gpu),
        "replicas": replicas,
        "minReplicas": low,
        "maxReplicas": high,
        "rayStartParams": {
            "num-cpus": str(math.floor(cpus)),
            "num-gpus": str(gpus),
            "object-store-memory": str(store),
        },
        "template": template,
    }


def render_autoscaler_options(policy: SecurityPolicy) -> Manifest:
    """``autoscalerOptions``: the sidecar gets the same restricted context, fixed resources and the
    only mount of the service-account token in the cluster."""
    return {
        "upscalingMode": "Default",
        "idleTimeoutSeconds": policy.autoscaler_idle_timeout_seconds,
        "imagePullPolicy": policy.image_pull_policy,
        "resources": render_resources(AUTOSCALER_CPUS, AUTOSCALER_MEMORY),
        "env": render_env(policy),
        "securityContext": render_container_security_context(policy),
        "volumeMounts": [
            *render_volume_mounts(policy, shm=False),
            {"name": AUTOSCALER_TOKEN_VOLUME, "mountPath": SERVICE_ACCOUNT_MOUNT, "readOnly": True},
        ],
    }


def render_raycluster_spec(
    spec: ClusterSpec, *, catalog: GpuCatalog, policy: SecurityPolicy, created_at: datetime
) -> Manifest:
    """The ``spec`` of a RayCluster (also embedded in a RayJob as ``rayClusterSpec``). Unchecked:
    call :func:`render_raycluster` / :func:`render_rayjob`, which check the policy first."""
    labels = render_labels(spec, created_at)
    body: Manifest = {"rayVersion": spec.ray_version}
    if spec.autoscaling:
        body["enableInTreeAutoscaling"] = True
        body["autoscalerOptions"] = render_autoscaler_options(policy)
    # Explicit even when disabled, matching RAY_AUTH_MODE in every container.
    body["authOptions"] = {"mode": policy.ray_auth_mode}
    body["headGroupSpec"] = render_head_group(spec, catalog=catalog, policy=policy, labels=labels)
    workers = render_worker_group(spec, catalog=catalog, policy=policy, labels=labels)
    if workers is not None:
        body["workerGroupSpecs"] = [workers]
    return body


def render_raycluster(
    spec: ClusterSpec,
    *,
    catalog: GpuCatalog = DEFAULT_CATALOG,
    policy: SecurityPolicy = DEFAULT_POLICY,
    created_at: datetime,
) -> Manifest:
    """Render the ``ray.io/v1`` RayCluster for ``spec``.

    Args:
        spec: The cluster to create.
        catalog: GPU catalog in effect (pool placement, GPU resource name).
        policy: Security policy and limits in effect.
        created_at: Creation time; the expiry label is derived from it. Naive times are UTC.

    Returns:
        The manifest as plain dicts and lists, ready for YAML/JSON or the Kubernetes client.

    Raises:
        PolicyViolation: when ``spec`` breaks the policy (field, value and what is allowed).
        UnknownGpuTypeError: when the catalog has no ``spec.gpu_type``.
    """
    check_policy(spec, policy, catalog)
    return {
        "apiVersion": API_VERSION,
        "kind": "RayCluster",
        "metadata": render_metadata(spec, created_at),
        "spec": render_raycluster_spec(spec, catalog=catalog, policy=policy, created_at=created_at),
    }


def render_submitter_template(
    spec: ClusterSpec, *, catalog: GpuCatalog, policy: SecurityPolicy, labels: dict[str, str]
) -> Manifest:
    """``submitterPodTemplate`` of a RayJob. The container has no command: KubeRay fills in
    ``ray job submit`` with the cluster address and submission id."""
    container: Manifest = {
        "name": SUBMITTER_CONTAINER,
        "image": spec.image,
        "imagePullPolicy": policy.image_pull_policy,
        "env": render_env(policy),
        "resources": render_resources(SUBMITTER_CPUS, SUBMITTER_MEMORY),
        "securityContext": render_container_security_context(policy),
    }
    volumes: list[Manifest] = []
    if policy.read_only_root_filesystem:
        volumes.append({"name": "tmp", "emptyDir": {}})
        container["volumeMounts"] = [{"name": "tmp", "mountPath": "/tmp"}]
    return render_pod_template(
        labels=labels,
        containers=[container],
        volumes=volumes,
        policy=policy,
        service_account=effective_service_account(spec, policy),
        pool=head_pool(catalog),
        restart_policy="Never",
    )


def render_rayjob(
    spec: ClusterSpec,
    *,
    entrypoint: str,
    runtime_env: dict[str, Any] | None = None,
    shutdown_after_job_finishes: bool = True,
    ttl_seconds_after_finished: int = 600,
    active_deadline_seconds: int | None = None,
    backoff_limit: int = 0,
    submission_id: str | None = None,
    job_metadata: dict[str, str] | None = None,
    catalog: GpuCatalog = DEFAULT_CATALOG,
    policy: SecurityPolicy = DEFAULT_POLICY,
    created_at: datetime,
) -> Manifest:
    """Render a ``ray.io/v1`` RayJob that creates the cluster of ``spec``, runs ``entrypoint`` on it
    and (by default) deletes the cluster afterwards.

    Args:
        spec: The cluster the job runs on.
        entrypoint: Shell command of the driver, e.g. ``"python -m discord_ml_platform.ads.train"``.
        runtime_env: Ray runtime environment (env_vars, working_dir, pip...), sent as YAML.
        shutdown_after_job_finishes: Delete the cluster when the job ends.
        ttl_seconds_after_finished: Seconds to keep the cluster after the job ends (for logs).
        active_deadline_seconds: Fail the job after this many seconds; ``None`` for no deadline.
        backoff_limit: Retries of the whole job (each on a new cluster).
        submission_id: Ray job submission id (``jobId``); KubeRay generates one when ``None``.
        job_metadata: Ray job metadata (string to string).
        catalog: GPU catalog in effect.
        policy: Security policy and limits in effect.
        created_at: Creation time; naive times are UTC.

    Raises:
        PolicyViolation: when ``spec`` breaks the policy, or the job's own arguments are out of range.
    """
    check_policy(spec, policy, catalog)
    _check_job_arguments(entrypoint, ttl_seconds_after_finished, active_deadline_seconds, backoff_limit)
    labels = render_labels(spec, created_at)
    body: Manifest = {"entrypoint": entrypoint}
    if runtime_env:
        body["runtimeEnvYAML"] = yaml.safe_dump(runtime_env, sort_keys=True, default_flow_style=False)
    if submission_id:
        body["jobId"] = submission_id
    if job_metadata:
        body["metadata"] = {str(k): str(v) for k, v in sorted(job_metadata.items())}
    body["shutdownAfterJobFinishes"] = shutdown_after_job_finishes
    body["ttlSecondsAfterFinished"] = ttl_seconds_after_finished
    if active_deadline_seconds is not None:
        body["activeDeadlineSeconds"] = active_deadline_seconds
    body["backoffLimit"] = backoff_limit
    body["submissionMode"] = "K8sJobMode"
    body["rayClusterSpec"] = render_raycluster_spec(spec, catalog=catalog, policy=policy, created_at=created_at)
    body["submitterPodTemplate"] = render_submitter_template(spec, catalog=catalog, policy=policy, labels=labels)
    return {"apiVersion": API_VERSION, "kind": "RayJob", "metadata": render_metadata(spec, created_at), "spec": body}


def _check_job_arguments(entrypoint: str, ttl: int, deadline: int | None, backoff_limit: int) -> None:
    int32 = 2**31 - 1
    found = []
    if not entrypoint.strip():
        found.append(Violation("entrypoint", entrypoint, "a non-empty shell command"))
    if not 0 <= ttl <= int32:
        found.append(Violation("ttl_seconds_after_finished", ttl, f"0..{int32}"))
    if deadline is not None and not 1 <= deadline <= int32:
        found.append(Violation("active_deadline_seconds", deadline, f"1..{int32} or None"))
    if not 0 <= backoff_limit <= 100:
        found.append(Violation("backoff_limit", backoff_limit, "0..100"))
    if found:
        raise PolicyViolation(found)


def render_manifests(
    spec: ClusterSpec,
    *,
    catalog: GpuCatalog = DEFAULT_CATALOG,
    policy: SecurityPolicy = DEFAULT_POLICY,
    created_at: datetime,
) -> list[Manifest]:
    """Everything ``dmp ... --dry-run -o yaml|json`` prints for ``spec``: today the RayCluster alone
    (the service account is the platform's, created once per namespace, not per cluster)."""
    return [render_raycluster(spec, catalog=catalog, policy=policy, created_at=created_at)]


def manifests_to_yaml(manifests: list[Manifest]) -> str:
    """Serialize manifests as a multi-document YAML stream in rendering order (as kubectl prints them)."""
    return yaml.safe_dump_all(manifests, sort_keys=False, default_flow_style=False, width=4096)
