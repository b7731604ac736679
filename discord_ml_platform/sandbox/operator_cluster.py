"""One RayCluster's reconciliation by the local operator: pods, service, events, status, local Ray.

:class:`ClusterReconciler` runs in a thread per RayCluster incarnation (per uid). It walks the
path a pod takes on a real cluster (created, scheduled, image pulled, running, ready) and writes
each step as pod status, events and RayCluster status, honouring the :class:`OperatorFaults` in
effect for the object. The Ray side is a real local cluster started with ``LocalBackend``; its
phases (head ready, workers N/M, ready) drive the status, so "ready" in the API means a Ray head
that answers.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import psutil

from discord_ml_platform.backends.base import ClusterHandle, PhaseEvent
from discord_ml_platform.backends.kuberay_retry import RetryPolicy, call_with_retries, status_code
from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.backends.processes import process_tree

from . import operator_objects as objs
from .faults import OperatorFaults
from .pod_logs import PodLogs

log = logging.getLogger(__name__)
GROUP, VERSION, PLURAL = "ray.io", "v1", "rayclusters"
UNSCHEDULABLE_MESSAGE = (
    "0/3 nodes are available: 3 Insufficient nvidia.com/gpu. preemption: 0/3 nodes are available: "
    "3 No preemption victims found for incoming pod."
)
# The readiness probe KubeRay v1 injects into a Ray container that has none (initLivenessAndReadinessProbe;
# DefaultReadinessProbe* and DefaultHeadReadinessProbeTimeoutSeconds in its utils/constant.go): the head
# checks its raylet and GCS through the dashboard agent and the dashboard.
KUBERAY_READINESS_PROBE: dict[str, Any] = {
    "exec": {
        "command": [
            "bash",
            "-c",
            "wget -T 2 -q -O- http://localhost:52365/api/local_raylet_healthz | grep success && "
            "wget -T 2 -q -O- http://localhost:8265/api/gcs_healthz | grep success",
        ]
    },
    "initialDelaySeconds": 10,
    "timeoutSeconds": 5,
    "periodSeconds": 5,
    "successThreshold": 1,
    "failureThreshold": 10,
}
# What the API server defaults a probe's failureThreshold to when it sets none.
KUBERNETES_FAILURE_THRESHOLD = 3
READINESS_MESSAGE = (
    "Readiness probe failed: failed to check the Ray health endpoint: Get "
    '"http://127.0.0.1:52365/api/local_raylet_healthz": dial tcp 127.0.0.1:52365: connect: connection refused'
)
# What the head prints before it fails, per simulated failure (what `kubectl logs` would show).
HEAD_CRASH_LOG = {
    "crash-loop": "Usage stats collection is disabled.\nray.exceptions.RaySystemError: System error: GCS failed to "
    "start: address 0.0.0.0:6379 is already in use\n",
    "oom-killed": "Local node IP: 10.0.0.12\nRay runtime started.\nallocating the object store: 12.0GiB\n",
    "error": 'Traceback (most recent call last):\n  File "/home/ray/anaconda3/bin/ray", line 8, in <module>\n'
    "ValueError: --num-cpus must be a non-negative integer\n",
    "readiness-probe": "Local node IP: 10.0.0.12\n[raylet] could not start the dashboard agent: port 52365 in use\n",
}
PULL_ERROR = 'rpc error: code = NotFound desc = failed to pull and unpack image "{image}": not found'


class Cancelled(Exception):
    """The RayCluster is being deleted (or the operator stops): stop reconciling."""


class OperatorApi:
    """The operator's API calls, each retried like the backend's (the operator is a client too)."""

    def __init__(self, api_client: Any, retry: RetryPolicy | None = None) -> None:
        from kubernetes import client

        self.custom = client.CustomObjectsApi(api_client)
        self.core = client.CoreV1Api(api_client)
        self.retry = retry or RetryPolicy(max_attempts=8, deadline_s=30)

    def call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", (5, 30))
        return call_with_retries(lambda: fn(*args, **kwargs), what, self.retry)

    def patch_rc_status(self, rc: objs.Obj, status: objs.Obj) -> None:
        m = rc["metadata"]
        self.call(
            "patch RayCluster status",
            self.custom.patch_namespaced_custom_object_status,
            GROUP,
            VERSION,
            m["namespace"],
            PLURAL,
            m["name"],
            {"status": status},
        )

    def create_pod(self, pod: objs.Obj) -> objs.Obj:
        created = self.call(
            "create pod", self.core.create_namespaced_pod, pod["metadata"]["namespace"], pod, _preload_content=False
        )
        return json.loads(created.data)

    def patch_pod_status(self, pod: objs.Obj, status: objs.Obj) -> None:
        m = pod["metadata"]
        self.call(
            "patch pod status",
            self.core.patch_namespaced_pod_status,
            m["name"],
            m["namespace"],
            {"status": status},
            _content_type="application/merge-patch+json",
        )

    def create_service(self, service: objs.Obj) -> None:
        try:
            self.call("create service", self.core.create_namespaced_service, service["metadata"]["namespace"], service)
        except Exception as err:
            if status_code(err) != 409:
                raise

    def event(
        self,
        obj: objs.Obj,
        reason: str,
        message: str,
        *,
        warning: bool = False,
        component: str = objs.OPERATOR_COMPONENT,
        count: int = 1,
    ) -> None:
        body = objs.build_event(obj, reason, message, warning=warning, component=component, count=count)
        try:
            self.call("create event", self.core.create_namespaced_event, obj["metadata"]["namespace"], body)
        except Exception as err:  # events are best effort, as in client-go's recorder
            log.debug("event %s on %s not recorded: %s", reason, obj["metadata"]["name"], err)


class ClusterReconciler:
    """Brings one RayCluster up and keeps its status; stopped by :meth:`cancel`.

    Args:
        api: The operator's API calls.
        rc: The RayCluster as first seen.
        local: The backend that starts the local Ray processes.
        faults: The operator faults in effect for this object.
        memory: Memory of each local Ray node.
        ready_timeout_s: How long the local Ray cluster may take to become ready.
        pod_logs: Where container logs go (served as ``pods/log``); none kept when ``None``.
    """

    def __init__(
        self,
        api: OperatorApi,
        rc: objs.Obj,
        local: LocalBackend,
        faults: OperatorFaults,
        memory: str = "1Gi",
        ready_timeout_s: float = 180,
        pod_logs: PodLogs | None = None,
    ) -> None:
        self.api = api
        self.pod_logs = pod_logs
        self.rc = rc
        self.local = local
        self.faults = faults
        self.memory = memory
        self.ready_timeout_s = ready_timeout_s
        self.uid = rc["metadata"]["uid"]
        self.key = f"{rc['metadata']['namespace']}/{rc['metadata']['name']}"
        self.local_handle = ClusterHandle(objs.local_name(rc), "local", "local")
        self.cancelled = threading.Event()
        self.status: objs.Obj = {}
        self.head_pod: objs.Obj | None = None
        self.worker_pods: list[objs.Obj] = []
        self._thread = threading.Thread(target=self._run, name=f"reconcile-{self.key}", daemon=True)

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        """Reconcile in a background thread."""
        self._thread.start()

    def cancel(self) -> None:
        """Ask the thread to stop at its next step."""
        self.cancelled.set()

    def join(self, timeout_s: float) -> None:
        """Wait for the thread to end."""
        if self._thread.is_alive() and self._thread is not threading.current_thread():
            self._thread.join(timeout_s)

    def stop_local(self) -> None:
        """Stop the local Ray processes of this cluster (idempotent)."""
        self.local.delete(self.local_handle)

    def _check(self) -> None:
        if self.cancelled.is_set():
            raise Cancelled()

    def _sleep(self, seconds: float) -> None:
        if seconds > 0 and self.cancelled.wait(seconds):
            raise Cancelled()

    def _run(self) -> None:
        try:
            self._sleep(self.faults.reconcile_delay_s)
            self._reconcile()
        except Cancelled:
            pass
        except Exception as err:
            if status_code(err) == 404 or self.cancelled.is_set() or status_code(err.__cause__ or err) == 404:
                return  # the RayCluster went away under us
            log.exception("reconciling RayCluster %s failed", self.key)
            self.api.event(self.rc, "ReconcileError", f"local operator: {err}", warning=True)

    # --- status ----------------------------------------------------------------------------

    def _write_status(self, **changes: Any) -> None:
        self._check()
        self.status.update(changes)
        self.status["lastUpdateTime"] = objs.now()
        self.status["observedGeneration"] = int(self.rc["metadata"].get("generation") or 1)
        self.api.patch_rc_status(self.rc, self.status)

    def _set_conditions(self, head_ready: tuple[bool, str, str], provisioned: tuple[bool, str, str]) -> list[objs.Obj]:
        previous = {c["type"]: c for c in self.status.get("conditions") or []}
        out = []
        for kind, (ok, reason, message) in (("HeadPodReady", head_ready), ("RayClusterProvisioned", provisioned)):
            cond = objs.rc_condition(kind, ok, reason, message)
            old = previous.get(kind)
            if old and old["status"] == cond["status"]:
                cond["lastTransitionTime"] = old["lastTransitionTime"]
            out.append(cond)
        return out

    # --- the walk --------------------------------------------------------------------------

    def _reconcile(self) -> None:
        rc, api = self.rc, self.api
        desired, low, high = objs.replica_counts(rc)
        self._write_status(
            desiredWorkerReplicas=desired,
            minWorkerReplicas=low,
            maxWorkerReplicas=high,
            readyWorkerReplicas=0,
            availableWorkerReplicas=0,
            conditions=self._set_conditions(
                (False, "HeadPodNotFound", "Head Pod not found"),
                (False, "RayClusterPodsProvisioning", "RayCluster Pods are being provisioned"),
            ),
        )
        head_template = ((rc.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}
        self.head_pod = api.create_pod(
            _with_readiness_probe(objs.build_pod(rc, head_template, "head", objs.HEAD_GROUP))
        )
        api.event(
            rc, "CreatedHeadPod", f"Created head Pod {self.key.split('/')[0]}/{self.head_pod['metadata']['name']}"
        )
        for group in objs.worker_groups(rc):
            for _ in range(int(group.get("replicas") or 0)):
                self._check()
                pod = api.create_pod(
                    _with_readiness_probe(objs.build_pod(rc, group.get("template") or {}, "worker", group["groupName"]))
                )
                self.worker_pods.append(pod)
                api.event(
                    rc,
                    "CreatedWorkerPod",
                    f"Created worker Pod {pod['metadata']['namespace']}/{pod['metadata']['name']}",
                )
        pods = [self.head_pod, *self.worker_pods]
        if self.faults.unschedulable:
            for pod in pods:
                api.patch_pod_status(pod, objs.pod_status_pending_unschedulable(UNSCHEDULABLE_MESSAGE))
                api.event(pod, "FailedScheduling", UNSCHEDULABLE_MESSAGE, warning=True, component="default-scheduler")
            return  # stays Pending until deleted, like a cluster without a GPU node
        for pod in pods:
            self._check()
            api.event(
                pod,
                "Scheduled",
                f"Successfully assigned {pod['metadata']['namespace']}/{pod['metadata']['name']} to {objs.NODE_NAME}",
                component="default-scheduler",
            )
            api.patch_pod_status(
                pod,
                {"phase": "Pending", "hostIP": objs.LOCAL_IP, "conditions": [objs.pod_condition("PodScheduled", True)]},
            )
            for image in _images(pod):
                api.event(pod, "Pulling", f'Pulling image "{image}"', component="kubelet")
        if self.faults.image_pull_error:
            self._fail_image_pull(self.head_pod)
            return
        for pod in pods:
            for image in _images(pod):
                api.event(pod, "Pulled", f'Successfully pulled image "{image}"', component="kubelet")
            for container in (pod.get("spec") or {}).get("containers") or []:
                api.event(pod, "Created", f"Created container {container.get('name')}", component="kubelet")
                api.event(pod, "Started", f"Started container {container.get('name')}", component="kubelet")
        api.patch_pod_status(self.head_pod, objs.pod_status_running(self.head_pod, ready=False))
        for pod in self.worker_pods:
            api.patch_pod_status(pod, objs.pod_status_running(pod, ready=False))
        head_name = self.head_pod["metadata"]["name"]
        self._write_status(head={"podIP": objs.LOCAL_IP, "podName": head_name})
        if self.faults.head_failure:
            self._fail_head(self.faults.head_failure)
            return  # no Ray is started, so there is nothing to leak
        if self.faults.head_never_ready:
            self._write_status(
                conditions=self._set_conditions(
                    (False, "ContainersNotReady", "containers with unready status: [ray-head]"),
                    (False, "RayClusterPodsProvisioning", "RayCluster Pods are being provisioned"),
                )
            )
            return  # Running but never Ready; no Ray is started, so there is nothing to leak
        self._start_local_ray(desired)

    def _fail_head(self, kind: str) -> None:
        """The head container fails the way a kubelet reports ``kind`` (see ``OperatorFaults.head_failure``)."""
        api, pod = self.api, self.head_pod
        assert pod is not None
        name, ns = pod["metadata"]["name"], pod["metadata"]["namespace"]
        container = objs.HEAD_CONTAINER
        crash_log = HEAD_CRASH_LOG[kind]
        if kind == "readiness-probe":
            self._log(ns, name, container, crash_log)
            # As a kubelet: one failure per period, aggregated into one event whose count grows, until
            # the probe's failureThreshold failures in a row leave the pod unready (it stays Running).
            for count in range(1, _readiness_failure_threshold(pod) + 1):
                self._check()
                api.event(pod, "Unhealthy", READINESS_MESSAGE, warning=True, component="kubelet", count=count)
                self._sleep(0.2)
            return
        if kind == "crash-loop":
            self._log(ns, name, container, crash_log, previous=True)
            self._log(ns, name, container, "")
            api.event(
                pod,
                "BackOff",
                f"Back-off restarting failed container {container} in pod {name}",
                warning=True,
                component="kubelet",
            )
        else:
            self._log(ns, name, container, crash_log)
        api.patch_pod_status(pod, objs.pod_status_head_failed(pod, kind))

    def _log(self, namespace: str, pod: str, container: str, text: str, *, previous: bool = False) -> None:
        if self.pod_logs is not None:
            self.pod_logs.write(namespace, pod, container, text, previous=previous)

    def forget_logs(self) -> None:
        """Drop the container logs of this cluster's pods, as a kubelet does when they are deleted."""
        if self.pod_logs is not None:
            for pod in (self.head_pod, *self.worker_pods):
                if pod is not None:
                    self.pod_logs.forget(pod["metadata"]["namespace"], pod["metadata"]["name"])

    def _fail_image_pull(self, pod: objs.Obj) -> None:
        api = self.api
        image = next(iter(_images(pod)), "?")
        message = PULL_ERROR.format(image=image)
        api.patch_pod_status(pod, objs.pod_status_image_pull(pod, "ErrImagePull", message))
        api.event(pod, "Failed", f'Failed to pull image "{image}": {message}', warning=True, component="kubelet")
        api.event(pod, "Failed", "Error: ErrImagePull", warning=True, component="kubelet")
        self._sleep(1.0)
        backoff = f'Back-off pulling image "{image}"'
        api.patch_pod_status(pod, objs.pod_status_image_pull(pod, "ImagePullBackOff", backoff))
        api.event(pod, "BackOff", backoff, warning=True, component="kubelet")
        api.event(pod, "Failed", "Error: ImagePullBackOff", warning=True, component="kubelet")

    def _start_local_ray(self, desired: int) -> None:
        api, rc = self.api, self.rc
        local_workers = 0 if self.faults.workers_never_ready else desired
        spec = objs.local_spec(rc, memory=self.memory, workers=local_workers)
        self._check()
        self.local.create(spec)
        self._check()
        record = self.local.record(self.local_handle)
        if self.pod_logs is not None and self.head_pod is not None:
            # The head pod's container log is the local head's output, live.
            meta = self.head_pod["metadata"]
            self.pod_logs.link(meta["namespace"], meta["name"], objs.HEAD_CONTAINER, Path(record.log_dir) / "head.log")
        ports = {"client": record.client_port, "dashboard": record.dashboard_port, "gcs-server": record.gcs_port}
        metrics = _metrics_port(record.head_pid)
        if metrics:
            ports["metrics"] = metrics
        api.create_service(objs.build_head_service(rc, ports))
        api.event(rc, "CreatedService", f"Created service {rc['metadata']['namespace']}/{objs.service_name(rc)}")
        self._write_status(
            head={
                "podIP": objs.LOCAL_IP,
                "podName": self.head_pod["metadata"]["name"] if self.head_pod else "",
                "serviceIP": objs.LOCAL_IP,
                "serviceName": objs.service_name(rc),
            },
            endpoints={name: str(port) for name, port in ports.items()},
        )

        def on_phase(event: PhaseEvent) -> None:
            self._check()
            if event.phase == "head-ready" and self.head_pod is not None:
                api.patch_pod_status(self.head_pod, objs.pod_status_running(self.head_pod, ready=True))
                self._write_status(
                    conditions=self._set_conditions(
                        (True, "HeadPodRunningAndReady", "Head Pod ready"),
                        (False, "RayClusterPodsProvisioning", "RayCluster Pods are being provisioned"),
                    )
                )
            elif event.phase == "workers":
                ready = min(event.ready_workers, len(self.worker_pods))
                for pod in self.worker_pods[:ready]:
                    api.patch_pod_status(pod, objs.pod_status_running(pod, ready=True))
                self._write_status(readyWorkerReplicas=ready, availableWorkerReplicas=ready)
            elif event.phase == "ready" and not (self.faults.workers_never_ready and desired):
                stamp = objs.now()
                self._write_status(
                    state="ready",
                    reason="",
                    stateTransitionTimes={"ready": stamp},
                    readyWorkerReplicas=desired,
                    availableWorkerReplicas=desired,
                    conditions=self._set_conditions(
                        (True, "HeadPodRunningAndReady", "Head Pod ready"),
                        (True, "AllPodRunningAndReadyFirstTime", "All Ray Pods are ready for the first time"),
                    ),
                )

        try:
            self.local.wait_ready(self.local_handle, self.ready_timeout_s, on_phase)
        except Cancelled:
            raise
        except Exception as err:
            self._check()
            message = str(err).splitlines()[0]
            api.event(rc, "HeadPodNotReady", f"local Ray cluster failed: {message}", warning=True)
            self._write_status(
                reason=message,
                conditions=self._set_conditions(
                    (False, "ContainersNotReady", message),
                    (False, "RayClusterPodsProvisioning", "RayCluster Pods are being provisioned"),
                ),
            )


