"""The platform configuration means the same thing on the Dagster path as everywhere else.

* A GPU pool that ``DMP_PLATFORM_CONFIG`` adds, with a price and an image, is a Launchpad choice, and a
  run on it gets a RayCluster with that image and node selector, and a cost at that price.
* With the environment the Helm values give the code location, a run's cluster uses the configured
  Ray image and passes the production policy (deploy/platform-config.yaml).

Both run ``platform_smoke`` through the code location's own definitions on the sandbox.
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from deploy.deploy_files import PLATFORM_CONFIG, env_of, user_deployment

from discord_ml_platform.backends.kuberay import KubeRayBackend
from pipelines.definitions import build_definitions
from resources import PipesRayJobClient, RayClusterResource

from .helpers import ray_processes, rayclusters

B200 = """
catalog:
  types:
    b200-180gb:
      node_selector: {nvidia.com/gpu.product: NVIDIA-B200}
      tolerations: [{key: nvidia.com/gpu}]
      cpus_per_gpu: 1
      memory_per_gpu: 2Gi
      gpu_memory_gib: 180
      hourly_price_usd: 12.5
      image: registry.example.com/ml/ray:2.60.0-b200
"""
SEEN: dict[str, Any] = {}


@pytest.fixture
def platform_env(monkeypatch: pytest.MonkeyPatch, kubeconfig: str) -> Iterator[dict[str, str]]:
    """A clean DMP_* environment on the sandbox; tests add the rest."""
    for key in [k for k in os.environ if k.startswith("DMP_") and k not in ("DMP_LOCAL_STATE_DIR", "DMP_RAY_TEMP_ROOT",
                                                                             "DMP_DATA_ROOT")]:
        monkeypatch.delenv(key)
    env = {"DMP_BACKEND": "kuberay", "DMP_KUBECONFIG": kubeconfig, "DMP_OWNER": "tests"}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    yield env


@dg.asset
def smoke_and_inspect(context: dg.AssetExecutionContext, ray_cluster: RayClusterResource,
                      pipes_ray: PipesRayJobClient):
    """The smoke job on the run's cluster; also records the RayCluster the API server holds for it."""
    cluster = ray_cluster.get_cluster(context)
    with KubeRayBackend(os.environ["DMP_KUBECONFIG"]) as backend:
        SEEN["raycluster"] = backend.custom.get_namespaced_custom_object(
            "ray.io", "v1", cluster.handle.namespace, "rayclusters", cluster.handle.name)
    invocation = yield from pipes_ray.run_workload(context=context, ray_cluster=ray_cluster, extras={"tasks": 2},
                                                   entrypoint="python -m discord_ml_platform.jobs.smoke")
    yield invocation.get_materialize_result()


def run_smoke(shape: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    """Materialize :func:`smoke_and_inspect` with the code location's resources; its metadata and RayCluster."""
    SEEN.clear()
    defs = build_definitions()
    resources = {"ray_cluster": defs.resources["ray_cluster"], "pipes_ray": PipesRayJobClient()}
    with dg.instance_for_test() as instance:
        result = dg.materialize([smoke_and_inspect], resources=resources, instance=instance, raise_on_error=False,
                                run_config={"resources": {"ray_cluster": {"config": shape}}})
        logs = [r.user_message for r in instance.all_logs(result.run_id)]
    assert result.success, logs[-30:]
    [mat] = result.asset_materializations_for_node("smoke_and_inspect")
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}, SEEN["raycluster"]


def launchpad_pools() -> list[str]:
    schema = build_definitions().resolve_job_def("ad_relevance_training").run_config_schema.config_type
    cluster = schema.fields["resources"].config_type.fields["ray_cluster"].config_type.fields["config"]
    return [v.config_value for v in cluster.config_type.fields["gpu_pool"].config_type.enum_values]


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_a_pool_added_by_the_platform_config_is_offered_rendered_and_priced(
        platform_env, monkeypatch: pytest.MonkeyPatch, tmp_path: Path, sandbox) -> None:
    config = tmp_path / "platform.yaml"
    config.write_text(B200)
    monkeypatch.setenv("DMP_PLATFORM_CONFIG", str(config))
    assert "b200-180gb" in launchpad_pools()

    meta, raycluster = run_smoke({"gpu_pool": "b200-180gb", "workers": 1, "head_memory": "1Gi"})

    [group] = raycluster["spec"]["workerGroupSpecs"]
    pod = group["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-B200"}
    assert pod["containers"][0]["image"] == "registry.example.com/ml/ray:2.60.0-b200"
    assert pod["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] in (1, "1")
    assert raycluster["metadata"]["labels"]["mlplatform.discord.com/gpu-type"] == "b200-180gb"
    assert meta["sum_of_squares"] == 1 and meta["gpu_type"] == "b200-180gb" and meta["gpu_count"] == 1
    assert meta["image"] == "registry.example.com/ml/ray:2.60.0-b200"
    assert meta["hourly_price_usd"] == 12.5  # 1 GPU at the configured price, not a built-in one
    assert meta["estimated_cost_usd"] == pytest.approx(12.5 * meta["cluster_wall_seconds"] / 3600, rel=0.05)
    assert rayclusters(sandbox) == [] and ray_processes(sandbox) == []


@pytest.mark.ray
@pytest.mark.timeout(300)
def test_the_helm_environment_gives_runs_the_configured_image_within_the_production_policy(
        platform_env, monkeypatch: pytest.MonkeyPatch, sandbox) -> None:
    helm_env = env_of(user_deployment()["env"])
    for key, value in helm_env.items():
        if key.startswith("DMP_") and key not in ("DMP_BACKEND",):
            monkeypatch.setenv(key, str(value))
    monkeypatch.setenv("DMP_PLATFORM_CONFIG", str(PLATFORM_CONFIG))  # mounted at /etc/dmp in the pod
    defs = build_definitions()
    resource = defs.resources["ray_cluster"]
    assert resource.check_run_config({}) == []  # the production policy accepts the run's cluster
    gpu = resource.spec_for_run("run-1", gpu_type="a10g")
    assert gpu.image == helm_env["DMP_RAY_GPU_IMAGE"]

    meta, raycluster = run_smoke({"workers": 0, "head_memory": "1Gi"})

    head = raycluster["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["containers"][0]["image"] == helm_env["DMP_RAY_IMAGE"] == meta["image"]
    assert head["serviceAccountName"] == "ray-workload"
    assert raycluster["metadata"]["namespace"] == "ray"

    # Without the image variables, the stock Ray image is what the production policy rejects.
    monkeypatch.delenv("DMP_RAY_IMAGE")
    problems = build_definitions().resources["ray_cluster"].check_run_config({})
    assert [path for path, _ in problems] == ["resources.ray_cluster.config.image"], problems
    assert "registry.example.com/ml-platform/dmp-ray:" in problems[0][1]
