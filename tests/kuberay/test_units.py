"""Pure pieces of the kuberay backend and the operator: retries, readiness reading, endpoints, mapping."""

from __future__ import annotations

import pytest
from kubernetes.client.exceptions import ApiException

from discord_ml_platform.backends import ClusterError, ClusterNotReadyError
from discord_ml_platform.backends.kuberay_retry import RetryPolicy, call_with_retries
from discord_ml_platform.backends.kuberay_status import ReadinessView, default_endpoint_resolver
from discord_ml_platform.sandbox import operator_objects as objs
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.render import render_raycluster

pytestmark = pytest.mark.timeout(30)


def api_error(status: int, retry_after: str | None = None) -> ApiException:
    err = ApiException(status=status, reason="x")
    err.headers = {"Retry-After": retry_after} if retry_after else {}
    err.body = '{"message": "boom"}'
    return err


def test_retries_honour_retry_after_and_stop_at_the_attempt_limit() -> None:
    waits: list[float] = []
    outcomes = [api_error(429, "3"), api_error(503), "ok"]

    def call() -> str:
        item = outcomes.pop(0)
        if isinstance(item, Exception):
            raise item
        return item

    policy = RetryPolicy(max_attempts=5, base_delay_s=0.1, max_delay_s=1, deadline_s=60)
    assert call_with_retries(call, "get thing", policy, sleep=waits.append) == "ok"
    assert waits[0] >= 3 and waits[1] <= 0.2

    def always_500() -> None:
        raise api_error(500)

    with pytest.raises(ClusterError, match=r"get thing: HTTP 500 x: boom \(gave up after 3 attempt"):
        call_with_retries(always_500, "get thing", RetryPolicy(max_attempts=3), sleep=lambda _: None)


def test_non_retryable_errors_pass_through_unchanged() -> None:
    calls = []

    def conflict() -> None:
        calls.append(1)
        raise api_error(409)

    with pytest.raises(ApiException):
        call_with_retries(conflict, "create", RetryPolicy(), sleep=lambda _: None)
    assert len(calls) == 1


def test_dropped_connections_are_retried() -> None:
    import urllib3

    outcomes: list[object] = [urllib3.exceptions.ProtocolError("Connection aborted."), ConnectionResetError(), "ok"]

    def call() -> object:
        item = outcomes.pop(0)
        if isinstance(item, BaseException):
            raise item
        return item

    assert call_with_retries(call, "create", RetryPolicy(), sleep=lambda _: None) == "ok"


def rc(status: dict | None = None) -> dict:
    return {"metadata": {"name": "c", "namespace": "ray", "uid": "u1"}, "spec": {}, "status": status or {}}


@pytest.mark.parametrize(
    ("endpoints", "dashboard", "gcs", "client"),
    [
        ({"dashboard": "31000", "gcs-server": "31001", "client": "31002"}, 31000, 31001, 31002),
        ({"dashboard": "31000", "gcs": "31001", "ray-client": "31002"}, 31000, 31001, 31002),
        ({}, 8265, 6379, 10001),
    ],
)
def test_endpoints_come_from_the_status_by_port_name_or_number(endpoints, dashboard, gcs, client) -> None:
    obj = rc({"head": {"serviceIP": "10.0.0.7", "podIP": "10.1.0.3"}, "endpoints": endpoints})
    found = default_endpoint_resolver(obj)
    assert found.dashboard_url == f"http://10.0.0.7:{dashboard}"
    assert found.gcs_address == f"10.0.0.7:{gcs}" and found.client_address == f"ray://10.0.0.7:{client}"
    assert default_endpoint_resolver(obj, "localhost").gcs_address == f"localhost:{gcs}"
    named = rc({"head": {"serviceName": "c-head-svc"}})
    assert default_endpoint_resolver(named).dashboard_url == "http://c-head-svc.ray.svc:8265"
    with pytest.raises(ClusterError):
        default_endpoint_resolver(rc())


def test_readiness_reads_conditions_and_worker_counts() -> None:
    view = ReadinessView("c", "ray")
    view.apply("raycluster", "LIST", {"items": [rc({"desiredWorkerReplicas": 2, "readyWorkerReplicas": 0})]})
    assert view.assess(default_endpoint_resolver)[0].phase == "pending"
    head_ready = {"type": "HeadPodReady", "status": "True", "reason": "HeadPodRunningAndReady"}
    view.apply("raycluster", "MODIFIED", rc({"desiredWorkerReplicas": 2, "readyWorkerReplicas": 1,
                                             "conditions": [head_ready]}))
    assessment, endpoints = view.assess(default_endpoint_resolver)
    assert (assessment.phase, assessment.message, endpoints) == ("workers", "workers 1/2", None)
    provisioned = {"type": "RayClusterProvisioned", "status": "True"}
    view.apply("raycluster", "MODIFIED", rc({"desiredWorkerReplicas": 2, "readyWorkerReplicas": 2, "state": "ready",
                                             "head": {"podIP": "10.1.0.3"},
                                             "conditions": [head_ready, provisioned]}))
    assessment, endpoints = view.assess(default_endpoint_resolver)
    assert assessment.ready and endpoints is not None and endpoints.gcs_address == "10.1.0.3:6379"
    view.apply("raycluster", "DELETED", rc())
    with pytest.raises(ClusterNotReadyError, match="deleted"):
        view.assess(default_endpoint_resolver)


