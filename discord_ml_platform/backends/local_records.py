"""The local backend's cluster records: one private JSON file per cluster, written atomically.

A record is what lets another process (the CLI, X-Ray, the sweepers) list and delete a local
cluster, so it must be trustworthy: files are 0600 in a 0700 dir, written to a temp file, fsynced,
renamed over the old one and the dir fsynced, and every field is type-checked when read. Each PID
is kept with its start time, which tells our process from a later one that got the same number.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import tempfile
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from discord_ml_platform.backends.base import ClusterEndpoints, ClusterError, ClusterHandle, ClusterInfo
from discord_ml_platform.backends.processes import OrphanedGroup, Root, owned_process

if TYPE_CHECKING:
    import psutil

# A record is saved before its head is spawned (head_pid 0) and updated a moment later; for this
# long such a record is a cluster being created ("pending"), afterwards its creator died ("dead").
STARTING_GRACE_S = 120.0


@dataclass
class LocalClusterRecord:
    """What we know about one local cluster; persisted as JSON in the state dir."""

    name: str
    labels: dict[str, str]
    created_at: str
    desired_workers: int
    temp_dir: str
    log_dir: str
    auth_mode: str
    head_pid: int
    gcs_port: int
    dashboard_port: int
    client_port: int
    worker_pids: list[int] = field(default_factory=list)
    spec: dict[str, Any] = field(default_factory=dict)
    # Start times (psutil's create_time) of the head and of each worker: what tells our process from
    # a later one that got the same PID. ``None``: a record written before they were kept.
    head_started: float | None = None
    worker_started: list[float | None] = field(default_factory=list)

    @classmethod
    def from_json(cls, text: str, name: str) -> LocalClusterRecord:
        """A record from its file's text, every field type-checked.

        Raises:
            ValueError: what is wrong with it (not JSON, a missing or mistyped field, a bad time,
                another cluster's name than the file's).
        """
        from pydantic import ValidationError

        try:
            record: LocalClusterRecord = _record_adapter().validate_json(text)
        except ValidationError as err:
            problems = [f"{'.'.join(str(p) for p in e['loc']) or 'record'}: {e['msg']}" for e in err.errors()[:3]]
            raise ValueError("; ".join(problems)) from None
        if record.name != name:
            raise ValueError(f"names cluster {record.name!r}, not {name!r}")
        record.created  # noqa: B018  (raises ValueError for a bad time)
        return record

    @property
    def created(self) -> datetime:
        """``created_at`` as an aware time (UTC when the record has no offset)."""
        moment = datetime.fromisoformat(self.created_at)
        return moment if moment.tzinfo else moment.replace(tzinfo=UTC)

    @property
    def pids(self) -> list[int]:
        """The head and worker launcher PIDs (each also leads its process group; 0: not spawned yet)."""
        return [self.head_pid, *self.worker_pids]

    def worker_start(self, index: int) -> float | None:
        """The recorded start time of worker ``index`` (``None`` when unknown)."""
        return self.worker_started[index] if index < len(self.worker_started) else None

    def set_worker(self, index: int, pid: int, started: float | None) -> None:
        """Record worker ``index`` (appended when ``index`` is the next one)."""
        self.worker_started.extend([None] * (len(self.worker_pids) - len(self.worker_started)))
        if index == len(self.worker_pids):
            self.worker_pids.append(pid)
            self.worker_started.append(started)
        else:
            self.worker_pids[index], self.worker_started[index] = pid, started

    # Which of its processes are still ours ------------------------------------------------------

    def owned_temp_dir(self, temp_root: Path) -> str | None:
        """The Ray temp dir if it is one the backend makes (``dmp-*`` right under ``temp_root``), else
        ``None``: only then may it mark processes as ours and be removed."""
        path = Path(self.temp_dir)
        if not path.is_absolute() or not path.name.startswith("dmp-"):
            return None
        if Path(os.path.realpath(path)).parent != Path(os.path.realpath(temp_root)):
            return None
        return self.temp_dir

    def head_process(self, temp_root: Path) -> psutil.Process | None:
        """The head's ``ray start`` if it still runs and is the one we started."""
        return owned_process(self.head_pid, self.head_started, self.owned_temp_dir(temp_root))

    def worker_process(self, index: int) -> psutil.Process | None:
        """Worker ``index``'s ``ray start`` if it still runs and is the one we started."""
        gcs = f"127.0.0.1:{self.gcs_port}"  # what a worker's command line names (old records)
        return owned_process(self.worker_pids[index], self.worker_start(index), gcs)

    def starting(self) -> bool:
        """Whether the head is being spawned right now (the record was saved, not yet updated)."""
        return self.head_pid == 0 and (datetime.now(UTC) - self.created).total_seconds() < STARTING_GRACE_S

    def stop_roots(self, temp_root: Path) -> list[Root]:
        """What :func:`~discord_ml_platform.backends.processes.terminate_tree` may stop: the processes
        that are still ours, and the leftover groups of those that are gone. A PID that now names
        another process is left out."""
        recorded = [(self.head_pid, self.head_process(temp_root))]
        recorded += [(pid, self.worker_process(i)) for i, pid in enumerate(self.worker_pids)]
        roots: list[Root] = []
        for pid, proc in recorded:
            if proc is not None:
                roots.append(proc)
            elif pid > 1:
                roots.append(OrphanedGroup(pid))  # signalled only while no process has that PID
        return roots

    def endpoints(self) -> ClusterEndpoints:
        """Where the cluster listens."""
        return ClusterEndpoints(
            dashboard_url=f"http://127.0.0.1:{self.dashboard_port}",
            gcs_address=f"127.0.0.1:{self.gcs_port}",
            client_address=f"ray://127.0.0.1:{self.client_port}",
        )


