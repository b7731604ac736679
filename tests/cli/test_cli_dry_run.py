"""``dmp cluster create --dry-run``: the manifests parse, pass KubeRay's CRD schema, contact nothing."""

from __future__ import annotations

import json
import re
import socket
import sys
from pathlib import Path

import pytest
import yaml
from cli_helpers import describe, run_dmp

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spec"))
from kuberay_crd_schema import manifest_problems

pytestmark = pytest.mark.timeout(60)

CASES = {
    "cpu": ["cpu-exp", "--gpu-type", "cpu", "--workers", "2", "--memory", "4Gi", "--cpus", "2"],
    "h100": ["h100-exp", "--gpu-type", "h100-80gb", "--workers", "4", "--gpus-per-worker", "8", "--ttl", "4h"],
}


def _unreachable_kubeconfig(path: Path) -> Path:
    with socket.socket() as sock:  # a port that was free a moment ago: nothing listens there
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path.write_text(yaml.safe_dump({
        "apiVersion": "v1", "kind": "Config", "current-context": "gone",
        "clusters": [{"name": "gone", "cluster": {"server": f"http://127.0.0.1:{port}"}}],
        "contexts": [{"name": "gone", "context": {"cluster": "gone", "user": "u"}}],
        "users": [{"name": "u", "user": {"token": "t"}}],
    }))
    return path


def _check(manifest: dict, case: str, name: str) -> None:
    assert manifest["kind"] == "RayCluster"
    assert manifest["metadata"]["name"] == name
    assert manifest_problems(manifest) == []
    labels = manifest["metadata"]["labels"]
    assert labels["mlplatform.discord.com/owner"] == "cli-tests"
    workers = manifest["spec"]["workerGroupSpecs"][0]
    container = workers["template"]["spec"]["containers"][0]
    if case == "h100":
        assert labels["mlplatform.discord.com/gpu-type"] == "h100-80gb"
        assert workers["replicas"] == 4
        assert str(container["resources"]["limits"]["nvidia.com/gpu"]) == "8"
        assert workers["template"]["spec"]["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-H100-80GB-HBM3"}
    else:
        assert container["resources"]["limits"]["memory"] == "4Gi"
        assert "nvidia.com/gpu" not in container["resources"]["limits"]


@pytest.mark.parametrize("case", CASES)
def test_dry_run_yaml_is_a_valid_raycluster(env, cli_root, case):
    result = run_dmp("cluster", "create", *CASES[case], "--dry-run", "-o", "yaml", env=env)
    assert result.returncode == 0, describe(result)
    documents = [d for d in yaml.safe_load_all(result.stdout) if d]
    assert len(documents) == 1
    _check(documents[0], case, CASES[case][0])
    assert not (cli_root / "state").exists()


@pytest.mark.parametrize("case", CASES)
def test_dry_run_json_is_a_valid_raycluster(env, case):
    result = run_dmp("cluster", "create", *CASES[case], "--dry-run", "-o", "json", env=env)
    assert result.returncode == 0, describe(result)
    _check(json.loads(result.stdout), case, CASES[case][0])


def test_dry_run_contacts_no_backend(env, cli_root):
    env = {**env, "DMP_BACKEND": "kuberay", "KUBECONFIG": str(_unreachable_kubeconfig(cli_root / "kubeconfig"))}
    result = run_dmp("cluster", "create", *CASES["h100"], "--dry-run", "-o", "yaml", env=env, timeout=30)
    assert result.returncode == 0, describe(result)
    assert "kind: RayCluster" in result.stdout


def test_generated_name_is_owner_gpu_random_and_dns_safe(env):
    result = run_dmp("cluster", "create", "--gpu-type", "h100-80gb", "--workers", "1", "--dry-run", "-o", "json", env=env)
    assert result.returncode == 0, describe(result)
    assert re.fullmatch(r"cli-tests-h100-80gb-[0-9a-f]{4}", json.loads(result.stdout)["metadata"]["name"])

    odd = {**env, "DMP_OWNER": "Ada Lovelace <ADA@discord.com>"}
    result = run_dmp("cluster", "create", "--dry-run", "-o", "json", env=odd)
    assert result.returncode == 0, describe(result)
    name = json.loads(result.stdout)["metadata"]["name"]
    assert re.fullmatch(r"ada-lovelace-ada-cpu-[0-9a-f]{4}", name), name
