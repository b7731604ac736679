"""Notebooks on KubeRay: a JupyterLab pod beside the RayCluster, owned by it.

The pod and the Secret holding its token carry an ownerReference to the RayCluster, so
Kubernetes' garbage collector removes both with the cluster whoever deletes it. The pod runs
with the same restricted security context as the Ray pods (non-root, no privilege escalation,
all capabilities dropped, RuntimeDefault seccomp, no service-account token) on the catalog's
``cpu`` pool, and JupyterLab stops itself after the idle timeout (``restartPolicy: Never``; the
dashboard's reaper then deletes the finished pod).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from discord_ml_platform.backends import ClusterBackend, ClusterInfo
from discord_ml_platform.spec import DEFAULT_PLATFORM_CONFIG, PlatformConfig
from discord_ml_platform.spec.labels import CLUSTER, MANAGED_BY, MANAGED_BY_VALUE, PREFIX, label_value
from discord_ml_platform.spec.render_pod import (
    TMP_VOLUME,
    Manifest,
    render_container_security_context,
    render_pod_security_context,
    render_resources,
)
from discord_ml_platform.xray.notebooks import NotebookError, NotebookRecord, now_utc

NOTEBOOK_FOR = f"{PREFIX}/notebook-for"
COMPONENT = "app.kubernetes.io/component"
NOTEBOOK_PORT = 8888
NOTEBOOK_CPUS, NOTEBOOK_MEMORY = 1.0, 2 * 2**30
CONTAINER = "jupyterlab"


def notebook_name(cluster: str) -> str:
    """Name of the pod and Secret of a cluster's notebook (a DNS label)."""
    return f"{cluster[:50]}-notebook"


def notebook_labels(cluster: str) -> dict[str, str]:
    """Labels of the notebook's objects. Not ``ray.io/cluster``: KubeRay must not count the pod as a Ray node."""
    return {
        MANAGED_BY: MANAGED_BY_VALUE,
        CLUSTER: label_value(cluster),
        NOTEBOOK_FOR: label_value(cluster),
        COMPONENT: "notebook",
    }


def owner_reference(cluster: str, uid: str) -> Manifest:
    """An ownerReference to the RayCluster, so the notebook goes when the cluster goes."""
    return {
        "apiVersion": "ray.io/v1",
        "kind": "RayCluster",
        "name": cluster,
        "uid": uid,
        "blockOwnerDeletion": False,
        "controller": False,
    }


def render_notebook_secret(cluster: str, namespace: str, uid: str, token: str) -> Manifest:
    """The Secret that holds the notebook's token (never in the pod spec itself)."""
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "type": "Opaque",
        "metadata": {
            "name": notebook_name(cluster),
            "namespace": namespace,
            "labels": notebook_labels(cluster),
            "ownerReferences": [owner_reference(cluster, uid)],
        },
        "stringData": {"token": token},
    }


