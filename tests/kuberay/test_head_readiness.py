"""A head's failed readiness probes count against its own probe's failureThreshold, and only while it is unready.

KubeRay injects a readiness probe into the head's Ray container (failureThreshold 10), which the
sandbox's pods carry as a real KubeRay's do. A head that failed its probe while it started and is
Ready now is fine; one that stays unready fails the wait once the probe failed that often, not before.
The failures are recorded as a kubelet does: one ``Unhealthy`` event per pod whose count grows.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client

from discord_ml_platform.backends import ClusterNotReadyError, HeadFailedError
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.spec import ClusterSpec

pytestmark = pytest.mark.timeout(120)

KUBERAY_FAILURE_THRESHOLD = 10  # DefaultReadinessProbeFailureThreshold of KubeRay v1
PROBE_MESSAGE = "Readiness probe failed: wget: can't connect to remote host (127.0.0.1): Connection refused"


def _head_pod(kuberay: KubeRayBackend, cluster: str, timeout_s: float = 30) -> Any:
    """The cluster's head pod once the kubelet runs it (phase Running)."""
    core = client.CoreV1Api(kuberay.api_client)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pods = core.list_namespaced_pod("ray", label_selector=f"ray.io/cluster={cluster},ray.io/node-type=head").items
        if pods and pods[0].status and pods[0].status.phase == "Running":
            return pods[0]
        time.sleep(0.2)
    raise AssertionError(f"no running head pod of {cluster} after {timeout_s}s")


def _probe_failed(kuberay: KubeRayBackend, pod: Any, times: int) -> None:
    """Record that ``pod``'s readiness probe failed ``times`` times so far (the kubelet's aggregated event)."""
    core = client.CoreV1Api(kuberay.api_client)
    name = f"{pod.metadata.name}.readiness"
    stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    try:
        core.patch_namespaced_event(name, "ray", {"count": times, "lastTimestamp": stamp})
    except client.ApiException as err:
        if err.status != 404:
            raise
        event = {
            "metadata": {"name": name, "namespace": "ray"},
            "involvedObject": {"apiVersion": "v1", "kind": "Pod", "name": pod.metadata.name, "namespace": "ray",
                               "uid": pod.metadata.uid},
            "reason": "Unhealthy",
            "message": PROBE_MESSAGE,
            "type": "Warning",
            "source": {"component": "kubelet"},
            "firstTimestamp": stamp,
            "lastTimestamp": stamp,
            "count": times,
        }
        core.create_namespaced_event("ray", event)


def test_head_pods_carry_kuberays_readiness_probe(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True  # no Ray needed: this is about the pod spec
    handle = kuberay.create(ClusterSpec(name="probe-spec", head_memory="1Gi", owner="tests"))
    try:
        probe = _head_pod(kuberay, "probe-spec").spec.containers[0].readiness_probe
        assert probe is not None and probe.failure_threshold == KUBERAY_FAILURE_THRESHOLD
        assert probe.period_seconds == 5 and "api/gcs_healthz" in " ".join(probe._exec.command)
    finally:
        kuberay.delete(handle, timeout_s=30)


def test_a_head_that_failed_its_probe_while_starting_but_is_ready_now_is_not_failed(
        kuberay: KubeRayBackend, sandbox) -> None:
    handle = kuberay.create(ClusterSpec(name="probe-recovered", head_memory="1Gi", owner="tests"))
    try:
        kuberay.wait_ready(handle, 90)
        pod = _head_pod(kuberay, "probe-recovered")
        # What a slow start leaves behind: failures up to the threshold, counted on one event.
        _probe_failed(kuberay, pod, KUBERAY_FAILURE_THRESHOLD - 1)
        assert kuberay.wait_ready(handle, 30).dashboard_url
        _probe_failed(kuberay, pod, KUBERAY_FAILURE_THRESHOLD + 2)
        endpoints = kuberay.wait_ready(handle, 30)  # Ready now: past failures do not fail it
        assert endpoints.dashboard_url
    finally:
        kuberay.delete(handle, timeout_s=30)


def test_an_unready_head_fails_once_its_probe_failed_threshold_times_and_not_before(
        kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True  # Running, never Ready
    handle = kuberay.create(ClusterSpec(name="probe-unready", head_memory="1Gi", owner="tests"))
    try:
        pod = _head_pod(kuberay, "probe-unready")
        _probe_failed(kuberay, pod, 3)  # Kubernetes' default threshold: not this probe's
        with pytest.raises(ClusterNotReadyError) as waiting:
            kuberay.wait_ready(handle, 3)
        assert not isinstance(waiting.value, HeadFailedError) and "not ready after" in str(waiting.value)
        _probe_failed(kuberay, pod, KUBERAY_FAILURE_THRESHOLD)
        started = time.monotonic()
        with pytest.raises(HeadFailedError) as failed:
            kuberay.wait_ready(handle, 60)
        assert time.monotonic() - started < 20  # at once, not the timeout
        assert failed.value.reason == "Unhealthy" and failed.value.pod == pod.metadata.name
        assert f"readiness probe failed {KUBERAY_FAILURE_THRESHOLD} times: {PROBE_MESSAGE}" in str(failed.value)
    finally:
        kuberay.delete(handle, timeout_s=30)
