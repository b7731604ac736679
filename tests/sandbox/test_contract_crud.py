"""Contract: CRUD, patch types, conflicts, errors, namespaces and selectors.

Every test runs against the sandbox and, with ``KUBECONFIG`` set, a real cluster (see conftest).
"""

from __future__ import annotations

import json

import pytest
from kubernetes.client import ApiException

from .conftest import Kube
from .helpers import configmap, pod, raycluster, wait_for


def _reason(exc: ApiException) -> str:
    return json.loads(exc.body)["reason"]


def test_create_sets_system_metadata(kube: Kube) -> None:
    created = kube.core.create_namespaced_config_map(kube.namespace, configmap("cm"))
    m = created.metadata
    assert m.uid and m.resource_version and m.creation_timestamp is not None
    assert m.namespace == kube.namespace
    got = kube.core.read_namespaced_config_map("cm", kube.namespace)
    assert got.metadata.uid == m.uid and got.data == {"k": "v"}


def test_empty_metadata_maps_are_not_stored(kube: Kube) -> None:
    created = kube.core.create_namespaced_config_map(kube.namespace, configmap("cm", {}, annotations={}))
    assert created.metadata.labels is None and created.metadata.annotations is None
    with pytest.raises(ApiException) as err:  # so a JSON patch into them has no parent to add to
        kube.core.patch_namespaced_config_map("cm", kube.namespace,
                                              [{"op": "add", "path": "/metadata/labels/a", "value": "b"}])
    assert err.value.status == 422


def test_generate_name(kube: Kube) -> None:
    body = configmap("")
    body["metadata"] = {"generateName": "run-"}
    created = kube.core.create_namespaced_config_map(kube.namespace, body)
    assert created.metadata.name.startswith("run-") and len(created.metadata.name) == len("run-") + 5


def test_get_missing_is_404_not_found(kube: Kube) -> None:
    with pytest.raises(ApiException) as err:
        kube.core.read_namespaced_config_map("missing", kube.namespace)
    assert err.value.status == 404 and _reason(err.value) == "NotFound"


def test_create_twice_is_409_already_exists(kube: Kube) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, configmap("dup"))
    with pytest.raises(ApiException) as err:
        kube.core.create_namespaced_config_map(kube.namespace, configmap("dup"))
    assert err.value.status == 409 and _reason(err.value) == "AlreadyExists"


def test_create_in_missing_namespace_is_404(kube: Kube) -> None:
    with pytest.raises(ApiException) as err:
        kube.core.create_namespaced_config_map("dmp-no-such-namespace", configmap("x"))
    assert err.value.status == 404 and _reason(err.value) == "NotFound"


def test_invalid_name_is_422(kube: Kube) -> None:
    with pytest.raises(ApiException) as err:
        kube.core.create_namespaced_config_map(kube.namespace, configmap("Not_Valid"))
    assert err.value.status == 422 and _reason(err.value) == "Invalid"


def test_invalid_label_value_is_422(kube: Kube) -> None:
    with pytest.raises(ApiException) as err:
        kube.core.create_namespaced_config_map(kube.namespace, configmap("x", {"owner": "Ada Lovelace"}))
    assert err.value.status == 422


def test_replace_with_stale_resource_version_is_409_conflict(kube: Kube) -> None:
    created = kube.core.create_namespaced_config_map(kube.namespace, configmap("cm"))
    created.data = {"k": "v2"}
    updated = kube.core.replace_namespaced_config_map("cm", kube.namespace, created)
    assert updated.data == {"k": "v2"}
    assert int(updated.metadata.resource_version) > int(created.metadata.resource_version)
    created.data = {"k": "stale"}  # still carries the old resourceVersion
    with pytest.raises(ApiException) as err:
        kube.core.replace_namespaced_config_map("cm", kube.namespace, created)
    assert err.value.status == 409 and _reason(err.value) == "Conflict"


def test_replace_missing_is_404(kube: Kube) -> None:
    with pytest.raises(ApiException) as err:
        kube.core.replace_namespaced_config_map("ghost", kube.namespace, configmap("ghost"))
    assert err.value.status == 404


