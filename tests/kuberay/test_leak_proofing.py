"""No Ray cluster outlives its run on the kuberay backend, whatever happens to the run.

Every test ends (see ``conftest.nothing_left``) with no RayCluster in the sandbox and no Ray
process under the operator's temp root.
"""


import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import timedelta

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun

from discord_ml_platform.backends import ClusterNotReadyError
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.spec import ClusterSpec
from resources import RayClusterResource
from resources.cleanup import build_cluster_cleanup_sensor

from .helpers import ray_processes, rayclusters


def cluster_resource(kubeconfig: str, ready_timeout_s: float = 150) -> RayClusterResource:
    return RayClusterResource(backend="kuberay", kubeconfig=kubeconfig, ready_timeout_s=ready_timeout_s, owner="tests",
                              workers=0, head_memory="1Gi")


SEEN: dict[str, object] = {}


@dg.asset
def failing_workload(context: dg.AssetExecutionContext, ray_cluster: RayClusterResource) -> None:
    cluster = ray_cluster.get_cluster(context, ray_cluster.spec_for_run(context.run_id, head_memory="1Gi"))
    SEEN["endpoints"] = cluster.endpoints
    raise RuntimeError("the workload blew up")


@dg.asset
def interrupted_workload(context: dg.AssetExecutionContext, ray_cluster: RayClusterResource) -> None:
    cluster = ray_cluster.get_cluster(context, ray_cluster.spec_for_run(context.run_id, head_memory="1Gi"))
    SEEN["endpoints"] = cluster.endpoints
    raise dg.DagsterExecutionInterruptedError()  # what Dagster raises in a step when the run is terminated


@dg.asset
def waits_for_a_cluster(context: dg.AssetExecutionContext, ray_cluster: RayClusterResource) -> None:
    spec = ray_cluster.spec_for_run(context.run_id, head_memory="1Gi",
                                    image="registry.example.com/ml/ray:missing-tag")
    started = time.monotonic()
    try:
        ray_cluster.get_cluster(context, spec)
    except ClusterNotReadyError as err:
        SEEN["error"], SEEN["seconds"] = str(err), time.monotonic() - started
        raise


def materialize(asset: dg.AssetsDefinition, kubeconfig: str, ready_timeout_s: float = 150) -> dg.ExecuteInProcessResult:
    SEEN.clear()
    return dg.materialize([asset], resources={"ray_cluster": cluster_resource(kubeconfig, ready_timeout_s)},
                          instance=dg.DagsterInstance.ephemeral(), raise_on_error=False)


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_an_exception_in_the_workload_deletes_the_cluster(kubeconfig: str, sandbox) -> None:
    result = materialize(failing_workload, kubeconfig)
    assert not result.success
    assert SEEN.get("endpoints") is not None  # the cluster was ready when the workload failed
    assert rayclusters(sandbox) == [] and ray_processes(sandbox) == []


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_run_termination_deletes_the_cluster(kubeconfig: str, sandbox) -> None:
    try:
        result = materialize(interrupted_workload, kubeconfig)
        assert not result.success
    except dg.DagsterExecutionInterruptedError:
        pass  # in-process execution may re-raise the interrupt after teardown
    assert SEEN.get("endpoints") is not None
    assert rayclusters(sandbox) == [] and ray_processes(sandbox) == []


@pytest.mark.timeout(60)
def test_a_readiness_timeout_fails_the_step_and_deletes_the_cluster(kubeconfig: str, sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True
    result = materialize(waits_for_a_cluster, kubeconfig, ready_timeout_s=3)
    assert not result.success
    assert "not ready after 3s" in str(SEEN["error"])
    assert rayclusters(sandbox) == []


@pytest.mark.timeout(60)
def test_an_image_pull_failure_fails_fast_naming_the_image(kubeconfig: str, sandbox) -> None:
    sandbox.faults.operator.image_pull_error = True
    result = materialize(waits_for_a_cluster, kubeconfig, ready_timeout_s=120)
    assert not result.success
    assert "registry.example.com/ml/ray:missing-tag" in str(SEEN["error"])
    assert float(SEEN["seconds"]) < 15  # well before the 120 s timeout
    failure = result.get_step_failure_events()[0].step_failure_data.error
    assert "missing-tag" in str(failure.message) + str(failure.cause)
    assert rayclusters(sandbox) == []


KILLED_STEP = """
import sys, time
from discord_ml_platform.backends.kuberay import KubeRayBackend
from discord_ml_platform.spec import ClusterSpec
backend = KubeRayBackend(sys.argv[1])
handle = backend.create(ClusterSpec(name="killed-step", head_memory="1Gi", run_id=sys.argv[2]))
backend.wait_ready(handle, 150)
print("READY", flush=True)
time.sleep(600)
"""


def sweep(kubeconfig: str, instance: dg.DagsterInstance) -> str:
    sensor = build_cluster_cleanup_sensor(backend_factory=lambda: KubeRayBackend(kubeconfig))
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert not data.run_requests
    return str(data.skip_message)


@pytest.mark.ray
@pytest.mark.timeout(180)
def test_a_killed_step_process_leaks_a_cluster_that_the_cleanup_sensor_deletes(kubeconfig: str, sandbox) -> None:
    run_id = str(uuid.uuid4())  # a run this instance has never heard of
    step = subprocess.Popen([sys.executable, "-c", KILLED_STEP, kubeconfig, run_id], stdout=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONPATH": os.getcwd()})
    try:
        assert step.stdout is not None and step.stdout.readline().strip() == "READY"
    finally:
        step.send_signal(signal.SIGKILL)
        step.wait(10)
    assert rayclusters(sandbox) == ["ray/killed-step"] and ray_processes(sandbox)  # leaked, as expected
    summary = sweep(kubeconfig, dg.DagsterInstance.ephemeral())
    assert "deleted 1" in summary and "killed-step" in summary and "does not exist" in summary
    assert rayclusters(sandbox) == [] and ray_processes(sandbox) == []


@pytest.mark.timeout(60)
def test_the_cleanup_sensor_keeps_clusters_of_runs_in_progress(kuberay: KubeRayBackend, kubeconfig: str,
                                                              sandbox) -> None:
    sandbox.faults.operator.head_never_ready = True  # no Ray needed: this is about decisions
    instance = dg.DagsterInstance.ephemeral()
    runs = {status: str(uuid.uuid4()) for status in ("STARTED", "SUCCESS", "CANCELING", "FAILURE")}
    for status, run_id in runs.items():
        instance.add_run(DagsterRun(job_name="train", run_id=run_id, status=dg.DagsterRunStatus[status]))
    for status, run_id in runs.items():
        kuberay.create(ClusterSpec(name=f"sweep-{status.lower()}", head_memory="1Gi", run_id=run_id))
    kuberay.create(ClusterSpec(name="sweep-cli", head_memory="1Gi"))  # no run id: kept until expiry
    kuberay.create(ClusterSpec(name="sweep-expired", head_memory="1Gi", run_id=runs["STARTED"],
                               ttl=timedelta(seconds=1)))
    time.sleep(1.1)
    summary = sweep(kubeconfig, instance)
    assert "deleted 3" in summary and "kept 3" in summary, summary
    assert rayclusters(sandbox) == ["ray/sweep-canceling", "ray/sweep-cli", "ray/sweep-started"]
    for name in ("sweep-canceling", "sweep-cli", "sweep-started"):
        kuberay.delete(kuberay.list({"mlplatform.discord.com/cluster": name})[0].handle)
