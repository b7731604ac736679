"""Lifecycle of the local backend: real Ray processes started, listed, stopped by PID."""

from __future__ import annotations

import json
import os
import shlex
import signal
import urllib.request

import pytest

from discord_ml_platform.backends import ClusterNotReadyError, PhaseEvent
from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.backends.local_records import LocalClusterRecord
from discord_ml_platform.jobs import job_client
from discord_ml_platform.jobs.client import wait_for_job
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.labels import OWNER, RUN_ID

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def still_running(backend: LocalBackend, record: LocalClusterRecord) -> list[int]:
    """PIDs of the record's head and workers that still run as the processes the backend started."""
    workers = (record.worker_process(index) for index in range(len(record.worker_pids)))
    return [proc.pid for proc in (record.head_process(backend.temp_root), *workers) if proc is not None]


def test_cluster_with_a_worker_reaches_ready_reports_phases_and_is_fully_stopped(session_root):
    backend = LocalBackend()
    spec = ClusterSpec(name="lifecycle-one", workers=1, cpus_per_worker=1, memory_per_worker="1Gi",
                       head_memory="1Gi", owner="Ada Lovelace <ada@example.com>", run_id="run-123")
    phases: list[PhaseEvent] = []
    handle = backend.create(spec)
    try:
        assert backend.create(spec) == handle  # idempotent while the head runs
        endpoints = backend.wait_ready(handle, 180, phases.append)
        names = [p.phase for p in phases]
        assert names[0] == "pending" and names[-1] == "ready"
        assert "head-ready" in names and phases[-1].ready_workers == 1 == phases[-1].desired_workers
        with urllib.request.urlopen(f"{endpoints.dashboard_url}/nodes?view=summary", timeout=5) as response:
            nodes = json.load(response)["data"]["summary"]
        assert len(nodes) == 2
        assert {n["raylet"]["resourcesTotal"].get("CPU") for n in nodes} == {1.0}
        [info] = backend.list({RUN_ID: "run-123"})
        assert info.status == "ready" and info.ready_workers == 1
        assert info.labels[OWNER].startswith("Ada-Lovelace")
        assert backend.list({RUN_ID: "another-run"}) == []
        record = backend.record(handle)
    finally:
        backend.delete(handle)
    assert not still_running(backend, record)
    assert backend.list() == [] or all(i.handle.name != "lifecycle-one" for i in backend.list())
    backend.delete(handle)  # deleting twice is not an error


_FIND_OWN_CLUSTER_FROM_A_TASK = """
import ray
from ray.dashboard.utils import get_address_for_submission_client

ray.init()
print("api server:", ray.get(ray.remote(lambda: get_address_for_submission_client(None)).remote()))
"""


def test_two_clusters_run_side_by_side_on_distinct_ports(shared_cluster):
    backend = LocalBackend()
    spec = ClusterSpec(name="side-by-side", head_memory="1Gi")
    handle = backend.create(spec)
    try:
        endpoints = backend.wait_ready(handle, 180)
        assert endpoints.dashboard_url != shared_cluster.endpoints.dashboard_url
        assert endpoints.gcs_address != shared_cluster.endpoints.gcs_address
        # Ray code in a task that finds "its" cluster without an address (as Ray Train's
        # placement-group cleaner does) finds this one, not "multiple active Ray instances".
        client = job_client(endpoints.dashboard_url)
        job_id = client.submit_job(entrypoint=f"python -c {shlex.quote(_FIND_OWN_CLUSTER_FROM_A_TASK)}")
        outcome = wait_for_job(client, job_id, timeout_s=120)
        logs = client.get_job_logs(job_id)
        assert outcome.status == "SUCCEEDED", logs
        assert f"api server: {endpoints.dashboard_url}" in logs
    finally:
        backend.delete(handle)


def test_a_head_that_dies_fails_with_its_log_and_leaves_nothing_behind():
    backend = LocalBackend()
    spec = ClusterSpec(name="doomed-head", head_memory="1Gi")
    handle = backend.create(spec)
    record = backend.record(handle)
    try:
        # The head's `ray start --block` dies abruptly (as under the OOM killer): its GCS, raylet and
        # dashboard keep running as orphans, which delete() must still find and stop.
        os.kill(record.head_pid, signal.SIGKILL)
        with pytest.raises(ClusterNotReadyError, match="doomed-head") as raised:
            backend.wait_ready(handle, 60)
        assert "head log" in str(raised.value)
    finally:
        backend.delete(handle)
    assert all(i.handle.name != "doomed-head" for i in backend.list())
    assert not still_running(backend, record)