def test_strategic_and_merge_patch(kube: Kube) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, configmap("cm", {"a": "1"}))
    # A dict body on CoreV1Api is sent as a strategic merge patch.
    got = kube.core.patch_namespaced_config_map("cm", kube.namespace, {"metadata": {"labels": {"b": "2"}}})
    assert got.metadata.labels == {"a": "1", "b": "2"}
    got = kube.core.patch_namespaced_config_map(
        "cm", kube.namespace, {"metadata": {"labels": {"a": None}}, "data": {"n": "x"}},
        _content_type="application/merge-patch+json")
    assert got.metadata.labels == {"b": "2"} and got.data == {"k": "v", "n": "x"}


def test_json_patch(kube: Kube) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, configmap("cm", {"a": "1"}))
    got = kube.core.patch_namespaced_config_map("cm", kube.namespace, [
        {"op": "test", "path": "/data/k", "value": "v"},
        {"op": "add", "path": "/data/new", "value": "1"},
        {"op": "replace", "path": "/data/k", "value": "v2"},
        {"op": "add", "path": "/metadata/labels/x~1y", "value": "z"},
    ])
    assert got.data == {"k": "v2", "new": "1"} and got.metadata.labels == {"a": "1", "x/y": "z"}
    with pytest.raises(ApiException) as err:
        kube.core.patch_namespaced_config_map("cm", kube.namespace,
                                              [{"op": "test", "path": "/data/k", "value": "nope"}])
    assert err.value.status == 422


def test_patch_with_stale_resource_version_is_409(kube: Kube) -> None:
    created = kube.core.create_namespaced_config_map(kube.namespace, configmap("cm"))
    kube.core.patch_namespaced_config_map("cm", kube.namespace, {"data": {"k": "2"}})
    with pytest.raises(ApiException) as err:
        kube.core.patch_namespaced_config_map(
            "cm", kube.namespace, {"metadata": {"resourceVersion": created.metadata.resource_version},
                                   "data": {"k": "3"}}, _content_type="application/merge-patch+json")
    assert err.value.status == 409


def test_custom_object_crud_and_list_all_namespaces(kube: Kube) -> None:
    kube.require_ray()
    co = kube.custom
    created = co.create_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters",
                                                 raycluster("rc", {"team": "ads"}))
    assert created["metadata"]["generation"] == 1 and created["kind"] == "RayCluster"
    got = co.get_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters", "rc")
    assert got["metadata"]["uid"] == created["metadata"]["uid"]
    everywhere = co.list_cluster_custom_object("ray.io", "v1", "rayclusters", label_selector="team=ads")
    assert (kube.namespace, "rc") in {(i["metadata"]["namespace"], i["metadata"]["name"]) for i in everywhere["items"]}
    patched = co.patch_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters", "rc",
                                                {"metadata": {"labels": {"extra": "1"}}})
    assert patched["metadata"]["labels"] == {"team": "ads", "extra": "1"}
    patched = co.patch_namespaced_custom_object(
        "ray.io", "v1", kube.namespace, "rayclusters", "rc",
        [{"op": "replace", "path": "/spec/rayVersion", "value": "2.61.0"}],
        _content_type="application/json-patch+json")
    assert patched["spec"]["rayVersion"] == "2.61.0"
    co.delete_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters", "rc")
    with pytest.raises(ApiException) as err:
        co.get_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters", "rc")
    assert err.value.status == 404


def test_custom_objects_refuse_strategic_merge_patch(kube: Kube) -> None:
    kube.require_ray()
    kube.custom.create_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters", raycluster("rc"))
    with pytest.raises(ApiException) as err:
        kube.custom.patch_namespaced_custom_object(
            "ray.io", "v1", kube.namespace, "rayclusters", "rc", {"metadata": {"labels": {"a": "b"}}},
            _content_type="application/strategic-merge-patch+json")
    assert err.value.status == 415


