"""``dmp cluster list`` and ``sweep`` show every cluster, even beside one whose labels cannot be read.

Local records whose heads are ``sleep`` processes of ours (the backend lists them like real
clusters); the same against the sandbox's API server is in ``tests/kuberay/test_cleanup_ownership.py``.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from cli_helpers import describe, run_dmp

from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.backends.local_records import LocalClusterRecord
from discord_ml_platform.backends.processes import start_time
from discord_ml_platform.spec.labels import EXPIRES_AT, cluster_labels

pytestmark = pytest.mark.timeout(120)

YEAR_10000 = "253402300800"


@pytest.fixture
def heads() -> Iterator[list[subprocess.Popen[bytes]]]:
    procs: list[subprocess.Popen[bytes]] = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)


def add_record(root: Path, heads: list, name: str, *, expired: bool = False, labels: dict[str, str] | None = None):
    backend = LocalBackend(state_dir=root / "state", temp_root=root / "r")
    backend.temp_root.mkdir(exist_ok=True)
    head = subprocess.Popen(["sleep", "600"], start_new_session=True, stdin=subprocess.DEVNULL)
    heads.append(head)
    created = datetime.now(UTC) - timedelta(days=2 if expired else 0)
    all_labels = cluster_labels(name=name, owner="cli-tests", team="t", gpu_type="cpu",
                                expires_at=created + timedelta(days=1), deployment="default")
    all_labels.update(labels or {})
    backend._save(LocalClusterRecord(
        name=name, labels=all_labels, created_at=created.isoformat(), desired_workers=0,
        temp_dir=tempfile.mkdtemp(prefix="dmp-", dir=backend.temp_root), log_dir=str(root / "state"),
        auth_mode="disabled", head_pid=head.pid, gcs_port=1, dashboard_port=1, client_port=1,
        spec={"name": name, "namespace": "local", "gpu_type": "cpu"}, head_started=start_time(head.pid)))


def test_list_and_sweep_exit_0_and_show_every_cluster_beside_an_unreadable_expiry(cli_root, env, heads):
    add_record(cli_root, heads, "a-bad-expiry", labels={EXPIRES_AT: YEAR_10000})
    add_record(cli_root, heads, "b-fine")
    add_record(cli_root, heads, "c-expired", expired=True)

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
    assert heads[2].wait(timeout=10) is not None  # the expired cluster's head was stopped
    assert heads[0].poll() is None and heads[1].poll() is None
