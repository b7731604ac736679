"""Fixtures for the RayJob-mode tests: one sandbox (API server + operator) per module.

The operator runs with ``DELETE_RAYJOB_CR_AFTER_JOB_FINISHES=true`` (KubeRay's switch): after a
job's TTL the RayJob itself is deleted, and its RayCluster with it. Every test ends with no RayJob,
no RayCluster and no Ray process of the sandbox left.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from discord_ml_platform.sandbox.operator_rayjob import DELETE_RAYJOB_ENV
from discord_ml_platform.sandbox.runner import KubeRaySandbox

from .helpers import ray_processes, stored

# The CRD validator lives beside the spec tests (which are not a package).
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "spec"))


@pytest.fixture(scope="module")
def sandbox(session_root: Path) -> Iterator[KubeRaySandbox]:
    """API server + operator shared by the module; Ray temp dirs under the session's temp root."""
    temp_root = session_root / "r" / "j"  # short: Ray's socket paths must stay under 107 bytes
    temp_root.mkdir(parents=True, exist_ok=True)
    state = Path(tempfile.mkdtemp(prefix="rj-", dir=session_root))
    previous = os.environ.get(DELETE_RAYJOB_ENV)
    os.environ[DELETE_RAYJOB_ENV] = "true"
    try:
        with KubeRaySandbox(state, temp_root=temp_root) as box:
            yield box
    finally:
        if previous is None:
            os.environ.pop(DELETE_RAYJOB_ENV, None)
        else:
            os.environ[DELETE_RAYJOB_ENV] = previous


@pytest.fixture(scope="module")
def kubeconfig(sandbox: KubeRaySandbox) -> str:
    """Path of the sandbox's kubeconfig."""
    return str(sandbox.kubeconfig)


def wait_until_clean(sandbox: KubeRaySandbox, timeout_s: float) -> bool:
    """Wait until no RayJob, RayCluster or Ray process of the sandbox is left."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not stored(sandbox, "rayjobs") and not stored(sandbox, "rayclusters") and not ray_processes(sandbox):
            return True
        time.sleep(0.5)
    return False


@pytest.fixture(autouse=True)
def nothing_left(sandbox: KubeRaySandbox) -> Iterator[None]:
    """After each test: clear faults; a failing test's leftovers are deleted, then a clean slate is demanded."""
    yield
    sandbox.faults.clear()
    if wait_until_clean(sandbox, 5):
        return
    leftovers = stored(sandbox, "rayjobs") + stored(sandbox, "rayclusters")
    from discord_ml_platform.backends.kuberay import KubeRayBackend
    from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs

    with KubeRayJobs(str(sandbox.kubeconfig)) as jobs:
        for key in stored(sandbox, "rayjobs"):
            jobs.delete(key.split("/")[1])
    with KubeRayBackend(str(sandbox.kubeconfig)) as backend:
        for info in backend.list():
            backend.delete(info.handle, timeout_s=60)
    wait_until_clean(sandbox, 30)
    assert not leftovers, f"left behind: {leftovers}"
