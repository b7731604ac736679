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
