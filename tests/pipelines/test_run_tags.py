"""Runs carry the GPU pool they really use (``dmp/gpu-pool``), however they are launched, so the run
coordinator's per-pool limits count what they say."""

import datetime as dt

import dagster as dg
import pytest
from dagster._core.remote_origin import InProcessCodeLocationOrigin, RemoteRepositoryOrigin
from dagster._core.run_coordinator import SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun
from dagster._core.test_utils import create_run_for_test
from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

from discord_ml_platform.ads.data import write_window
from discord_ml_platform.spec.labels import GPU_POOL_RUN_TAG
from pipelines.definitions import build_definitions
from pipelines.sensors import new_quests_window_sensor
from resources import DataRootResource, RayClusterResource
from resources.run_coordinator import GpuPoolRunCoordinator
from resources.run_tags import DEFAULT_GPU_POOL, gpu_pool_of

pytestmark = pytest.mark.timeout(120)
COORDINATOR = {"module": "resources.run_coordinator", "class": "GpuPoolRunCoordinator",
               "config": {"max_concurrent_runs": 4,
                          "tag_concurrency_limits": [{"key": GPU_POOL_RUN_TAG, "value": "h100-80gb", "limit": 1}]}}


def on_pool(pool: str, **shape: object) -> dict:
    return {"resources": {"ray_cluster": {"config": {"gpu_pool": pool, **shape}}}}


def test_every_job_is_tagged_with_the_pool_of_its_default_config():
    defs = build_definitions()
    for job in defs.resolve_all_job_defs():
        if job.name.startswith("__"):
            continue
        assert job.tags.get(GPU_POOL_RUN_TAG) == "cpu", job.name


def test_schedule_and_sensor_runs_carry_the_pool_of_their_config(tmp_path):
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 26, 6, tzinfo=dt.UTC))
    schedule = build_definitions().resolve_schedule_def("ad_relevance_daily_retrain")
    [scheduled] = list(schedule.evaluate_tick(context).run_requests)
    # A schedule's run takes its job's tags (the pool of the job's default config) unless it sets its own.
    job_tags = build_definitions().resolve_job_def(schedule.job_name).tags
    assert {**job_tags, **scheduled.tags}[GPU_POOL_RUN_TAG] == gpu_pool_of(scheduled.run_config, "cpu") == "cpu"
    write_window(tmp_path, dt.date(2026, 11, 20), 500, seed=1)
    with dg.instance_for_test() as instance:
        sensed = new_quests_window_sensor(dg.build_sensor_context(instance=instance),
                                          data_root=DataRootResource(path=str(tmp_path)))
    [request] = sensed.run_requests
    assert request.tags[GPU_POOL_RUN_TAG] == gpu_pool_of(request.run_config) == "cpu"
    assert request.tags["dmp/trigger"] == "new-window"


def launched(instance: dg.DagsterInstance, job: dg.JobDefinition, run_config: dict) -> DagsterRun:
    """A run as the webserver creates one for a Launchpad launch: the job's tags, a code location origin."""
    location = InProcessCodeLocationOrigin(LoadableTargetOrigin(module_name="pipelines.definitions", attribute="defs"))
    origin = RemoteRepositoryOrigin(location, "__repository__").get_job_origin(job.name)
    return create_run_for_test(instance, job_name=job.name, run_config=run_config, tags=dict(job.tags),
                               remote_job_origin=origin, status=dg.DagsterRunStatus.NOT_STARTED)


def test_the_run_coordinator_tags_a_launched_run_with_the_pool_its_config_asks_for():
    """A Launchpad/API launch carries the job's tags; the coordinator re-tags it from the config before it queues."""
    job = build_definitions().resolve_job_def("ad_relevance_training")
    with dg.instance_for_test(overrides={"run_coordinator": COORDINATOR}) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, GpuPoolRunCoordinator)
        picked = launched(instance, job, on_pool("h100-80gb", workers=1))
        default = launched(instance, job, {})
        for run in (picked, default):
            coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
        picked_now, default_now = instance.get_run_by_id(picked.run_id), instance.get_run_by_id(default.run_id)
    assert picked.tags[GPU_POOL_RUN_TAG] == "cpu"  # what the Launchpad sent
    assert picked_now.tags[GPU_POOL_RUN_TAG] == "h100-80gb" and picked_now.status == dg.DagsterRunStatus.QUEUED
    assert default_now.tags[GPU_POOL_RUN_TAG] == "cpu" and default_now.status == dg.DagsterRunStatus.QUEUED


def test_the_run_coordinator_tags_a_run_that_names_no_pool_with_the_default_pool():
    """An ad-hoc materialization of the asset graph (``__ASSET_JOB``) has no job tag and its config may name no
    pool: it is counted against the pool its cluster resource then uses, not left out of every limit."""
    asset_job = build_definitions().resolve_implicit_global_asset_job_def()
    with dg.instance_for_test(overrides={"run_coordinator": COORDINATOR}) as instance:
        run = launched(instance, asset_job, {})
        assert run.job_name == "__ASSET_JOB" and GPU_POOL_RUN_TAG not in run.tags
        queued = instance.run_coordinator.submit_run(SubmitRunContext(run, workspace=None))  # type: ignore[arg-type]
        stored = instance.get_run_by_id(run.run_id)
    assert DEFAULT_GPU_POOL == RayClusterResource.model_fields["gpu_pool"].default == "cpu"
    assert queued.tags[GPU_POOL_RUN_TAG] == stored.tags[GPU_POOL_RUN_TAG] == DEFAULT_GPU_POOL
    assert stored.status == dg.DagsterRunStatus.QUEUED


@dg.asset
def uses_the_cluster_resource(ray_cluster: RayClusterResource) -> None:
    """Needs the resource (so it is set up) but creates no cluster."""


def test_a_run_that_bypassed_the_coordinator_is_retagged_when_it_starts():
    defs = build_definitions()
    resource = defs.resources["ray_cluster"]
    with dg.instance_for_test() as instance:
        result = dg.materialize([uses_the_cluster_resource], instance=instance, resources={"ray_cluster": resource},
                                run_config=on_pool("l4", workers=0), tags={GPU_POOL_RUN_TAG: "cpu"})
        assert result.success
        assert instance.get_run_by_id(result.run_id).tags[GPU_POOL_RUN_TAG] == "l4"
        warnings = [r.user_message for r in instance.all_logs(result.run_id) if "retagged" in r.user_message]
    assert warnings and "'cpu'" in warnings[0] and "'l4'" in warnings[0]
