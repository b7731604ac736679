"""Fault handling of the kuberay backend against the sandbox: phases and reasons, retries, clear errors.

Most tests here switch ``head_never_ready`` on, so the operator starts no Ray at all: they are about
the control plane only and stay fast.
"""

from __future__ import annotations

import time

import pytest

from discord_ml_platform.backends import ClusterError, ClusterNotReadyError, PhaseEvent
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.kuberay_retry import RetryPolicy
from discord_ml_platform.spec import ClusterSpec

from .helpers import rayclusters

pytestmark = [pytest.mark.timeout(60)]


def spec(name: str, **fields) -> ClusterSpec:
    return ClusterSpec(name=name, head_memory="1Gi", owner="tests", run_id=f"run-{name}", **fields)


def test_readiness_timeout_names_the_phase_and_conditions(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True
    handle = kuberay.create(spec("never-ready"))
    phases: list[PhaseEvent] = []
    started = time.monotonic()
    with pytest.raises(ClusterNotReadyError) as err:
        kuberay.wait_ready(handle, 3, phases.append)
    assert 2.5 < time.monotonic() - started < 10
    assert "not ready after 3s" in str(err.value) and "HeadPodReady=False" in str(err.value)
    assert phases and all(p.phase in ("pending", "image-pull") for p in phases)
    kuberay.delete(handle)
    assert rayclusters(sandbox) == []


def test_unschedulable_pods_report_why_they_are_pending(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.unschedulable = True
    handle = kuberay.create(spec("no-gpu-node"))
    phases: list[PhaseEvent] = []
    with pytest.raises(ClusterNotReadyError) as err:
        kuberay.wait_ready(handle, 3, phases.append)
    pending = [p.message for p in phases if p.phase == "pending"]
    assert any("Unschedulable" in m and "Insufficient nvidia.com/gpu" in m for m in pending), pending
    assert "Insufficient nvidia.com/gpu" in str(err.value)
    kuberay.delete(handle)


def test_image_pull_failure_fails_fast_naming_the_image(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.image_pull_error = True
    handle = kuberay.create(spec("bad-image", image="registry.example.com/ml/ray:no-such-tag"))
    phases: list[PhaseEvent] = []
    started = time.monotonic()
    with pytest.raises(ClusterNotReadyError) as err:
        kuberay.wait_ready(handle, 60, phases.append)
    assert time.monotonic() - started < 10
    assert "registry.example.com/ml/ray:no-such-tag" in str(err.value)
    assert "ErrImagePull" in str(err.value) or "ImagePullBackOff" in str(err.value)
    assert phases[-1].phase == "image-pull"
    kuberay.delete(handle)


def test_quota_errors_in_events_are_reported_as_pending_reasons(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.reconcile_delay_s = 30  # no operator progress: only our injected event
    handle = kuberay.create(spec("over-quota"))
    rc = kuberay.custom.get_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", "over-quota")
    kuberay.core.create_namespaced_event("ray", {
        "metadata": {"name": "over-quota.quota1", "namespace": "ray"},
        "involvedObject": {"kind": "RayCluster", "name": "over-quota", "namespace": "ray",
                           "uid": rc["metadata"]["uid"], "apiVersion": "ray.io/v1"},
        "reason": "FailedToCreateHeadPod", "type": "Warning",
        "message": 'pods "over-quota-head-x" is forbidden: exceeded quota: gpu-quota, requested: cpu=1, '
                   "used: cpu=63, limited: cpu=64",
    })
    phases: list[PhaseEvent] = []
    with pytest.raises(ClusterNotReadyError):
        kuberay.wait_ready(handle, 2, phases.append)
    assert any("exceeded quota" in p.message for p in phases if p.phase == "pending"), phases
    kuberay.delete(handle)


def test_create_is_retried_on_503_429_and_dropped_connections(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True
    throttle = sandbox.faults.fail("create", "rayclusters", status_code=429, retry_after_s=1, times=1)
    unavailable = sandbox.faults.fail("create", "rayclusters", status_code=503, times=2)
    dropped = sandbox.faults.drop("create", "rayclusters", times=1)
    started = time.monotonic()
    handle = kuberay.create(spec("flaky-create"))
    assert time.monotonic() - started >= 1.0  # Retry-After honoured
    assert (throttle.hits, unavailable.hits, dropped.hits) == (1, 2, 1)
    assert rayclusters(sandbox) == ["ray/flaky-create"]
    kuberay.delete(handle)


def test_create_retried_after_a_lost_answer_accepts_its_own_409(kubeconfig: str, sandbox) -> None:
    # The first POST is answered too late (the client gives up), but the server still creates the
    # object; the retry then gets 409 AlreadyExists for a cluster that is ours.
    sandbox.faults.operator.head_never_ready = True
    sandbox.faults.delay("create", "rayclusters", seconds=1.0, times=1)
    backend = KubeRayBackend(kubeconfig, request_timeout_s=0.5,
                             retry=RetryPolicy(max_attempts=4, base_delay_s=2.0, max_delay_s=2.0, deadline_s=20))
    try:
        handle = backend.create(spec("lost-answer"))
        assert rayclusters(sandbox) == ["ray/lost-answer"]
        backend.delete(handle)
    finally:
        backend.close()


def test_a_same_named_cluster_of_someone_else_is_not_taken_over(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True
    handle = kuberay.create(spec("taken"))
    other = ClusterSpec(name="taken", head_memory="1Gi", run_id="another-run")
    with pytest.raises(ClusterError, match="already exists"):
        kuberay.create(other)
    kuberay.delete(handle)


def test_a_persistent_500_on_create_fails_clearly_and_leaves_nothing(kubeconfig: str, sandbox) -> None:
    sandbox.faults.fail("create", "rayclusters", status_code=500, times=None, message="etcd is on fire")
    backend = KubeRayBackend(kubeconfig, retry=RetryPolicy(max_attempts=3, base_delay_s=0.05, deadline_s=5))
    try:
        with pytest.raises(ClusterError) as err:
            backend.create(spec("always-500"))
    finally:
        backend.close()
    message = str(err.value)
    assert "create RayCluster ray/always-500" in message and "HTTP 500" in message
    assert "etcd is on fire" in message and "3 attempt(s)" in message
    assert rayclusters(sandbox) == []


def test_delete_is_retried_on_errors_and_waits_until_gone(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True
    handle = kuberay.create(spec("flaky-delete"))
    failing = sandbox.faults.fail("delete", "rayclusters", status_code=500, times=2)
    dropped = sandbox.faults.drop("delete", "rayclusters", times=1)
    kuberay.delete(handle)
    assert (failing.hits, dropped.hits) == (2, 1)
    assert rayclusters(sandbox) == []
    kuberay.delete(handle)  # already gone: fine


def test_list_reads_state_conditions_and_events(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True
    handle = kuberay.create(spec("listed"))
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        [info] = kuberay.list({"mlplatform.discord.com/dagster-run-id": "run-listed"})
        if info.details["conditions"] and info.details["events"]:
            break
        time.sleep(0.1)
    assert info.status == "pending" and info.endpoints is None
    assert {c["type"] for c in info.details["conditions"]} == {"HeadPodReady", "RayClusterProvisioned"}
    assert any(e["reason"] == "Scheduled" for e in info.details["events"])
    assert KubeRayBackend(kuberay_kubeconfig(sandbox), namespace="default").list() == []
    kuberay.delete(handle)


def kuberay_kubeconfig(sandbox) -> str:
    return str(sandbox.kubeconfig)
