"""``dagster dev`` (webserver + daemon) with the project's ``dagster.yaml``, for tests that launch runs
the way the Launchpad does and need the daemon (queued runs, sensors, run monitoring)."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from discord_ml_platform.backends.processes import free_ports, terminate_tree
from drivers import wait_for

__all__ = ["dagster_dev"]

ROOT = Path(__file__).resolve().parents[2]


@contextmanager
def dagster_dev(
    tmp_path: Path, *location: str, ready_timeout_s: float = 180, home: Path | None = None
) -> Iterator[tuple[int, Path, subprocess.Popen[bytes]]]:
    """Run ``dagster dev <location args>`` in the project root; yield its port, its ``DAGSTER_HOME``
    (``home`` to reuse one, as after a restart) and its process (the leader of its process group)."""
    if home is None:
        home = tmp_path / "dagster_home"
        home.mkdir()
        shutil.copy(ROOT / "dagster.yaml", home / "dagster.yaml")
    [port] = free_ports(1)
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    log_path = tmp_path / f"dagster-dev-{port}.log"
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [str(Path(sys.executable).parent / "dagster"), "dev", *location, "-h", "127.0.0.1", "-p", str(port)],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True,
        )
        try:

            def answering() -> bool:
                assert process.poll() is None, log_path.read_text()[-3000:]
                try:
                    with urllib.request.urlopen(f"http://127.0.0.1:{port}/server_info", timeout=2):
                        return True
                except OSError:
                    return False

            assert wait_for(answering, ready_timeout_s, 0.5), (
                f"dagster dev did not answer within {ready_timeout_s} s:\n{log_path.read_text()[-3000:]}"
            )
            yield port, home, process
        finally:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(30)
            terminate_tree([process.pid], grace_s=5)
