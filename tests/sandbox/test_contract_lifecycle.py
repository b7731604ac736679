"""Contract: status subresource, generation, finalizers and ownerReference garbage collection."""

from __future__ import annotations

import pytest
from kubernetes.client import ApiException

from .conftest import Kube
from .helpers import configmap, raycluster, wait_for

RAY = ("ray.io", "v1")


def _rc(kube: Kube, name: str = "rc") -> dict:
    return kube.custom.get_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", name)


def test_status_is_dropped_on_create(kube: Kube) -> None:
    kube.require_ray()
    body = raycluster("rc")
    body["status"] = {"state": "ready"}
    created = kube.custom.create_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", body)
    assert "state" not in (created.get("status") or {})


def test_main_resource_writes_ignore_status(kube: Kube) -> None:
    kube.require_ray()
    kube.custom.create_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", raycluster("rc"))
    kube.custom.patch_namespaced_custom_object_status(*RAY, kube.namespace, "rayclusters", "rc",
                                                      {"status": {"state": "ready"}})
    patched = kube.custom.patch_namespaced_custom_object(
        *RAY, kube.namespace, "rayclusters", "rc", {"status": {"state": "failed"}, "spec": {"rayVersion": "2.61.0"}})
    assert patched["status"]["state"] == "ready" and patched["spec"]["rayVersion"] == "2.61.0"
    current = _rc(kube)
    current["status"] = {"state": "suspended"}
    replaced = kube.custom.replace_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", "rc", current)
    assert replaced["status"]["state"] == "ready"


def test_status_writes_ignore_spec_and_generation_tracks_spec(kube: Kube) -> None:
    kube.require_ray()
    created = kube.custom.create_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", raycluster("rc"))
    assert created["metadata"]["generation"] == 1
    after_status = kube.custom.patch_namespaced_custom_object_status(
        *RAY, kube.namespace, "rayclusters", "rc", {"status": {"state": "ready"}, "spec": {"rayVersion": "9.9.9"}})
    assert after_status["spec"]["rayVersion"] == "2.60.0" and after_status["status"]["state"] == "ready"
    assert after_status["metadata"]["generation"] == 1
    labelled = kube.custom.patch_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", "rc",
                                                          {"metadata": {"labels": {"x": "y"}}})
    assert labelled["metadata"]["generation"] == 1
    respecced = kube.custom.patch_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", "rc",
                                                           {"spec": {"rayVersion": "2.61.0"}})
    assert respecced["metadata"]["generation"] == 2
    current = _rc(kube)
    current["status"] = {"state": "suspended"}
    replaced = kube.custom.replace_namespaced_custom_object_status(*RAY, kube.namespace, "rayclusters", "rc", current)
    assert replaced["status"]["state"] == "suspended" and replaced["metadata"]["generation"] == 2
    current["status"] = {"state": "stale"}  # stale resourceVersion on the status subresource too
    with pytest.raises(ApiException) as err:
        kube.custom.replace_namespaced_custom_object_status(*RAY, kube.namespace, "rayclusters", "rc", current)
    assert err.value.status == 409


def test_pod_status_subresource(kube: Kube) -> None:
    from .helpers import pod

    kube.core.create_namespaced_pod(kube.namespace, pod("p", {"a": "b"}))
    got = kube.core.patch_namespaced_pod_status(
        "p", kube.namespace, {"status": {"conditions": [{"type": "PodScheduled", "status": "False",
                                                         "reason": "Unschedulable"}]}})
    assert got.status.conditions[0].reason == "Unschedulable"
    relabelled = kube.core.patch_namespaced_pod("p", kube.namespace, {"metadata": {"labels": {"c": "d"}},
                                                                      "status": {"phase": "Running"}})
    assert relabelled.status.phase == "Pending" and relabelled.metadata.labels == {"a": "b", "c": "d"}


