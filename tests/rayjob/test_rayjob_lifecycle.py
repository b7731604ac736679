"""RayJob mode when things go wrong: KubeRay's retries (``backoffLimit``) and a terminated Dagster run.

* A job that fails its first attempt and passes its second, with ``backoff_limit``: the operator
  retries it on a new cluster (``Retrying``), the step keeps following, gets the logs of both
  attempts and the second attempt's materialization, and succeeds.
* SIGINT to the process running the step (how Dagster terminates a run: the step is interrupted
  and its ``except BaseException`` runs): with ``on_terminate="delete"`` the RayJob and its cluster
  are deleted; with ``"suspend"`` the RayJob stays, ``Suspended``, and the operator deletes its cluster.
"""

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest
from drivers import FAULTY_SMOKE

from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs
from discord_ml_platform.backends.rayjobs import RayJobState
from resources import PipesRayJobClient, RayClusterResource, RayJobConfig

from .conftest import wait_until_clean
from .helpers import events_about, ray_processes, stored

TESTS = Path(__file__).resolve().parents[1]
READY_S = 240  # a local Ray head takes 5-15 s on an idle 2-core machine, far longer on a busy one


class FlakyConfig(dg.Config):
    """Where the smoke job keeps the marker that makes only its first attempt fail."""

    marker: str


@dg.asset
def flaky_smoke(context: dg.AssetExecutionContext, config: FlakyConfig, ray_cluster: RayClusterResource,
                pipes_ray: PipesRayJobClient) -> Iterator[dg.AssetObservation | dg.MaterializeResult]:
    """The tests' smoke driver, failing its first attempt, on a head-only cluster of its own."""
    spec = ray_cluster.spec_for_run(context.run_id, head_memory="1Gi", workers=0)
    invocation = yield from pipes_ray.run_workload(
        context=context, ray_cluster=ray_cluster, spec=spec, extras={"tasks": 2, "fail_once_marker": config.marker},
        **FAULTY_SMOKE)
    yield invocation.get_materialize_result()


@pytest.mark.ray
@pytest.mark.timeout(2 * READY_S + 120)
def test_a_job_that_fails_once_is_retried_on_a_new_cluster_and_the_step_follows_it_to_success(
        kubeconfig: str, sandbox, tmp_path: Path) -> None:
    # backoff_limit=2, not 1: on a machine overloaded by other tests a local Ray head can die right after
    # it reported ready (SubmissionFailed); one spare attempt absorbs that, as it would on KubeRay.
    ray_cluster = RayClusterResource(backend="kuberay", mode="rayjob", kubeconfig=kubeconfig, owner="tests",
                                     rayjob=RayJobConfig(ttl_seconds_after_finished=3, backoff_limit=2))
    with dg.instance_for_test() as instance:
        result = dg.materialize([flaky_smoke], resources={"ray_cluster": ray_cluster, "pipes_ray": PipesRayJobClient()},
                                run_config={"ops": {"flaky_smoke": {"config": {"marker": str(tmp_path / "m")}}}},
                                instance=instance, raise_on_error=False)
        logs = [r.user_message for r in instance.all_logs(result.run_id)]
    assert result.success, logs[-30:]
    [mat] = result.asset_materializations_for_node("flaky_smoke")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    attempts = meta["rayjob_attempts"]
    assert meta["sum_of_squares"] == 0 + 1 and attempts >= 2  # the last attempt's result, via Pipes
    # The failed attempt's last line, its exception: streamed, or (its cluster is deleted at once) in
    # KubeRay's message, which holds only the job's last 10 log lines (Ray's tail on failure).
    assert any("RuntimeError: smoke job fails its first attempt" in m for m in logs)
    assert "smoke task 1 -> 1" in logs  # a log line of the attempt that passed, from its own cluster
    assert any("KubeRay retries the job on a new cluster" in m for m in logs)
    assert not any("unexpected message received after closed" in m for m in logs)  # one Pipes session, whole
    assert wait_until_clean(sandbox, 60), (stored(sandbox, "rayjobs"), stored(sandbox, "rayclusters"))
    events = events_about(sandbox, meta["rayjob"])
    retries = [message for reason, message in events if reason == "Retrying"]
    assert len(retries) == attempts - 1 and any("(AppFailed)" in m for m in retries), events
    created = [message for reason, message in events if reason == "Created"]
    assert len(created) == attempts == len(set(created)), created  # a new cluster for each attempt
    assert any(message.endswith(f"/{meta['cluster_name']}") for message in created)  # the last one's
    assert any(reason == "Deleted" and "TTL passed" in message for reason, message in events)


