"""The Kubernetes objects the local KubeRay operator writes, one function per object. Pure, no I/O.

Names, labels and status fields follow KubeRay v1: head pod ``<cluster>-head-<hash>``, worker pods
``<cluster>-<group>-worker-<hash>``, head service ``<cluster>-head-svc``, labels ``ray.io/cluster``,
``ray.io/node-type``, ``ray.io/group``, ``app.kubernetes.io/created-by: kuberay-operator``, and a
controller ``ownerReference`` to the RayCluster on everything, so deleting it cascades.
"""

from __future__ import annotations

import hashlib
import math
import secrets
from datetime import UTC, datetime
from typing import Any

from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.labels import OWNER, RUN_ID, TEAM
from discord_ml_platform.spec.render import HEAD_CONTAINER

Obj = dict[str, Any]

CREATED_BY_KEY, CREATED_BY = "app.kubernetes.io/created-by", "kuberay-operator"
CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
GROUP_LABEL = "ray.io/group"
HEAD_GROUP = "headgroup"
NODE_NAME = "dmp-sandbox-node"
LOCAL_IP = "127.0.0.1"
OPERATOR_COMPONENT = "kuberay-operator"
# Deletion of a RayCluster completes only after the operator stopped its local Ray processes, so
# "the RayCluster is gone" means "nothing of it runs" for every client, tests included.
FINALIZER = "sandbox.mlplatform.discord.com/local-ray"
RAYCLUSTER_ANNOTATION = "sandbox.mlplatform.discord.com/raycluster"


def now() -> str:
    """The current time as the API writes it."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def short_hash() -> str:
    """Five lowercase characters, like the suffix Kubernetes appends to generated names."""
    alphabet = "bcdfghjklmnpqrstvwxz2456789"
    return "".join(secrets.choice(alphabet) for _ in range(5))


def controller_reference(owner: Obj) -> Obj:
    """A controller reference to ``owner`` (an object as the API returns it, with its ``apiVersion`` and
    ``kind``): garbage collection follows it."""
    return {
        "apiVersion": owner["apiVersion"],
        "kind": owner["kind"],
        "name": owner["metadata"]["name"],
        "uid": owner["metadata"]["uid"],
        "controller": True,
        "blockOwnerDeletion": True,
    }


def ray_labels(rc: Obj, template: Obj, node_type: str, group: str) -> dict[str, str]:
    """Labels of a Ray pod: its template's labels plus KubeRay's own."""
    labels = dict(((template.get("metadata") or {}).get("labels")) or {})
    labels.update(
        {
            CLUSTER_LABEL: rc["metadata"]["name"],
            NODE_TYPE_LABEL: node_type,
            GROUP_LABEL: group,
            "ray.io/is-ray-node": "yes",
            "app.kubernetes.io/name": "kuberay",
            CREATED_BY_KEY: CREATED_BY,
        }
    )
    return labels


def build_pod(rc: Obj, template: Obj, node_type: str, group: str) -> Obj:
    """A head or worker Pod from a group's template."""
    name = rc["metadata"]["name"]
    pod_name = f"{name}-head-{short_hash()}" if node_type == "head" else f"{name}-{group}-worker-{short_hash()}"
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {
            "name": pod_name,
            "namespace": rc["metadata"]["namespace"],
            "labels": ray_labels(rc, template, node_type, group),
            "annotations": {RAYCLUSTER_ANNOTATION: name},
            "ownerReferences": [controller_reference(rc)],
        },
        "spec": dict(template.get("spec") or {}),
    }


def service_name(rc: Obj) -> str:
    """KubeRay's head service name."""
    return f"{rc['metadata']['name']}-head-svc"


def build_head_service(rc: Obj, ports: dict[str, int]) -> Obj:
    """The head Service; its ports are the local head's ports (the sandbox's network is loopback)."""
    name = rc["metadata"]["name"]
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {
            "name": service_name(rc),
            "namespace": rc["metadata"]["namespace"],
            "labels": {
                CLUSTER_LABEL: name,
                NODE_TYPE_LABEL: "head",
                "app.kubernetes.io/name": "kuberay",
                CREATED_BY_KEY: CREATED_BY,
            },
            "ownerReferences": [controller_reference(rc)],
        },
        "spec": {
            "type": "ClusterIP",
            "clusterIP": LOCAL_IP,
            "selector": {CLUSTER_LABEL: name, NODE_TYPE_LABEL: "head"},
            "ports": [
                {"name": port_name, "port": port, "targetPort": port, "protocol": "TCP"}
                for port_name, port in ports.items()
            ],
        },
    }


