"""On a real API server (the sandbox): one unreadable label never blinds listing and cleanup, and each
deployment's cleanup sensor sweeps only its own RayClusters and RayJobs.

No Ray is started: the operator is told to wait (``reconcile_delay_s``), so the objects stay as
created; this is about what the CLI lists and what the sensor decides and deletes.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pytest

from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs
from discord_ml_platform.sandbox.runner import KubeRaySandbox
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.labels import DEPLOYMENT, EXPIRES_AT
from resources.cleanup import build_cluster_cleanup_sensor

from .helpers import rayclusters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import cli_env, describe, run_dmp

YEAR_10000 = "253402300800"  # a valid label value; datetime cannot hold it


@pytest.fixture
def quiet_operator(sandbox: KubeRaySandbox, kubeconfig: str) -> Iterator[KubeRaySandbox]:
    """The sandbox with an operator that starts nothing; what a test kept is deleted after it."""
    sandbox.faults.operator.reconcile_delay_s = 600  # nothing starts: objects stay as created
    yield sandbox
    with KubeRayBackend(kubeconfig) as backend:
        for info in backend.list():
            backend.delete(info.handle, timeout_s=30)


@pytest.fixture
def jobs(kubeconfig: str) -> Iterator[KubeRayJobs]:
    with KubeRayJobs(kubeconfig) as rayjobs:
        yield rayjobs
        for info in rayjobs.list():
            rayjobs.delete(info.name, namespace=info.namespace)


def create_cluster(kuberay: KubeRayBackend, name: str, *, deployment: str | None = "default",
                   run_id: str | None = None, days_old: int = 0) -> None:
    """A platform RayCluster; ``deployment=None``: as created before the label existed."""
    spec = ClusterSpec(name=name, head_memory="1Gi", owner="tests", run_id=run_id, deployment=deployment or "default")
    manifest = kuberay.render(spec, created_at=datetime.now(UTC) - timedelta(days=days_old))
    if deployment is None:
        del manifest["metadata"]["labels"][DEPLOYMENT]
    kuberay.custom.create_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", manifest)


def create_rayjob(jobs: KubeRayJobs, name: str, *, deployment: str | None, run_id: str | None,
                  days_old: int = 0) -> None:
    spec = ClusterSpec(name=name, head_memory="1Gi", owner="tests", run_id=run_id, deployment=deployment or "default")
    manifest = jobs.render(spec, entrypoint="python -c 'print(1)'", submission_id=f"{name}-1",
                           created_at=datetime.now(UTC) - timedelta(days=days_old))
    if deployment is None:
        del manifest["metadata"]["labels"][DEPLOYMENT]
    jobs.create(manifest)


def stored_rayjobs(sandbox: KubeRaySandbox) -> list[str]:
    rt = sandbox.server.store.registry.get("ray.io", "v1", "rayjobs")
    return sorted(o["metadata"]["name"] for o in sandbox.server.store.select(rt, None))


def tick(kubeconfig: str, deployment: str | None = None) -> str:
    sensor = build_cluster_cleanup_sensor(backend_factory=lambda: KubeRayBackend(kubeconfig, namespace="ray"),
                                          deployment=deployment)
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral()))
    assert not data.run_requests
    return str(data.skip_message)


@pytest.mark.timeout(120)
def test_an_unreadable_expiry_label_blinds_neither_the_cli_nor_the_sensor(kuberay, kubeconfig, quiet_operator):
    create_cluster(kuberay, "a-bad-expiry")
    kuberay.custom.patch_namespaced_custom_object(  # anyone who may patch RayClusters can do this
        "ray.io", "v1", "ray", "rayclusters", "a-bad-expiry", {"metadata": {"labels": {EXPIRES_AT: YEAR_10000}}})
    create_cluster(kuberay, "b-expired", days_old=8)
    create_cluster(kuberay, "c-condemned", run_id=str(uuid.uuid4()))  # a run this instance never saw

    root = Path(tempfile.mkdtemp(prefix="dmpo-", dir="/tmp"))
    try:
        env = cli_env(root, DMP_BACKEND="kuberay", KUBECONFIG=kubeconfig)
        listed = run_dmp("cluster", "list", "-A", "-o", "json", env=env)
        assert listed.returncode == 0, describe(listed)
        assert [r["name"] for r in json.loads(listed.stdout)] == ["a-bad-expiry", "b-expired", "c-condemned"]
        assert "warning: cluster ray/a-bad-expiry" in listed.stderr
        planned = run_dmp("cluster", "sweep", "--dry-run", "-o", "json", env=env)
        assert planned.returncode == 0, describe(planned)
        assert [(r["name"], r["action"]) for r in json.loads(planned.stdout)] == [("b-expired", "would delete")]
    finally:
        shutil.rmtree(root, ignore_errors=True)

    summary = tick(kubeconfig)  # the bad cluster is listed first; the tick goes on past it
    assert "checked 3 kuberay cluster(s): deleted 2" in summary and "kept 1" in summary, summary
    assert rayclusters(quiet_operator) == ["ray/a-bad-expiry"]


@pytest.mark.timeout(120)
def test_each_deployments_sensor_sweeps_only_its_own_clusters_and_rayjobs(kuberay, kubeconfig, jobs,
                                                                           quiet_operator):
    for kind in ("rc", "rj"):
        def create(name: str, kind: str = kind, **labels) -> None:
            if kind == "rc":
                create_cluster(kuberay, name, **labels)
            else:
                create_rayjob(jobs, name, **labels)

        # Runs of another Dagster instance, or gone: unknown to deployment A's instance.
        create(f"{kind}-a", deployment="a", run_id=str(uuid.uuid4()))
        create(f"{kind}-b", deployment="b", run_id=str(uuid.uuid4()))
        create(f"{kind}-b-expired", deployment="b", run_id=str(uuid.uuid4()), days_old=8)
        create(f"{kind}-legacy", deployment=None, run_id=str(uuid.uuid4()))
        create(f"{kind}-legacy-expired", deployment=None, run_id=str(uuid.uuid4()), days_old=8)

    summary = tick(kubeconfig, deployment="a")
    assert "checked 5 kuberay cluster(s): deleted 2" in summary, summary
    assert "checked 5 RayJob(s): deleted 2" in summary, summary
    kept = ["b", "b-expired", "legacy"]
    assert rayclusters(quiet_operator) == [f"ray/rc-{k}" for k in kept]
    assert stored_rayjobs(quiet_operator) == [f"rj-{k}" for k in kept]

    summary = tick(kubeconfig, deployment="b")
    assert "deleted 2" in summary and summary.count("deleted 2") == 2, summary
    assert rayclusters(quiet_operator) == ["ray/rc-legacy"] and stored_rayjobs(quiet_operator) == ["rj-legacy"]