def render_notebook_pod(
    cluster: str,
    namespace: str,
    uid: str,
    ray_address: str,
    *,
    image: str,
    idle_timeout_s: int,
    platform_config: PlatformConfig = DEFAULT_PLATFORM_CONFIG,
    auth_mode: str | None = None,
) -> Manifest:
    """The JupyterLab pod for ``cluster``.

    Args:
        cluster: RayCluster name.
        namespace: Its namespace (the pod goes beside it).
        uid: The RayCluster's uid (for the ownerReference).
        ray_address: GCS address reachable in the cluster, e.g. ``<head-svc>.<ns>.svc:6379``.
        image: Image with Ray and JupyterLab (normally the cluster's own).
        idle_timeout_s: JupyterLab shuts down (and culls kernels) after this long idle.
        platform_config: Policy (user, group, pull policy, service account) and catalog (pool).
        auth_mode: ``RAY_AUTH_MODE`` of the notebook's Ray client (the platform's, which
            ``DMP_RAY_AUTH_MODE`` may set); default the policy's.
    """
    policy = platform_config.policy
    pool = platform_config.catalog.types.get("cpu")
    container: Manifest = {
        "name": CONTAINER,
        "image": image,
        "imagePullPolicy": policy.image_pull_policy,
        "command": [
            "python",
            "-m",
            "jupyterlab",
            "--no-browser",
            "--ip=0.0.0.0",
            f"--port={NOTEBOOK_PORT}",
            "--ServerApp.root_dir=/tmp/work",
            f"--ServerApp.shutdown_no_activity_timeout={idle_timeout_s}",
            f"--MappingKernelManager.cull_idle_timeout={idle_timeout_s}",
            "--MappingKernelManager.cull_interval=60",
            f"--TerminalManager.cull_inactive_timeout={idle_timeout_s}",
        ],
        "env": [
            {"name": "RAY_ADDRESS", "value": ray_address},
            {"name": "RAY_AUTH_MODE", "value": auth_mode or policy.ray_auth_mode},
            {"name": "RAY_USAGE_STATS_ENABLED", "value": "0"},
            {"name": "HOME", "value": "/tmp"},
            {"name": "JUPYTER_TOKEN", "valueFrom": {"secretKeyRef": {"name": notebook_name(cluster), "key": "token"}}},
        ],
        "ports": [{"name": "notebook", "containerPort": NOTEBOOK_PORT, "protocol": "TCP"}],
        "resources": render_resources(NOTEBOOK_CPUS, NOTEBOOK_MEMORY),
        "securityContext": render_container_security_context(policy),
        "volumeMounts": [{"name": TMP_VOLUME, "mountPath": "/tmp"}],
        "readinessProbe": {"tcpSocket": {"port": NOTEBOOK_PORT}, "periodSeconds": 5},
    }
    spec: Manifest = {
        "serviceAccountName": policy.service_account,
        "automountServiceAccountToken": False,
        "securityContext": render_pod_security_context(policy),
        "restartPolicy": "Never",
        "containers": [container],
        "volumes": [{"name": TMP_VOLUME, "emptyDir": {}}],
    }
    if pool is not None and pool.node_selector:
        spec["nodeSelector"] = dict(pool.node_selector)
    if pool is not None and pool.tolerations:
        spec["tolerations"] = [t.to_manifest() for t in pool.tolerations]
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": notebook_name(cluster),
            "namespace": namespace,
            "labels": notebook_labels(cluster),
            "ownerReferences": [owner_reference(cluster, uid)],
        },
        "spec": spec,
    }


def notebook_image(configured: str | None, cluster_image: str | None, platform_config: PlatformConfig) -> str:
    """The image of a cluster's notebook pod.

    Args:
        configured: ``DMP_XRAY_NOTEBOOK_IMAGE`` (``settings.notebook_image``), which wins when set.
        cluster_image: The image the cluster runs: it has Ray of the cluster's version and the
            workload's code, so the notebook's driver matches the cluster.
        platform_config: The fallback is the image of its ``cpu`` pool, where the pod runs (the
            pool's own image, else the platform's CPU image).
    """
    chosen = configured or cluster_image
    if chosen:
        return chosen
    pool = platform_config.catalog.types.get("cpu")
    return platform_config.images.for_pool(pool) if pool is not None else platform_config.images.cpu


def in_cluster_ray_address(info: ClusterInfo) -> str:
    """The head's GCS address as pods see it: the head service's DNS name, else the backend's address."""
    details: Mapping[str, Any] = info.details if isinstance(info.details, Mapping) else {}
    head = details.get("head") if isinstance(details.get("head"), Mapping) else {}
    if head and head.get("serviceName"):
        return f"{head['serviceName']}.{info.handle.namespace}.svc:6379"
    if info.endpoints is None:
        raise NotebookError("the cluster has no Ray address yet")
    return info.endpoints.gcs_address


