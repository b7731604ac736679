"""``dmp gpus``: the catalog in effect, including the platform team's overrides."""

from __future__ import annotations

import json

import pytest
from cli_helpers import describe, run_dmp

pytestmark = pytest.mark.timeout(60)

BUILTIN = ["cpu", "t4", "l4", "a10g", "a100-40gb", "a100-80gb", "h100-80gb", "h200-141gb"]


def test_gpus_json_lists_the_catalog(env):
    result = run_dmp("gpus", "-o", "json", env=env)
    assert result.returncode == 0, describe(result)
    rows = json.loads(result.stdout)
    assert [r["name"] for r in rows] == BUILTIN
    h100 = next(r for r in rows if r["name"] == "h100-80gb")
    assert h100["gpu_memory_gib"] == 80 and h100["max_gpus_per_node"] == 8
    assert h100["hourly_price_usd"] == pytest.approx(6.98)
    assert h100["node_selector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    assert {"cpus_per_gpu", "memory_per_gpu"} <= set(h100)


def test_gpus_table_has_the_columns(env):
    result = run_dmp("gpus", env=env)
    assert result.returncode == 0, describe(result)
    header = result.stdout.splitlines()[0]
    for column in ("NAME", "GPU MEMORY", "CPUS/GPU", "MEMORY/GPU", "MAX GPUS/NODE", "$/GPU-HOUR", "NODE SELECTOR"):
        assert column in header
    assert "h200-141gb" in result.stdout


def test_platform_config_adds_and_overrides_types(env, cli_root):
    config = cli_root / "platform.yaml"
    config.write_text(
        "catalog:\n"
        "  types:\n"
        "    h100-80gb: {hourly_price_usd: 4.10}\n"
        "    b200-180gb:\n"
        "      node_selector: {nvidia.com/gpu.product: NVIDIA-B200}\n"
        "      tolerations: [{key: nvidia.com/gpu}]\n"
        "      cpus_per_gpu: 28\n"
        "      memory_per_gpu: 250Gi\n"
        "      gpu_memory_gib: 180\n"
        "      hourly_price_usd: 12.0\n"
    )
    env = {**env, "DMP_PLATFORM_CONFIG": str(config)}
    rows = {r["name"]: r for r in json.loads(run_dmp("gpus", "-o", "json", env=env).stdout)}
    assert set(rows) == {*BUILTIN, "b200-180gb"}
    assert rows["b200-180gb"]["gpu_memory_gib"] == 180
    assert rows["h100-80gb"]["hourly_price_usd"] == pytest.approx(4.10)
    # The new type is usable by `cluster create` under the same config.
    result = run_dmp("cluster", "create", "--gpu-type", "b200-180gb", "--dry-run", "-o", "json", env=env)
    assert result.returncode == 0, describe(result)
    assert json.loads(result.stdout)["metadata"]["labels"]["mlplatform.discord.com/gpu-type"] == "b200-180gb"
