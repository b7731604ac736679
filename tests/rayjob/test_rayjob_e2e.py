"""RayJob mode end to end on the sandbox: KubeRay (the local operator) owns the cluster's life.

The ``platform_smoke`` asset runs as a RayJob: its logs reach the event log through Pipes, and after
the TTL the operator deletes the RayJob and its RayCluster. A failing job, a job past its deadline
and a step process killed mid-job each end with the cluster removed by the operator, not by us.
"""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pytest
from drivers.smoke_defs import faulty_smoke

from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs
from discord_ml_platform.backends.rayjobs import RayJobState
from pipelines.assets import platform_smoke
from resources import PipesRayJobClient, RayClusterResource, RayJobConfig

from .conftest import wait_until_clean
from .helpers import events_about, stored

TESTS = Path(__file__).resolve().parents[1]
READY_S = 240  # a local Ray head takes 5-15 s on an idle 2-core machine, far longer on a busy one


def resources(kubeconfig: str, **options: object) -> dict[str, object]:
    return {
        # The shape in the constructor: a run config that set the resource's config would replace
        # every value given here (Dagster's rule for configured resources).
        "ray_cluster": RayClusterResource(backend="kuberay", mode="rayjob", kubeconfig=kubeconfig, owner="tests",
                                          workers=0, head_memory="1Gi",
                                          rayjob=RayJobConfig(**{"ttl_seconds_after_finished": 3, **options})),
        "pipes_ray": PipesRayJobClient(),
    }


def smoke(kubeconfig: str, smoke_config: dict, asset: dg.AssetsDefinition = faulty_smoke,
          **options: object) -> tuple[dg.ExecuteInProcessResult, list[str]]:
    run_config = {"ops": {asset.op.name: {"config": smoke_config}}}
    with dg.instance_for_test() as instance:
        result = dg.materialize([asset], resources=resources(kubeconfig, **options), instance=instance,
                                run_config=run_config, raise_on_error=False)
        logs = [r.user_message for r in instance.all_logs(result.run_id)]
    return result, logs


def rayjob_of(logs: list[str]) -> str:
    line = next(m for m in logs if m.startswith("created RayJob "))
    return line.split()[2].split("/")[1]


def failure_text(result: dg.ExecuteInProcessResult) -> str:
    error = result.get_step_failure_events()[0].step_failure_data.error
    return f"{error.message} {error.cause}"


@pytest.mark.ray
@pytest.mark.timeout(READY_S + 120)
def test_platform_smoke_runs_as_a_rayjob_streams_logs_and_is_gone_after_the_ttl(kubeconfig: str, sandbox) -> None:
    result, logs = smoke(kubeconfig, {"tasks": 3}, platform_smoke)
    assert result.success, logs[-20:]
    [mat] = result.asset_materializations_for_node("platform_smoke")
    meta = mat.metadata
    assert meta["sum_of_squares"].value == 0 + 1 + 4  # from the Ray job, through Pipes
    assert meta["cluster_mode"].value == "rayjob" and meta["rayjob"].value.startswith("dmp-")
    assert meta["cluster_name"].value.startswith(meta["rayjob"].value)  # KubeRay's <rayjob>-<random>
    assert "smoke task 2 -> 4" in logs  # a plain job log line in the event log
    assert any("computed 3 squares" in m for m in logs)  # a Pipes log message
    assert any("[Initializing]" in m for m in logs) and any("[Complete] job SUCCEEDED" in m for m in logs)
    name = meta["rayjob"].value
    assert wait_until_clean(sandbox, 60), (stored(sandbox, "rayjobs"), stored(sandbox, "rayclusters"))
    assert any(reason == "Deleted" and "TTL passed" in message for reason, message in events_about(sandbox, name))
    assert not any("deleted RayJob" in m for m in logs)  # the operator cleaned up, not the step


