"""The Ad Relevance pipeline end to end on the embedded local backend, and teardown on interrupt."""

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import dagster as dg
import pandas as pd
import pytest

from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.jobs import job_client
from pipelines.definitions import build_definitions

defs = build_definitions()
pytestmark = pytest.mark.ray
ROOT = Path(__file__).resolve().parents[2]


def metadata_of(result: dg.ExecuteInProcessResult, asset: str) -> dict:
    [mat] = result.asset_materializations_for_node(asset)
    return {k: getattr(v, "value", v) for k, v in mat.metadata.items()}


@pytest.mark.timeout(600)
def test_pipeline_materializes_every_asset_on_a_local_cluster_and_tears_it_down(session_root):
    job = defs.resolve_job_def("ad_relevance_training")
    run_config = {"ops": {
        "quests_window": {"config": {"rows": 6000}},
        "ad_relevance_model": {"config": {"epochs": 1, "batch_size": 512}},
        "ad_relevance_scores": {"config": {"batch_size": 2048}},
    }}
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key="2026-11-25", run_config=run_config, instance=instance)
        assert result.success
        window = metadata_of(result, "quests_window")
        model = metadata_of(result, "ad_relevance_model")
        evaluation = metadata_of(result, "ad_relevance_evaluation")
        scores = metadata_of(result, "ad_relevance_scores")
        observations = [e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]
        logs = [r.user_message for r in instance.all_logs(result.run_id)]

    assert window["rows"] == 6000
    # Trained by Ray Train on 2 workers, through a Pipes-speaking Ray job on a per-run cluster.
    assert model["val_world_size" if "val_world_size" in model else "world_size"] == 2
    assert Path(model["model_path"]).joinpath("model.pt").exists()
    assert model["cluster_backend"] == "local" and model["cluster_workers"] == 2
    assert model["seconds_to_ready"] > 0 and model["usage_samples"] >= 1
    assert len(observations) == 1  # one live observation per epoch, no duplicates
    assert 0.5 < evaluation["ceiling_auc"] <= 1 and 0 < evaluation["auc"] <= 1 and evaluation["logloss"] > 0
    assert scores["rows"] == 6000
    scored = pd.read_parquet(scores["scores_path"])
    assert len(scored) == 6000 and scored["score"].between(0, 1).all()
    assert any("Setting up process group" in line or "epoch metrics" in line for line in logs)
    # One cluster for the whole run (shared by the three Ray steps), and it is gone now.
    assert len({model["cluster_name"], evaluation["cluster_name"], scores["cluster_name"]}) == 1
    assert sum("ready in" in line for line in logs) == 1
    assert LocalBackend().list() == []


