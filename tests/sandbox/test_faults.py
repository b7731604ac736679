"""Fault injection: HTTP errors, Retry-After, latency, dropped connections, the admin endpoint."""

from __future__ import annotations

import json
import time
import urllib.request

import pytest
from kubernetes.client import ApiException
from urllib3.exceptions import MaxRetryError, ProtocolError

from discord_ml_platform.sandbox.faults import (
    FAULT_ANNOTATION_PREFIX,
    FaultInjector,
    OperatorFaults,
    operator_faults_for,
)

from .conftest import Kube
from .helpers import configmap, raycluster


def test_error_for_the_next_n_matching_requests(sandbox: Kube) -> None:
    rule = sandbox.server.faults.fail("create", "rayclusters", status_code=503, times=2)
    co = sandbox.custom
    for _ in range(2):
        with pytest.raises(ApiException) as err:
            co.create_namespaced_custom_object("ray.io", "v1", sandbox.namespace, "rayclusters", raycluster("rc"))
        assert err.value.status == 503
        assert json.loads(err.value.body)["reason"] == "ServiceUnavailable"
    # Other verbs and resources are untouched, and the third create goes through.
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("unaffected"))
    co.create_namespaced_custom_object("ray.io", "v1", sandbox.namespace, "rayclusters", raycluster("rc"))
    assert rule.hits == 2 and sandbox.server.faults.snapshot().rules == []


def test_429_carries_retry_after(sandbox: Kube) -> None:
    sandbox.server.faults.fail("create", "pods", status_code=429, retry_after_s=3)
    with pytest.raises(ApiException) as err:
        sandbox.core.create_namespaced_pod(sandbox.namespace, {"metadata": {"name": "p"},
                                                               "spec": {"containers": [{"name": "c", "image": "i"}]}})
    assert err.value.status == 429 and err.value.headers["Retry-After"] == "3"
    assert json.loads(err.value.body)["reason"] == "TooManyRequests"


def test_429_on_get_is_retried_by_the_client_after_retry_after(sandbox: Kube) -> None:
    # urllib3's default Retry honours Retry-After on 429/503 for idempotent methods: a client of a
    # throttling server sees a slow success, not an error. The sandbox reproduces that.
    rule = sandbox.server.faults.fail("list", "pods", status_code=429, retry_after_s=1)
    start = time.monotonic()
    assert sandbox.core.list_namespaced_pod(sandbox.namespace).items == []
    assert time.monotonic() - start >= 1 and rule.hits == 1


def test_fault_scoped_to_one_object(sandbox: Kube) -> None:
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("a"))
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("b"))
    sandbox.server.faults.fail("get", "configmaps", status_code=500, name="b", times=None)
    assert sandbox.core.read_namespaced_config_map("a", sandbox.namespace).metadata.name == "a"
    for _ in range(3):
        with pytest.raises(ApiException) as err:
            sandbox.core.read_namespaced_config_map("b", sandbox.namespace)
        assert err.value.status == 500


def test_latency(sandbox: Kube) -> None:
    sandbox.server.faults.delay("list", "configmaps", seconds=0.3)
    start = time.monotonic()
    sandbox.core.list_namespaced_config_map(sandbox.namespace)
    assert time.monotonic() - start >= 0.3
    start = time.monotonic()
    sandbox.core.list_namespaced_pod(sandbox.namespace)
    assert time.monotonic() - start < 0.3


def test_dropped_connection_on_create_raises(sandbox: Kube) -> None:
    rule = sandbox.server.faults.drop("create", "configmaps", times=1)
    # POST is not idempotent, so urllib3 does not retry it: the caller sees the dropped connection.
    with pytest.raises((ProtocolError, MaxRetryError)):
        sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("x"))
    assert rule.hits == 1
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("x"))


def test_dropped_connection_on_get_is_retried_by_the_client(sandbox: Kube) -> None:
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("x"))
    rule = sandbox.server.faults.drop("get", "configmaps", times=1)
    # urllib3 retries idempotent requests after a dropped connection, as against a real server.
    assert sandbox.core.read_namespaced_config_map("x", sandbox.namespace).metadata.name == "x"
    assert rule.hits == 1


def test_admin_endpoint_sets_faults_out_of_process(sandbox: Kube) -> None:
    base = f"{sandbox.server.url}/sandbox/v1/faults"

    def call(method: str, url: str, body: object | None = None) -> dict:
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=10) as resp:
            return json.loads(resp.read())

    added = call("POST", f"{base}/rules", {"verb": "list", "resource": "services", "status_code": 500})
    assert added["status_code"] == 500
    with pytest.raises(ApiException) as err:
        sandbox.core.list_namespaced_service(sandbox.namespace)
    assert err.value.status == 500
    state = call("PUT", base, {"rules": [], "operator": {"head_never_ready": True}})
    assert state["operator"]["head_never_ready"] is True
    assert sandbox.server.faults.operator.head_never_ready is True
    assert call("DELETE", base)["operator"]["head_never_ready"] is False
    with pytest.raises(urllib.error.HTTPError) as bad:
        call("PUT", base, {"rules": [{"verb": "get", "status_code": 200}]})
    assert bad.value.code == 400


def test_operator_faults_from_annotations() -> None:
    obj = {"metadata": {"annotations": {f"{FAULT_ANNOTATION_PREFIX}image-pull-error": "true",
                                        f"{FAULT_ANNOTATION_PREFIX}reconcile-delay-s": "2.5",
                                        "unrelated/annotation": "x"}}}
    faults = operator_faults_for(obj, OperatorFaults(head_never_ready=True))
    assert faults.image_pull_error and faults.head_never_ready and faults.reconcile_delay_s == 2.5
    assert not operator_faults_for({"metadata": {}}).image_pull_error


def test_injector_latency_adds_up_and_first_error_wins() -> None:
    faults = FaultInjector()
    faults.delay(seconds=0.1)
    faults.fail("get", status_code=500)
    faults.fail("get", status_code=503)
    out = faults.decide("get", "", "pods", "ns", "p")
    assert out.latency_s == pytest.approx(0.1) and out.status_code == 500
    assert faults.decide("get", "", "pods", "ns", "p").status_code == 503
    assert faults.decide("get", "", "pods", "ns", "p").status_code is None