class PodNotebookLauncher:
    """Creates notebook pods through the kuberay backend's Kubernetes client.

    Args:
        backend: A backend with an ``api_client`` (the kuberay backend has one).
        image: Notebook image for every cluster; default (``None``) each cluster's own image, else
            the ``cpu`` pool's image (see :func:`notebook_image`).
        platform_config: Policy, catalog and images for the pod.
        auth_mode: ``RAY_AUTH_MODE`` of the notebooks' Ray clients; default the policy's.
    """

    kind = "pod"

    def __init__(
        self,
        backend: ClusterBackend,
        image: str | None = None,
        platform_config: PlatformConfig = DEFAULT_PLATFORM_CONFIG,
        auth_mode: str | None = None,
    ) -> None:
        from kubernetes import client

        api_client = getattr(backend, "api_client", None)
        if api_client is None:
            raise NotebookError(f"backend {backend.name!r} has no Kubernetes client for notebook pods")
        self.core = client.CoreV1Api(api_client)
        self.image = image
        self.platform_config = platform_config
        self.auth_mode = auth_mode

    def cluster_image(self, info: ClusterInfo) -> str | None:
        """The image ``info``'s cluster runs, as its backend reported it (a kept spec's, else the
        kuberay backend's ``details["image"]``, read off the head's Ray container).

        ``None`` when it does not tell: the platform's image is used.
        """
        details: Mapping[str, Any] = info.details if isinstance(info.details, Mapping) else {}
        kept = details.get("spec")
        if isinstance(kept, Mapping) and kept.get("image"):
            return str(kept["image"])
        return str(details["image"]) if details.get("image") else None

    def launch(self, info: ClusterInfo, token: str, idle_timeout_s: int) -> NotebookRecord:
        """Create the Secret and the pod (replacing a finished pod of the same name).

        Raises:
            NotebookError: the RayCluster's uid is unknown or the API refused.
        """
        uid = str((info.details or {}).get("uid") or "")
        if not uid:
            raise NotebookError("the RayCluster's uid is unknown; cannot attach a notebook to it")
        name, ns = info.handle.name, info.handle.namespace
        record = NotebookRecord(
            cluster="",
            kind=self.kind,
            token=token,
            started_at=now_utc().isoformat(),
            idle_timeout_s=idle_timeout_s,
            namespace=ns,
            pod=notebook_name(name),
            secret=notebook_name(name),
        )
        self.stop(record)  # a finished or stale one of an earlier launch
        secret = render_notebook_secret(name, ns, uid, token)
        pod = render_notebook_pod(
            name,
            ns,
            uid,
            in_cluster_ray_address(info),
            image=notebook_image(self.image, None if self.image else self.cluster_image(info), self.platform_config),
            idle_timeout_s=idle_timeout_s,
            platform_config=self.platform_config,
            auth_mode=self.auth_mode,
        )
        try:
            self.core.create_namespaced_secret(ns, secret, _request_timeout=(5, 15))
            self.core.create_namespaced_pod(ns, pod, _request_timeout=(5, 15))
        except Exception as err:
            self.stop(record)
            raise NotebookError(f"could not create the notebook pod in {ns}: {getattr(err, 'reason', err)}") from err
        return record

    def _pod(self, record: NotebookRecord) -> Any:
        try:
            return self.core.read_namespaced_pod(record.pod, record.namespace, _request_timeout=(5, 10))
        except Exception as err:
            if getattr(err, "status", None) == 404:
                return None
            raise

    def state(self, record: NotebookRecord) -> str:
        """``pending`` until the pod runs with an IP, ``running``, or ``stopped`` (gone or finished)."""
        pod = self._pod(record)
        if pod is None or pod.metadata.deletion_timestamp:
            return "stopped"
        phase = (pod.status.phase if pod.status else None) or "Pending"
        if phase in ("Succeeded", "Failed"):
            return "stopped"
        return "running" if phase == "Running" and pod.status.pod_ip else "pending"

    def url(self, record: NotebookRecord) -> str | None:
        """``http://<pod IP>:8888/lab?token=...`` (reachable where the dashboard runs in the cluster)."""
        pod = self._pod(record)
        if pod is None or not pod.status or not pod.status.pod_ip:
            return None
        return f"http://{pod.status.pod_ip}:{NOTEBOOK_PORT}/lab?token={record.token}"

    def last_activity(self, record: NotebookRecord) -> datetime | None:
        """Unknown from outside the pod; JupyterLab enforces the idle timeout itself."""
        return None

    def stop(self, record: NotebookRecord) -> None:
        """Delete the pod and its Secret (missing ones are fine)."""
        for delete in (self.core.delete_namespaced_pod, self.core.delete_namespaced_secret):
            try:
                delete(record.pod, record.namespace, grace_period_seconds=0, _request_timeout=(5, 15))
            except Exception as err:
                if getattr(err, "status", None) != 404:
                    raise
