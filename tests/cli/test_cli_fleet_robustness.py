"""``dmp cluster list`` and ``sweep`` show every cluster, even beside one whose labels cannot be read.

Local records whose heads are ``sleep`` processes of ours (the backend lists them like real
clusters); the same against the sandbox's API server is in ``tests/kuberay/test_cleanup_ownership.py``.
"""

from __future__ import annotations

import json

import pytest
from cli_helpers import describe, run_dmp
from drivers.local_records import YEAR_10000, add_sleeping_cluster

from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.spec.labels import EXPIRES_AT

pytestmark = pytest.mark.timeout(120)


def test_list_and_sweep_exit_0_and_show_every_cluster_beside_an_unreadable_expiry(cli_root, env, sleepers):
    backend = LocalBackend(state_dir=cli_root / "state", temp_root=cli_root / "r")  # where `env` points dmp
    backend.temp_root.mkdir(exist_ok=True)
    bad_head = add_sleeping_cluster(backend, sleepers, "a-bad-expiry", owner="cli-tests",
                                    raw_labels={EXPIRES_AT: YEAR_10000})
    fine_head = add_sleeping_cluster(backend, sleepers, "b-fine", owner="cli-tests")
    expired_head = add_sleeping_cluster(backend, sleepers, "c-expired", owner="cli-tests", expired=True)

    listed = run_dmp("cluster", "list", "-A", "-o", "json", env=env)
    assert listed.returncode == 0, describe(listed)
    rows = {r["name"]: r for r in json.loads(listed.stdout)}
    assert sorted(rows) == ["a-bad-expiry", "b-fine", "c-expired"]
    assert rows["a-bad-expiry"]["expires_at"] is None and YEAR_10000 in rows["a-bad-expiry"]["problems"][0]
    assert f"warning: cluster local/a-bad-expiry: label {EXPIRES_AT}='{YEAR_10000}'" in listed.stderr

    table = run_dmp("cluster", "list", "-A", env=env)
    assert table.returncode == 0, describe(table)
    assert "invalid label" in table.stdout and "b-fine" in table.stdout and "c-expired" in table.stdout

    planned = run_dmp("cluster", "sweep", "--dry-run", "-o", "json", env=env)
    assert planned.returncode == 0, describe(planned)
    assert [(r["name"], r["action"]) for r in json.loads(planned.stdout)] == [("c-expired", "would delete")]

    swept = run_dmp("cluster", "sweep", "-o", "json", env=env)
    assert swept.returncode == 0, describe(swept)
    assert [(r["name"], r["action"]) for r in json.loads(swept.stdout)] == [("c-expired", "deleted")]
    assert expired_head.wait(timeout=10) is not None  # the expired cluster's head was stopped
    assert bad_head.poll() is None and fine_head.poll() is None
