"""The daily retrain schedule and the new-window sensor request the right runs, once each."""

import datetime as dt

import dagster as dg
import pytest

from discord_ml_platform.ads.data import write_window
from pipelines.definitions import build_definitions
from pipelines.sensors import new_quests_window_sensor
from resources import DataRootResource

defs = build_definitions()
pytestmark = pytest.mark.timeout(120)


def test_daily_schedule_retrains_on_the_previous_days_partition():
    context = dg.build_schedule_context(scheduled_execution_time=dt.datetime(2026, 11, 26, 6, 0, tzinfo=dt.UTC))
    schedule = defs.resolve_schedule_def("ad_relevance_daily_retrain")
    [request] = list(schedule.evaluate_tick(context).run_requests)
    assert request.partition_key == "2026-11-25"
    assert schedule.job_name == "ad_relevance_training"
    assert schedule.cron_schedule == "0 6 * * *"


def test_sensor_requests_one_run_per_complete_window_and_never_twice(tmp_path):
    data_root = DataRootResource(path=str(tmp_path))
    write_window(tmp_path, dt.date(2026, 11, 20), 500, seed=1)
    write_window(tmp_path, dt.date(2026, 11, 21), 500, seed=1)
    incomplete = write_window(tmp_path, dt.date(2026, 11, 22), 500, seed=1)
    (incomplete / "_SUCCESS").unlink()  # still being written: must be ignored

    with dg.instance_for_test() as instance:
        first = new_quests_window_sensor(dg.build_sensor_context(instance=instance), data_root=data_root)
        assert sorted(r.partition_key for r in first.run_requests) == ["2026-11-20", "2026-11-21"]
        assert {r.run_key for r in first.run_requests} == {"quests-window-2026-11-20", "quests-window-2026-11-21"}
        for request in first.run_requests:
            assert request.run_config["ops"]["quests_window"]["config"]["generate_if_missing"] is False

        again = new_quests_window_sensor(dg.build_sensor_context(instance=instance, cursor=first.cursor), data_root=data_root)
        assert not again.run_requests

        (incomplete / "_SUCCESS").write_text("")  # the window finished landing
        third = new_quests_window_sensor(dg.build_sensor_context(instance=instance, cursor=again.cursor), data_root=data_root)
        assert [r.partition_key for r in third.run_requests] == ["2026-11-22"]


def test_definitions_load_with_jobs_schedule_and_sensor():
    repo = defs.get_repository_def()
    assert {"ad_relevance_training", "ad_relevance_batch_scoring", "platform_smoke_test"} <= set(repo.job_names)
    assert repo.has_schedule_def("ad_relevance_daily_retrain")
    assert repo.has_sensor_def("new_quests_window_sensor")
    # The daily job trains, evaluates and scores; the promotion gate runs only in the release job.
    training = defs.resolve_job_def("ad_relevance_training")
    assert set(training.graph.node_dict) == {"quests_window", "ad_relevance_model", "ad_relevance_evaluation", "ad_relevance_scores"}
    release = defs.resolve_job_def("ad_relevance_gated_release")
    assert "ad_relevance_evaluation_candidate_beats_baseline" in release.graph.node_dict
