"""The whole local KubeRay stand-in in one piece: API server plus operator.

In Python (tests, benchmarks, notebooks)::

    from discord_ml_platform.sandbox.runner import KubeRaySandbox

    with KubeRaySandbox(state_dir=tmp) as sandbox:
        backend = KubeRayBackend(sandbox.kubeconfig)       # a real client, a real kubeconfig
        sandbox.faults.operator.image_pull_error = True    # switches, as on ApiServer

In the foreground until SIGTERM (what ``dmp sandbox up`` starts)::

    python -m discord_ml_platform.sandbox.runner --port 8001 --kubeconfig ./kubeconfig --state-dir ./sandbox
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import tempfile
import threading
from pathlib import Path
from typing import Self

from .apiserver import ApiServer
from .faults import FaultInjector
from .operator import SandboxOperator

log = logging.getLogger(__name__)


class KubeRaySandbox:
    """An :class:`ApiServer` with a :class:`SandboxOperator` attached to it.

    Args:
        state_dir: Holds the kubeconfig, the local clusters' records and logs (a temp dir when ``None``).
        port: API server port (``0``: a free one).
        temp_root: Parent of the Ray temp dirs (default ``$DMP_RAY_TEMP_ROOT`` or ``/tmp``; keep it short).
        state_file: Objects saved at stop and loaded at start (none by default).
        memory: Memory of each local Ray node.

    Attributes:
        server: The API server.
        operator: The operator (after :meth:`start`).
        kubeconfig: Path of a kubeconfig for the server (context ``dmp-sandbox``).
    """

    def __init__(
        self,
        state_dir: str | os.PathLike[str] | None = None,
        *,
        port: int = 0,
        temp_root: str | os.PathLike[str] | None = None,
        state_file: str | os.PathLike[str] | None = None,
        memory: str = "1Gi",
    ) -> None:
        self.state_dir = Path(state_dir) if state_dir else Path(tempfile.mkdtemp(prefix="dmp-sandbox-"))
        self.pod_log_dir = self.state_dir / "pod-logs"  # the "kubelet's" container logs, served as pods/log
        self.server = ApiServer(port=port, state_file=state_file, pod_log_dir=self.pod_log_dir)
        self.temp_root = temp_root
        self.memory = memory
        self.kubeconfig = self.state_dir / "kubeconfig"
        self.operator: SandboxOperator | None = None

    @property
    def faults(self) -> FaultInjector:
        """The server's fault switches (API rules and operator faults)."""
        return self.server.faults

    @property
    def url(self) -> str:
        """The API server's URL."""
        return self.server.url

    def start(self) -> Self:
        """Start the server, write the kubeconfig, start the operator and wait for its first list."""
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.server.start()
        self.server.write_kubeconfig(self.kubeconfig)
        self.operator = SandboxOperator(
            self.server.api_client(),
            local_state_dir=self.state_dir / "local",
            temp_root=self.temp_root,
            faults_source=lambda: self.server.faults.operator,
            memory=self.memory,
            pod_log_dir=self.pod_log_dir,
        ).start()
        self.operator.wait_synced(10)
        return self

    def stop(self) -> None:
        """Stop the operator (and every local Ray cluster it runs), then the server."""
        try:
            if self.operator is not None:
                self.operator.stop()
                self.operator.api_client.close()
        finally:
            self.server.stop()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def run_sandbox(
    port: int,
    kubeconfig_path: str | os.PathLike[str],
    state_dir: str | os.PathLike[str],
    stop: threading.Event | None = None,
) -> None:
    """Run API server and operator in the foreground until SIGTERM/SIGINT (or ``stop`` is set).

    Objects are kept in ``<state_dir>/state.json`` across restarts; local Ray records and logs go to
    ``<state_dir>/local``. Prints ``sandbox ready at <url>`` once both run.

    Args:
        port: API server port (``0``: a free one).
        kubeconfig_path: Where to write the kubeconfig (context ``dmp-sandbox``).
        state_dir: The sandbox's directory.
        stop: Ends the run when set (for embedding); signals are only hooked on the main thread.
    """
    state = Path(state_dir)
    state.mkdir(parents=True, exist_ok=True)
    done = stop or threading.Event()
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, lambda *_: done.set())
    sandbox = KubeRaySandbox(state, port=port, state_file=state / "state.json")
    sandbox.kubeconfig = Path(kubeconfig_path)
    sandbox.start()
    print(f"sandbox ready at {sandbox.url} (kubeconfig {kubeconfig_path})", flush=True)
    try:
        done.wait()
    finally:
        sandbox.stop()


def main(argv: list[str] | None = None) -> int:
    """``python -m discord_ml_platform.sandbox.runner``."""
    parser = argparse.ArgumentParser(
        prog="python -m discord_ml_platform.sandbox.runner",
        description="Local Kubernetes API sandbox with the local KubeRay operator.",
    )
    parser.add_argument("--port", type=int, default=0, help="API server port (default: a free one)")
    parser.add_argument("--kubeconfig", required=True, help="where to write the kubeconfig")
    parser.add_argument("--state-dir", required=True, help="objects, local cluster records and logs")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    run_sandbox(args.port, args.kubeconfig, args.state_dir)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
