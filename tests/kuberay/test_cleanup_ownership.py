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
from drivers.local_records import YEAR_10000

from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs
from discord_ml_platform.sandbox.runner import KubeRaySandbox
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.labels import DEPLOYMENT, EXPIRES_AT
from resources.cleanup import build_cluster_cleanup_sensor

from .helpers import rayclusters

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "cli"))
from cli_helpers import cli_env, describe, run_dmp


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


def test_one_ownership_rule_for_the_cli_and_the_sensor():
    """``sweep_right``: what a deployment's sweeper (``dmp cluster sweep`` or the sensor) may delete."""
    from discord_ml_platform.fleet import sweep_right
    from discord_ml_platform.spec.labels import ORIGIN_CRD_LABEL, ORIGIN_NAME_LABEL, ORIGIN_RAYJOB

    rayjobs = {DEPLOYMENT: "a", ORIGIN_CRD_LABEL: ORIGIN_RAYJOB, ORIGIN_NAME_LABEL: "rj-1"}
    for deployment in ("a", None):  # not even with --all-deployments
        right = sweep_right(rayjobs, deployment)
        assert not right.may_delete and right.reason == "belongs to RayJob rj-1"
    assert sweep_right({DEPLOYMENT: "a"}, "a") == sweep_right({DEPLOYMENT: "b"}, None) == sweep_right({}, None)
    assert sweep_right({DEPLOYMENT: "a"}, "a").may_delete and not sweep_right({DEPLOYMENT: "a"}, "a").expired_only
    assert sweep_right({DEPLOYMENT: "b"}, "a").reason == "belongs to deployment b"
    legacy = sweep_right({}, "a")
    assert legacy.may_delete and legacy.expired_only and "deleted only when expired" in legacy.reason


def label_cluster(kuberay: KubeRayBackend, name: str, labels: dict[str, str]) -> None:
    kuberay.custom.patch_namespaced_custom_object("ray.io", "v1", "ray", "rayclusters", name,
                                                  {"metadata": {"labels": labels}})


def fail_cluster(kuberay: KubeRayBackend, name: str) -> None:
    """The cluster's status as KubeRay writes it for a cluster that will not come up: ``failed``."""
    kuberay.custom.patch_namespaced_custom_object_status("ray.io", "v1", "ray", "rayclusters", name,
                                                         {"status": {"state": "failed"}})


@pytest.mark.timeout(120)
def test_dmp_cluster_sweep_leaves_a_rayjobs_cluster_and_takes_unlabelled_ones_only_when_expired(
        kuberay, kubeconfig, quiet_operator):
    from discord_ml_platform.spec.labels import ORIGIN_CRD_LABEL, ORIGIN_NAME_LABEL, ORIGIN_RAYJOB

    # The cluster behind a running `dmp job submit --rayjob`: expired and failed, yet its RayJob's to delete.
    create_cluster(kuberay, "rj-cluster", days_old=8)
    label_cluster(kuberay, "rj-cluster", {ORIGIN_CRD_LABEL: ORIGIN_RAYJOB, ORIGIN_NAME_LABEL: "rj-owner"})
    create_cluster(kuberay, "legacy-failed", deployment=None)  # no owner to ask: only its expiry may delete it
    create_cluster(kuberay, "legacy-expired", deployment=None, days_old=8)
    create_cluster(kuberay, "mine-failed")
    for name in ("rj-cluster", "legacy-failed", "mine-failed"):
        fail_cluster(kuberay, name)

    root = Path(tempfile.mkdtemp(prefix="dmpo-", dir="/tmp"))
    try:
        env = cli_env(root, DMP_BACKEND="kuberay", KUBECONFIG=kubeconfig)

        def sweep(*args: str) -> list[tuple[str, str]]:
            result = run_dmp("cluster", "sweep", "-o", "json", *args, env=env)
            assert result.returncode == 0, describe(result)
            return sorted((r["name"], r["action"]) for r in json.loads(result.stdout))

        assert sweep("--dry-run", "--all-deployments") == [
            ("legacy-expired", "would delete"), ("legacy-failed", "would delete"), ("mine-failed", "would delete")]
        assert sweep() == [("legacy-expired", "deleted"), ("mine-failed", "deleted")]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    assert rayclusters(quiet_operator) == ["ray/legacy-failed", "ray/rj-cluster"]
    summary = tick(kubeconfig)  # the sensor agrees: nothing more of this deployment's to sweep
    assert "checked 2 kuberay cluster(s): deleted 0, kept 2" in summary, summary


def test_the_cli_opens_kuberay_on_one_namespace_or_on_all(kubeconfig):
    """``open_backend``'s ``namespace``: ``dmp xray --namespace`` (a Role in one namespace) lists only
    that one; every other command lists all and filters by ``--namespace`` itself."""
    from discord_ml_platform.cli.backend_choice import BackendChoice, open_backend
    from discord_ml_platform.platform import Platform

    choice = BackendChoice("kuberay", "--backend", kubeconfig)
    for namespace in ("ray", None):
        opened = open_backend(choice, Platform(), namespace=namespace)
        try:
            assert opened.name == "kuberay" and opened.namespace == namespace
        finally:
            opened.close()
