"""Pod-level pieces of the KubeRay manifests: security contexts, resources, env, volumes, templates.

One small function per Kubernetes sub-object; :mod:`discord_ml_platform.spec.render` assembles them.
Every function returns fresh dicts, so callers may mutate what they get.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from discord_ml_platform.spec.catalog import GpuType
from discord_ml_platform.spec.policy import SecurityPolicy
from discord_ml_platform.spec.quantities import bytes_to_quantity, cpus_to_quantity

Manifest = dict[str, Any]

# Volume names match KubeRay's own (pkg common/pod.go): KubeRay skips adding its /dev/shm and
# /tmp/ray volumes when one is mounted there, and mounts "ray-logs" into the autoscaler sidecar.
SHM_VOLUME = "shared-mem"
RAY_TMP_VOLUME = "ray-logs"
TMP_VOLUME = "tmp"
AUTOSCALER_TOKEN_VOLUME = "autoscaler-token"
SERVICE_ACCOUNT_MOUNT = "/var/run/secrets/kubernetes.io/serviceaccount"

HEAD_PORTS: tuple[tuple[str, int], ...] = (
    ("gcs-server", 6379),  # KubeRay finds the ports by these names for the head service.
    ("dashboard", 8265),
    ("client", 10001),
    ("metrics", 8080),
)


def render_pod_security_context(policy: SecurityPolicy) -> Manifest:
    """Pod-level part of the "restricted" Pod Security Standard."""
    return {
        "runAsNonRoot": True,
        "runAsUser": policy.run_as_user,
        "runAsGroup": policy.run_as_group,
        "fsGroup": policy.fs_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def render_container_security_context(policy: SecurityPolicy) -> Manifest:
    """Container-level part of the "restricted" Pod Security Standard (repeated per container,
    because a pod-level setting does not stop a container-level override elsewhere)."""
    return {
        "allowPrivilegeEscalation": False,
        "privileged": False,
        "capabilities": {"drop": ["ALL"]},
        "readOnlyRootFilesystem": policy.read_only_root_filesystem,
        "runAsNonRoot": True,
        "runAsUser": policy.run_as_user,
        "runAsGroup": policy.run_as_group,
        "seccompProfile": {"type": "RuntimeDefault"},
    }


def render_resources(cpus: float, memory_bytes: int, gpus: int = 0, gpu_resource: str | None = None) -> Manifest:
    """Requests equal to limits: the pod gets the Guaranteed QoS class and Ray sees exactly what it owns."""
    amounts = {"cpu": cpus_to_quantity(cpus), "memory": bytes_to_quantity(memory_bytes)}
    if gpus and gpu_resource:
        amounts[gpu_resource] = str(gpus)
    return {"requests": dict(amounts), "limits": dict(amounts)}


def render_env(policy: SecurityPolicy, extra: Mapping[str, str] | None = None, *, gpus: bool = False) -> list[Manifest]:
    """Environment of a Ray container: platform variables, NCCL ones on GPU pods, then ``extra``.

    Ray 2.60 turns token auth on by itself when ``~/.ray/auth_token`` exists, so the mode is
    always explicit; usage stats are off because pods have no business calling home.
    """
    env: dict[str, str] = {"RAY_USAGE_STATS_ENABLED": "0", "RAY_AUTH_MODE": policy.ray_auth_mode}
    if gpus:
        env.update({k: v for k, v in policy.nccl_env.items() if k not in env})
    # The policy check rejects reserved names in ``extra``; user values may override NCCL ones.
    extra = extra or {}
    env.update({k: extra[k] for k in sorted(extra) if k not in ("RAY_USAGE_STATS_ENABLED", "RAY_AUTH_MODE")})
    return [{"name": name, "value": value} for name, value in env.items()]


def shm_size_bytes(memory_bytes: int, object_store_bytes: int, policy: SecurityPolicy) -> int:
    """Size of /dev/shm: the policy's fraction of the pod's memory, never below the object store
    (Ray puts the object store there and falls back to slow disk when it does not fit), in whole MiB."""
    wanted = max(memory_bytes * policy.shm_fraction, object_store_bytes)
    return min(math.ceil(wanted / 2**20) * 2**20, memory_bytes)


def render_volumes(memory_bytes: int, object_store_bytes: int, policy: SecurityPolicy) -> list[Manifest]:
    """Volumes of a Ray pod: memory-backed /dev/shm, writable /tmp/ray, and /tmp on a read-only root."""
    volumes: list[Manifest] = [
        {
            "name": SHM_VOLUME,
            "emptyDir": {
                "medium": "Memory",
                "sizeLimit": bytes_to_quantity(shm_size_bytes(memory_bytes, object_store_bytes, policy)),
            },
        },
        {"name": RAY_TMP_VOLUME, "emptyDir": {}},
    ]
    if policy.read_only_root_filesystem:
        volumes.append({"name": TMP_VOLUME, "emptyDir": {}})
    return volumes


def render_volume_mounts(policy: SecurityPolicy, *, shm: bool = True) -> list[Manifest]:
    """Mounts matching :func:`render_volumes` (``shm=False`` for the autoscaler sidecar, which shares
    /tmp/ray with the head for its logs); /tmp comes before /tmp/ray so it does not hide it."""
    mounts: list[Manifest] = []
    if shm:
        mounts.append({"name": SHM_VOLUME, "mountPath": "/dev/shm"})
    if policy.read_only_root_filesystem:
        mounts.append({"name": TMP_VOLUME, "mountPath": "/tmp"})
    mounts.append({"name": RAY_TMP_VOLUME, "mountPath": "/tmp/ray"})
    return mounts


def render_autoscaler_token_volume(expiration_seconds: int = 3607) -> Manifest:
    """The service-account token, CA and namespace that the kubelet would automount, as a volume.

    Pods run with ``automountServiceAccountToken: false`` so user code never holds API credentials;
    only the autoscaler sidecar, which must patch the RayCluster, mounts this volume. (KubeRay binds
    its autoscaler Role to the head pod's service account.) With ``fsGroup`` set, the kubelet makes
    the token readable by that group, as it does for an automounted token.
    """
    return {
        "name": AUTOSCALER_TOKEN_VOLUME,
        "projected": {
            "sources": [
                {"serviceAccountToken": {"path": "token", "expirationSeconds": expiration_seconds}},
                {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                {
                    "downwardAPI": {
                        "items": [
                            {"path": "namespace", "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"}},
                        ]
                    }
                },
            ],
        },
    }


def render_ray_container(
    *,
    name: str,
    image: str,
    policy: SecurityPolicy,
    resources: Manifest,
    env: list[Manifest],
    ports: Sequence[tuple[str, int]] = (),
) -> Manifest:
    """A Ray container (head or worker) with the restricted security context and Ray's volumes."""
    container: Manifest = {
        "name": name,
        "image": image,
        "imagePullPolicy": policy.image_pull_policy,
        "env": env,
    }
    if ports:
        container["ports"] = [
            {"name": port_name, "containerPort": port, "protocol": "TCP"} for port_name, port in ports
        ]
    container["resources"] = resources
    container["securityContext"] = render_container_security_context(policy)
    container["volumeMounts"] = render_volume_mounts(policy)
    return container


def render_pod_template(
    *,
    labels: Mapping[str, str],
    containers: list[Manifest],
    volumes: list[Manifest],
    policy: SecurityPolicy,
    service_account: str,
    pool: GpuType | None = None,
    restart_policy: str | None = None,
) -> Manifest:
    """A pod template: labels, service account without a token, security context, pool placement."""
    spec: Manifest = {
        "serviceAccountName": service_account,
        "automountServiceAccountToken": False,
        "securityContext": render_pod_security_context(policy),
    }
    if restart_policy:
        spec["restartPolicy"] = restart_policy
    if pool is not None and pool.node_selector:
        spec["nodeSelector"] = dict(pool.node_selector)
    if pool is not None and pool.tolerations:
        spec["tolerations"] = [t.to_manifest() for t in pool.tolerations]
    spec["containers"] = containers
    if volumes:
        spec["volumes"] = volumes
    return {"metadata": {"labels": dict(labels)}, "spec": spec}
