"""End to end on the kuberay backend: the ``platform_smoke`` asset, its Ray job, its metadata, its teardown."""

import dagster as dg
import pytest

from pipelines.assets import platform_smoke
from resources import PipesRayJobClient, RayClusterResource

from .helpers import ray_processes, rayclusters


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_platform_smoke_on_kuberay_streams_logs_reports_cost_and_tears_down(kubeconfig: str, sandbox) -> None:
    resources = {
        "ray_cluster": RayClusterResource(backend="kuberay", kubeconfig=kubeconfig, ready_timeout_s=150, owner="tests",
                                          workers=0, head_memory="1Gi"),
        "pipes_ray": PipesRayJobClient(),
    }
    run_config = {"ops": {"platform_smoke": {"config": {"tasks": 3}}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([platform_smoke], resources=resources, run_config=run_config, instance=instance)
        assert result.success
        [mat] = result.asset_materializations_for_node("platform_smoke")
        meta = mat.metadata
        assert meta["sum_of_squares"].value == 0 + 1 + 4  # from the Ray job, through Pipes
        assert meta["cluster_name"].value.startswith("dmp-") and meta["cluster_backend"].value == "kuberay"
        assert meta["gpu_type"].value == "cpu" and meta["gpu_count"].value == 0
        assert meta["seconds_to_ready"].value > 0
        assert meta["cluster_wall_seconds"].value >= meta["seconds_to_ready"].value
        assert "gpu_hours" in meta and meta["estimated_cost_usd"].value >= 0
        logs = [r.user_message for r in instance.all_logs(result.run_id)]
        assert "smoke task 2 -> 4" in logs  # a plain job log line in the event log
        assert any("computed 3 squares" in m for m in logs)  # a Pipes log message
        assert any("[head-ready]" in m for m in logs) and any("[ready]" in m for m in logs)  # phases
        assert any(m.startswith("deleted Ray cluster") for m in logs)
    assert rayclusters(sandbox) == [] and ray_processes(sandbox) == []
