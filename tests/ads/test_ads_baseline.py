"""XGBoost baseline, target encoding without leakage, segment metrics."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from discord_ml_platform.ads.baseline import (
    BaselineModel,
    TargetEncoder,
    XGBoostSettings,
    fit_encoder,
    fit_xgboost,
    transform,
)
from discord_ml_platform.ads.data import read_window
from discord_ml_platform.ads.evaluate import evaluate_frame, frame_segments

pytestmark = pytest.mark.timeout(120)

FAST = XGBoostSettings(num_boost_round=60, max_depth=4, nthread=1, early_stopping_rounds=10)


@pytest.fixture(scope="module")
def frames(windows) -> tuple[pd.DataFrame, pd.DataFrame]:
    return read_window(windows["train"]), read_window(windows["validation"])


def test_target_encoder_smooths_and_handles_unseen() -> None:
    enc = TargetEncoder(prior=0.1, smoothing=10.0)
    enc.fit_key("k", np.array([1, 1, 1, 2]), np.array([1.0, 1.0, 0.0, 0.0]))
    rate, count = enc.lookup("k", np.array([1, 2, 3]))
    np.testing.assert_allclose(rate, [(2 + 1.0) / 13, 1.0 / 11, 0.1])
    np.testing.assert_array_equal(count, [3, 1, 0])
    back = TargetEncoder.from_json(enc.to_json())
    np.testing.assert_allclose(back.lookup("k", np.array([1, 2, 3]))[0], rate)


def test_out_of_fold_encoding_does_not_leak_the_label(frames) -> None:
    train, _ = frames
    # A column of pure row ids: in-sample target encoding would reproduce the label exactly.
    leaky = train.copy()
    leaky["user_id"] = np.arange(len(leaky))
    _, features = fit_encoder(leaky, XGBoostSettings(smoothing=1.0))
    from discord_ml_platform.ads.evaluate import roc_auc

    assert roc_auc(leaky["label"].to_numpy(), features["te_user"].to_numpy()) == pytest.approx(0.5, abs=0.02)


def test_baseline_learns_and_round_trips(frames, tmp_path) -> None:
    train, holdout = frames
    model = fit_xgboost(train, FAST)
    metrics = evaluate_frame(holdout, model.predict(holdout))
    assert metrics["auc"] > 0.7
    assert 0.6 < metrics["calibration"] < 1.4
    assert {"auc_new_quests", "auc_running_quests", "auc_platform_desktop", "ceiling_auc_platform_ios"} <= set(metrics)
    loaded = BaselineModel.load(model.save(tmp_path / "xgb"))
    np.testing.assert_allclose(loaded.predict(holdout.head(500)), model.predict(holdout.head(500)), rtol=1e-6)
    assert list(transform(holdout.head(3), model.encoder).columns) == list(transform(holdout.head(5), loaded.encoder).columns)


def test_segments_cover_platforms_and_new_quests(frames) -> None:
    _, holdout = frames
    segments = frame_segments(holdout)
    assert (segments["new_quests"] | segments["running_quests"]).all()
    platforms = [k for k in segments if k.startswith("platform_")]
    assert sum(segments[k].sum() for k in platforms) == len(holdout)
