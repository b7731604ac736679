"""The plain (no Ray) training loop, checkpoints and resume, scoring and telemetry."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from discord_ml_platform.ads.data import QuestWorld, read_window
from discord_ml_platform.ads.infer import QuestScorer, score_in_process
from discord_ml_platform.ads.model import RankerConfig
from discord_ml_platform.ads.telemetry import emit_epoch_metrics
from discord_ml_platform.ads.train import TrainLoopConfig, TrainResult, fit_in_process, train_loop_per_worker

pytestmark = pytest.mark.timeout(120)


def _config(windows: dict[str, Path], world: QuestWorld, **overrides) -> TrainLoopConfig:
    base = {
        "train_path": str(windows["train"]),
        "validation_path": str(windows["validation"]),
        "epochs": 2,
        "batch_size": 512,
        "lr": 0.003,
        "seed": 0,
        "torch_threads": 1,
        "model": RankerConfig.from_schema(world.schema),
    }
    return TrainLoopConfig.model_validate({**base, **overrides})


@pytest.fixture(scope="module")
def trained(windows, small_world, tmp_path_factory) -> TrainResult:
    out = tmp_path_factory.mktemp("trained")
    config = _config(windows, small_world, checkpoint={"local_dir": str(out / "ckpt")})
    seen: list[dict] = []
    started = time.perf_counter()
    result = fit_in_process(config, output_dir=out / "model", on_epoch_end=seen.append)
    result.train_seconds = time.perf_counter() - started
    assert seen == result.history
    return result


def test_training_learns_a_good_part_of_the_ceiling(trained: TrainResult) -> None:
    m = trained.metrics
    assert [h["epoch"] for h in trained.history] == [0, 1]
    assert m["val_ceiling_auc"] > 0.8
    assert m["val_auc"] > 0.62
    assert m["val_auc_fraction_of_ceiling"] > 0.3
    assert m["val_normalized_entropy"] < 1.0
    assert 0.7 < m["val_calibration"] < 1.3
    assert trained.train_seconds < 30


def test_checkpoints_and_resume(trained: TrainResult, windows, small_world, tmp_path) -> None:
    ckpt_root = Path(trained.checkpoint_path).parent
    assert sorted(p.name for p in ckpt_root.iterdir()) == ["epoch=0000", "epoch=0001"]
    # Resuming with one more epoch runs only that epoch, starting from the last checkpoint.
    config = _config(windows, small_world, epochs=3, checkpoint={"local_dir": str(ckpt_root), "num_to_keep": 1})
    resumed = fit_in_process(config, on_epoch_end=lambda m: None)
    assert [h["epoch"] for h in resumed.history] == [2]
    assert sorted(p.name for p in ckpt_root.iterdir()) == ["epoch=0002"]


def test_train_loop_per_worker_prints_pipes_messages(windows, small_world, capsys) -> None:
    config = _config(windows, small_world, epochs=1, max_train_rows=2_000, max_validation_rows=1_000)
    config.checkpoint.enabled = False
    assert train_loop_per_worker(config.model_dump(mode="json")) is None
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "__dagster_pipes_version" in line]
    assert len(lines) == 1
    message = lines[0]
    assert message["method"] == "report_custom_message"
    payload = message["params"]["payload"]
    assert payload["kind"] == "epoch_metrics" and payload["epoch"] == 0
    assert 0 <= payload["val_auc"] <= 1


def test_emit_epoch_metrics_format(capsys) -> None:
    emit_epoch_metrics({"epoch": np.int64(3), "val_auc": np.float32(0.5), "bad": float("nan")})
    line = capsys.readouterr().out
    assert line.endswith("\n") and line.count("\n") == 1
    assert json.loads(line) == {
        "__dagster_pipes_version": "0.1",
        "method": "report_custom_message",
        "params": {"payload": {"kind": "epoch_metrics", "epoch": 3, "val_auc": 0.5, "bad": None}},
    }


def test_scorer_round_trip(trained: TrainResult, windows) -> None:
    frame = read_window(windows["validation"]).head(1_000)
    scorer = QuestScorer(trained.model_path)
    scored = scorer(frame)
    assert list(scored.columns) == ["event_id", "user_id", "quest_id", "label", "true_prob", "score"]
    assert len(scored) == 1_000
    assert scored["score"].between(0, 1).all()
    np.testing.assert_array_equal(scored["event_id"], frame["event_id"])
    # Object list columns (as some readers produce) give the same scores.
    as_objects = frame.copy()
    for column in ("game_ids", "guild_ids"):
        as_objects[column] = pd.Series([np.asarray(v) for v in frame[column].tolist()], dtype=object)
    np.testing.assert_allclose(scorer(as_objects)["score"], scored["score"], rtol=1e-6)


def test_score_in_process(trained: TrainResult, windows, tmp_path) -> None:
    summary = score_in_process(trained.model_path, windows["validation"], tmp_path / "scores.parquet", batch_size=3_000)
    out = pd.read_parquet(summary["output_path"])
    assert summary["rows"] == len(out) == 10_000
    assert out["event_id"].is_unique
    from discord_ml_platform.ads.evaluate import roc_auc

    assert roc_auc(out["label"].to_numpy(), out["score"].to_numpy()) == pytest.approx(
        trained.metrics["val_auc"], abs=1e-4
    )
