"""Fixtures of the CLI tests: a private temp root per test, and per-backend targets for lifecycles."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_helpers import CliTarget, cli_env, describe, processes_naming, run_dmp


def _short_root() -> Path:
    # Ray puts Unix sockets below the temp root: keep it short (limit 107 bytes).
    return Path(tempfile.mkdtemp(prefix="dmpc-", dir="/tmp"))


@pytest.fixture
def cli_root() -> Iterator[Path]:
    """A fresh, empty root for one test's CLI state."""
    root = _short_root()
    yield root
    shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
def env(cli_root: Path) -> dict[str, str]:
    """Environment for a ``dmp`` subprocess with all state under ``cli_root``."""
    return cli_env(cli_root)


def _local_target() -> Iterator[CliTarget]:
    from discord_ml_platform.backends.local import LocalBackend

    root = _short_root()
    target = CliTarget("local", root, cli_env(root, DMP_BACKEND="local"))
    try:
        yield target
    finally:
        backend = LocalBackend(state_dir=root / "state", temp_root=root / "r")
        for info in backend.list():
            backend.delete(info.handle)
        leaks = processes_naming(str(root / "r"))
        shutil.rmtree(root, ignore_errors=True)
        assert not leaks, f"CLI tests left Ray processes running: {leaks}"


def _kuberay_target() -> Iterator[CliTarget]:
    import importlib.util

    if importlib.util.find_spec("discord_ml_platform.sandbox.runner") is None:
        pytest.skip("the sandbox with its KubeRay operator is not part of this checkout")
    root = _short_root()
    env = cli_env(root, DMP_BACKEND="kuberay")
    up = run_dmp("sandbox", "up", "--fresh", env=env, timeout=90)
    try:
        assert up.returncode == 0, up.stderr
        env["KUBECONFIG"] = up.stdout.strip().removeprefix("export KUBECONFIG=")
        target = CliTarget("kuberay", root, env)
        yield target
        for row in target.clusters():
            target.run("cluster", "delete", row["name"], "-n", row["namespace"], "-y", timeout=90)
    finally:
        run_dmp("sandbox", "down", "--purge", env=env, timeout=90)  # also stops the operator's Ray clusters
        leaks = processes_naming(str(root / "r"))
        shutil.rmtree(root, ignore_errors=True)
        assert not leaks, f"CLI tests left Ray processes running: {leaks}"


@pytest.fixture(scope="module")
def kuberay_target() -> Iterator[CliTarget]:
    """The kuberay backend through a kubeconfig that points at a fresh ``dmp sandbox up --api-only``
    (no operator: clusters stay ``pending``), shared by one test module."""
    root = _short_root()
    env = cli_env(root)
    up = run_dmp("sandbox", "up", "--fresh", "--api-only", env=env, timeout=60)
    try:
        assert up.returncode == 0, describe(up)
        env["KUBECONFIG"] = up.stdout.strip().removeprefix("export KUBECONFIG=")
        yield CliTarget("kuberay", root, env)
    finally:
        run_dmp("sandbox", "down", "--purge", env=env, timeout=60)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module", params=["local", "kuberay"])
def cli_target(request: pytest.FixtureRequest) -> Iterator[CliTarget]:
    """A backend the lifecycle tests drive through the CLI, shared by one test module.

    ``kuberay`` runs against ``dmp sandbox up`` (API server plus the local KubeRay operator).
    """
    if request.param == "local":
        yield from _local_target()
    else:
        yield from _kuberay_target()
