"""Every ``dmp`` command uses the platform configuration of the core: catalog, prices, images, policy
and ``DMP_*`` settings, with a bad value reported as a usage error that names it."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml
from cli_helpers import PROJECT_ROOT, CliTarget, describe, run_dmp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spec"))
from kuberay_crd_schema import manifest_problems

pytestmark = pytest.mark.timeout(60)

B200_IMAGE = "registry.example.com/ml/ray:b200"
B200_CONFIG = f"""
catalog:
  types:
    b200-180gb:
      node_selector: {{nvidia.com/gpu.product: NVIDIA-B200}}
      tolerations: [{{key: nvidia.com/gpu}}]
      cpus_per_gpu: 28
      memory_per_gpu: 250Gi
      gpu_memory_gib: 180
      hourly_price_usd: 12.5
      image: {B200_IMAGE}
"""
PROD_CONFIG = PROJECT_ROOT / "deploy" / "platform-config.yaml"
PROD_IMAGE = "registry.example.com/ml-platform/dmp-ray:0.1.0-cpu"


@pytest.fixture
def b200_env(env: dict[str, str], cli_root: Path) -> dict[str, str]:
    """The test's environment with a platform config that adds a priced B200 pool with its own image."""
    config = cli_root / "platform.yaml"
    config.write_text(B200_CONFIG)
    return {**env, "DMP_PLATFORM_CONFIG": str(config)}


