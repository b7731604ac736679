"""Notebooks attached to clusters: the records, the launcher protocol, and the manager with its reaper.

A launcher starts a JupyterLab (or, in tests, a stand-in) with ``RAY_ADDRESS`` pointing at one
cluster: :mod:`~discord_ml_platform.xray.notebook_local` as a local process,
:mod:`~discord_ml_platform.xray.notebook_pod` as a pod beside a KubeRay cluster. The manager
keeps one record per cluster (a JSON file, mode 0600: it holds the notebook's token), so a
restarted dashboard still finds and stops what it started. A notebook stops when its cluster is
deleted through the dashboard, when its cluster disappears from the listing (the reaper), and
after the idle timeout (JupyterLab's own ``shutdown_no_activity_timeout``, and the reaper).
"""

from __future__ import annotations

import json
import logging
import os
import secrets
import threading
from collections.abc import Callable, Mapping
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Protocol

from discord_ml_platform.backends import ClusterInfo
from discord_ml_platform.xray.models import NotebookView

log = logging.getLogger(__name__)


class NotebookError(RuntimeError):
    """A notebook could not be started."""


@dataclass
class NotebookRecord:
    """One notebook the dashboard started.

    Attributes:
        cluster: The cluster's key, ``backend/namespace/name``.
        kind: ``process`` or ``pod``.
        token: The notebook server's own token (not the dashboard's); part of its link.
        started_at: ISO time of the launch.
        idle_timeout_s: Idle time after which it is stopped.
        pid, pid_started: Process id and its start time (guards against a reused pid).
        port: Local port of a process notebook.
        workdir: Working directory of a process notebook.
        namespace, pod, secret: Objects of a pod notebook.
    """

    cluster: str
    kind: str
    token: str
    started_at: str
    idle_timeout_s: int
    pid: int | None = None
    pid_started: float | None = None
    port: int | None = None
    workdir: str | None = None
    namespace: str | None = None
    pod: str | None = None
    secret: str | None = None
    extra: dict[str, str] = field(default_factory=dict)


class NotebookLauncher(Protocol):
    """Starts, inspects and stops notebooks of one kind."""

    kind: str

    def launch(self, info: ClusterInfo, token: str, idle_timeout_s: int) -> NotebookRecord:
        """Start a notebook attached to ``info`` (whose endpoints are known); returns at once."""
        ...

    def state(self, record: NotebookRecord) -> str:
        """``starting``, ``running``, ``pending`` or ``stopped``."""
        ...

    def url(self, record: NotebookRecord) -> str | None:
        """The notebook's link, token included, once it has an address."""
        ...

    def last_activity(self, record: NotebookRecord) -> datetime | None:
        """When the notebook was last used, if the launcher can tell."""
        ...

    def stop(self, record: NotebookRecord) -> None:
        """Stop the notebook and remove what it left; stopping a stopped one is fine."""
        ...


def now_utc() -> datetime:
    """The current time in UTC."""
    return datetime.now(UTC)


