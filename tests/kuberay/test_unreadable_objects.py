"""One RayCluster or RayJob that cannot be read (anyone who may patch them can write such a field)
never hides the others from a listing."""

import pytest

from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.spec import ClusterSpec

pytestmark = pytest.mark.timeout(60)


def test_an_unreadable_raycluster_lists_as_unknown_beside_the_others(kuberay: KubeRayBackend, sandbox) -> None:
    sandbox.faults.operator.reconcile_delay_s = 600  # nothing starts: this is about listing
    good = kuberay.render(ClusterSpec(name="readable", head_memory="1Gi", owner="tests"))
    bad = kuberay.render(ClusterSpec(name="unreadable", head_memory="1Gi", owner="tests"))
    for manifest in (good, bad):
        kuberay.custom.create_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", manifest)
    store = sandbox.server.store
    rt = store.registry.get("ray.io", "v1", "rayclusters")
    obj = store.get(rt, "ray", "unreadable")
    obj["status"] = {"desiredWorkerReplicas": "many"}  # int() of it fails where workers are counted
    store.update(rt, "ray", "unreadable", obj, "status", False)
    try:
        infos = {i.handle.name: i for i in kuberay.list()}
        assert set(infos) == {"readable", "unreadable"}
        assert infos["unreadable"].status == "unknown" and "cannot be read" in infos["unreadable"].details["problem"]
        assert infos["readable"].status != "unknown"
    finally:  # the autouse `nothing_left` clears the faults, and fails a test that leaves clusters behind
        for info in kuberay.list():
            kuberay.delete(info.handle, timeout_s=30)