def test_an_image_pull_error_in_pod_status_names_the_image() -> None:
    view = ReadinessView("c", "ray")
    view.apply("raycluster", "LIST", {"items": [rc()]})
    pod = {"metadata": {"name": "c-head-abcde", "uid": "p1", "labels": {"ray.io/node-type": "head"}},
           "spec": {"containers": [{"name": "ray-head", "image": "repo/ray:nope"}]},
           "status": {"containerStatuses": [{"name": "ray-head", "state": {"waiting": {
               "reason": "ImagePullBackOff", "message": 'Back-off pulling image "repo/ray:nope"'}}}]}}
    view.apply("pods", "ADDED", pod)
    with pytest.raises(ClusterNotReadyError, match=r"cannot pull image 'repo/ray:nope' \(ImagePullBackOff"):
        view.assess(default_endpoint_resolver)


def test_events_of_an_older_same_named_cluster_are_ignored() -> None:
    view = ReadinessView("c", "ray")
    view.apply("raycluster", "LIST", {"items": [rc()]})
    old = {"metadata": {"name": "c.1", "uid": "e1"}, "type": "Warning", "reason": "Failed",
           "message": 'Failed to pull image "old:tag": not found',
           "involvedObject": {"kind": "Pod", "name": "c-head-old", "uid": "gone-pod"}}
    view.apply("events", "ADDED", old)
    assert view.assess(default_endpoint_resolver)[0].phase == "pending"


def test_a_raycluster_maps_to_a_small_local_cluster_spec() -> None:
    spec = ClusterSpec(name="big", workers=3, cpus_per_worker=8, memory_per_worker="64Gi", head_cpus=4,
                       head_memory="16Gi", owner="ada", run_id="run-9")
    manifest = render_raycluster(spec, created_at=__import__("datetime").datetime(2025, 1, 1))
    manifest["metadata"]["uid"] = "1234-abcd"
    local = objs.local_spec(manifest, memory="1Gi", max_cpus=2)
    assert (local.workers, local.cpus_per_worker, local.head_cpus) == (3, 2, 2)
    assert local.memory_per_worker == local.head_memory == "1Gi" and local.gpu_type == "cpu"
    assert local.run_id == "run-9" and local.name.startswith("big-") and len(local.name) <= 47
    assert objs.replica_counts(manifest) == (3, 3, 3)
    assert objs.local_name(manifest) != objs.local_name({**manifest, "metadata": {**manifest["metadata"], "uid": "x"}})


def _probed_head(ready: bool, probe: dict[str, object] | None) -> dict[str, object]:
    container: dict[str, object] = {"name": "ray-head", "image": "rayproject/ray:2.60.0"}
    if probe is not None:
        container["readinessProbe"] = probe
    return {"metadata": {"name": "c-head-abcde", "uid": "p1", "labels": {"ray.io/node-type": "head"}},
            "spec": {"containers": [container]},
            "status": {"phase": "Running", "conditions": [{"type": "Ready", "status": str(ready)}]}}


def _probe_failures(count: int) -> dict[str, object]:
    return {"metadata": {"name": "c-head-abcde.1", "uid": "e1"}, "type": "Warning", "reason": "Unhealthy",
            "message": "Readiness probe failed: connection refused", "count": count,
            "involvedObject": {"kind": "Pod", "name": "c-head-abcde", "uid": "p1"}}


@pytest.mark.parametrize(
    ("ready", "probe", "failures", "failed"),
    [
        (False, {"failureThreshold": 10}, 9, False),  # below the probe's own threshold
        (False, {"failureThreshold": 10}, 10, True),
        (True, {"failureThreshold": 10}, 25, False),  # failed while starting, Ready now
        (False, {"periodSeconds": 5}, 3, True),  # a probe without a threshold: Kubernetes' default 3
        (False, None, 3, True),
        (True, None, 3, False),
    ],
)
def test_a_head_counts_as_failing_its_readiness_probe_only_while_unready_and_past_its_threshold(
        ready: bool, probe: dict[str, object] | None, failures: int, failed: bool) -> None:
    from discord_ml_platform.backends import HeadFailedError

    view = ReadinessView("c", "ray")
    view.apply("raycluster", "LIST", {"items": [rc()]})
    view.apply("pods", "ADDED", _probed_head(ready, probe))
    view.apply("events", "ADDED", _probe_failures(failures))
    if failed:
        with pytest.raises(HeadFailedError, match=f"readiness probe failed {failures} times"):
            view.assess(default_endpoint_resolver)
    else:
        assert view.head_failure() is None
        view.assess(default_endpoint_resolver)
