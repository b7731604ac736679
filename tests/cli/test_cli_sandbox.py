"""``dmp sandbox up|status|down``: a detached API server, found again by its PID file, stopped by it."""

from __future__ import annotations

import importlib.util
import json
import urllib.request

import pytest
import yaml
from cli_helpers import alive, describe, run_dmp
from drivers import wait_for

pytestmark = [
    pytest.mark.timeout(90),
    pytest.mark.skipif(importlib.util.find_spec("discord_ml_platform.sandbox.apiserver") is None,
                       reason="the sandbox is not part of this checkout"),
]


def test_up_status_down(env, cli_root):
    sandbox_dir = cli_root / "sandbox"
    pid = None
    try:
        up = run_dmp("sandbox", "up", env=env, timeout=60)
        assert up.returncode == 0, describe(up)
        kubeconfig = sandbox_dir / "kubeconfig"
        assert up.stdout.strip() == f"export KUBECONFIG={kubeconfig}"
        server = yaml.safe_load(kubeconfig.read_text())["clusters"][0]["cluster"]["server"]
        with urllib.request.urlopen(f"{server}/version", timeout=5) as response:
            assert response.status == 200

        status = json.loads(run_dmp("sandbox", "status", "-o", "json", env=env).stdout)
        assert status["running"] and status["answering"] and status["url"] == server
        assert status["operator"] == (importlib.util.find_spec("discord_ml_platform.sandbox.runner") is not None)
        pid = status["pid"]
        assert int((sandbox_dir / "apiserver.pid").read_text()) == pid

        again = run_dmp("sandbox", "up", "-o", "json", env=env)  # idempotent: the same server
        assert again.returncode == 0 and json.loads(again.stdout)["pid"] == pid, describe(again)
    finally:
        down = run_dmp("sandbox", "down", env=env, timeout=60)
    assert down.returncode == 0, describe(down)
    assert pid is not None and wait_for(lambda: not alive([pid]), timeout_s=10)
    assert not (sandbox_dir / "kubeconfig").exists() and not (sandbox_dir / "apiserver.pid").exists()
    status = json.loads(run_dmp("sandbox", "status", "-o", "json", env=env).stdout)
    assert not status["running"]
    assert run_dmp("sandbox", "down", env=env).returncode == 0  # stopping a stopped sandbox is fine
