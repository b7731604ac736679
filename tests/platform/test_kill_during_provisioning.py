"""A run's step killed while it gets its cluster leaves nothing behind on the local backend.

SIGTERM (how Dagster terminates a run) lets the step's teardown delete the cluster, also when the create
had gone through but not returned; after SIGKILL the cleanup sensor's next tick deletes it.
"""

import signal

import pytest
from drivers.provisioning import kill_step_at, sweep_once

from discord_ml_platform.backends.local import LocalBackend

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.mark.parametrize("phase", ["create", "wait"])
def test_a_step_terminated_while_getting_its_cluster_deletes_it(phase: str) -> None:
    output = kill_step_at(phase, signal.SIGTERM)
    assert "RUN FAILED" in output and "deleted Ray cluster" in output, output[-3000:]
    assert LocalBackend().list() == []


@pytest.mark.parametrize("phase", ["create", "wait"])
def test_a_step_killed_while_getting_its_cluster_is_swept_on_the_next_tick(phase: str) -> None:
    kill_step_at(phase, signal.SIGKILL)
    [leaked] = LocalBackend().list()  # nothing of ours ran: the cluster is still there
    summary = sweep_once(LocalBackend)
    assert "deleted 1" in summary and leaked.handle.name in summary and "does not exist" in summary, summary
    assert LocalBackend().list() == []
