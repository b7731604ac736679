"""A run's step killed while it gets its cluster leaves nothing behind on the kuberay backend.

SIGTERM (how Dagster terminates a run) lets the step's teardown delete the RayCluster, also when the
create had been committed by the API server but had not returned; after SIGKILL the cleanup sensor's
next tick deletes it.
"""

import signal

import pytest
from drivers.provisioning import kill_step_at, sweep_once

from discord_ml_platform.backends.kuberay import KubeRayBackend

from .helpers import ray_processes, rayclusters

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.mark.parametrize("phase", ["create", "wait"])
def test_a_step_terminated_while_getting_its_cluster_deletes_it(phase: str, kubeconfig: str, sandbox) -> None:
    output = kill_step_at(phase, signal.SIGTERM, kubeconfig)
    assert "RUN FAILED" in output and "deleted Ray cluster" in output, output[-3000:]
    assert rayclusters(sandbox) == []


@pytest.mark.parametrize("phase", ["create", "wait"])
def test_a_step_killed_while_getting_its_cluster_is_swept_on_the_next_tick(phase: str, kubeconfig: str,
                                                                          sandbox) -> None:
    kill_step_at(phase, signal.SIGKILL, kubeconfig)
    [leaked] = rayclusters(sandbox)  # nothing of ours ran: the RayCluster is still there
    summary = sweep_once(lambda: KubeRayBackend(kubeconfig))
    assert "deleted 1" in summary and leaked in summary and "does not exist" in summary, summary
    assert rayclusters(sandbox) == [] and not ray_processes(sandbox)