def build_event(
    obj: Obj,
    reason: str,
    message: str,
    *,
    warning: bool = False,
    component: str = OPERATOR_COMPONENT,
    count: int = 1,
) -> Obj:
    """A core/v1 Event about ``obj`` (``count``: how often it happened, as a kubelet aggregates them)."""
    meta = obj["metadata"]
    stamp = now()
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"name": f"{meta['name']}.{secrets.token_hex(8)}", "namespace": meta["namespace"]},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion", "v1"),
            "kind": obj.get("kind", ""),
            "name": meta["name"],
            "namespace": meta["namespace"],
            "uid": meta.get("uid", ""),
        },
        "reason": reason,
        "message": message,
        "type": "Warning" if warning else "Normal",
        "source": {"component": component},
        "reportingComponent": component,
        "firstTimestamp": stamp,
        "lastTimestamp": stamp,
        "count": count,
    }


def pod_condition(kind: str, status: bool, reason: str | None = None, message: str | None = None) -> Obj:
    """One pod condition."""
    cond: Obj = {"type": kind, "status": "True" if status else "False", "lastTransitionTime": now()}
    if reason:
        cond["reason"] = reason
    if message:
        cond["message"] = message
    return cond


def container_statuses(pod: Obj, state: Obj, ready: bool) -> list[Obj]:
    """The same state for every container of the pod."""
    return [
        {
            "name": c.get("name"),
            "image": c.get("image"),
            "imageID": "",
            "ready": ready,
            "restartCount": 0,
            "started": "running" in state,
            "state": state,
        }
        for c in (pod.get("spec") or {}).get("containers") or []
    ]


def pod_status_pending_unschedulable(message: str) -> Obj:
    """A pod the scheduler cannot place."""
    return {"phase": "Pending", "conditions": [pod_condition("PodScheduled", False, "Unschedulable", message)]}


def pod_status_image_pull(pod: Obj, reason: str, message: str) -> Obj:
    """A scheduled pod whose containers wait for an image that cannot be pulled."""
    return {
        "phase": "Pending",
        "hostIP": LOCAL_IP,
        "conditions": [
            pod_condition("PodScheduled", True),
            pod_condition("Initialized", True),
            pod_condition("Ready", False, "ContainersNotReady", "containers with unready status"),
            pod_condition("ContainersReady", False, "ContainersNotReady"),
        ],
        "containerStatuses": container_statuses(pod, {"waiting": {"reason": reason, "message": message}}, False),
    }


# kind of OperatorFaults.head_failure -> (reason, exit code) of the terminated container.
_TERMINATIONS = {"crash-loop": ("Error", 1), "oom-killed": ("OOMKilled", 137), "error": ("Error", 1)}


def pod_status_head_failed(pod: Obj, kind: str) -> Obj:
    """A head pod whose Ray container failed as ``kind`` says (see ``OperatorFaults.head_failure``)."""
    reason, exit_code = _TERMINATIONS[kind]
    stamp = now()
    terminated = {"terminated": {"reason": reason, "exitCode": exit_code, "startedAt": stamp, "finishedAt": stamp}}
    if kind == "crash-loop":
        state: Obj = {
            "waiting": {
                "reason": "CrashLoopBackOff",
                "message": f"back-off 40s restarting failed container={HEAD_CONTAINER} pod={pod['metadata']['name']}",
            }
        }
        last, restarts = terminated, 3
    else:
        state, last, restarts = terminated, {}, 0
    statuses = container_statuses(pod, state, False)
    for status in statuses:
        status["restartCount"] = restarts
        if last:
            status["lastState"] = last
    return {
        "phase": "Running",
        "hostIP": LOCAL_IP,
        "podIP": LOCAL_IP,
        "conditions": [
            pod_condition("PodScheduled", True),
            pod_condition("Initialized", True),
            pod_condition("ContainersReady", False, "ContainersNotReady"),
            pod_condition("Ready", False, "ContainersNotReady"),
        ],
        "containerStatuses": statuses,
    }


