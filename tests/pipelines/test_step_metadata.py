"""What a Ray step reports about its cluster: one set of keys in both modes, plus each mode's own."""

import dataclasses
import time

import dagster as dg
import pytest

from discord_ml_platform.backends import ClusterEndpoints, ClusterHandle
from discord_ml_platform.backends.rayjobs import RayJobOptions
from discord_ml_platform.jobs.events import JobResult
from discord_ml_platform.jobs.runner import RayJobTarget
from resources import PipesRayJobClient, RayClusterResource, RunningCluster

pytestmark = pytest.mark.timeout(60)
SHARED = {
    "cluster_name",
    "cluster_backend",
    "cluster_mode",
    "cluster_namespace",
    "gpu_type",
    "gpu_count",
    "cluster_workers",
    "image",
    "hourly_price_usd",
    "estimated_cost_usd",
    "ray_dashboard",
}


def test_a_rayjob_step_reports_its_cluster_like_a_raycluster_step_and_its_rayjob():
    ray_cluster = RayClusterResource(backend="kuberay", mode="rayjob")
    spec = ray_cluster.spec_for_run("run-1", gpu_type="l4", workers=2, gpus_per_worker=1)
    hourly = ray_cluster.platform.hourly_price(spec)
    result = JobResult(
        job_id="raysubmit_1",
        target="dmp-x",
        status="SUCCEEDED",
        message="",
        succeeded=True,
        duration_s=1800.0,
        log_lines=12,
        cluster_name="dmp-x-abcde",
        dashboard_url="http://head:8265",
        rayjob="dmp-x",
        attempts=2,
        usage={"cpu_peak": 1.5, "gpu_peak": None},
    )
    target = RayJobTarget(None, spec, RayJobOptions())  # type: ignore[arg-type]  # the jobs are not used
    meta = PipesRayJobClient._metadata(result, ray_cluster, None, target)

    assert meta == {
        "ray_job_id": "raysubmit_1",
        "log_lines": 12,
        "cpu_peak": 1.5,
        "rayjob": "dmp-x",
        "cluster_name": "dmp-x-abcde",
        "cluster_backend": "kuberay",
        "cluster_mode": "rayjob",
        "cluster_namespace": spec.namespace,
        "gpu_type": "l4",
        "gpu_count": 2,
        "cluster_workers": 2,
        "image": spec.image,
        "hourly_price_usd": round(hourly, 4),
        "rayjob_wall_seconds": 1800.0,
        "rayjob_attempts": 2,
        "estimated_cost_usd": round(hourly / 2, 6),
        "ttl_seconds_after_finished": ray_cluster.rayjob.ttl_seconds_after_finished,
        "ray_dashboard": dg.MetadataValue.url("http://head:8265"),
    }
    # No dashboard known: no link.
    no_url = PipesRayJobClient._metadata(dataclasses.replace(result, dashboard_url=""), ray_cluster, None, target)
    assert "ray_dashboard" not in no_url

    now = time.time()
    cluster = RunningCluster(
        spec,
        ClusterHandle("dmp-run", "ns", "local"),
        ClusterEndpoints("http://d:8265", ""),
        "local",
        now - 7200,
        now - 7000,
        hourly_price_usd=3.0,
    )
    running = cluster.metadata()
    assert SHARED | {"seconds_to_ready", "cluster_wall_seconds", "gpu_hours"} == set(running)
    assert running["cluster_mode"] == "raycluster" and running["seconds_to_ready"] == 200
    assert running["estimated_cost_usd"] == pytest.approx(6.0, rel=1e-3) and running["gpu_hours"] == pytest.approx(
        4.0, rel=1e-3
    )
    assert running["ray_dashboard"] == dg.MetadataValue.url("http://d:8265")
