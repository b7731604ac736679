"""Kill a run's step while it gets its cluster, then sweep as the cleanup sensor would (tests only)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import dagster as dg

from discord_ml_platform.backends import ClusterBackend
from resources.cleanup import build_cluster_cleanup_sensor

SCRIPT = Path(__file__).resolve().parent / "killable_step.py"
ROOT = SCRIPT.parents[2]


def kill_step_at(phase: str, sig: signal.Signals, kubeconfig: str | None = None, timeout_s: float = 180) -> str:
    """Run :mod:`killable_step` until it reaches ``phase``, send it ``sig``, return its output."""
    args = [sys.executable, str(SCRIPT), phase, *([kubeconfig] if kubeconfig else [])]
    step = subprocess.Popen(args, cwd=ROOT, env={**os.environ, "PYTHONUNBUFFERED": "1"}, stdout=subprocess.PIPE,
                            stderr=subprocess.STDOUT, text=True)
    output: list[str] = []
    try:
        assert step.stdout is not None
        for line in step.stdout:  # blocks until the marker or the end of the process
            output.append(line)
            if line.startswith(f"AT {phase}"):
                break
        assert any(line.startswith(f"AT {phase}") for line in output), "".join(output)[-3000:]
        step.send_signal(sig)
        rest, _ = step.communicate(timeout=timeout_s)
        output.append(rest)
    finally:
        if step.poll() is None:
            step.kill()
            step.wait(10)
    return "".join(output)


def sweep_once(backend_factory: Callable[[], ClusterBackend]) -> str:
    """One tick of the cleanup sensor on a Dagster instance that never heard of the killed run."""
    sensor = build_cluster_cleanup_sensor(backend_factory=backend_factory)
    with dg.instance_for_test() as instance:
        data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert not data.run_requests
    return str(data.skip_message)
