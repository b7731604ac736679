"""Notebooks as local processes: JupyterLab on a free loopback port, ``RAY_ADDRESS`` set to the cluster.

Each notebook runs in its own session and process group with a working dir of its own, and is
stopped by pid (checked against its start time, so a reused pid is never signalled). The
notebook token travels in ``JUPYTER_TOKEN`` (environment, not the command line that ``ps`` shows).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import urllib.request
from collections.abc import Callable, Sequence
from datetime import datetime
from pathlib import Path

import psutil

from discord_ml_platform.backends import ClusterInfo
from discord_ml_platform.backends.processes import free_ports, port_accepts, terminate_tree
from discord_ml_platform.xray.notebooks import NotebookError, NotebookRecord, now_utc

CommandFactory = Callable[[int, Path, int], Sequence[str]]
"""``(port, workdir, idle_timeout_s) -> argv`` of the notebook server."""


def jupyterlab_command(port: int, workdir: Path, idle_timeout_s: int) -> list[str]:
    """JupyterLab on ``127.0.0.1:port`` that shuts itself down after ``idle_timeout_s`` without activity
    and culls kernels idle that long. The token comes from ``$JUPYTER_TOKEN``."""
    return [
        sys.executable,
        "-m",
        "jupyterlab",
        "--no-browser",
        "--ip=127.0.0.1",
        f"--port={port}",
        "--port-retries=0",
        f"--ServerApp.root_dir={workdir}",
        "--ServerApp.allow_remote_access=False",
        f"--ServerApp.shutdown_no_activity_timeout={idle_timeout_s}",
        f"--MappingKernelManager.cull_idle_timeout={idle_timeout_s}",
        f"--MappingKernelManager.cull_interval={max(10, min(60, idle_timeout_s // 2))}",
        f"--TerminalManager.cull_inactive_timeout={idle_timeout_s}",
        # JupyterLab refuses to run as root (CI containers); the notebook runs as the dashboard's user.
        *(["--allow-root"] if hasattr(os, "geteuid") and os.geteuid() == 0 else []),
    ]


def _started(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None


def _same_process(record: NotebookRecord) -> bool:
    if record.pid is None:
        return False
    try:
        proc = psutil.Process(record.pid)
        return proc.status() != psutil.STATUS_ZOMBIE and (
            record.pid_started is None or abs(proc.create_time() - record.pid_started) < 1.0
        )
    except psutil.Error:
        return False


class LocalProcessLauncher:
    """Starts notebook servers as local processes.

    Args:
        workdir_root: Parent of each notebook's working dir.
        command: Builds the server's argv; :func:`jupyterlab_command` by default (tests pass a
            small stand-in that speaks the same ``/api/status`` and token scheme).
        auth_mode: ``RAY_AUTH_MODE`` in the notebook's environment.
        url_path: Path of the link, ``/lab`` for JupyterLab.
    """

    kind = "process"

    def __init__(
        self,
        workdir_root: Path,
        command: CommandFactory = jupyterlab_command,
        auth_mode: str = "disabled",
        url_path: str = "/lab",
    ) -> None:
        self.workdir_root = Path(workdir_root)
        self.command = command
        self.auth_mode = auth_mode
        self.url_path = url_path

    def launch(self, info: ClusterInfo, token: str, idle_timeout_s: int) -> NotebookRecord:
        """Spawn the server with ``RAY_ADDRESS`` set to the cluster's GCS address.

        Raises:
            NotebookError: the process exited at once.
        """
        if info.endpoints is None:
            raise NotebookError("the cluster has no Ray address yet")
        self.workdir_root.mkdir(parents=True, exist_ok=True)
        workdir = Path(tempfile.mkdtemp(prefix=f"nb-{info.handle.name[:20]}-", dir=self.workdir_root))
        port = free_ports(1)[0]
        env = dict(os.environ)
        for secret_like in ("DMP_XRAY_TOKEN",):  # the dashboard's token never reaches user code
            env.pop(secret_like, None)
        env.update(
            {
                "RAY_ADDRESS": info.endpoints.gcs_address,
                "RAY_AUTH_MODE": self.auth_mode,
                "RAY_USAGE_STATS_ENABLED": "0",
                "JUPYTER_TOKEN": token,
                "JUPYTER_RUNTIME_DIR": str(workdir / ".runtime"),
                "PATH": os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")]),
            }
        )
        log_file = open(workdir / "notebook.log", "ab")  # noqa: SIM115 - handed to the child
        try:
            proc = subprocess.Popen(
                list(self.command(port, workdir, idle_timeout_s)),
                cwd=workdir,
                env=env,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        finally:
            log_file.close()
        return NotebookRecord(
            cluster="",
            kind=self.kind,
            token=token,
            started_at=now_utc().isoformat(),
            idle_timeout_s=idle_timeout_s,
            pid=proc.pid,
            pid_started=_started(proc.pid),
            port=port,
            workdir=str(workdir),
        )

    def state(self, record: NotebookRecord) -> str:
        """``running`` once the port answers, ``starting`` before, ``stopped`` when the process is gone."""
        if not _same_process(record):
            return "stopped"
        return "running" if record.port and port_accepts("127.0.0.1", record.port) else "starting"

    def url(self, record: NotebookRecord) -> str | None:
        """``http://127.0.0.1:<port>/lab?token=...``."""
        return f"http://127.0.0.1:{record.port}{self.url_path}?token={record.token}" if record.port else None

    def last_activity(self, record: NotebookRecord) -> datetime | None:
        """``last_activity`` from the server's ``/api/status`` (JupyterLab's), if it answers."""
        if not record.port:
            return None
        request = urllib.request.Request(
            f"http://127.0.0.1:{record.port}/api/status", headers={"Authorization": f"token {record.token}"}
        )
        try:
            with urllib.request.urlopen(request, timeout=2) as response:
                value = json.load(response).get("last_activity")
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")) if value else None
        except (OSError, ValueError, AttributeError):
            return None

    def stop(self, record: NotebookRecord) -> None:
        """Terminate the server's process group (only if it is still the process we started)."""
        # The working dir stays: it holds the notebooks the user saved.
        if _same_process(record) and record.pid is not None:
            terminate_tree([record.pid], grace_s=3.0)