INTERRUPTED_STEP = """
import sys, dagster as dg
from drivers.smoke_defs import faulty_smoke
from resources import PipesRayJobClient, RayClusterResource, RayJobConfig
ray_cluster = RayClusterResource(backend="kuberay", mode="rayjob", kubeconfig=sys.argv[1], owner="tests",
                                 workers=0, head_memory="1Gi",
                                 rayjob=RayJobConfig(ttl_seconds_after_finished=3, on_terminate=sys.argv[3]))
result = dg.materialize([faulty_smoke], resources={"ray_cluster": ray_cluster, "pipes_ray": PipesRayJobClient()},
                        instance=dg.DagsterInstance.ephemeral(), raise_on_error=False,
                        run_config={"ops": {"faulty_smoke": {"config": {"tasks": 1, "release_file": sys.argv[2]}}}})
print("RUN SUCCESS" if result.success else "RUN FAILED", flush=True)
"""


def wait_for_running_job(sandbox, jobs: KubeRayJobs, step: subprocess.Popen, timeout_s: float) -> RayJobState:
    """The step's RayJob once its Ray job is RUNNING on KubeRay's cluster."""
    deadline = time.monotonic() + timeout_s
    state: RayJobState | None = None
    while time.monotonic() < deadline:
        names = stored(sandbox, "rayjobs")
        state = jobs.get(names[0].split("/")[1]) if names else None
        if state is not None and state.job_status == "RUNNING":
            return state
        assert step.poll() is None, "the step process ended early"
        time.sleep(0.5)
    raise AssertionError(f"the RayJob never ran: {state}")


def wait_for(condition, timeout_s: float) -> bool:
    """Poll ``condition`` until it holds or ``timeout_s`` passes."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.5)
    return condition()


@pytest.mark.ray
@pytest.mark.timeout(READY_S + 180)
@pytest.mark.parametrize("on_terminate", ["suspend", "delete"])
def test_terminating_the_run_stops_the_rayjob_as_on_terminate_says(kubeconfig: str, sandbox, tmp_path: Path,
                                                                   on_terminate: str) -> None:
    output = tmp_path / "step.log"
    with output.open("w") as out:
        step = subprocess.Popen([sys.executable, "-c", INTERRUPTED_STEP, kubeconfig, str(tmp_path / "never"),
                                 on_terminate], env={**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), str(TESTS)]),
                                                  "PYTHONUNBUFFERED": "1"},
                                stdout=out, stderr=subprocess.STDOUT)
    jobs = KubeRayJobs(kubeconfig)
    try:
        state = wait_for_running_job(sandbox, jobs, step, READY_S)
        step.send_signal(signal.SIGINT)  # Dagster's termination: the step is interrupted
        step.wait(120)
    finally:
        if step.poll() is None:
            step.kill()
            step.wait(10)
    text = output.read_text()
    assert "RUN FAILED" in text and "DagsterExecutionInterruptedError" in text, text[-3000:]  # Dagster's interrupt
    if on_terminate == "suspend":
        assert f"suspended RayJob {state.name}" in text, text[-3000:]
        assert wait_for(lambda: jobs.get(state.name).deployment_status == "Suspended", 60), jobs.get(state.name)
        assert wait_for(lambda: not stored(sandbox, "rayclusters") and not ray_processes(sandbox), 60)
        assert stored(sandbox, "rayjobs") == [f"ray/{state.name}"]  # kept for inspection
        assert any(reason == "Suspended" for reason, _ in events_about(sandbox, state.name))
        jobs.delete(state.name, wait_s=30)
    else:
        assert f"deleted RayJob {state.name}" in text, text[-3000:]
        assert wait_until_clean(sandbox, 60), (stored(sandbox, "rayjobs"), stored(sandbox, "rayclusters"))
        assert not any("TTL passed" in message for _, message in events_about(sandbox, state.name))
    jobs.close()
    assert wait_until_clean(sandbox, 60)