@pytest.mark.parametrize(("selector", "expected"), [
    ("tier=head", {"a"}),
    ("tier==head", {"a"}),
    ("tier!=head", {"b", "c"}),
    ("tier in (head, worker)", {"a", "b"}),
    ("tier notin (head)", {"b", "c"}),
    ("gpu", {"b"}),
    ("!gpu", {"a", "c"}),
    ("app=ray,tier in (worker)", {"b"}),
])
def test_label_selectors(kube: Kube, selector: str, expected: set[str]) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, configmap("a", {"app": "ray", "tier": "head"}))
    kube.core.create_namespaced_config_map(kube.namespace, configmap("b", {"app": "ray", "tier": "worker", "gpu": "a100"}))
    kube.core.create_namespaced_config_map(kube.namespace, configmap("c", {"app": "other"}))
    items = kube.core.list_namespaced_config_map(kube.namespace, label_selector=selector).items
    assert {i.metadata.name for i in items} == expected


def test_bad_label_selector_is_400(kube: Kube) -> None:
    with pytest.raises(ApiException) as err:
        kube.core.list_namespaced_config_map(kube.namespace, label_selector="a in (b")
    assert err.value.status == 400


def test_field_selectors(kube: Kube) -> None:
    kube.core.create_namespaced_pod(kube.namespace, pod("p1"))
    kube.core.create_namespaced_pod(kube.namespace, pod("p2"))
    by_name = kube.core.list_namespaced_pod(kube.namespace, field_selector="metadata.name=p2").items
    assert [p.metadata.name for p in by_name] == ["p2"]
    pending = kube.core.list_namespaced_pod(kube.namespace, field_selector="status.phase=Pending").items
    assert {p.metadata.name for p in pending} == {"p1", "p2"}
    not_p1 = kube.core.list_pod_for_all_namespaces(
        field_selector=f"metadata.namespace={kube.namespace},metadata.name!=p1").items
    assert [p.metadata.name for p in not_p1] == ["p2"]
    with pytest.raises(ApiException) as err:
        kube.core.list_namespaced_config_map(kube.namespace, field_selector="data.k=v")
    assert err.value.status == 400


def test_events_by_involved_object(kube: Kube) -> None:
    for name in ("rc-a", "rc-b"):
        kube.core.create_namespaced_event(kube.namespace, {
            "metadata": {"generateName": f"{name}."},
            "involvedObject": {"kind": "RayCluster", "name": name, "namespace": kube.namespace,
                               "apiVersion": "ray.io/v1"},
            "reason": "HeadPodReady", "message": "head is ready", "type": "Normal",
            "source": {"component": "dmp-sandbox-operator"},
        })
    events = kube.core.list_namespaced_event(
        kube.namespace, field_selector="involvedObject.kind=RayCluster,involvedObject.name=rc-b").items
    assert [e.involved_object.name for e in events] == ["rc-b"]


def test_pagination_with_limit_and_continue(kube: Kube) -> None:
    for i in range(5):
        kube.core.create_namespaced_config_map(kube.namespace, configmap(f"cm-{i}"))
    seen, token = [], None
    while True:
        page = kube.core.list_namespaced_config_map(kube.namespace, limit=2, _continue=token)
        seen += [i.metadata.name for i in page.items if i.metadata.name.startswith("cm-")]
        token = page.metadata._continue
        if not token:
            break
    assert seen == [f"cm-{i}" for i in range(5)]


def test_pod_status_defaults(kube: Kube) -> None:
    created = kube.core.create_namespaced_pod(kube.namespace, pod("p"))
    assert created.status.phase == "Pending"
    with pytest.raises(ApiException) as err:
        kube.core.create_namespaced_pod(kube.namespace, {"metadata": {"name": "nocontainers"}, "spec": {}})
    assert err.value.status == 422


def test_namespace_lifecycle(kube: Kube) -> None:
    name = f"{kube.namespace}-x"
    ns = kube.core.create_namespace({"metadata": {"name": name}})
    assert ns.status.phase == "Active"
    kube.core.create_namespaced_config_map(name, configmap("inside"))
    kube.core.delete_namespace(name)

    def gone() -> bool:
        try:
            kube.core.read_namespace(name)
        except ApiException as exc:
            return exc.status == 404
        return False

    wait_for(gone, timeout=kube.gc_timeout)
    with pytest.raises(ApiException) as err:
        kube.core.read_namespaced_config_map("inside", name)
    assert err.value.status == 404