def test_delete_waits_for_finalizers(kube: Kube) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, configmap("held", finalizers=["mlplatform.discord.com/hold"]))
    kube.core.delete_namespaced_config_map("held", kube.namespace)
    held = kube.core.read_namespaced_config_map("held", kube.namespace)
    assert held.metadata.deletion_timestamp is not None
    assert held.metadata.finalizers == ["mlplatform.discord.com/hold"]
    with pytest.raises(ApiException) as err:  # no new finalizers while deleting
        kube.core.patch_namespaced_config_map("held", kube.namespace, [
            {"op": "add", "path": "/metadata/finalizers/-", "value": "mlplatform.discord.com/more"}])
    assert err.value.status == 422
    kube.core.patch_namespaced_config_map("held", kube.namespace, [{"op": "remove", "path": "/metadata/finalizers"}])

    def gone() -> bool:
        try:
            kube.core.read_namespaced_config_map("held", kube.namespace)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=kube.gc_timeout)


def test_custom_object_finalizer_removed_by_merge_patch(kube: Kube) -> None:
    kube.require_ray()
    body = raycluster("rc")
    body["metadata"]["finalizers"] = ["ray.io/dmp-test"]
    kube.custom.create_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", body)
    kube.custom.delete_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", "rc")
    assert _rc(kube)["metadata"]["deletionTimestamp"]
    kube.custom.patch_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", "rc",
                                               {"metadata": {"finalizers": None}})
    with pytest.raises(ApiException) as err:
        _rc(kube)
    assert err.value.status == 404


def _owned_family(kube: Kube) -> str:
    owner = kube.core.create_namespaced_config_map(kube.namespace, configmap("owner"))
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner.metadata.uid,
           "blockOwnerDeletion": True}
    for name in ("child-1", "child-2"):
        kube.core.create_namespaced_config_map(kube.namespace, configmap(name, ownerReferences=[ref]))
    return owner.metadata.uid


def _names(kube: Kube) -> set[str]:
    return {c.metadata.name for c in kube.core.list_namespaced_config_map(kube.namespace).items
            if c.metadata.name in ("owner", "child-1", "child-2")}


@pytest.mark.parametrize("policy", ["Background", "Foreground"])
def test_cascading_delete(kube: Kube, policy: str) -> None:
    _owned_family(kube)
    kube.core.delete_namespaced_config_map("owner", kube.namespace, propagation_policy=policy)
    wait_for(lambda: _names(kube) == set(), timeout=kube.gc_timeout)


def test_orphan_delete_keeps_dependents(kube: Kube) -> None:
    uid = _owned_family(kube)
    kube.core.delete_namespaced_config_map("owner", kube.namespace, propagation_policy="Orphan")
    wait_for(lambda: _names(kube) == {"child-1", "child-2"}, timeout=kube.gc_timeout)

    def refs_cleared() -> bool:
        kids = [kube.core.read_namespaced_config_map(n, kube.namespace) for n in ("child-1", "child-2")]
        return all(not any(r.uid == uid for r in k.metadata.owner_references or []) for k in kids)

    wait_for(refs_cleared, timeout=kube.gc_timeout)


def test_raycluster_cascades_to_owned_pods(kube: Kube) -> None:
    kube.require_ray()
    from .helpers import pod

    rc = kube.custom.create_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", raycluster("rc"))
    body = pod("rc-head", {"ray.io/cluster": "rc"})
    body["metadata"]["ownerReferences"] = [{"apiVersion": "ray.io/v1", "kind": "RayCluster", "name": "rc",
                                            "uid": rc["metadata"]["uid"], "controller": True}]
    kube.core.create_namespaced_pod(kube.namespace, body)
    kube.custom.delete_namespaced_custom_object(*RAY, kube.namespace, "rayclusters", "rc")
    wait_for(lambda: not kube.core.list_namespaced_pod(kube.namespace, label_selector="ray.io/cluster=rc").items,
             timeout=kube.gc_timeout)


def test_delete_precondition_conflict(kube: Kube) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, configmap("cm"))
    with pytest.raises(ApiException) as err:
        kube.core.delete_namespaced_config_map("cm", kube.namespace, body={"preconditions": {"uid": "not-it"}})
    assert err.value.status == 409