class InvalidRecordError(ClusterError):
    """A cluster record that cannot be read: it names nothing that may be signalled."""


@functools.cache
def _record_adapter() -> Any:
    from pydantic import TypeAdapter

    return TypeAdapter(LocalClusterRecord)


def private_dir(path: Path) -> None:
    """Create ``path`` (0700) or make it private: records and logs are nobody else's to read or edit."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    with contextlib.suppress(OSError):  # a dir of another user's: we could not change it anyway
        if path.stat().st_mode & 0o777 != 0o700:
            path.chmod(0o700)


def fsync_dir(path: Path) -> None:
    """Make a rename or unlink in ``path`` durable (best effort: not every file system can)."""
    with contextlib.suppress(OSError):
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _safe_name(name: str) -> bool:
    """Whether ``name`` can only name a file right in the state dir."""
    return bool(name) and not name.startswith(".") and "/" not in name and os.sep not in name and "\0" not in name


class RecordStore:
    """The records under one state dir.

    Args:
        state_dir: The dir holding ``<name>.json`` per cluster (created 0700 on the first save).
    """

    def __init__(self, state_dir: Path) -> None:
        self.state_dir = state_dir

    def path(self, name: str) -> Path:
        """Where the record of ``name`` lives."""
        return self.state_dir / f"{name}.json"

    def names(self) -> list[str]:
        """Names of every record, sorted (temp files of writes in flight are not records)."""
        return sorted(p.stem for p in self.state_dir.glob("*.json")) if self.state_dir.exists() else []

    def read(self, name: str) -> LocalClusterRecord | None:
        """The record of ``name``, ``None`` when there is none.

        Raises:
            InvalidRecordError: a record that cannot be read or is not a valid record.
        """
        if not _safe_name(name):
            return None
        path = self.path(name)
        try:
            text = path.read_text()
        except FileNotFoundError:
            return None
        except (OSError, UnicodeDecodeError) as err:
            raise InvalidRecordError(f"{path.name}: {err}") from None
        try:
            return LocalClusterRecord.from_json(text, name)
        except ValueError as err:
            raise InvalidRecordError(f"{path.name}: {err}") from None

    def save(self, record: LocalClusterRecord) -> None:
        """Write the record atomically and durably, readable by its owner only."""
        private_dir(self.state_dir)
        data = json.dumps(asdict(record), indent=2).encode()
        fd, tmp = tempfile.mkstemp(prefix=f".{record.name}.", suffix=".tmp", dir=self.state_dir)  # 0600
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path(record.name))  # atomic: a reader never sees half a record
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
        fsync_dir(self.state_dir)

    def remove(self, name: str) -> None:
        """Remove the record of ``name`` (no error when there is none)."""
        if _safe_name(name):
            self.path(name).unlink(missing_ok=True)
            fsync_dir(self.state_dir)

    def unreadable_info(self, name: str, backend: str, err: Exception) -> ClusterInfo:
        """How a listing shows a record it cannot read: by its file name, status ``invalid``."""
        try:
            created = datetime.fromtimestamp(self.path(name).stat().st_mtime, UTC)
        except (OSError, ValueError, OverflowError):
            created = datetime.now(UTC)
        return ClusterInfo(
            handle=ClusterHandle(name, "local", backend),
            labels={},
            status="invalid",
            created_at=created,
            desired_workers=0,
            ready_workers=0,
            details={"problem": f"unreadable record: {err}"},
        )


__all__ = ["InvalidRecordError", "LocalClusterRecord", "RecordStore", "fsync_dir", "private_dir"]
