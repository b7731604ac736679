"""``LocalRunLauncher``: Dagster's default launcher, plus the run-worker health check run monitoring needs.

Dagster's run monitoring marks a run failed when its run worker is gone, but only with a launcher that
can tell (``supports_check_run_worker_health``); the default launcher (runs as processes of the code
server, as under ``dagster dev``) cannot, so a run whose worker was SIGKILLed stayed ``STARTED`` and its
Ray cluster lived until its expiry. This launcher answers from the run worker's process: its PID is in
the engine event the run worker reports when it starts executing, and a process with that PID that started after the
event is another process (PIDs are reused), not the run worker. Run monitoring asks every 15 s per
running run, so a check reads the run's engine events newest first and stops at the first that names
the worker.

It launches exactly as the default launcher does, so it is for deployments whose daemon and code
server share a host (``dagster dev``, a single VM); on Kubernetes ``K8sRunLauncher`` does the same
from the run's pod. Configure it with run monitoring in ``dagster.yaml``::

    run_launcher:
      module: resources.run_launcher
      class: LocalRunLauncher
    run_monitoring:
      enabled: true
      poll_interval_seconds: 15
"""

from __future__ import annotations

import re

import dagster as dg
import psutil
from dagster._core.launcher import DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

# Engine events that name the run worker's process: the code server's, and the in-process executor's.
RUN_WORKER_EVENTS = ("Started process for run", "Executing steps in process")
_PID = re.compile(r"\(pid: (\d+)\)")
# Process start times and event timestamps come from different clocks' roundings.
CLOCK_SLACK_S = 2.0
# Engine events read per query (a run has a few per step).
EVENT_PAGE = 100


class LocalRunLauncher(DefaultRunLauncher):
    """The default launcher, whose run workers run monitoring can check (see the module docstring)."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        """Run monitoring may ask about run workers."""
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        """``RUNNING`` while the run's worker process lives; ``FAILED`` once it is gone."""
        found = run_worker_process(self._instance, run.run_id)
        if found is None:
            # No worker recorded yet (the run is just starting): start_timeout_seconds covers a
            # worker that never comes up.
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run worker not recorded yet")
        pid, started_at = found
        if is_the_same_process(pid, started_at):
            return CheckRunHealthResult(WorkerStatus.RUNNING, run_worker_id=str(pid))
        return CheckRunHealthResult(
            WorkerStatus.FAILED,
            f"run worker process {pid} is gone (killed, or its host restarted)",
            run_worker_id=str(pid),
        )


def run_worker_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """``(pid, when it was recorded)`` of the run's latest run worker, from its engine events.

    The events are read newest first, a page at a time, up to the first one that names a run worker.
    """
    cursor = None
    while True:
        page = instance.get_records_for_run(
            run_id, cursor=cursor, of_type=dg.DagsterEventType.ENGINE_EVENT, limit=EVENT_PAGE, ascending=False
        )
        for record in page.records:
            found = _run_worker_of(record.event_log_entry)
            if found is not None:
                return found
        if not page.has_more:
            return None
        cursor = page.cursor


def _run_worker_of(entry: dg.EventLogEntry) -> tuple[int, float] | None:
    """``(pid, timestamp)`` when ``entry`` is an engine event naming the run worker's process."""
    # ``message``, not ``user_message``: the code server's event (reported outside the run, the only one
    # naming the worker under the multiprocess executor) carries its text on the Dagster event alone.
    message = entry.message or ""
    if not message.startswith(RUN_WORKER_EVENTS):
        return None
    data = entry.dagster_event.engine_event_data if entry.dagster_event is not None else None
    pid = getattr((data.metadata or {}).get("pid"), "value", None) if data is not None else None
    if pid is None:
        match = _PID.search(message)
        pid = match.group(1) if match else None
    if pid is not None and str(pid).isdigit():
        return int(pid), entry.timestamp
    return None


def is_the_same_process(pid: int, recorded_at: float) -> bool:
    """Whether a live process ``pid`` exists that started before ``recorded_at`` (not a reused PID)."""
    try:
        process = psutil.Process(pid)
        return (
            process.is_running()
            and process.status() != psutil.STATUS_ZOMBIE
            and (process.create_time() <= recorded_at + CLOCK_SLACK_S)
        )
    except psutil.Error:
        return False


__all__ = ["LocalRunLauncher", "is_the_same_process", "run_worker_process"]
