"""The operator as a process (``python -m ...sandbox.operator``) and ``run_sandbox`` in the foreground."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path

import pytest

from discord_ml_platform.backends import PhaseEvent
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.sandbox.apiserver import ApiServer
from discord_ml_platform.sandbox.runner import run_sandbox
from discord_ml_platform.spec import ClusterSpec

pytestmark = pytest.mark.timeout(60)


def set_operator_faults(url: str, **faults: object) -> None:
    body = json.dumps({"rules": [], "operator": faults}).encode()
    request = urllib.request.Request(f"{url}/sandbox/v1/faults", data=body, method="PUT",
                                     headers={"Content-Type": "application/json"})
    urllib.request.urlopen(request, timeout=5).close()


def reach_pending_with_a_running_pod(kubeconfig: Path, name: str) -> None:
    """Create a cluster whose head never gets ready; see the operator's pod; delete it."""
    with KubeRayBackend(kubeconfig) as backend:
        handle = backend.create(ClusterSpec(name=name, head_memory="1Gi"))
        phases: list[PhaseEvent] = []
        with pytest.raises(Exception, match="not ready after"):
            backend.wait_ready(handle, 4, phases.append)
        assert any("Running" in p.message for p in phases), phases
        backend.delete(handle, timeout_s=20)  # completes only once the operator dropped its finalizer
        assert backend.list() == []


def test_the_operator_runs_as_a_process_reading_faults_over_http(tmp_path: Path) -> None:
    with ApiServer() as server:
        kubeconfig = server.write_kubeconfig(tmp_path / "kubeconfig")
        set_operator_faults(server.url, head_never_ready=True)
        operator = subprocess.Popen(
            [sys.executable, "-m", "discord_ml_platform.sandbox.operator", "--kubeconfig", str(kubeconfig),
             "--state-dir", str(tmp_path / "state")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
            env={**os.environ, "PYTHONPATH": os.getcwd()},
        )
        try:
            assert operator.stdout is not None and "operator running" in operator.stdout.readline()
            reach_pending_with_a_running_pod(kubeconfig, "from-a-process")
        finally:
            operator.send_signal(signal.SIGTERM)
            assert operator.wait(20) == 0


def test_run_sandbox_serves_api_and_operator_until_stopped(tmp_path: Path) -> None:
    stop = threading.Event()
    kubeconfig = tmp_path / "kubeconfig"
    runner = threading.Thread(target=run_sandbox, args=(0, kubeconfig, tmp_path / "state", stop), daemon=True)
    runner.start()
    deadline = time.monotonic() + 10
    while not kubeconfig.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    time.sleep(0.3)  # the operator's first list
    import yaml

    url = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
    set_operator_faults(url, head_never_ready=True)
    try:
        reach_pending_with_a_running_pod(kubeconfig, "from-run-sandbox")
    finally:
        stop.set()
        runner.join(20)
    assert not runner.is_alive()
    assert (tmp_path / "state" / "state.json").exists()  # objects kept across restarts
