"""A head that cannot come up fails the wait at once, with the kubelet's reason and its last log lines.

The sandbox simulates each way a Ray head container fails (``OperatorFaults.head_failure``) as a
kubelet reports it, and serves the container's log as ``pods/log``, as a real API server does.
"""

import time

import pytest
from kubernetes import client

from discord_ml_platform.backends import HeadFailedError, PhaseEvent
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.spec import ClusterSpec

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("failure", "reason", "expected", "log_line"),
    [
        ("crash-loop", "CrashLoopBackOff", "CrashLoopBackOff after 3 restart(s); last exit Error (exit code 1)",
         "GCS failed to start: address 0.0.0.0:6379 is already in use"),
        ("oom-killed", "OOMKilled", "terminated: OOMKilled (exit code 137) - the container ran out of memory",
         "allocating the object store: 12.0GiB"),
        ("error", "Error", "terminated: Error (exit code 1)", "ValueError: --num-cpus must be a non-negative integer"),
        # KubeRay's injected head probe has failureThreshold 10 (not Kubernetes' default 3).
        ("readiness-probe", "Unhealthy", "readiness probe failed 10 times: Readiness probe failed",
         "could not start the dashboard agent: port 52365 in use"),
    ],
)
def test_a_failing_head_fails_the_wait_at_once_with_its_reason_and_last_log_lines(
        kuberay: KubeRayBackend, sandbox, failure: str, reason: str, expected: str, log_line: str) -> None:
    sandbox.faults.operator.head_failure = failure  # type: ignore[assignment]
    handle = kuberay.create(ClusterSpec(name=f"head-{failure}", head_memory="1Gi", owner="tests"))
    phases: list[PhaseEvent] = []
    started = time.monotonic()
    try:
        with pytest.raises(HeadFailedError) as caught:
            kuberay.wait_ready(handle, 90, phases.append)
    finally:
        kuberay.delete(handle, timeout_s=30)
    err = caught.value
    assert time.monotonic() - started < 20  # not the 90 s timeout
    assert err.reason == reason and expected in str(err), str(err)
    assert log_line in str(err) and log_line in err.log_tail  # fetched through pods/log
    assert err.previous is (failure == "crash-loop")  # the restarted container's output is the previous log
    assert phases[-1].phase == "head-failed" and expected in phases[-1].message, phases[-1]


def test_the_logs_of_a_deleted_clusters_pods_are_dropped(kuberay: KubeRayBackend, sandbox) -> None:
    """As a kubelet: a long-lived sandbox keeps no container logs of pods that are gone."""
    sandbox.faults.operator.head_failure = "error"
    handle = kuberay.create(ClusterSpec(name="head-logs-dropped", head_memory="1Gi", owner="tests"))
    try:
        with pytest.raises(HeadFailedError) as caught:
            kuberay.wait_ready(handle, 60)
        pod_dir = sandbox.pod_log_dir / "ray" / caught.value.pod
        assert caught.value.log_tail and pod_dir.is_dir()  # served through pods/log while the pod lived
    finally:
        kuberay.delete(handle, timeout_s=30)
    assert not pod_dir.exists()  # gone with the RayCluster, not later
    with pytest.raises(client.ApiException) as missing:
        client.CoreV1Api(kuberay.api_client).read_namespaced_pod_log(caught.value.pod, "ray")
    assert missing.value.status == 404


@pytest.mark.ray
def test_pods_log_serves_a_running_heads_output_like_an_api_server(kuberay: KubeRayBackend, sandbox) -> None:
    handle = kuberay.create(ClusterSpec(name="head-logs", head_memory="1Gi", owner="tests"))
    try:
        kuberay.wait_ready(handle, 90)
        core = client.CoreV1Api(kuberay.api_client)
        [pod] = core.list_namespaced_pod("ray", label_selector="ray.io/cluster=head-logs").items
        text = kuberay.head_log("ray", pod.metadata.name, "ray-head", tail_lines=10_000)
        assert "Ray runtime started" in text or "Local node IP" in text, text[-2000:]
        tail = kuberay.head_log("ray", pod.metadata.name, "ray-head", tail_lines=2)
        assert 0 < len(tail.splitlines()) <= 2 and text.rstrip().endswith(tail.rstrip())
        # As a real API server: no previous container, a wrong container name, an unknown pod.
        for kwargs, status, words in (
            ({"container": "ray-head", "previous": True}, 400, "previous terminated container"),
            ({"container": "nope"}, 400, "is not valid for pod"),
        ):
            with pytest.raises(client.ApiException) as failed:
                core.read_namespaced_pod_log(pod.metadata.name, "ray", **kwargs)
            assert failed.value.status == status and words in str(failed.value.body)
        with pytest.raises(client.ApiException) as missing:
            core.read_namespaced_pod_log("no-such-pod", "ray")
        assert missing.value.status == 404
    finally:
        kuberay.delete(handle, timeout_s=30)
