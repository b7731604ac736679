"""X-Ray on a real local Ray cluster (the session's shared one): Ray jobs through the Jobs API, the
head log's tail, and the cluster page that shows both; job output only for token holders."""

from __future__ import annotations

import dataclasses
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xray_support import TOKEN, auth, make_settings

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture
def client(xray_root: Path, shared_cluster_backend: Any) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from discord_ml_platform.xray.app import create_app

    app = create_app(make_settings(xray_root), {"local": shared_cluster_backend}, {}, run_reaper=False)
    with TestClient(app) as test_client:
        yield test_client


def test_jobs_and_logs_of_a_real_cluster(shared_cluster, client):
    from discord_ml_platform.jobs import job_client, submit_job, wait_for_job

    jobs_client = job_client(shared_cluster.endpoints.dashboard_url)
    job_id = submit_job(jobs_client, "echo xray-job-ok", entrypoint_num_cpus=0)
    assert wait_for_job(jobs_client, job_id, timeout_s=120).succeeded
    name = shared_cluster.handle.name
    base = f"/api/clusters/local/{shared_cluster.handle.namespace}/{name}"
    jobs = client.get(f"{base}/jobs", headers=auth()).json()
    assert jobs["error"] is None
    job = next(j for j in jobs["jobs"] if j["submission_id"] == job_id)
    assert job["status"] == "SUCCEEDED" and job["entrypoint"] == "echo xray-job-ok" and job["end_time"]
    logs = client.get(f"{base}/logs", params={"lines": 50}, headers=auth()).json()
    assert logs["source"] == "head.log" and logs["lines"]
    page = client.get(f"/clusters/local/{shared_cluster.handle.namespace}/{name}").text
    assert name in page and "logs-locked" in page  # jobs and logs come from the API, with the token
    assert job_id not in page and "echo xray-job-ok" not in page
    row = next(c for c in client.get("/api/clusters").json()["clusters"] if c["name"] == name)
    assert row["status"] == "ready" and row["dashboard_url"] == shared_cluster.endpoints.dashboard_url


class HeadLogUnreadable:
    """The local backend, but its clusters come without ``log_dir``: like a KubeRay head pod whose log
    cannot be read, ``/logs`` then shows the newest Ray job's log (through the Jobs API)."""

    name = "local"

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def list(self, label_selector: Any = None) -> list[Any]:
        return [
            dataclasses.replace(info, details={k: v for k, v in info.details.items() if k != "log_dir"})
            for info in self.inner.list(label_selector)
        ]

    def delete(self, handle: Any, timeout_s: float = 60) -> None:
        raise AssertionError("not deleted in this test")


def test_job_logs_and_details_need_the_token(shared_cluster, shared_cluster_backend, xray_root):
    """A job whose log holds an API key: ``/logs``, ``/jobs`` and the page show nothing of it without the
    token (401); with it, the log line comes back."""
    from fastapi.testclient import TestClient

    from discord_ml_platform.jobs import job_client, submit_job, wait_for_job
    from discord_ml_platform.xray.app import create_app

    planted = f"WANDB_API_KEY=planted-{secrets.token_hex(8)}"
    jobs_client = job_client(shared_cluster.endpoints.dashboard_url)
    job_id = submit_job(jobs_client, f"echo {planted}", entrypoint_num_cpus=0)
    assert wait_for_job(jobs_client, job_id, timeout_s=120).succeeded
    secret_value = planted.split("=", 1)[1]
    app = create_app(make_settings(xray_root), {"local": HeadLogUnreadable(shared_cluster_backend)}, {}, run_reaper=False)
    handle = shared_cluster.handle
    base = f"/api/clusters/local/{handle.namespace}/{handle.name}"
    with TestClient(app) as client:
        for path in (f"{base}/logs", f"{base}/jobs"):
            for headers in ({}, auth("wrong-token"), {"Authorization": f"Basic {TOKEN}"}):
                refused = client.get(path, headers=headers)
                assert refused.status_code == 401, (path, headers, refused.text)
                assert secret_value not in refused.text and "WANDB" not in refused.text and job_id not in refused.text
            # The token is never taken from the query string either.
            assert client.get(path, params={"token": TOKEN}).status_code == 401
        page = client.get(f"/clusters/local/{handle.namespace}/{handle.name}")
        assert page.status_code == 200 and secret_value not in page.text and job_id not in page.text

        logs = client.get(f"{base}/logs", params={"lines": 50}, headers=auth())
        assert logs.status_code == 200, logs.text
        assert logs.json()["source"] == f"job {job_id}" and planted in logs.json()["lines"]
        jobs = client.get(f"{base}/jobs", headers=auth()).json()
        assert any(j["submission_id"] == job_id and j["entrypoint"] == f"echo {planted}" for j in jobs["jobs"])
