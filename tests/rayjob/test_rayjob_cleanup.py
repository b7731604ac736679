"""The cleanup sensor sweeps RayJobs too: those of finished or unknown runs, and expired ones.

No Ray is started: the operator is told to wait (``reconcile_delay_s``), so the RayJobs and the
RayCluster stay as created, and this is only about the sensor's decisions and deletions.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs
from discord_ml_platform.sandbox.runner import KubeRaySandbox
from discord_ml_platform.spec import ClusterSpec
from resources.cleanup import build_cluster_cleanup_sensor

from .helpers import stored


def create_rayjob(jobs: KubeRayJobs, name: str, run_id: str | None, *, days_old: int = 0) -> None:
    """A RayJob of the platform for ``run_id``; ``days_old`` back-dates it, so its expiry label has passed."""
    created = datetime.now(UTC) - timedelta(days=days_old)
    spec = ClusterSpec(name=name, head_memory="1Gi", owner="tests", run_id=run_id)
    jobs.create(jobs.render(spec, entrypoint="python -c 'print(1)'", submission_id=f"{name}-1", created_at=created))


def rayjob_cluster(kubeconfig: str, name: str, run_id: str) -> None:
    """A RayCluster as KubeRay creates it for a RayJob: the RayJob's labels plus the origin labels."""
    with KubeRayBackend(kubeconfig) as backend:
        manifest = backend.render(ClusterSpec(name=name, head_memory="1Gi", owner="tests", run_id=run_id))
        manifest["metadata"]["labels"].update({"ray.io/originated-from-crd": "RayJob",
                                               "ray.io/originated-from-cr-name": "rj-owner"})
        backend.custom.create_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", manifest)


@pytest.mark.timeout(120)
def test_the_cleanup_sensor_deletes_rayjobs_of_finished_or_unknown_runs_and_expired_ones(
        kubeconfig: str, sandbox: KubeRaySandbox) -> None:
    sandbox.faults.operator.reconcile_delay_s = 600  # nothing starts: this is about decisions
    instance = dg.DagsterInstance.ephemeral()
    runs = {status: str(uuid.uuid4()) for status in ("STARTED", "SUCCESS", "FAILURE")}
    for status, run_id in runs.items():
        instance.add_run(DagsterRun(job_name="train", run_id=run_id, status=dg.DagsterRunStatus[status]))
    with KubeRayJobs(kubeconfig) as jobs:
        for status, run_id in runs.items():
            create_rayjob(jobs, f"rj-{status.lower()}", run_id)
        create_rayjob(jobs, "rj-unknown-run", str(uuid.uuid4()))
        create_rayjob(jobs, "rj-cli", None)  # no run id: kept until it expires
        create_rayjob(jobs, "rj-expired", runs["STARTED"], days_old=8)  # its run still runs, but it expired
        rayjob_cluster(kubeconfig, "rj-owned-cluster", runs["SUCCESS"])  # its RayJob's business, not ours

        sensor = build_cluster_cleanup_sensor(backend_factory=lambda: KubeRayBackend(kubeconfig, namespace="ray"))
        data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
        summary = str(data.skip_message)

        assert not data.run_requests
        assert "checked 1 kuberay cluster(s): deleted 0, kept 1" in summary, summary
        assert "checked 6 RayJob(s): deleted 4" in summary and "kept 2" in summary, summary
        assert "does not exist" in summary and "finished (SUCCESS)" in summary and "expired at" in summary
        assert stored(sandbox, "rayjobs") == ["ray/rj-cli", "ray/rj-started"]
        assert stored(sandbox, "rayclusters") == ["ray/rj-owned-cluster"]
        for name in ("rj-cli", "rj-started"):
            jobs.delete(name)
    with KubeRayBackend(kubeconfig) as backend:
        backend.delete(backend.list({"mlplatform.discord.com/cluster": "rj-owned-cluster"})[0].handle, timeout_s=30)