class NotebookManager:
    """One notebook per cluster, persisted under ``state_dir``; a reaper thread enforces lifetimes.

    Args:
        state_dir: Where records go (``<state_dir>/notebooks/*.json``).
        launchers: Launcher per backend name (``local``, ``kuberay``).
        idle_timeout_s: Idle timeout given to new notebooks.
    """

    def __init__(self, state_dir: Path, launchers: Mapping[str, NotebookLauncher], idle_timeout_s: int) -> None:
        self.dir = Path(state_dir) / "notebooks"
        self.launchers = dict(launchers)
        self.idle_timeout_s = idle_timeout_s
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # --- records -------------------------------------------------------------------------------

    def _path(self, key: str) -> Path:
        return self.dir / (key.replace("/", "__") + ".json")

    def get(self, key: str) -> NotebookRecord | None:
        """The record of the cluster's notebook, if one was started."""
        try:
            return NotebookRecord(**json.loads(self._path(key).read_text()))
        except (OSError, ValueError, TypeError):
            return None

    def records(self) -> list[NotebookRecord]:
        """Every recorded notebook."""
        found = (
            [self.get(p.stem.replace("__", "/")) for p in sorted(self.dir.glob("*.json"))] if self.dir.exists() else []
        )
        return [r for r in found if r is not None]

    def _save(self, record: NotebookRecord) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self._path(record.cluster)
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # it holds the notebook token
        with os.fdopen(fd, "w") as out:
            json.dump(asdict(record), out)
        tmp.replace(path)

    def _launcher(self, record_or_backend: NotebookRecord | str) -> NotebookLauncher:
        backend = (
            record_or_backend.cluster.split("/", 1)[0]
            if isinstance(record_or_backend, NotebookRecord)
            else record_or_backend
        )
        launcher = self.launchers.get(backend)
        if launcher is None:
            raise NotebookError(f"no notebook launcher for backend {backend!r}")
        return launcher

    # --- actions -------------------------------------------------------------------------------

    def launch(self, key: str, info: ClusterInfo) -> NotebookRecord:
        """Start the cluster's notebook, or return the one that already runs.

        Raises:
            NotebookError: the cluster has no address yet, or the launcher failed.
        """
        if info.endpoints is None:
            raise NotebookError(f"cluster {key} has no Ray address yet; wait until it is ready")
        with self._lock:
            existing = self.get(key)
            if existing is not None:
                if self._launcher(existing).state(existing) != "stopped":
                    return existing
                self.stop(key)
            launcher = self._launcher(info.handle.backend)
            record = launcher.launch(info, secrets.token_urlsafe(24), self.idle_timeout_s)
            record.cluster = key
            self._save(record)
            log.info("started %s notebook for %s", record.kind, key)
            return record

    def stop(self, key: str) -> bool:
        """Stop the cluster's notebook; ``False`` when it had none."""
        with self._lock:
            record = self.get(key)
            if record is None:
                return False
            try:
                self._launcher(record).stop(record)
            finally:
                self._path(key).unlink(missing_ok=True)
            log.info("stopped notebook of %s", key)
            return True

    def view(self, record: NotebookRecord, with_url: bool) -> NotebookView:
        """The API's view; the link (it holds the notebook's token) only when ``with_url``."""
        launcher = self._launcher(record)
        state = launcher.state(record)
        return NotebookView(
            cluster=record.cluster,
            kind=record.kind,
            state=state,
            started_at=record.started_at,
            idle_timeout_s=record.idle_timeout_s,
            url=launcher.url(record) if with_url and state == "running" else None,
        )

    # --- reaper --------------------------------------------------------------------------------

    def reap(self, live_clusters: set[str] | None) -> list[str]:
        """Stop notebooks that stopped by themselves, lost their cluster, or sat idle too long.

        Args:
            live_clusters: Keys of the clusters that exist now; ``None`` when unknown (a backend
                failed to list), in which case no notebook is stopped for a missing cluster.

        Returns:
            Keys of the clusters whose notebook was stopped, each with the reason.
        """
        stopped = []
        for record in self.records():
            try:
                reason = self._reap_reason(record, live_clusters)
                if reason:
                    self.stop(record.cluster)
                    stopped.append(f"{record.cluster}: {reason}")
            except Exception:  # one broken record must not stop the reaper
                log.exception("reaping the notebook of %s failed", record.cluster)
        return stopped

    def _reap_reason(self, record: NotebookRecord, live: set[str] | None) -> str | None:
        if live is not None and record.cluster not in live:
            return "cluster gone"
        launcher = self._launcher(record)
        if launcher.state(record) == "stopped":
            return "exited"
        # Only a launcher that can see activity is judged here; the others (pods) stop themselves.
        last = launcher.last_activity(record)
        if last is not None and (now_utc() - last).total_seconds() > record.idle_timeout_s:
            return f"idle since {last.isoformat()}"
        return None

    def start_reaper(self, live_clusters: Callable[[], set[str] | None], interval_s: float) -> None:
        """Run :meth:`reap` every ``interval_s`` in a daemon thread until :meth:`stop_reaper`."""
        if self._thread is not None:
            return
        self._stop.clear()

        def loop() -> None:
            while not self._stop.wait(interval_s):
                try:
                    for line in self.reap(live_clusters()):
                        log.info("reaper stopped notebook %s", line)
                except Exception:
                    log.exception("notebook reaper pass failed")

        self._thread = threading.Thread(target=loop, name="xray-notebook-reaper", daemon=True)
        self._thread.start()

    def stop_reaper(self) -> None:
        """Stop the reaper thread (notebooks keep running)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._thread = None