@pytest.mark.ray
@pytest.mark.timeout(READY_S + 120)
def test_a_failing_job_fails_the_step_with_apps_reason_and_the_operator_removes_the_cluster(
        kubeconfig: str, sandbox) -> None:
    result, logs = smoke(kubeconfig, {"tasks": 2, "fail": True})
    assert not result.success
    text = failure_text(result)
    assert "AppFailed" in text and "smoke job asked to fail" in text, text
    assert any("[Failed] job FAILED (AppFailed)" in m for m in logs)
    name = rayjob_of(logs)
    assert wait_until_clean(sandbox, 60)
    assert any(reason == "Deleted" and "TTL passed" in message for reason, message in events_about(sandbox, name))
    assert not any("deleted RayJob" in m for m in logs)


@pytest.mark.ray
@pytest.mark.timeout(READY_S + 120)
def test_a_job_past_its_deadline_is_stopped_and_fails_with_deadline_exceeded(kubeconfig: str, sandbox,
                                                                             tmp_path: Path) -> None:
    never = tmp_path / "never-created"  # the job waits for it until KubeRay stops it
    result, logs = smoke(kubeconfig, {"tasks": 1, "release_file": str(never)}, active_deadline_seconds=25)
    assert not result.success
    text = failure_text(result)
    assert "DeadlineExceeded" in text and "ActiveDeadlineSeconds: 25" in text, text
    name = rayjob_of(logs)
    assert wait_until_clean(sandbox, 60)
    assert any(reason == "DeadlineExceeded" for reason, _ in events_about(sandbox, name))
    assert any(reason == "Deleted" and "TTL passed" in message for reason, message in events_about(sandbox, name))


KILLED_STEP = """
import sys, dagster as dg
from drivers.smoke_defs import faulty_smoke
from resources import PipesRayJobClient, RayClusterResource, RayJobConfig
ray_cluster = RayClusterResource(backend="kuberay", mode="rayjob", kubeconfig=sys.argv[1], owner="tests",
                                 workers=0, head_memory="1Gi", rayjob=RayJobConfig(ttl_seconds_after_finished=3))
dg.materialize([faulty_smoke], resources={"ray_cluster": ray_cluster, "pipes_ray": PipesRayJobClient()},
               instance=dg.DagsterInstance.ephemeral(),
               run_config={"ops": {"faulty_smoke": {"config": {"tasks": 1, "release_file": sys.argv[2]}}}})
"""


@pytest.mark.ray
@pytest.mark.timeout(READY_S + 120)
def test_a_step_killed_mid_job_leaves_the_job_to_kuberay_which_finishes_it_and_cleans_up(
        kubeconfig: str, sandbox, tmp_path: Path) -> None:
    release = tmp_path / "release"
    step = subprocess.Popen([sys.executable, "-c", KILLED_STEP, kubeconfig, str(release)],
                            env={**os.environ, "PYTHONPATH": os.pathsep.join([os.getcwd(), str(TESTS)])}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    jobs = KubeRayJobs(kubeconfig)
    try:
        deadline = time.monotonic() + READY_S
        state: RayJobState | None = None
        while time.monotonic() < deadline:  # wait until the Ray job runs on KubeRay's cluster
            names = stored(sandbox, "rayjobs")
            state = jobs.get(names[0].split("/")[1]) if names else None
            if state is not None and state.job_status == "RUNNING":
                break
            assert step.poll() is None, "the step process ended early"
            time.sleep(0.5)
        assert state is not None and state.job_status == "RUNNING", state
    finally:
        step.send_signal(signal.SIGKILL)  # no finally of ours runs
        step.wait(10)
    assert stored(sandbox, "rayclusters") == [f"ray/{state.cluster_name}"]  # the step's death changed nothing
    release.touch()  # the job finishes on its own
    finished = state
    for finished in jobs.follow(state.name, 0.25):
        if finished.finished:
            break
    jobs.close()
    assert finished.deployment_status == "Complete" and finished.job_status == "SUCCEEDED", finished
    assert wait_until_clean(sandbox, 60)
    assert any(reason == "Deleted" and "TTL passed" in message for reason, message in events_about(sandbox, state.name))
