"""``dmp sandbox``: start, stop and inspect the local Kubernetes sandbox.

``up`` starts ``python -m discord_ml_platform.sandbox.runner`` (API server plus the local KubeRay
operator; ``--api-only``: ``discord_ml_platform.sandbox.apiserver`` alone) as a detached process,
in its own session and process group, and keeps its PID, kubeconfig, log and saved objects in the
sandbox dir (``$DMP_SANDBOX_DIR`` or ``~/.dmp/sandbox``). ``down`` stops exactly that process group,
by the recorded PID, after checking that the PID still runs the sandbox; the runner stops the
local Ray clusters of its operator on the way out.
"""

from __future__ import annotations

import contextlib
import importlib.util
import os
import signal
import subprocess
import sys
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer

from discord_ml_platform.cli.errors import CliError
from discord_ml_platform.cli.output import OutputFormat, OutputOpt, print_data, stderr

SANDBOX_DIR_ENV = "DMP_SANDBOX_DIR"
APISERVER_MODULE = "discord_ml_platform.sandbox.apiserver"
# API server plus the local KubeRay operator (RayClusters become local Ray processes).
RUNNER_MODULE = "discord_ml_platform.sandbox.runner"
SERVER_MODULES = (RUNNER_MODULE, APISERVER_MODULE)
READY_LINE = "sandbox ready at"

