"""Drive ``dmp`` as a subprocess with its state under a temp root of the test's own."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

PROJECT_ROOT = Path(__file__).resolve().parents[2]
# Variables that would make the CLI look at a real cluster or another config than the test's: every
# platform setting (DMP_*: backend, kubeconfig, config file, images...) and the standard ones.
_SCRUBBED = ("KUBECONFIG", "RAY_ADDRESS", "KUBERNETES_SERVICE_HOST")


def cli_env(root: Path, **extra: str) -> dict[str, str]:
    """Environment for a ``dmp`` subprocess whose every piece of state lives under ``root``.

    ``KUBECONFIG`` names a file that does not exist, so backend auto-detection is deterministic
    (local) whatever the machine's ``~/.kube/config`` says.
    """
    env = {k: v for k, v in os.environ.items() if k not in _SCRUBBED and not k.startswith("DMP_")}
    env.update(
        DMP_LOCAL_STATE_DIR=str(root / "state"),
        DMP_RAY_TEMP_ROOT=str(root / "r"),
        DMP_SANDBOX_DIR=str(root / "sandbox"),
        DMP_DATA_ROOT=str(root / "data"),
        DAGSTER_HOME=str(root / "dagster_home"),
        RAY_AUTH_MODE="disabled",
        RAY_USAGE_STATS_ENABLED="0",
        DMP_OWNER="cli-tests",
        KUBECONFIG=str(root / "no-such-kubeconfig"),
        NO_COLOR="1",
        COLUMNS="200",
        PYTHONUNBUFFERED="1",
    )
    env.update(extra)
    return env


def run_dmp(*args: str, env: dict[str, str], timeout: float = 120, stdin: str | None = None,
            cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    """``python -m discord_ml_platform.cli.main ARGS`` with captured text output."""
    return subprocess.run(
        [sys.executable, "-m", "discord_ml_platform.cli.main", *args],
        env=env, capture_output=True, text=True, timeout=timeout, input=stdin if stdin is not None else "",
        cwd=cwd or PROJECT_ROOT,
    )


def describe(result: subprocess.CompletedProcess[str]) -> str:
    """Exit code and output of a run, for assertion messages."""
    return f"exit {result.returncode}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"


@dataclass
class CliTarget:
    """One backend the CLI drives in a test: its name, environment and where its state lives.

    The lifecycle tests are written against this class, so a kuberay+sandbox target can be added
    as another fixture parameter without touching the tests.
    """

    backend: str
    root: Path
    env: dict[str, str]

    def run(self, *args: str, timeout: float = 120, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``dmp`` against this target."""
        return run_dmp(*args, env=self.env, timeout=timeout, stdin=stdin)

    def ok(self, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run ``dmp`` and require exit code 0."""
        result = self.run(*args, timeout=timeout)
        assert result.returncode == 0, describe(result)
        return result

    def json(self, *args: str, timeout: float = 120) -> Any:
        """Run ``dmp ... -o json`` and parse its stdout."""
        cut = args.index("--") if "--" in args else len(args)  # options go before the job's command
        return json.loads(self.ok(*args[:cut], "-o", "json", *args[cut:], timeout=timeout).stdout)

    def clusters(self) -> list[dict[str, Any]]:
        """``dmp cluster list -A -o json``."""
        return self.json("cluster", "list", "-A")

    def cluster_pids(self, name: str) -> tuple[list[int], str | None]:
        """PIDs a cluster started and a marker naming its processes, from the local Ray record behind it.

        local: the backend's record ``<state>/<name>.json``; kuberay on the sandbox: the operator's
        record ``<sandbox>/local/<name>-<digest>.json``.
        """
        if self.backend == "local":
            paths = [self.root / "state" / f"{name}.json"]
        else:
            paths = sorted((self.root / "sandbox" / "local").glob(f"{name}-*.json"))
        assert len(paths) == 1 and paths[0].exists(), f"no single local Ray record for {name}: {paths}"
        record = json.loads(paths[0].read_text())
        return [record["head_pid"], *record["worker_pids"]], record["temp_dir"]


def alive(pids: list[int]) -> list[int]:
    """Those of ``pids`` that still run (zombies count as gone)."""
    import psutil

    running = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                running.append(pid)
        except psutil.Error:
            continue
    return running


def processes_naming(marker: str) -> list[str]:
    """Command lines of live processes that mention ``marker``."""
    from discord_ml_platform.backends.processes import live_command_lines

    return live_command_lines(marker)
