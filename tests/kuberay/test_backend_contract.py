"""The ``ClusterBackend`` contract, run against both backends: local processes and KubeRay (sandbox)."""

from __future__ import annotations

import json
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from discord_ml_platform.backends import ClusterBackend, PhaseEvent
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.labels import MANAGED_BY, MANAGED_BY_VALUE, OWNER, RUN_ID

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spec"))
from kuberay_crd_schema import schema_for, unknown_keys

pytestmark = [pytest.mark.ray]


@pytest.fixture(params=["local", "kuberay"])
def backend(request: pytest.FixtureRequest, session_root) -> Iterator[ClusterBackend]:
    if request.param == "local":
        yield LocalBackend(state_dir=session_root / "contract-state")
    else:
        yield request.getfixturevalue("kuberay")


@pytest.mark.timeout(180)
def test_create_wait_list_delete(backend: ClusterBackend) -> None:
    spec = ClusterSpec(name="contract-one", head_memory="1Gi", owner="Ada Lovelace <ada@example.com>",
                       run_id="run-contract-1")
    phases: list[PhaseEvent] = []
    handle = backend.create(spec)
    try:
        assert backend.create(spec) == handle  # idempotent
        endpoints = backend.wait_ready(handle, 150, phases.append)
        names = [p.phase for p in phases]
        assert names[0] == "pending" and names[-1] == "ready", names
        assert "head-ready" in names
        assert phases[-1].desired_workers == 0
        with urllib.request.urlopen(f"{endpoints.dashboard_url}/api/version", timeout=5) as response:
            assert json.load(response)["ray_version"]
        assert backend.endpoints(handle) == endpoints
        [info] = backend.list({RUN_ID: "run-contract-1", MANAGED_BY: MANAGED_BY_VALUE})
        assert info.handle.name == "contract-one" and info.status == "ready"
        assert info.labels[OWNER].startswith("Ada-Lovelace")
        assert info.endpoints == endpoints
        assert backend.list({RUN_ID: "another-run"}) == []
    finally:
        backend.delete(handle)
    assert all(i.handle.name != "contract-one" for i in backend.list())
    backend.delete(handle)  # deleting a missing cluster is not an error


@pytest.mark.timeout(180)
def test_kuberay_cluster_with_a_worker_reports_workers_and_status(kuberay: KubeRayBackend, sandbox) -> None:
    spec = ClusterSpec(name="contract-worker", workers=1, cpus_per_worker=1, memory_per_worker="1Gi",
                       head_memory="1Gi", run_id="run-contract-2")
    phases: list[PhaseEvent] = []
    handle = kuberay.create(spec)
    try:
        kuberay.wait_ready(handle, 150, phases.append)
        workers = [p for p in phases if p.phase == "workers"]
        assert workers and workers[-1].desired_workers == 1
        assert phases[-1].phase == "ready" and phases[-1].ready_workers == 1
        [info] = kuberay.list({RUN_ID: "run-contract-2"})
        assert (info.ready_workers, info.desired_workers) == (1, 1)
        conditions = {c["type"]: c for c in info.details["conditions"]}
        assert conditions["HeadPodReady"]["reason"] == "HeadPodRunningAndReady"
        assert conditions["RayClusterProvisioned"]["reason"] == "AllPodRunningAndReadyFirstTime"
        events = info.details["events"]
        assert 0 < len(events) <= 10 and {"Started", "CreatedService"} & {e["reason"] for e in events}
        rc = kuberay.custom.get_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", "contract-worker")
        status_schema = schema_for("RayCluster")["properties"]["status"]
        from jsonschema import Draft7Validator

        assert [e.message for e in Draft7Validator(status_schema).iter_errors(rc["status"])] == []
        assert unknown_keys(rc["status"], status_schema) == []
        assert rc["status"]["state"] == "ready" and rc["status"]["observedGeneration"] == 1
        assert set(rc["status"]["endpoints"]) == {"client", "dashboard", "gcs-server", "metrics"}
        assert rc["status"]["head"]["serviceName"] == "contract-worker-head-svc"
        assert rc["metadata"]["finalizers"] == ["sandbox.mlplatform.discord.com/local-ray"]
        pods = sandbox.server.api_client()
        from kubernetes import client

        core = client.CoreV1Api(pods)
        listed = core.list_namespaced_pod("ray", label_selector="ray.io/cluster=contract-worker").items
        assert sorted(p.metadata.labels["ray.io/node-type"] for p in listed) == ["head", "worker"]
        assert all(p.metadata.labels["app.kubernetes.io/created-by"] == "kuberay-operator" for p in listed)
        assert all(p.metadata.owner_references[0].kind == "RayCluster" for p in listed)
        svc = core.read_namespaced_service("contract-worker-head-svc", "ray")
        assert {p.name for p in svc.spec.ports} >= {"client", "dashboard", "gcs-server"}
        pods.close()
    finally:
        kuberay.delete(handle)
    assert kuberay.list({RUN_ID: "run-contract-2"}) == []
