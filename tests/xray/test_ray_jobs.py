"""X-Ray on a real local Ray cluster (the session's shared one): Ray jobs through the Jobs API, the
head log's tail, and the cluster page that shows both."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xray_support import make_settings

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture
def client(xray_root: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from discord_ml_platform.backends.local import LocalBackend
    from discord_ml_platform.xray.app import create_app

    app = create_app(make_settings(xray_root), {"local": LocalBackend()}, {}, run_reaper=False)
    with TestClient(app) as test_client:
        yield test_client


def test_jobs_and_logs_of_a_real_cluster(shared_cluster, client):
    from discord_ml_platform.jobs import job_client, submit_job, wait_for_job

    jobs_client = job_client(shared_cluster.endpoints.dashboard_url)
    job_id = submit_job(jobs_client, "echo xray-job-ok", entrypoint_num_cpus=0)
    assert wait_for_job(jobs_client, job_id, timeout_s=120).succeeded
    name = shared_cluster.handle.name
    base = f"/api/clusters/local/{shared_cluster.handle.namespace}/{name}"
    jobs = client.get(f"{base}/jobs").json()
    assert jobs["error"] is None
    job = next(j for j in jobs["jobs"] if j["submission_id"] == job_id)
    assert job["status"] == "SUCCEEDED" and job["entrypoint"] == "echo xray-job-ok" and job["end_time"]
    logs = client.get(f"{base}/logs", params={"lines": 50}).json()
    assert logs["source"] == "head.log" and logs["lines"]
    page = client.get(f"/clusters/local/{shared_cluster.handle.namespace}/{name}").text
    assert job_id in page and "echo xray-job-ok" in page and "SUCCEEDED" in page
    row = next(c for c in client.get("/api/clusters").json()["clusters"] if c["name"] == name)
    assert row["status"] == "ready" and row["dashboard_url"] == shared_cluster.endpoints.dashboard_url
