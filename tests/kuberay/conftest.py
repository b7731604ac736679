"""Fixtures for the kuberay backend tests: one sandbox (API server + local operator) per module.

Every test ends with no RayCluster left in the sandbox and no Ray process left under the
operator's temp root: an autouse fixture deletes whatever a failing test left and checks.
"""

from __future__ import annotations

import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.kuberay_retry import RetryPolicy
from discord_ml_platform.sandbox.runner import KubeRaySandbox

from .helpers import ray_processes, rayclusters


@pytest.fixture(scope="module")
def sandbox(session_root: Path) -> Iterator[KubeRaySandbox]:
    """API server + operator shared by the module; Ray temp dirs under the session's temp root."""
    # Short: Ray's Unix socket paths below it must stay under 107 bytes.
    temp_root = session_root / "r" / "k"
    temp_root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="sandbox-", dir=session_root))
    with KubeRaySandbox(state, temp_root=temp_root) as box:
        yield box


@pytest.fixture(scope="module")
def kubeconfig(sandbox: KubeRaySandbox) -> str:
    """Path of the sandbox's kubeconfig."""
    return str(sandbox.kubeconfig)


@pytest.fixture
def kuberay(kubeconfig: str) -> Iterator[KubeRayBackend]:
    """A kuberay backend on the sandbox, with quick retries."""
    backend = KubeRayBackend(kubeconfig, retry=RetryPolicy(max_attempts=6, base_delay_s=0.05, max_delay_s=0.5,
                                                           deadline_s=20))
    yield backend
    backend.close()


@pytest.fixture(autouse=True)
def nothing_left(sandbox: KubeRaySandbox, kubeconfig: str) -> Iterator[None]:
    """After each test: clear faults, delete leftovers (failing tests), then demand a clean slate."""
    yield
    sandbox.faults.clear()
    leftovers = rayclusters(sandbox)
    if leftovers:
        with KubeRayBackend(kubeconfig) as backend:
            for info in backend.list():
                backend.delete(info.handle, timeout_s=60)
    deadline = time.monotonic() + 10
    while ray_processes(sandbox) and time.monotonic() < deadline:
        time.sleep(0.2)
    procs = ray_processes(sandbox)
    assert not leftovers, f"RayClusters left behind: {leftovers}"
    assert not procs, f"Ray processes left behind: {procs}"
