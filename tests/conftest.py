"""Test-session environment: every Ray, Dagster and data path of the session under one temp root.

The root is short on purpose (Ray puts Unix sockets below it), and after each test no process
whose command line names it may be left running, except the session's shared cluster.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SESSION_ROOT = Path(tempfile.mkdtemp(prefix="dmpt-", dir="/tmp" if os.path.isdir("/tmp") else None))
os.environ.update(
    {
        "DMP_LOCAL_STATE_DIR": str(SESSION_ROOT / "state"),
        "DMP_RAY_TEMP_ROOT": str(SESSION_ROOT / "r"),
        "DMP_DATA_ROOT": str(SESSION_ROOT / "data"),
        "RAY_AUTH_MODE": "disabled",
        "RAY_USAGE_STATS_ENABLED": "0",
        "DAGSTER_HOME": str(SESSION_ROOT / "dagster_home"),
    }
)
for sub in ("state", "r", "data", "dagster_home"):
    (SESSION_ROOT / sub).mkdir(parents=True, exist_ok=True)


SHARED_CLUSTER = "shared-test-cluster"
SHARED_TEMP_DIRS: list[str] = []  # processes naming these belong to the shared cluster


def leaked_processes(marker: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """Command lines of running processes that name ``marker`` but none of ``allowed``."""
    from discord_ml_platform.backends.processes import processes_naming

    found = []
    for proc in processes_naming(marker):
        try:
            cmdline = " ".join(proc.cmdline())
            if proc.status() != "zombie" and not any(a in cmdline for a in allowed):
                found.append(cmdline[:160])
        except Exception:
            continue
    return found


@pytest.fixture(scope="session")
def session_root() -> Path:
    """The session's temp root."""
    return SESSION_ROOT


@pytest.fixture(scope="session")
def shared_cluster():
    """One local Ray cluster (head only) shared by tests that are not about cluster lifecycle."""
    from discord_ml_platform.backends.local import LocalBackend
    from discord_ml_platform.spec import ClusterSpec
    from resources.ray_cluster import RunningCluster

    backend = LocalBackend()
    spec = ClusterSpec(name=SHARED_CLUSTER, head_cpus=2, head_memory="1Gi", owner="tests")
    handle = backend.create(spec)
    SHARED_TEMP_DIRS.append(backend.record(handle).temp_dir)
    try:
        import time

        requested = time.time()
        endpoints = backend.wait_ready(handle, 180)
        yield RunningCluster(spec, handle, endpoints, "local", "disabled", requested, time.time())
    finally:
        backend.delete(handle)


@pytest.fixture(autouse=True)
def no_leaked_ray_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a Ray process of ours running (the shared cluster excepted)."""
    yield
    leaks = leaked_processes(str(SESSION_ROOT / "r"), allowed=tuple(SHARED_TEMP_DIRS))
    assert not leaks, f"{request.node.name} left Ray processes running: {leaks}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop anything still registered and remove the session root."""
    from discord_ml_platform.backends.local import LocalBackend

    backend = LocalBackend()
    for info in backend.list():
        backend.delete(info.handle)
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)