def pod_status_running(pod: Obj, ready: bool) -> Obj:
    """A running pod, ready or not."""
    started = now()
    conditions = [
        pod_condition("PodScheduled", True),
        pod_condition("Initialized", True),
        pod_condition("ContainersReady", ready, None if ready else "ContainersNotReady"),
        pod_condition("Ready", ready, None if ready else "ContainersNotReady"),
    ]
    return {
        "phase": "Running",
        "hostIP": LOCAL_IP,
        "podIP": LOCAL_IP,
        "podIPs": [{"ip": LOCAL_IP}],
        "startTime": started,
        "conditions": conditions,
        "containerStatuses": container_statuses(pod, {"running": {"startedAt": started}}, ready),
    }


def rc_condition(kind: str, status: bool, reason: str, message: str = "") -> Obj:
    """One RayCluster status condition (metav1.Condition)."""
    return {
        "type": kind,
        "status": "True" if status else "False",
        "reason": reason,
        "message": message,
        "lastTransitionTime": now(),
    }


def worker_groups(rc: Obj) -> list[Obj]:
    """The worker groups of a RayCluster's spec."""
    return list((rc.get("spec") or {}).get("workerGroupSpecs") or [])


def replica_counts(rc: Obj) -> tuple[int, int, int]:
    """``(desired, min, max)`` worker replicas over all groups."""
    groups = worker_groups(rc)
    desired = sum(int(g.get("replicas") or 0) for g in groups)
    low = sum(int(g.get("minReplicas") or 0) for g in groups)
    high = sum(int(g.get("maxReplicas") or g.get("replicas") or 0) for g in groups)
    return desired, low, high


def local_name(rc: Obj) -> str:
    """A name for the local Ray cluster of this RayCluster incarnation (unique per uid, <= 47 chars)."""
    meta = rc["metadata"]
    digest = hashlib.sha256(f"{meta['namespace']}/{meta['name']}/{meta['uid']}".encode()).hexdigest()[:8]
    return f"{meta['name'][:36].rstrip('-')}-{digest}"


def _number(params: Obj, key: str, default: float) -> float:
    try:
        return float(params.get(key, default))
    except (TypeError, ValueError):
        return default


def local_spec(rc: Obj, *, memory: str = "1Gi", workers: int | None = None, max_cpus: int = 2) -> ClusterSpec:
    """The ``ClusterSpec`` of the local Ray cluster standing in for ``rc``.

    CPUs and replicas come from the RayCluster (``rayStartParams``, ``replicas``); memory is kept
    small (``memory`` per node) so several sandbox clusters fit on one machine; GPUs are not
    emulated (the local nodes advertise none).
    """
    meta = rc["metadata"]
    labels = meta.get("labels") or {}
    head_params = ((rc.get("spec") or {}).get("headGroupSpec") or {}).get("rayStartParams") or {}
    groups = worker_groups(rc)
    worker_params = (groups[0].get("rayStartParams") or {}) if groups else {}
    desired, _, _ = replica_counts(rc)
    return ClusterSpec(
        name=local_name(rc),
        namespace="local",
        gpu_type="cpu",
        workers=desired if workers is None else workers,
        cpus_per_worker=min(max(1.0, math.floor(_number(worker_params, "num-cpus", 1))), max_cpus),
        memory_per_worker=memory,
        head_cpus=min(max(1.0, math.floor(_number(head_params, "num-cpus", 1))), max_cpus),
        head_memory=memory,
        owner=labels.get(OWNER) or "sandbox",
        team=labels.get(TEAM) or "sandbox",
        run_id=labels.get(RUN_ID),
        labels={RAYCLUSTER_ANNOTATION: f"{meta['namespace']}.{meta['name']}"},
    )


def auth_mode(rc: Obj) -> str:
    """``RAY_AUTH_MODE`` for the local cluster, from ``spec.authOptions.mode``."""
    return str((((rc.get("spec") or {}).get("authOptions")) or {}).get("mode") or "disabled")