def _with_readiness_probe(pod: objs.Obj) -> objs.Obj:
    """``pod`` with KubeRay's readiness probe on its Ray container (the first) unless it has its own."""
    containers = (pod.get("spec") or {}).get("containers") or []
    if containers and not containers[0].get("readinessProbe"):
        ray = {**containers[0], "readinessProbe": dict(KUBERAY_READINESS_PROBE)}
        pod = {**pod, "spec": {**pod["spec"], "containers": [ray, *containers[1:]]}}
    return pod


def _readiness_failure_threshold(pod: objs.Obj) -> int:
    """The Ray container's ``readinessProbe.failureThreshold``, defaulted as the API server does."""
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    probe = containers[0].get("readinessProbe") or {}
    return int(probe.get("failureThreshold") or KUBERNETES_FAILURE_THRESHOLD)


def _images(pod: objs.Obj) -> list[str]:
    return [str(c.get("image")) for c in (pod.get("spec") or {}).get("containers") or [] if c.get("image")]


def _metrics_port(head_pid: int) -> int | None:
    """The head's ``--metrics-export-port`` (LocalBackend picks it but does not record it)."""
    for proc in process_tree([head_pid]):
        with contextlib.suppress(psutil.Error):  # gone or not ours to read: not the head's node
            cmdline = proc.cmdline()
            for flag, value in itertools.pairwise(cmdline):
                if flag == "--metrics-export-port" and value.isdigit():
                    return int(value)
    return None
