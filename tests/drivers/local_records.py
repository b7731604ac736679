"""Local cluster records whose processes are ``sleep``s of ours, for tests that need no Ray.

When it lists and deletes, the local backend looks only at a record's PIDs, their start times and
command lines: a record naming ``sleep`` processes (each in a session of its own, as ``setsid sleep``
starts them) stands for a running cluster.
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
from datetime import UTC, datetime, timedelta
from typing import Self

from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.backends.local_records import LocalClusterRecord
from discord_ml_platform.backends.processes import start_time
from discord_ml_platform.spec.labels import cluster_labels

YEAR_10000 = "253402300800"  # a valid label value (an expiry in epoch seconds); datetime cannot hold it


class Sleepers:
    """``sleep`` processes in sessions of their own; ``close`` kills those still running."""

    def __init__(self) -> None:
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self) -> subprocess.Popen[bytes]:
        proc = subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL)
        self.procs.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def record_labels(
    name: str,
    created: datetime,
    *,
    owner: str = "tests",
    deployment: str | None = "default",
    run_id: str | None = None,
    lifetime: timedelta = timedelta(hours=8),
) -> dict[str, str]:
    """The platform's labels for a cluster created at ``created`` that expires ``lifetime`` later."""
    return cluster_labels(name=name, owner=owner, team="t", gpu_type="cpu", expires_at=created + lifetime,
                          run_id=run_id, deployment=deployment)


def write_record(backend: LocalBackend, name: str, head_pid: int, *, head_started: float | None,
                 worker_pids: tuple[int, ...] = (), worker_started: tuple[float | None, ...] = (),
                 labels: dict[str, str] | None = None, created: datetime | None = None) -> LocalClusterRecord:
    """A record as the backend writes it, naming the given processes (labels: :func:`record_labels`)."""
    created = created or datetime.now(UTC)
    record = LocalClusterRecord(
        name=name,
        labels=labels if labels is not None else record_labels(name, created),
        created_at=created.isoformat(), desired_workers=len(worker_pids),
        temp_dir=tempfile.mkdtemp(prefix="dmp-", dir=backend.temp_root),
        log_dir=str(backend.state_dir / "logs" / name), auth_mode="disabled", head_pid=head_pid,
        gcs_port=1, dashboard_port=1, client_port=1, worker_pids=list(worker_pids),
        spec={"name": name, "namespace": "local", "gpu_type": "cpu"},
        head_started=head_started, worker_started=list(worker_started),
    )
    backend.records.save(record)
    return record


def add_sleeping_cluster(backend: LocalBackend, sleepers: Sleepers, name: str, *, expired: bool = False,
                         raw_labels: dict[str, str] | None = None, owner: str = "tests",
                         deployment: str | None = "default", run_id: str | None = None) -> subprocess.Popen[bytes]:
    """A record of a cluster whose head is a new sleeper of ``sleepers`` (its start time recorded); the head.

    The cluster lives a day: created now, or two days ago when ``expired``. ``raw_labels`` are set over
    the platform's labels as they are (an unreadable expiry, say).
    """
    head = sleepers.start()
    created = datetime.now(UTC) - timedelta(days=2 if expired else 0)
    labels = record_labels(name, created, owner=owner, deployment=deployment, run_id=run_id,
                           lifetime=timedelta(days=1))
    labels.update(raw_labels or {})
    write_record(backend, name, head.pid, head_started=start_time(head.pid), labels=labels, created=created)
    return head
