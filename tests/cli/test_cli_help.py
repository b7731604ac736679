"""``dmp --help`` and every group's and command's help: exit 0, an example, a fast start."""

from __future__ import annotations

import subprocess
import sys
import time

import pytest
from cli_helpers import describe, run_dmp

pytestmark = pytest.mark.timeout(120)

GROUPS = ["cluster", "job", "run", "sandbox"]
COMMANDS = [
    ["cluster", "create"], ["cluster", "list"], ["cluster", "get"], ["cluster", "delete"], ["cluster", "sweep"],
    ["job", "submit"], ["job", "logs"], ["job", "status"], ["job", "stop"], ["job", "list"],
    ["gpus"], ["run", "ad-relevance"], ["sandbox", "up"], ["sandbox", "down"], ["sandbox", "status"],
]
HEAVY_MODULES = ("ray", "dagster", "kubernetes", "torch", "pandas", "pyarrow", "pydantic", "pipelines", "resources")


def test_top_level_help_starts_fast(env):
    run_dmp("--help", env=env)  # warm the file cache: the bound is about imports, not a cold disk
    started = time.perf_counter()
    result = run_dmp("--help", env=env)
    elapsed = time.perf_counter() - started
    print(f"dmp --help took {elapsed:.2f}s wall")
    assert result.returncode == 0, describe(result)
    assert "cluster" in result.stdout and "Examples" in result.stdout
    assert elapsed < 2.5, f"dmp --help took {elapsed:.2f}s (budget 1s, bound 2.5s on a loaded machine)"


def test_importing_the_cli_pulls_in_no_heavy_module(env):
    code = "import sys, discord_ml_platform.cli.main; print('\\n'.join(sorted(sys.modules)))"
    result = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    loaded = set(result.stdout.split())
    assert not [m for m in HEAVY_MODULES if m in loaded]


@pytest.mark.parametrize("group", GROUPS)
def test_group_help(env, group):
    result = run_dmp(group, "--help", env=env)
    assert result.returncode == 0, describe(result)
    assert "Usage" in result.stdout


@pytest.mark.parametrize("command", COMMANDS, ids=["-".join(c) for c in COMMANDS])
def test_command_help_has_an_example(env, command):
    result = run_dmp(*command, "--help", env=env)
    assert result.returncode == 0, describe(result)
    assert "Example" in result.stdout
    assert f"dmp {' '.join(command)}" in result.stdout


def test_shell_completion_is_offered(env):
    result = run_dmp("--help", env=env)
    assert "--install-completion" in result.stdout


def test_no_arguments_prints_help(env):
    result = run_dmp(env=env)
    assert "Usage" in result.stdout + result.stderr


def test_gpu_type_completion_offers_catalog_names(env):
    completion_env = {**env, "_DMP_COMPLETE": "complete_bash", "COMP_WORDS": "dmp cluster create --gpu-type h", "COMP_CWORD": "4"}
    result = subprocess.run([sys.executable, "-m", "discord_ml_platform.cli.main"], env=completion_env,
                            capture_output=True, text=True, timeout=60)
    assert result.stdout.split() == ["h100-80gb", "h200-141gb"], result.stdout + result.stderr
