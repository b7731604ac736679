"""``LocalRunLauncher``'s run-worker health check, without a Dagster daemon: it finds the run worker in the
run's engine events, reading them newest first and no further than the latest run worker."""

import os
import subprocess
import sys

import dagster as dg
import pytest
from dagster._core.events import EngineEventData
from dagster._core.launcher.base import WorkerStatus
from dagster._core.test_utils import create_run_for_test

from resources.run_launcher import EVENT_PAGE, LocalRunLauncher, run_worker_process

pytestmark = pytest.mark.timeout(60)
LAUNCHER = {"module": "resources.run_launcher", "class": "LocalRunLauncher"}


def started(instance: dg.DagsterInstance, run: dg.DagsterRun, pid: int) -> None:
    """What the code server records when it starts a run worker: the text is on the Dagster event only (no
    ``user_message``), and under the multiprocess executor no other event names the worker."""
    instance.report_engine_event(f"Started process for run (pid: {pid}).", run, EngineEventData.in_process(pid))


def dead_pid() -> int:
    """The PID of a process that has exited (and was reaped)."""
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait(timeout=30)
    return process.pid


def test_the_run_worker_is_the_latest_recorded_and_a_check_reads_no_further_back_than_it():
    with dg.instance_for_test() as instance:
        run = create_run_for_test(instance, job_name="some_job")
        assert run_worker_process(instance, run.run_id) is None
        for step in range(2 * EVENT_PAGE):  # events before any worker: a check must not need to read them
            instance.report_engine_event(f"setup {step}", run)
        started(instance, run, 4242)
        found = run_worker_process(instance, run.run_id)
        assert found is not None and found[0] == 4242
        started(instance, run, 4343)  # a later run worker of the same run wins
        for step in range(2 * EVENT_PAGE):  # a long run: many engine events after its worker started
            instance.report_engine_event(f"step {step} done", run)

        reads: list[int] = []
        original = instance.get_records_for_run

        def counting(run_id, cursor=None, of_type=None, limit=None, ascending=True):
            connection = original(run_id, cursor, of_type, limit, ascending)
            reads.append(len(connection.records))
            return connection

        instance.get_records_for_run = counting  # type: ignore[method-assign]
        latest = run_worker_process(instance, run.run_id)
        assert latest is not None and latest[0] == 4343
        # Two full pages of newer events, then the page that holds the latest worker's event: the pages
        # of older events (the first worker's, the set-up's) are never asked for.
        assert len(reads) == 3 and reads[:2] == [EVENT_PAGE, EVENT_PAGE]


def test_the_health_check_follows_the_run_workers_process():
    with dg.instance_for_test(overrides={"run_launcher": LAUNCHER}) as instance:
        launcher = instance.run_launcher
        assert isinstance(launcher, LocalRunLauncher) and launcher.supports_check_run_worker_health
        run = create_run_for_test(instance, job_name="some_job")
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING  # not recorded yet
        started(instance, run, os.getpid())  # this process started before the event: the run worker
        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        started(instance, run, dead_pid())
        health = launcher.check_run_worker_health(run)
    assert health.status == WorkerStatus.FAILED and "is gone" in (health.msg or "")
