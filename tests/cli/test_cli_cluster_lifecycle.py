"""A cluster's life through the CLI on a real backend: create, list, jobs, sweep, delete.

Written against ``CliTarget`` (see ``conftest.cli_target``), so the same flow runs on every backend
the fixture is parametrized with. The tests run in file order and share one cluster per module.
"""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from cli_helpers import CliTarget, alive, describe, processes_naming
from drivers import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]

NAME = "cli-flow"


@pytest.fixture(scope="module")
def cluster(cli_target: CliTarget) -> dict:
    """The module's cluster, created by ``dmp cluster create --wait -o json``."""
    return cli_target.json(
        "cluster", "create", NAME, "--gpu-type", "cpu", "--workers", "0", "--memory", "1Gi",
        "--head-memory", "1Gi", "--wait", timeout=200,
    )


def test_create_waits_and_reports_endpoints_and_phases(cluster):
    assert cluster["name"] == NAME and cluster["status"] == "ready"
    assert cluster["endpoints"]["dashboard_url"].startswith("http://")
    phases = [p["phase"] for p in cluster["phases"]]
    assert phases[0] == "pending" and phases[-1] == "ready"


def test_list_shows_the_cluster_with_its_columns(cli_target, cluster):
    rows = [r for r in cli_target.clusters() if r["name"] == NAME]
    assert len(rows) == 1
    row = rows[0]
    assert row["owner"] == "cli-tests" and row["gpu_type"] == "cpu" and row["total_gpus"] == 0
    assert (row["ready_workers"], row["desired_workers"]) == (0, 0)
    assert row["status"] == "ready" and not row["expired"]
    assert row["hourly_price_usd"] == pytest.approx(0.10)
    assert datetime.fromisoformat(row["expires_at"]) > datetime.now(UTC)

    table = cli_target.ok("cluster", "list").stdout
    header = table.splitlines()[0].split()
    assert header[:2] == ["NAME", "OWNER"] and "$/HOUR" in header and "EXPIRES" in header
    assert NAME in table
    assert [r["name"] for r in cli_target.json("cluster", "list", "--owner", "cli-tests")] == [NAME]
    assert cli_target.json("cluster", "list", "--owner", "someone-else") == []
    assert cli_target.json("cluster", "list", "--gpu-type", "h100-80gb") == []


def test_get_shows_endpoints_and_details(cli_target, cluster):
    document = cli_target.json("cluster", "get", NAME)
    assert document["endpoints"]["dashboard_url"] == cluster["endpoints"]["dashboard_url"]
    assert isinstance(document["details"], dict)
    assert "Dashboard:" in cli_target.ok("cluster", "get", NAME).stdout


def test_create_refuses_an_existing_name(cli_target, cluster):
    result = cli_target.run("cluster", "create", NAME, "--workers", "0")
    assert result.returncode == 1, describe(result)
    assert "already exists" in result.stderr


def test_job_submit_streams_the_output_and_exits_0(cli_target, cluster):
    result = cli_target.run("job", "submit", "--cluster", NAME, "--", "python", "-c", "print('hello from dmp')")
    assert result.returncode == 0, describe(result)
    assert "hello from dmp" in result.stdout.splitlines()
    assert "SUCCEEDED" in result.stderr


def test_a_failing_job_exits_nonzero_with_its_status(cli_target, cluster):
    result = cli_target.run("job", "submit", "-c", NAME, "--", "python", "-c", "import sys; print('about to fail'); sys.exit(3)")
    assert result.returncode == 1, describe(result)
    assert "about to fail" in result.stdout
    assert "FAILED" in result.stderr


def test_job_working_dir_runtime_env_and_json_outcome(cli_target, cluster, tmp_path):
    (tmp_path / "data.txt").write_text("from the working dir")
    env_file = tmp_path / "env.yaml"
    env_file.write_text("env_vars:\n  GREETING: hi\n")
    outcome = cli_target.json(
        "job", "submit", "-c", NAME, "--working-dir", str(tmp_path), "--runtime-env", str(env_file), "--",
        "python", "-c", "import os; print(open('data.txt').read(), os.environ['GREETING'])",
    )
    assert outcome["status"] == "SUCCEEDED"
    logs = cli_target.ok("job", "logs", outcome["submission_id"], "--cluster", NAME).stdout
    assert "from the working dir hi" in logs


