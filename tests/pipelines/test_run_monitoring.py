"""A run whose worker died with everything around it (a crashed machine) is marked failed by run monitoring
(dagster.yaml) once Dagster is back, and its Ray cluster is swept by the cleanup sensor within minutes,
not at the cluster's expiry.

``dagster dev`` with the project's ``dagster.yaml`` (``LocalRunLauncher``, run monitoring on) serves the
tests' code location (``drivers.smoke_defs``: the faulty smoke job, the cleanup sensor every 15 s).
"""

import os
import signal
import time

import dagster as dg
import pytest
from drivers import wait_for
from drivers.dagster_dev import dagster_dev

from discord_ml_platform.backends.local import LocalBackend
from resources.run_launcher import run_worker_process

pytestmark = [pytest.mark.ray, pytest.mark.timeout(540)]
LOCATION = ("-d", "tests", "-m", "drivers.smoke_defs", "-a", "defs")


def launch_waiting_run(port: int, release_file: str) -> str:
    """Launch the faulty smoke job (it waits for ``release_file``) the way the Launchpad does."""
    from dagster_graphql import DagsterGraphQLClient

    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    deadline = time.monotonic() + 120
    while True:  # the code location loads in the background after the server answers
        try:
            return client.submit_job_execution(
                "faulty_smoke_test", run_config={"ops": {"faulty_smoke": {"config": {"release_file": release_file}}}})
        except Exception:
            assert time.monotonic() < deadline, "the code location did not load"
            time.sleep(1)


def test_a_run_killed_with_its_dagster_is_marked_failed_and_its_cluster_swept(tmp_path) -> None:
    with dagster_dev(tmp_path, *LOCATION) as (port, home, process):
        run_id = launch_waiting_run(port, str(tmp_path / "never-released"))
        with dg.DagsterInstance.from_config(str(home)) as instance:
            def waiting() -> bool:
                return any("smoke job waiting for release" in (r.message or "") for r in instance.all_logs(run_id))

            assert wait_for(waiting, 240), [r.message for r in instance.all_logs(run_id)][-20:]
            assert run_worker_process(instance, run_id) is not None
        # Everything of Dagster dies at once (webserver, daemon, code server, run worker): nothing of ours
        # runs and nobody is left to notice. The run's Ray cluster lives on.
        os.killpg(process.pid, signal.SIGKILL)
    [cluster] = LocalBackend().list()
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.STARTED  # as the crash left it
            with dagster_dev(tmp_path, *LOCATION, home=home):  # back up
                assert wait_for(lambda: instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.FAILURE, 120)
                failure = [r.message for r in instance.all_logs(run_id) if "run worker process" in (r.message or "")]
                assert failure and "is gone" in failure[-1], [r.message for r in instance.all_logs(run_id)][-8:]
                assert wait_for(lambda: LocalBackend().list() == [], 120), cluster.handle.name
    finally:  # a failed assertion must not leak the cluster into the next test
        for info in LocalBackend().list():
            LocalBackend().delete(info.handle)
