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


@pytest.mark.ray
@pytest.mark.timeout(360)
def test_submit_rayjob_streams_the_logs_and_exits_with_the_outcome(kubeconfig: str, sandbox) -> None:
    result = dmp("job", "submit", "--rayjob", "-c", "cli-rj", "--kubeconfig", kubeconfig, "--ttl-seconds", "10",
                 "--", "python", "-c", "print('hello from a rayjob')", timeout=300)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "hello from a rayjob" in result.stdout
    assert "Complete" in result.stderr
    assert wait_until_clean(sandbox, 60)
