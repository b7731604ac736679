"""``dmp xray`` serves the dashboard: help, bad options, and a real start on the local backend."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = pytest.mark.timeout(60)
DMP = [sys.executable, "-m", "discord_ml_platform.cli.main"]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_help_and_bad_backend():
    help_text = subprocess.run([*DMP, "xray", "--help"], capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0 and "DMP_XRAY_TOKEN" in help_text.stdout
    bad = subprocess.run([*DMP, "xray", "--backend", "nope"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown backend" in bad.stderr


def test_serves_pages_and_api(tmp_path: Path):
    port = free_port()
    env = {**os.environ, "DMP_LOCAL_STATE_DIR": str(tmp_path / "local"), "DMP_XRAY_STATE_DIR": str(tmp_path / "x"),
           "DMP_XRAY_TOKEN": "cli-secret-token"}
    proc = subprocess.Popen([*DMP, "xray", "--backend", "local", "--port", str(port), "--log-level", "warning"],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)
    try:
        deadline = time.monotonic() + 40
        while True:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/healthz", timeout=2) as answer:
                    assert json.load(answer) == {"status": "ok"}
                    break
            except OSError:
                assert proc.poll() is None, proc.communicate()[1]
                assert time.monotonic() < deadline, "dmp xray did not answer"
                time.sleep(0.2)
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/clusters", timeout=10) as answer:
            assert json.load(answer)["clusters"] == []
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        assert "Admin token" in page and "cli-secret-token" not in page
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"X-Ray on http://127.0.0.1:{port} (local; actions enabled" in err