@pytest.mark.timeout(300)
def test_interrupting_a_run_stops_the_ray_job_and_deletes_the_cluster(tmp_path):
    """SIGINT to `dagster job execute` (Dagster's interrupt) mid-job: nothing is left running."""
    config = tmp_path / "run.yaml"
    config.write_text(f"ops:\n  faulty_smoke:\n    config:\n      release_file: {tmp_path / 'never'}\n")
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    run = subprocess.Popen(
        [sys.executable, "-m", "dagster", "job", "execute", "-d", str(ROOT / "tests"), "-m", "drivers.smoke_defs",
         "-a", "defs", "-j", "faulty_smoke_test", "-c", str(config)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    backend = LocalBackend()
    try:
        job = wait_for_running_job(backend, run, timeout_s=180)
        run.send_signal(signal.SIGINT)
        output, _ = run.communicate(timeout=120)
    finally:
        if run.poll() is None:
            run.kill()
    assert run.returncode != 0
    assert "deleted Ray cluster" in output, output[-3000:]
    assert backend.list() == []
    assert job is not None


def wait_for_running_job(backend: LocalBackend, run: subprocess.Popen, timeout_s: float):
    """Wait until the run's cluster exists and its Ray job is RUNNING; return that job."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert run.poll() is None, run.stdout.read() if run.stdout else "run exited"
        for info in backend.list():
            if info.status != "ready" or info.endpoints is None:
                continue
            try:
                jobs = job_client(info.endpoints.dashboard_url).list_jobs()
            except (OSError, RuntimeError):  # the dashboard is still starting
                continue
            running = [j for j in jobs if j.status.value == "RUNNING"]
            if running:
                return running[0]
        time.sleep(0.5)
    raise AssertionError("the run's Ray job never started")


@pytest.mark.timeout(900)
def test_gated_release_fits_the_baseline_with_xgboost_trainer_promotes_and_scores_with_the_champion(session_root):
    """The release job on a local cluster: NN and XGBoost (Ray Train's ``XGBoostTrainer`` on 2 workers)
    on the same split, both blocking checks, registration and promotion, scoring with the champion; then
    the batch scoring job scores a newly landed window (no trained model) with that champion.

    The gate is opened (``min_gain_over_baseline: -1``) because at test size the network need not
    beat XGBoost; which way the checks decide is covered in ``test_ad_relevance_quality``."""
    from discord_ml_platform.ads.registry import ModelRegistry
    from resources import DataRootResource

    job = defs.resolve_job_def("ad_relevance_gated_release")
    run_config = {
        "ops": {
            "quests_window": {"config": {"rows": 6000}},
            "ad_relevance_model": {"config": {"model_name": "gated-e2e", "epochs": 1, "batch_size": 256}},
            "ad_relevance_baseline": {"config": {"use_ray_trainer": True, "cpus": 0.5, "max_depth": 4,
                                                 "num_boost_round": 40}},
            "ad_relevance_scores": {"config": {"batch_size": 2048, "model_source": "champion"}},
        },
        # One threshold for both checks and the promotion, set once for the run.
        "resources": {"promotion_gate": {"config": {"min_gain_over_baseline": -1.0}}},
    }
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key="2026-11-24", run_config=run_config, instance=instance)
        assert result.success
        baseline = metadata_of(result, "ad_relevance_baseline")
        evaluation = metadata_of(result, "ad_relevance_evaluation")
        promotion = metadata_of(result, "ad_relevance_promotion")
        scores = metadata_of(result, "ad_relevance_scores")
        checks = {e.asset_check_evaluation_data.asset_check_key.name: e.asset_check_evaluation_data.passed
                  for e in result.all_events if e.event_type_value == "ASSET_CHECK_EVALUATION"}

    assert 0.5 < baseline["auc"] <= 1 and baseline["best_iteration"] < 40
    assert checks == {"candidate_beats_baseline": True, "candidate_not_worse_than_champion": True}
    assert promotion["promoted"] is True and promotion["baseline_auc"] == pytest.approx(baseline["auc"], abs=1e-6)
    assert promotion["candidate_auc"] == pytest.approx(evaluation["auc"], abs=1e-6)
    champion = ModelRegistry(DataRootResource().root).get_champion("gated-e2e")
    assert champion is not None and champion.version == promotion["version"] == promotion["champion_version"]
    assert champion.lineage["partition"] == "2026-11-24" and champion.lineage["train_rows"] > 0
    assert scores["model_version"] == champion.version and scores["rows"] == 6000
    assert LocalBackend().list() == []

    # A window that just landed has no model of its own: batch scoring with the champion needs none.
    from datetime import date

    from discord_ml_platform.ads.data import write_window

    landed = "2026-11-23"
    write_window(DataRootResource().root, date.fromisoformat(landed), 3000, seed=3)
    scoring = defs.resolve_job_def("ad_relevance_batch_scoring")
    with dg.instance_for_test() as instance:
        result = scoring.execute_in_process(partition_key=landed, instance=instance, run_config={"ops": {
            "ad_relevance_scores": {"config": {"batch_size": 2048, "model_source": "champion", "model_name": "gated-e2e"}},
        }})
        assert result.success
        assert not instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("ad_relevance_model"), asset_partitions=[landed]), limit=1).records
        landed_scores = metadata_of(result, "ad_relevance_scores")
    assert landed_scores["model_version"] == champion.version and landed_scores["rows"] == 3000
    assert len(pd.read_parquet(landed_scores["scores_path"])) == 3000
    assert LocalBackend().list() == []
