"""The Ray job + Pipes path on the shared cluster: live logs, metadata, failures, interrupts."""


import _thread
import threading

import dagster as dg
import pytest
from drivers import FAULTY_SMOKE

from discord_ml_platform.jobs import job_client
from resources import PipesRayJobClient

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


def smoke_asset(cluster, extras: dict) -> dg.AssetsDefinition:
    """An asset that runs the tests' faulty smoke driver on ``cluster`` (a cluster it keeps, not the run's)."""

    @dg.asset(name="smoke_on_shared_cluster")
    def _asset(context: dg.AssetExecutionContext, pipes_ray: PipesRayJobClient):
        invocation = yield from pipes_ray.run_on(
            context=context, target=cluster.target(), extras=extras, **FAULTY_SMOKE,
            describe=lambda result: {"ray_job_id": result.job_id, **result.usage, **cluster.metadata()},
        )
        yield invocation.get_materialize_result()

    return _asset


def wait_for_log(instance: dg.DagsterInstance, text: str, done: threading.Event, timeout_s: float = 120) -> bool:
    """Poll the event log until a message containing ``text`` appears (or the run ended)."""
    import time

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and not done.is_set():
        for run in instance.get_runs():
            if any(text in (r.user_message or "") for r in instance.all_logs(run.run_id)):
                return True
        time.sleep(0.1)
    return False


def test_job_log_lines_reach_the_event_log_while_the_job_runs(shared_cluster, tmp_path):
    release = tmp_path / "release"
    asset = smoke_asset(shared_cluster, {"tasks": 3, "release_file": str(release)})
    result: dict[str, dg.ExecuteInProcessResult] = {}
    done = threading.Event()
    with dg.instance_for_test() as instance:
        def run() -> None:
            try:
                result["r"] = dg.materialize([asset], instance=instance, resources={"pipes_ray": PipesRayJobClient()})
            finally:
                done.set()

        worker = threading.Thread(target=run)
        worker.start()
        # The job blocks until the release file exists, so seeing its line now proves streaming.
        seen_while_running = wait_for_log(instance, "smoke job waiting for release", done)
        release.write_text("go")
        worker.join(180)
        assert seen_while_running, "job log line did not reach the event log before the job finished"
        run_result = result["r"]
        assert run_result.success
        [mat] = run_result.asset_materializations_for_node("smoke_on_shared_cluster")
        meta = mat.metadata
        assert meta["sum_of_squares"].value == 0 + 1 + 4  # reported by the driver through Pipes
        assert meta["usage_samples"].value >= 1 and "cpu_util_mean_pct" in meta
        assert meta["memory_peak_bytes"].value > 0
        logs = [r.user_message for r in instance.all_logs(run_result.run_id)]
        assert "smoke task 2 -> 4" in logs
        assert any("computed 3 squares" in m for m in logs)  # a Pipes log message
        # Terminal colours are stripped from the event log; the words stay.
        assert "(colour check) a coloured line" in logs
        assert not any("\x1b" in line for line in logs)


def test_a_failing_job_fails_the_step_with_its_last_lines(shared_cluster):
    asset = smoke_asset(shared_cluster, {"tasks": 1, "fail": True})
    result = dg.materialize([asset], resources={"pipes_ray": PipesRayJobClient()}, raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    assert "FAILED" in error.message and "on shared-test-cluster" in error.message
    assert "smoke job asked to fail" in str(failure.step_failure_data.user_failure_data.metadata["last_log_lines"].value)


def test_an_interrupted_step_stops_its_ray_job(shared_cluster, tmp_path):
    """An interrupt while the job runs (Dagster's is a BaseException too) stops the Ray job."""
    client = job_client(shared_cluster.endpoints.dashboard_url)
    before = {j.submission_id for j in client.list_jobs()}
    asset = smoke_asset(shared_cluster, {"tasks": 1, "release_file": str(tmp_path / "never-written")})
    with dg.instance_for_test() as instance:
        stop_watching = threading.Event()

        def interrupt_once_running() -> None:
            # The job blocks on the release file, so the run is certainly still going here.
            if wait_for_log(instance, "smoke job waiting for release", stop_watching):
                _thread.interrupt_main()

        watcher = threading.Thread(target=interrupt_once_running, daemon=True)
        watcher.start()
        try:
            with pytest.raises((KeyboardInterrupt, dg.DagsterExecutionInterruptedError)):
                dg.materialize([asset], instance=instance, resources={"pipes_ray": PipesRayJobClient()})
        finally:
            stop_watching.set()
            watcher.join(10)
    [job] = [j for j in client.list_jobs() if j.submission_id not in before]
    assert job.status.value == "STOPPED"