def test_no_wait_status_stop_and_list(cli_target, cluster):
    job_id = cli_target.ok("job", "submit", "-c", NAME, "--no-wait", "--", "python", "-c", "import time; time.sleep(120)").stdout.strip()
    assert job_id.startswith("dmp-")  # ids are chosen client-side so retried submissions stay idempotent
    status = cli_target.json("job", "status", job_id, "--cluster", NAME)
    assert status["status"] in ("PENDING", "RUNNING")
    stopped = cli_target.ok("job", "stop", job_id, "--cluster", NAME, timeout=90)
    assert "STOPPED" in stopped.stdout
    jobs = {j["submission_id"]: j for j in cli_target.json("job", "list", "--cluster", NAME)}
    assert jobs[job_id]["status"] == "STOPPED"
    assert any(j["status"] == "SUCCEEDED" for j in jobs.values())
    assert any(j["status"] == "FAILED" for j in jobs.values())
    unknown = cli_target.run("job", "status", "raysubmit_none", "--cluster", NAME)
    assert unknown.returncode == 1 and "no job 'raysubmit_none'" in unknown.stderr, describe(unknown)


def test_sweep_deletes_expired_clusters_only(cli_target, cluster):
    short = "cli-expiring"
    cli_target.ok("cluster", "create", short, "--workers", "0", "--memory", "1Gi", "--head-memory", "1Gi", "--ttl", "1s")
    pids, marker = cli_target.cluster_pids(short)
    row = next(r for r in cli_target.clusters() if r["name"] == short)
    expires = datetime.fromisoformat(row["expires_at"])
    assert wait_for(lambda: datetime.now(UTC) > expires, timeout_s=30, interval_s=0.1)

    planned = cli_target.json("cluster", "sweep", "--dry-run")
    assert [(r["name"], r["action"]) for r in planned] == [(short, "would delete")]
    assert "expired" in planned[0]["reason"]
    assert short in [r["name"] for r in cli_target.clusters()]

    swept = cli_target.json("cluster", "sweep")
    assert [(r["name"], r["action"]) for r in swept] == [(short, "deleted")]
    names = [r["name"] for r in cli_target.clusters()]
    assert short not in names and NAME in names
    assert wait_for(lambda: not alive(pids), timeout_s=15)
    if marker:
        assert processes_naming(marker) == []


def test_sweep_leaves_another_deployments_clusters_to_their_own_sweeper(cli_target, cluster):
    """Two deployments sharing a namespace: each `dmp cluster sweep` takes only its own expired clusters."""
    from dataclasses import replace

    other = replace(cli_target, env={**cli_target.env, "DMP_DEPLOYMENT": "other-team"})
    name = "cli-other-deployment"
    other.ok("cluster", "create", name, "--workers", "0", "--memory", "1Gi", "--head-memory", "1Gi", "--ttl", "1s")
    row = next(r for r in cli_target.clusters() if r["name"] == name)
    assert row["labels"]["mlplatform.discord.com/deployment"] == "other-team"
    expires = datetime.fromisoformat(row["expires_at"])
    assert wait_for(lambda: datetime.now(UTC) > expires, timeout_s=30, interval_s=0.1)

    assert cli_target.json("cluster", "sweep", "--dry-run") == []  # not this deployment's
    planned = cli_target.json("cluster", "sweep", "--dry-run", "--all-deployments")
    assert [(r["name"], r["action"]) for r in planned] == [(name, "would delete")]
    swept = other.json("cluster", "sweep")  # its own deployment's sweep takes it
    assert [(r["name"], r["action"]) for r in swept] == [(name, "deleted")]
    assert name not in [r["name"] for r in cli_target.clusters()]


def test_delete_asks_unless_yes_then_stops_every_process(cli_target, cluster):
    pids, marker = cli_target.cluster_pids(NAME)
    assert alive(pids) == pids

    refused = cli_target.run("cluster", "delete", NAME)  # stdin is not a terminal: no silent yes
    assert refused.returncode == 2 and "pass -y" in refused.stderr, describe(refused)
    assert NAME in [r["name"] for r in cli_target.clusters()]

    deleted = cli_target.ok("cluster", "delete", NAME, "-y")
    assert f"deleted cluster {NAME}" in deleted.stdout
    assert cli_target.clusters() == []
    assert wait_for(lambda: not alive(pids), timeout_s=15), alive(pids)
    if marker:
        assert processes_naming(marker) == []

    again = cli_target.run("cluster", "delete", NAME, "-y")
    assert again.returncode == 1 and f"no cluster named '{NAME}'" in again.stderr, describe(again)