app = typer.Typer(
    help="Start, stop and inspect the local Kubernetes sandbox (a fake API server for the kuberay backend).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


@dataclass(frozen=True)
class SandboxPaths:
    """Files of one sandbox."""

    root: Path

    @property
    def pid_file(self) -> Path:
        """PID of the API server process (also its process group id)."""
        return self.root / "apiserver.pid"

    @property
    def kubeconfig(self) -> Path:
        """Kubeconfig pointing at the server (context ``dmp-sandbox``)."""
        return self.root / "kubeconfig"

    @property
    def log(self) -> Path:
        """The server's stdout and stderr."""
        return self.root / "apiserver.log"

    @property
    def state_file(self) -> Path:
        """Objects saved when the server stops and loaded when it starts."""
        return self.root / "state.json"


def sandbox_paths() -> SandboxPaths:
    """The sandbox dir: ``$DMP_SANDBOX_DIR`` or ``~/.dmp/sandbox``."""
    root = os.environ.get(SANDBOX_DIR_ENV) or str(Path.home() / ".dmp" / "sandbox")
    return SandboxPaths(Path(root).expanduser())


def _module_exists(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _require_sandbox() -> None:
    if not _module_exists(APISERVER_MODULE):
        raise CliError(
            f"the sandbox ({APISERVER_MODULE}) is not part of this installation",
            hint="use a build that includes discord_ml_platform.sandbox, or point KUBECONFIG at a real cluster",
        )


def running_pid(paths: SandboxPaths) -> int | None:
    """The recorded PID if that process runs and is our API server (a reused PID is not ours)."""
    import psutil

    try:
        pid = int(paths.pid_file.read_text().strip())
    except (OSError, ValueError):
        return None
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return None
        cmdline = " ".join(proc.cmdline())
        return pid if any(module in cmdline for module in SERVER_MODULES) else None
    except psutil.Error:
        return None


def runs_operator(pid: int | None) -> bool:
    """Whether the sandbox process ``pid`` includes the KubeRay operator (the runner)."""
    import psutil

    if pid is None:
        return False
    try:
        return RUNNER_MODULE in " ".join(psutil.Process(pid).cmdline())
    except psutil.Error:
        return False


def server_url(paths: SandboxPaths) -> str | None:
    """The server URL written into the kubeconfig, once it exists."""
    import yaml

    try:
        config = yaml.safe_load(paths.kubeconfig.read_text()) or {}
        return str(config["clusters"][0]["cluster"]["server"])
    except (OSError, yaml.YAMLError, KeyError, IndexError, TypeError):
        return None


def answers(url: str, timeout_s: float = 1.0) -> bool:
    """Whether the server's ``/healthz`` answers 200."""
    try:
        with urllib.request.urlopen(f"{url}/healthz", timeout=timeout_s) as response:
            return response.status == 200
    except OSError:
        return False


def _tail(path: Path, lines: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return ""


def _log_since(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as handle:
            handle.seek(offset)
            return handle.read().decode(errors="replace")
    except OSError:
        return ""


def _describe(paths: SandboxPaths, pid: int | None) -> dict[str, Any]:
    url = server_url(paths) if pid else None
    return {
        "running": pid is not None,
        "answering": bool(url and answers(url)),
        "operator": runs_operator(pid),
        "pid": pid,
        "url": url,
        "kubeconfig": str(paths.kubeconfig) if pid else None,
        "log": str(paths.log),
        "state_file": str(paths.state_file),
        "dir": str(paths.root),
    }


def _print_up(info: dict[str, Any], output: OutputFormat, note: str) -> None:
    if output in (OutputFormat.json, OutputFormat.yaml):
        print_data(info, output)
        return
    what = "with the KubeRay operator" if info["operator"] else "API server only, no operator"
    stderr().print(f"{note} at {info['url']} ({what}, pid {info['pid']}); log: {info['log']}", markup=False)
    stderr().print("use it with:", markup=False)
    print(f"export KUBECONFIG={info['kubeconfig']}", flush=True)


@app.command(
    "up",
    epilog='Examples:\n\n  dmp sandbox up\n\n  eval "$(dmp sandbox up)" && dmp cluster list --backend kuberay\n\n  DMP_SANDBOX_DIR=/tmp/sb dmp sandbox up --port 8001 --fresh',
)
def up(
    port: Annotated[int, typer.Option("--port", help="TCP port on 127.0.0.1 (default: a free one).")] = 0,
    fresh: Annotated[bool, typer.Option("--fresh", help="Forget the objects saved by the last run.")] = False,
    api_only: Annotated[
        bool, typer.Option("--api-only", help="Only the API server: no operator, RayClusters stay pending.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the server to answer.")] = 60,
    output: OutputOpt = OutputFormat.plain,
) -> None:
    """Start the sandbox (API server and KubeRay operator) in the background and print the `export KUBECONFIG=...` line.

    Idempotent: when it already runs, prints the same line again.
    """
    _require_sandbox()
    paths = sandbox_paths()
    pid = running_pid(paths)
    if pid is not None:
        _print_up(_describe(paths, pid), output, "sandbox already running")
        return
    paths.root.mkdir(parents=True, exist_ok=True)
    paths.kubeconfig.unlink(missing_ok=True)  # stale: it names the last run's port
    if fresh:
        paths.state_file.unlink(missing_ok=True)
    with_operator = not api_only and _module_exists(RUNNER_MODULE)
    if with_operator:
        cmd = [
            sys.executable,
            "-m",
            RUNNER_MODULE,
            "--port",
            str(port),
            "--kubeconfig",
            str(paths.kubeconfig),
            "--state-dir",
            str(paths.root),
        ]
    else:
        cmd = [
            sys.executable,
            "-m",
            APISERVER_MODULE,
            "--port",
            str(port),
            "--kubeconfig",
            str(paths.kubeconfig),
            "--state-file",
            str(paths.state_file),
        ]
    log_start = paths.log.stat().st_size if paths.log.exists() else 0
    with open(paths.log, "ab") as log:
        # Own session: the server outlives this command and a Ctrl-C in the shell does not reach it.
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=paths.root
        )
    paths.pid_file.write_text(f"{proc.pid}\n")
    deadline = time.monotonic() + timeout
    while True:
        url = server_url(paths)
        # The runner says when its operator has synced too; the API server alone is ready when it answers.
        if url and answers(url, 0.5) and (not with_operator or READY_LINE in _log_since(paths.log, log_start)):
            break
        if proc.poll() is not None:
            paths.pid_file.unlink(missing_ok=True)
            raise CliError(f"the sandbox API server exited with code {proc.returncode}; its log:\n{_tail(paths.log)}")
        if time.monotonic() > deadline:
            _stop_group(proc.pid, grace_s=5)
            paths.pid_file.unlink(missing_ok=True)
            raise CliError(f"the sandbox API server did not answer within {timeout:.0f}s; its log:\n{_tail(paths.log)}")
        time.sleep(0.1)
    _print_up(_describe(paths, proc.pid), output, "sandbox ready")


def _stop_group(pid: int, grace_s: float) -> bool:
    """SIGTERM the process group led by ``pid``, SIGKILL it after ``grace_s``; True if it had to be killed."""
    import psutil

    try:
        os.killpg(pid, signal.SIGTERM)
    except (ProcessLookupError, PermissionError):
        return False
    try:
        psutil.Process(pid).wait(timeout=grace_s)
        return False
    except psutil.TimeoutExpired:
        pass
    except psutil.Error:
        return False
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    return True


@app.command(
    "down", epilog="Examples:\n\n  dmp sandbox down\n\n  dmp sandbox down --purge   (also forget the saved objects)"
)
def down(
    purge: Annotated[bool, typer.Option("--purge", help="Also delete the saved objects and the log.")] = False,
    timeout: Annotated[
        float, typer.Option("--timeout", help="Seconds to wait (it stops its local Ray clusters) before killing it.")
    ] = 60,
) -> None:
    """Stop the sandbox started by `dmp sandbox up` (by its recorded PID), and the Ray clusters its operator runs."""
    _require_sandbox()
    paths = sandbox_paths()
    pid = running_pid(paths)
    if pid is None:
        stderr().print("the sandbox is not running", markup=False)
    else:
        killed = _stop_group(pid, timeout)
        stderr().print(f"sandbox stopped (pid {pid}{', killed' if killed else ''})", markup=False)
    paths.pid_file.unlink(missing_ok=True)
    paths.kubeconfig.unlink(missing_ok=True)
    if purge:
        for path in (paths.state_file, paths.log):
            path.unlink(missing_ok=True)
    if os.environ.get("KUBECONFIG") == str(paths.kubeconfig):
        print("unset KUBECONFIG", flush=True)


@app.command("status", epilog="Examples:\n\n  dmp sandbox status\n\n  dmp sandbox status -o json")
def status(output: OutputOpt = OutputFormat.table) -> None:
    """Show whether the sandbox runs, where, and which kubeconfig points at it."""
    _require_sandbox()
    paths = sandbox_paths()
    info = _describe(paths, running_pid(paths))
    if output in (OutputFormat.json, OutputFormat.yaml):
        print_data(info, output)
        return
    if not info["running"]:
        print(f"sandbox: not running (dir {info['dir']}); start it with: dmp sandbox up")
        return
    health = "answering" if info["answering"] else "NOT answering"
    operator = "with the KubeRay operator" if info["operator"] else "API server only"
    print(f"sandbox: running ({operator}), {health}, pid {info['pid']}, {info['url']}")
    print(f"export KUBECONFIG={info['kubeconfig']}")
