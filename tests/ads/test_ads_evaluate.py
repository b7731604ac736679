"""Offline metrics against scikit-learn and by hand."""

from __future__ import annotations

import math

import numpy as np
import pytest
from sklearn.metrics import log_loss, roc_auc_score

from discord_ml_platform.ads.evaluate import (
    calibration,
    evaluate_predictions,
    expected_calibration_error,
    logloss,
    normalized_entropy,
    roc_auc,
)

pytestmark = pytest.mark.timeout(30)


@pytest.fixture()
def scored() -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    p = rng.uniform(0.01, 0.6, 20_000)
    y = (rng.random(20_000) < p).astype(np.int64)
    return y, p


def test_auc_matches_sklearn(scored) -> None:
    y, p = scored
    assert roc_auc(y, p) == pytest.approx(roc_auc_score(y, p), abs=1e-12)


def test_auc_handles_ties_like_sklearn(scored) -> None:
    y, p = scored
    coarse = np.round(p, 1)  # many ties
    assert roc_auc(y, coarse) == pytest.approx(roc_auc_score(y, coarse), abs=1e-12)
    assert roc_auc(y, np.zeros_like(p)) == pytest.approx(0.5)


def test_auc_of_one_class_is_nan() -> None:
    assert math.isnan(roc_auc(np.ones(5), np.arange(5.0)))


def test_logloss_matches_sklearn(scored) -> None:
    y, p = scored
    assert logloss(y, p) == pytest.approx(log_loss(y, p), rel=1e-9)


def test_normalized_entropy_and_calibration(scored) -> None:
    y, p = scored
    rate = y.mean()
    base = np.full_like(p, rate)
    assert normalized_entropy(y, base) == pytest.approx(1.0, rel=1e-9)
    assert normalized_entropy(y, p) < 1.0
    assert calibration(y, base) == pytest.approx(1.0)
    assert calibration(y, 2 * base) == pytest.approx(2.0)
    assert expected_calibration_error(y, p) < 0.02
    assert expected_calibration_error(y, np.clip(p + 0.2, 0, 1)) > 0.15


def test_evaluate_predictions_reports_ceiling(scored) -> None:
    y, p = scored
    noisy = np.clip(p + np.random.default_rng(1).normal(0, 0.2, len(p)), 0.001, 0.999)
    m = evaluate_predictions(y, noisy, true_probs=p)
    assert m["ceiling_auc"] == pytest.approx(roc_auc_score(y, p))
    assert m["auc"] < m["ceiling_auc"]
    assert 0 < m["auc_fraction_of_ceiling"] < 1
    assert m["positive_rate"] == pytest.approx(y.mean())
    assert m["rows"] == len(y)
    assert {"logloss", "normalized_entropy", "calibration", "ece", "mean_prediction"} <= set(m)


def test_length_mismatch_raises() -> None:
    with pytest.raises(ValueError):
        roc_auc(np.ones(3), np.ones(4))
