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
# The shared cluster's record lives apart from the default state dir, so tests that expect
# ``LocalBackend().list()`` to hold only their own clusters never see it.
SHARED_STATE_DIR = SESSION_ROOT / "shared-state"
SHARED_TEMP_DIRS: list[str] = []  # processes naming these belong to the shared cluster


def leaked_processes(marker: str, allowed: tuple[str, ...] = ()) -> list[str]:
    """Command lines of running processes that name ``marker`` but none of ``allowed``."""
    from discord_ml_platform.backends.processes import live_command_lines

    return live_command_lines(marker, exclude=allowed)


@pytest.fixture(scope="session")
def session_root() -> Path:
    """The session's temp root."""
    return SESSION_ROOT


class SharedCluster:
    """One local Ray cluster (head only) for the session, replaced if its head has died.

    A head can die on an overloaded machine (``ray start --block`` stops every process when one
    of them exits); one such moment must not fail every later test that merely needs a cluster.
    """

    def __init__(self) -> None:
        from discord_ml_platform.backends.local import LocalBackend

        self.backend = LocalBackend(state_dir=SHARED_STATE_DIR)
        self.current = None
        self.replacements = 0

    def get(self):
        """The running shared cluster, (re)created when there is none or it stopped answering."""
        import time
        import urllib.request

        from discord_ml_platform.spec import ClusterSpec
        from resources.ray_cluster import RunningCluster

        if self.current is not None:
            try:
                with urllib.request.urlopen(f"{self.current.endpoints.dashboard_url}/api/version", timeout=5):
                    return self.current
            except OSError:
                self.replacements += 1
                print(f"shared test cluster stopped answering; replacing it ({self.replacements})")
                self.close()
        spec = ClusterSpec(name=SHARED_CLUSTER, head_cpus=2, head_memory="1Gi", owner="tests")
        requested = time.time()
        handle = self.backend.create(spec)
        SHARED_TEMP_DIRS.append(self.backend.record(handle).temp_dir)
        endpoints = self.backend.wait_ready(handle, 180)
        self.current = RunningCluster(spec, handle, endpoints, "local", requested, time.time())
        return self.current

    def close(self) -> None:
        """Delete the shared cluster if there is one."""
        if self.current is not None:
            self.backend.delete(self.current.handle)
            self.current = None


@pytest.fixture(scope="session")
def _shared_cluster_holder() -> Iterator[SharedCluster]:
    holder = SharedCluster()
    try:
        yield holder
    finally:
        holder.close()


@pytest.fixture
def shared_cluster(_shared_cluster_holder: SharedCluster):
    """A local Ray cluster shared by tests that are not about cluster lifecycle."""
    return _shared_cluster_holder.get()


@pytest.fixture
def shared_cluster_backend(_shared_cluster_holder: SharedCluster):
    """The local backend that holds the shared cluster's record (not the default state dir)."""
    return _shared_cluster_holder.backend


@pytest.fixture
def sleepers():
    """``sleep`` processes that stand in for a local cluster's head and workers; killed after the test."""
    from drivers.local_records import Sleepers

    with Sleepers() as procs:
        yield procs


@pytest.fixture(autouse=True)
def no_leaked_ray_processes(request: pytest.FixtureRequest) -> Iterator[None]:
    """Fail a test that leaves a Ray process of ours running (the shared cluster excepted)."""
    yield
    leaks = leaked_processes(str(SESSION_ROOT / "r"), allowed=tuple(SHARED_TEMP_DIRS))
    assert not leaks, f"{request.node.name} left Ray processes running: {leaks}"


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """Stop anything still registered and remove the session root."""
    from discord_ml_platform.backends.local import LocalBackend

    for backend in (LocalBackend(), LocalBackend(state_dir=SHARED_STATE_DIR)):
        for info in backend.list():
            backend.delete(info.handle)
    shutil.rmtree(SESSION_ROOT, ignore_errors=True)
