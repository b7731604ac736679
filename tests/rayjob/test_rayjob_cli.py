"""``dmp job submit --rayjob``: the RayJob it would create, and one created on the sandbox."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from .conftest import wait_until_clean


def dmp(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": os.getcwd(), "NO_COLOR": "1", "DMP_BACKEND": "kuberay"}
    return subprocess.run([sys.executable, "-m", "discord_ml_platform.cli.main", *args], env=env, text=True,
                          capture_output=True, timeout=timeout, check=False)


@pytest.mark.timeout(90)
def test_dry_run_prints_a_rayjob_that_validates_against_the_crd() -> None:
    from kuberay_crd_schema import manifest_problems

    result = dmp("job", "submit", "--rayjob", "-c", "cli-rj", "--dry-run", "--ttl-seconds", "5",
                 "--deadline-seconds", "120", "-e", "A=1", "--", "python", "-c", "print(1)")
    assert result.returncode == 0, result.stderr
    manifest = yaml.safe_load(result.stdout)
    assert manifest["kind"] == "RayJob" and manifest_problems(manifest) == []
    spec = manifest["spec"]
    assert spec["entrypoint"] == "python -c 'print(1)'" and spec["jobId"].startswith("cli-rj-")
    assert spec["ttlSecondsAfterFinished"] == 5 and spec["activeDeadlineSeconds"] == 120
    assert spec["shutdownAfterJobFinishes"] is True


@pytest.mark.timeout(90)
def test_dry_run_takes_the_hardware_flags_of_cluster_create() -> None:
    """Issue 16: ``--rayjob`` could not choose GPU type, workers, GPUs or memory; they went into the command."""
    import json

    from kuberay_crd_schema import manifest_problems

    result = dmp("job", "submit", "--rayjob", "-c", "cli-rj-hw", "--gpu-type", "l4", "--workers", "2",
                 "--gpus-per-worker", "1", "--memory", "24Gi", "--cpus", "6", "--head-memory", "8Gi",
                 "--image", "registry.example.com/ml/ray:l4-1", "--label", "cost-center=ads",
                 "--dry-run", "-o", "json", "--", "python", "train.py", "--epochs", "3")
    assert result.returncode == 0, result.stderr
    manifest = json.loads(result.stdout)  # -o json is JSON (it printed YAML before)
    assert manifest["kind"] == "RayJob" and manifest_problems(manifest) == []
    assert manifest["spec"]["entrypoint"] == "python train.py --epochs 3"  # no flag leaked into the command
    cluster = manifest["spec"]["rayClusterSpec"]
    [group] = cluster["workerGroupSpecs"]
    assert group["replicas"] == 2
    container = group["template"]["spec"]["containers"][0]
    assert container["image"] == "registry.example.com/ml/ray:l4-1"
    limits = container["resources"]["limits"]
    assert (str(limits["nvidia.com/gpu"]), limits["memory"], str(limits["cpu"])) == ("1", "24Gi", "6")
    head = cluster["headGroupSpec"]["template"]["spec"]["containers"][0]
    assert head["resources"]["limits"]["memory"] == "8Gi"
    labels = manifest["metadata"]["labels"]
    assert labels["mlplatform.discord.com/gpu-type"] == "l4" and labels["cost-center"] == "ads"


@pytest.mark.timeout(90)
@pytest.mark.parametrize("output", ["json", "yaml", "table"])
def test_dry_run_honours_the_output_format(output: str) -> None:
    import json

    result = dmp("job", "submit", "--rayjob", "-c", "cli-rj-o", "--dry-run", "-o", output, "--", "true")
    assert result.returncode == 0, result.stderr
    if output == "json":
        assert json.loads(result.stdout)["kind"] == "RayJob"
    else:
        assert not result.stdout.lstrip().startswith("{") and yaml.safe_load(result.stdout)["kind"] == "RayJob"


@pytest.mark.timeout(90)
def test_unknown_options_and_a_command_without_dashes_are_refused() -> None:
    """Issue 16: ``--gpu-type l4 --workers 2`` before ``--`` became part of the RayJob's entrypoint."""
    for args, named in [
        (("--rayjob", "--gpu-typ", "l4"), "--gpu-typ"),
        (("--rayjob", "--bogus"), "--bogus"),
        (("--gpu-type", "l4", "--workers", "2"), "--gpu-type, --workers, --dry-run only apply with --rayjob"),
    ]:
        result = dmp("job", "submit", "-c", "cli-rj-bad", *args, "--dry-run", "--", "python", "train.py")
        assert result.returncode == 2 and named in result.stderr, result.stderr
        assert "Traceback" not in result.stderr and result.stdout == ""
    result = dmp("job", "submit", "--rayjob", "-c", "cli-rj-bad", "--dry-run", "python", "train.py")
    assert result.returncode == 2 and "unexpected argument 'python' before --" in result.stderr, result.stderr


@pytest.mark.ray
@pytest.mark.timeout(360)
def test_submit_rayjob_streams_the_logs_and_exits_with_the_outcome(kubeconfig: str, sandbox) -> None:
    result = dmp("job", "submit", "--rayjob", "-c", "cli-rj", "--kubeconfig", kubeconfig, "--ttl-seconds", "10",
                 "--", "python", "-c", "print('hello from a rayjob')", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello from a rayjob" in result.stdout
    assert "Complete" in result.stderr
    assert wait_until_clean(sandbox, 60)