def _containers(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """Every Ray container of a RayCluster manifest (head first)."""
    spec = manifest["spec"]
    groups = [spec["headGroupSpec"], *spec.get("workerGroupSpecs", [])]
    return [c for g in groups for c in g["template"]["spec"]["containers"]]


def _dry_run(env: dict[str, str], *args: str) -> dict[str, Any]:
    result = run_dmp("cluster", "create", *args, "--dry-run", "-o", "json", env=env)
    assert result.returncode == 0, describe(result)
    manifest = json.loads(result.stdout)
    assert manifest_problems(manifest) == []
    return manifest


def test_a_configured_pool_shows_in_gpus_with_its_price_and_image(b200_env):
    rows = {r["name"]: r for r in json.loads(run_dmp("gpus", "-o", "json", env=b200_env).stdout)}
    b200 = rows["b200-180gb"]
    assert b200["hourly_price_usd"] == pytest.approx(12.5) and b200["gpu_memory_gib"] == 180
    assert b200["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-B200"}
    assert b200["tolerations"] == [{"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"}]
    assert b200["image"] == B200_IMAGE
    assert rows["h100-80gb"]["image"] == "rayproject/ray:2.60.0-py311-gpu"  # a pool without its own: the platform's

    table = run_dmp("gpus", env=b200_env)
    assert table.returncode == 0, describe(table)
    line = next(line for line in table.stdout.splitlines() if line.startswith("b200-180gb"))
    assert "180 GiB" in line and "$12.50" in line and "nvidia.com/gpu.product=NVIDIA-B200" in line


def test_dry_run_renders_the_pools_image_and_node_selector(b200_env):
    manifest = _dry_run(b200_env, "x", "--gpu-type", "b200-180gb", "--workers", "2")
    assert {c["image"] for c in _containers(manifest)} == {B200_IMAGE}
    workers = manifest["spec"]["workerGroupSpecs"][0]
    assert workers["replicas"] == 2
    assert workers["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-B200"}
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in workers["template"]["spec"][
        "tolerations"
    ]
    container = workers["template"]["spec"]["containers"][0]
    assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "1"
    assert manifest["metadata"]["labels"]["mlplatform.discord.com/gpu-type"] == "b200-180gb"


def test_ray_image_variables_set_the_images_of_cpu_and_gpu_pools(env):
    images = {
        "DMP_RAY_IMAGE": "registry.example.com/ml/ray:cpu-7",
        "DMP_RAY_GPU_IMAGE": "registry.example.com/ml/ray:gpu-7",
    }
    env = {**env, **images}
    cpu = _dry_run(env, "c", "--gpu-type", "cpu", "--workers", "1")
    assert {c["image"] for c in _containers(cpu)} == {images["DMP_RAY_IMAGE"]}
    gpu = _dry_run(env, "g", "--gpu-type", "h100-80gb", "--workers", "1")
    assert {c["image"] for c in _containers(gpu)} == {images["DMP_RAY_GPU_IMAGE"]}
    # --image still wins over the platform's.
    own = _dry_run(env, "o", "--image", "registry.example.com/ml/mine:1")
    assert {c["image"] for c in _containers(own)} == {"registry.example.com/ml/mine:1"}


def test_the_production_policy_passes_with_the_platform_image_only(env):
    prod = {**env, "DMP_PLATFORM_CONFIG": str(PROD_CONFIG)}
    manifest = _dry_run({**prod, "DMP_RAY_IMAGE": PROD_IMAGE}, "prod-exp", "--workers", "1")
    assert {c["image"] for c in _containers(manifest)} == {PROD_IMAGE}
    head = manifest["spec"]["headGroupSpec"]["template"]["spec"]
    assert head["serviceAccountName"] == "ray-workload"

    refused = run_dmp("cluster", "create", "prod-exp", "--workers", "1", "--dry-run", "-o", "json", env=prod)
    assert refused.returncode == 2, describe(refused)
    assert refused.stderr.startswith("error: --image: "), describe(refused)
    assert "registry.example.com/ml-platform/dmp-ray:" in refused.stderr and "policy" in refused.stderr
    assert refused.stdout == "" and "Traceback" not in refused.stderr


@pytest.mark.parametrize(
    ("variable", "value", "command"),
    [
        ("DMP_BACKEND", "cloud", ["cluster", "list"]),
        ("DMP_BACKEND", "cloud", ["job", "submit", "-c", "x", "--", "true"]),
        ("DMP_RAY_AUTH_MODE", "tls", ["cluster", "create", "--dry-run"]),
        ("DMP_RAY_AUTH_MODE", "tls", ["xray", "--port", "1"]),
        ("DMP_PLATFORM_CONFIG", "{root}/absent.yaml", ["gpus"]),
        ("DMP_PLATFORM_CONFIG", "{root}", ["cluster", "sweep", "--dry-run"]),
        ("DMP_RAY_IMAGE", "not an image", ["cluster", "create", "--dry-run"]),
    ],
)
def test_an_invalid_platform_setting_exits_2_naming_the_variable(env, cli_root, variable, value, command):
    result = run_dmp(*command, env={**env, variable: value.format(root=cli_root)})
    assert result.returncode == 2, describe(result)
    assert result.stderr.startswith(f"error: {variable}"), describe(result)
    assert "hint:" in result.stderr and "Traceback" not in result.stderr
    assert result.stdout == ""
    assert not (cli_root / "state").exists()


def test_rayjob_dry_run_renders_the_platforms_image_and_namespace(env):
    env = {**env, "DMP_RAY_IMAGE": "registry.example.com/ml/ray:cpu-7", "DMP_NAMESPACE": "ml-research"}
    result = run_dmp(
        "job", "submit", "--rayjob", "-c", "rj-img", "--dry-run", "--", "python", "-c", "print(1)", env=env
    )
    assert result.returncode == 0, describe(result)
    manifest = yaml.safe_load(result.stdout)
    assert manifest["kind"] == "RayJob" and manifest_problems(manifest) == []
    assert manifest["metadata"]["namespace"] == "ml-research"
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    assert {c["image"] for c in head["containers"]} == {"registry.example.com/ml/ray:cpu-7"}
    assert manifest["metadata"]["labels"]["mlplatform.discord.com/owner"] == "cli-tests"


def test_rayjob_spec_errors_name_the_flag_and_follow_the_policy(env):
    bad = run_dmp("job", "submit", "--rayjob", "-c", "Not_A_Name", "--dry-run", "--", "true", env=env)
    assert bad.returncode == 2 and "--cluster: name 'Not_A_Name'" in bad.stderr, describe(bad)
    prod = {**env, "DMP_PLATFORM_CONFIG": str(PROD_CONFIG)}
    refused = run_dmp("job", "submit", "--rayjob", "-c", "rj", "--dry-run", "--", "true", env=prod)
    assert refused.returncode == 2 and "--image:" in refused.stderr, describe(refused)
    ttl = run_dmp("job", "submit", "--rayjob", "-c", "rj", "--dry-run", "--ttl-seconds", "90000", "--", "true", env=env)
    assert ttl.returncode == 2 and "--ttl-seconds: must be <= 86400" in ttl.stderr, describe(ttl)


def test_rayjob_needs_a_backend_that_runs_rayjobs(env):
    result = run_dmp("job", "submit", "--rayjob", "-c", "rj", "--backend", "local", "--", "true", env=env)
    assert result.returncode == 2, describe(result)
    assert "--rayjob needs a backend" in result.stderr and "backend local" in result.stderr
    assert "--backend kuberay" in result.stderr and "Traceback" not in result.stderr


def test_dry_run_of_a_job_without_rayjob_is_refused(env):
    result = run_dmp("job", "submit", "-c", "x", "--dry-run", "--", "true", env=env)
    assert result.returncode == 2 and "--dry-run only applies with --rayjob" in result.stderr, describe(result)


@pytest.fixture(scope="module")
def sandbox_target(kuberay_target: CliTarget) -> CliTarget:
    """``kuberay_target`` (clusters stay pending: nothing runs) with the B200 platform config."""
    config = kuberay_target.root / "platform.yaml"
    config.write_text(B200_CONFIG)
    return CliTarget("kuberay", kuberay_target.root, {**kuberay_target.env, "DMP_PLATFORM_CONFIG": str(config)})


@pytest.mark.timeout(120)
def test_a_real_create_and_the_list_report_the_catalog_price(sandbox_target):
    created = sandbox_target.json(
        "cluster", "create", "b200-exp", "--gpu-type", "b200-180gb", "--workers", "2", "--gpus-per-worker", "4"
    )
    assert created["backend"] == "kuberay" and created["gpu_type"] == "b200-180gb"
    assert created["hourly_price_usd"] == pytest.approx(12.5 * 8)
    row = next(r for r in sandbox_target.clusters() if r["name"] == "b200-exp")
    assert row["total_gpus"] == 8 and row["hourly_price_usd"] == pytest.approx(12.5 * 8)
    table = sandbox_target.ok("cluster", "list").stdout
    assert "$100.00" in next(line for line in table.splitlines() if line.startswith("b200-exp"))
    sandbox_target.ok("cluster", "delete", "b200-exp", "-y")
    assert sandbox_target.clusters() == []


def test_an_image_that_is_no_reference_is_refused_when_the_platform_loads(env, cli_root):
    bad = "registry.example.com/ML/ray:7"  # no spaces, but a repository path is lowercase
    from_env = run_dmp("gpus", env={**env, "DMP_RAY_IMAGE": bad})
    assert from_env.returncode == 2, describe(from_env)
    assert from_env.stderr.startswith(f"error: DMP_RAY_IMAGE: image '{bad}' must be an image reference"), describe(from_env)
    config = cli_root / "platform.yaml"
    config.write_text(B200_CONFIG.replace(B200_IMAGE, bad))
    from_file = run_dmp("gpus", env={**env, "DMP_PLATFORM_CONFIG": str(config)})
    assert from_file.returncode == 2, describe(from_file)
    assert from_file.stderr.startswith(f"error: DMP_PLATFORM_CONFIG={config}: catalog.types.b200-180gb.image: image "), \
        describe(from_file)
    assert "Traceback" not in from_env.stderr + from_file.stderr and from_env.stdout == from_file.stdout == ""
