"""The workload on a real local Ray: Ray Train with 2 CPU workers (DDP over gloo), Ray Data scoring.

All tests share one session-scoped Ray (see ``conftest.ray_session``).
"""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from discord_ml_platform.ads.model import RankerConfig, load_model
from discord_ml_platform.ads.train import TrainLoopConfig, TrainResult

pytestmark = [pytest.mark.ray, pytest.mark.timeout(240)]


@pytest.fixture(scope="module")
def ray_trained(ray_session, windows, small_world, tmp_path_factory) -> TrainResult:
    from discord_ml_platform.ads.train import fit_with_ray_train

    storage = tmp_path_factory.mktemp("ray-storage")
    config = TrainLoopConfig(
        train_path=str(windows["train"]),
        validation_path=str(windows["validation"]),
        epochs=2,
        batch_size=512,
        torch_threads=1,
        model=RankerConfig.from_schema(small_world.schema),
        checkpoint={"num_to_keep": 2},
    )
    return fit_with_ray_train(
        config,
        num_workers=2,
        use_gpu=False,
        storage_path=str(storage),
        name="quest-ranker-test",
        max_failures=0,
        cpus_per_worker=0.5,
    )


def test_ray_train_two_workers(ray_trained: TrainResult) -> None:
    m = ray_trained.metrics
    assert m["world_size"] == 2
    assert m["epoch"] == 1
    assert [h["epoch"] for h in ray_trained.history] == [0, 1]
    # Each worker saw half the rows; validation predictions were gathered from both.
    assert m["val_rows"] == 10_000
    assert m["val_auc"] > 0.6
    assert ray_trained.checkpoint_path
    model = load_model(ray_trained.model_path)
    assert model.config.feature_schema == RankerConfig.from_schema(model.config.feature_schema).feature_schema


def test_ray_data_scoring(ray_trained: TrainResult, windows, tmp_path) -> None:
    from discord_ml_platform.ads.infer import score_in_process, score_with_ray_data

    out_dir = tmp_path / "scored"
    summary = score_with_ray_data(
        ray_trained.model_path,
        windows["validation"],
        out_dir,
        batch_size=2_048,
        concurrency=1,
        num_cpus_per_actor=0.5,
    )
    assert summary["rows"] == 10_000
    scored = pd.read_parquet(out_dir).sort_values("event_id").reset_index(drop=True)
    assert len(scored) == 10_000 and scored["event_id"].is_unique
    reference = pd.read_parquet(
        score_in_process(ray_trained.model_path, windows["validation"], tmp_path / "ref.parquet")["output_path"]
    ).sort_values("event_id").reset_index(drop=True)
    np.testing.assert_allclose(scored["score"], reference["score"], rtol=1e-5, atol=1e-6)


@pytest.mark.timeout(300)
def test_killed_worker_resumes_from_last_checkpoint(ray_session, windows, small_world, tmp_path) -> None:
    """Rank 1 dies abruptly at the start of epoch 1 (first attempt only); Ray Train restarts the
    group (FailureConfig), every worker restores the epoch-0 checkpoint, and the run finishes.
    Sharded (row-wise) tables on 2 workers, so the restore also re-shards the checkpoint."""
    import functools

    import drivers.faults
    from drivers.faults import KillRankOnce
    from ray import cloudpickle

    from discord_ml_platform.ads.train import fit_with_ray_train, train_loop_per_worker

    cloudpickle.register_pickle_by_value(drivers.faults)  # Ray's workers cannot import the tests
    marker = tmp_path / "killed-once"
    config = TrainLoopConfig(
        train_path=str(windows["train"]),
        epochs=3,
        batch_size=512,
        torch_threads=1,
        max_train_rows=4_000,
        model=RankerConfig.from_schema(small_world.schema, embedding_dim=8),
        sharding="row",
        emit_pipes_metrics=False,
    )
    result = fit_with_ray_train(
        config,
        num_workers=2,
        use_gpu=False,
        storage_path=str(tmp_path / "storage"),
        name="quest-ranker-failure",
        max_failures=1,
        cpus_per_worker=0.5,
        train_loop=functools.partial(train_loop_per_worker, on_epoch_start=KillRankOnce(epoch=1, marker=str(marker))),
    )
    assert marker.exists(), "the failure hook never fired"
    assert result.metrics["epoch"] == 2
    # The last report came from the restarted group, which began at epoch 1 (after checkpoint 0).
    assert result.metrics["start_epoch"] == 1
    assert result.metrics["sharding"] == "row"
    assert load_model(result.model_path) is not None


@pytest.mark.timeout(300)
def test_xgboost_trainer_on_two_workers_matches_the_in_process_baseline(ray_session, windows, tmp_path) -> None:
    """Ray Train's ``XGBoostTrainer`` (2 workers, histograms all-reduced) learns what the in-process fit
    learns from the same features, and the booster it returns predicts and round-trips."""
    from discord_ml_platform.ads.baseline import (
        BaselineModel,
        XGBoostSettings,
        evaluate_baseline,
        fit_xgboost,
        fit_xgboost_with_ray,
    )
    from discord_ml_platform.ads.data import read_window

    settings = XGBoostSettings(num_boost_round=60, max_depth=4, nthread=1, early_stopping_rounds=10)
    holdout = read_window(windows["validation"])
    distributed = fit_xgboost_with_ray(str(windows["train"]), settings, num_workers=2, cpus_per_worker=0.5,
                                       storage_path=str(tmp_path / "storage"), name="xgb-test")
    local = fit_xgboost(read_window(windows["train"]), settings)
    ray_auc = evaluate_baseline(distributed, holdout)["auc"]
    local_auc = evaluate_baseline(local, holdout)["auc"]
    assert ray_auc > 0.7, ray_auc
    # Same features and parameters; only the row partitioning of the boosting differs.
    assert abs(ray_auc - local_auc) < 0.02, (ray_auc, local_auc)
    assert 0 <= distributed.best_iteration < settings.num_boost_round
    loaded = BaselineModel.load(distributed.save(tmp_path / "xgb"))
    np.testing.assert_allclose(loaded.predict(holdout.head(200)), distributed.predict(holdout.head(200)), rtol=1e-6)
