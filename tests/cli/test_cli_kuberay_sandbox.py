"""The cluster commands on the kuberay backend against ``dmp sandbox up --api-only`` (no operator).

Without a KubeRay operator, clusters stay ``pending``: these tests cover what needs only the API
(create, list, get, sweep, delete, backend auto-detection, a wait that cannot finish) in seconds.
The full flow with jobs runs on the sandbox with its operator in ``test_cli_cluster_lifecycle``.
"""

from __future__ import annotations

import importlib.util
from datetime import UTC, datetime

import pytest
from cli_helpers import describe
from drivers import wait_for

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        importlib.util.find_spec("discord_ml_platform.sandbox.apiserver") is None
        or importlib.util.find_spec("discord_ml_platform.backends.kuberay") is None,
        reason="needs the sandbox and the kuberay backend",
    ),
]


def test_an_answering_kubeconfig_selects_kuberay(kuberay_target):
    result = kuberay_target.ok("cluster", "list", "-A", "-o", "json")
    assert "using backend kuberay" in result.stderr
    assert result.stdout.strip() == "[]"
    local = kuberay_target.run("cluster", "list", "-o", "json", "--backend", "local")
    assert local.returncode == 0 and "using backend kuberay" not in local.stderr, describe(local)


def test_create_list_get_and_delete(kuberay_target):
    created = kuberay_target.json("cluster", "create", "kr-exp", "--gpu-type", "h100-80gb", "--workers", "2",
                                  "--gpus-per-worker", "4", "--ttl", "1h")
    assert created["backend"] == "kuberay" and created["status"] == "requested"
    assert created["hourly_price_usd"] == pytest.approx(6.98 * 8)

    rows = kuberay_target.clusters()
    assert [(r["name"], r["namespace"], r["gpu_type"], r["desired_workers"]) for r in rows] == [("kr-exp", "ray", "h100-80gb", 2)]
    assert rows[0]["owner"] == "cli-tests" and not rows[0]["expired"]
    assert kuberay_target.json("cluster", "list", "--gpu-type", "cpu") == []

    details = kuberay_target.json("cluster", "get", "kr-exp")
    assert {"conditions", "events"} <= set(details["details"])
    assert "Status:" in kuberay_target.ok("cluster", "get", "kr-exp").stdout

    duplicate = kuberay_target.run("cluster", "create", "kr-exp", "--workers", "1")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr, describe(duplicate)

    kuberay_target.ok("cluster", "delete", "kr-exp", "-y")
    assert kuberay_target.clusters() == []


def test_sweep_deletes_only_expired_clusters(kuberay_target):
    kuberay_target.ok("cluster", "create", "kr-keep", "--workers", "0")
    kuberay_target.ok("cluster", "create", "kr-old", "--workers", "0", "--ttl", "1s")
    old = next(r for r in kuberay_target.clusters() if r["name"] == "kr-old")
    expires = datetime.fromisoformat(old["expires_at"])
    assert wait_for(lambda: datetime.now(UTC) > expires, timeout_s=30, interval_s=0.1)

    planned = kuberay_target.json("cluster", "sweep", "--dry-run")
    assert [(r["name"], r["action"]) for r in planned] == [("kr-old", "would delete")]
    swept = kuberay_target.json("cluster", "sweep")
    assert [(r["name"], r["action"]) for r in swept] == [("kr-old", "deleted")]
    assert [r["name"] for r in kuberay_target.clusters()] == ["kr-keep"]
    kuberay_target.ok("cluster", "delete", "kr-keep", "-y")


def test_waiting_without_an_operator_fails_with_the_phase_and_a_hint(kuberay_target):
    result = kuberay_target.run("cluster", "create", "kr-stuck", "--workers", "0", "--wait", "--timeout", "3")
    assert result.returncode == 1, describe(result)
    assert "pending" in result.stderr and "dmp cluster delete kr-stuck -y" in result.stderr
    kuberay_target.ok("cluster", "delete", "kr-stuck", "-y")
