"""``dmp xray`` serves the dashboard: help, bad options, a real start on the local backend, and the
platform configuration of the core (prices of the catalog in effect)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest
from drivers import wait_for

from discord_ml_platform.backends.processes import free_ports

pytestmark = pytest.mark.timeout(60)
DMP = [sys.executable, "-m", "discord_ml_platform.cli.main"]


def test_help_and_bad_backend():
    help_text = subprocess.run([*DMP, "xray", "--help"], capture_output=True, text=True, timeout=30)
    assert help_text.returncode == 0 and "DMP_XRAY_TOKEN" in help_text.stdout
    bad = subprocess.run([*DMP, "xray", "--backend", "nope"], capture_output=True, text=True, timeout=30)
    assert bad.returncode == 2 and "unknown backend" in bad.stderr


def start_xray(env: dict[str, str], port: int, *args: str) -> subprocess.Popen[str]:
    """``dmp xray --backend local`` on ``port``, once it answers its health check."""
    proc = subprocess.Popen([*DMP, "xray", "--backend", "local", "--port", str(port), "--log-level", "warning", *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True)

    def answered() -> bool:
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/healthz", timeout=2) as answer:
                assert json.load(answer) == {"status": "ok"}
                return True
        except OSError:
            return proc.poll() is not None  # it exited: no use waiting

    if not wait_for(answered, 40) or proc.poll() is not None:
        proc.kill()
        raise AssertionError(f"dmp xray did not answer: {proc.communicate()[1]}")
    return proc


def xray_env(tmp_path: Path, **extra: str) -> dict[str, str]:
    """The environment of a ``dmp xray`` whose state lives under ``tmp_path`` (no other platform settings)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("DMP_") and k != "KUBECONFIG"}
    env.update(DMP_LOCAL_STATE_DIR=str(tmp_path / "local"), DMP_XRAY_STATE_DIR=str(tmp_path / "x"),
               KUBECONFIG=str(tmp_path / "no-kubeconfig"))
    env.update(extra)
    return env


def test_serves_pages_and_api(tmp_path: Path):
    [port] = free_ports(1)
    env = xray_env(tmp_path, DMP_XRAY_TOKEN="cli-secret-token")
    proc = start_xray(env, port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/clusters", timeout=10) as answer:
            assert json.load(answer)["clusters"] == []
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as answer:
            page = answer.read().decode()
        assert "Admin token" in page and "cli-secret-token" not in page
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert f"X-Ray on http://127.0.0.1:{port} (local; actions enabled" in err


def test_prices_come_from_the_platform_config_in_effect(tmp_path: Path, fake_local: Any):
    fake_local.add("priced", owner="grace", gpu_type="a10g", gpus_per_worker=2, workers=2)
    config = tmp_path / "platform.yaml"
    config.write_text("catalog:\n  types:\n    a10g: {hourly_price_usd: 2.5}\n")
    [port] = free_ports(1)
    env = xray_env(tmp_path, DMP_PLATFORM_CONFIG=str(config), DMP_LOCAL_STATE_DIR=str(fake_local.state_dir))
    proc = start_xray(env, port)
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/clusters", timeout=10) as answer:
            clusters = {c["name"]: c for c in json.load(answer)["clusters"]}
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert clusters["priced"]["total_gpus"] == 4
    assert clusters["priced"]["hourly_price_usd"] == pytest.approx(2.5 * 4)  # the built-in price is 1.01
    assert proc.returncode in (0, -15) and "Traceback" not in err, err


def test_a_bad_platform_setting_is_a_usage_error(tmp_path: Path):
    result = subprocess.run([*DMP, "xray", "--port", str(free_ports(1)[0])], capture_output=True, text=True, timeout=30,
                            env=xray_env(tmp_path, DMP_PLATFORM_CONFIG=str(tmp_path / "absent.yaml")))
    assert result.returncode == 2, result.stderr
    assert "DMP_PLATFORM_CONFIG" in result.stderr and "cannot read the platform config" in result.stderr
    assert "Traceback" not in result.stderr


def status_for_host(port: int, host: str, path: str = "/api/clusters") -> int:
    request = urllib.request.Request(f"http://127.0.0.1:{port}{path}", headers={"Host": host})
    try:
        with urllib.request.urlopen(request, timeout=10) as answer:
            return int(answer.status)
    except urllib.error.HTTPError as err:
        return int(err.code)


@pytest.mark.parametrize("host", ["0.0.0.0", "::", "10.1.2.3"])
def test_listening_beyond_loopback_needs_the_allowed_hosts(tmp_path: Path, host: str):
    result = subprocess.run([*DMP, "xray", "--backend", "local", "--host", host, "--port", str(free_ports(1)[0])],
                            capture_output=True, text=True, timeout=30, env=xray_env(tmp_path))
    assert result.returncode == 2, result.stderr
    assert "DMP_XRAY_ALLOWED_HOSTS" in result.stderr and "beyond loopback" in result.stderr
    assert "Traceback" not in result.stderr and "X-Ray on" not in result.stderr


@pytest.mark.parametrize("value", ["*", "xray.example.com:8080", "http://xray.example.com"])
def test_allowed_hosts_that_defeat_the_check_are_a_usage_error(tmp_path: Path, value: str):
    env = xray_env(tmp_path, DMP_XRAY_ALLOWED_HOSTS=value)
    result = subprocess.run([*DMP, "xray", "--backend", "local", "--host", "0.0.0.0", "--port", str(free_ports(1)[0])],
                            capture_output=True, text=True, timeout=30, env=env)
    assert result.returncode == 2 and "DMP_XRAY_ALLOWED_HOSTS" in result.stderr, result.stderr
    flag = subprocess.run([*DMP, "xray", "--backend", "local", "--allowed-host", "*", "--port", str(free_ports(1)[0])],
                          capture_output=True, text=True, timeout=30, env=xray_env(tmp_path))
    assert flag.returncode == 2 and "--allowed-host" in flag.stderr, flag.stderr


def test_only_the_allowed_hosts_are_served(tmp_path: Path):
    [port] = free_ports(1)
    proc = start_xray(xray_env(tmp_path), port)  # loopback listener: the loopback names by default
    try:
        assert status_for_host(port, f"127.0.0.1:{port}") == 200
        assert status_for_host(port, f"localhost:{port}") == 200
        assert status_for_host(port, "evil.example") == 400 and status_for_host(port, "evil.example", "/") == 400
    finally:
        proc.terminate()
        proc.communicate(timeout=20)
    [port] = free_ports(1)
    env = xray_env(tmp_path, DMP_XRAY_ALLOWED_HOSTS="xray.test,127.0.0.1")
    proc = start_xray(env, port, "--allowed-host", "xray.test", "--allowed-host", "127.0.0.1")
    try:
        assert status_for_host(port, "xray.test") == 200 and status_for_host(port, "xray.test", "/") == 200
        assert status_for_host(port, "localhost") == 400 and status_for_host(port, "evil.example") == 400
    finally:
        proc.terminate()
        _, err = proc.communicate(timeout=20)
    assert "Allowed Host names: xray.test, 127.0.0.1" in err
