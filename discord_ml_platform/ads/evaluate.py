"""Offline metrics for a click/participation model: AUC, logloss, NE, calibration, ceiling AUC.

Numpy only and vectorised (sort-based AUC with tie handling), so the same code runs in a Ray
worker, in a Dagster asset check and in tests. Per-segment AUC and champion/challenger reports
build on these.
"""

from __future__ import annotations

import numpy as np

_EPS = 1e-7


def _as_arrays(labels: np.ndarray, preds: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(labels, dtype=np.float64).ravel()
    p = np.asarray(preds, dtype=np.float64).ravel()
    if y.shape != p.shape:
        raise ValueError(f"labels and predictions differ in length: {y.shape[0]} vs {p.shape[0]}")
    return y, p


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney U), ties counted half.

    Args:
        labels: 0/1 labels.
        scores: Any monotone score (probabilities or logits).

    Returns:
        The AUC, or NaN when only one class is present.
    """
    y, s = _as_arrays(labels, scores)
    n_pos = float(y.sum())
    n_neg = float(len(y) - n_pos)
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(s, kind="mergesort")
    s_sorted = s[order]
    # Average 1-based rank of each run of tied scores.
    new_run = np.empty(len(s_sorted), dtype=bool)
    new_run[0] = True
    np.not_equal(s_sorted[1:], s_sorted[:-1], out=new_run[1:])
    run_id = np.cumsum(new_run) - 1
    starts = np.flatnonzero(new_run)
    ends = np.append(starts[1:], len(s_sorted))
    ranks = ((starts + ends + 1) / 2.0)[run_id]
    rank_sum = float(ranks[y[order] == 1].sum())
    return float((rank_sum - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def logloss(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean binary cross-entropy (natural log), probabilities clipped to ``[1e-7, 1 - 1e-7]``."""
    y, p = _as_arrays(labels, probs)
    p = np.clip(p, _EPS, 1.0 - _EPS)
    return float(-np.mean(y * np.log(p) + (1.0 - y) * np.log1p(-p)))


def normalized_entropy(labels: np.ndarray, probs: np.ndarray) -> float:
    """Logloss divided by the entropy of the base rate (< 1 means better than the base rate)."""
    y, _ = _as_arrays(labels, probs)
    rate = float(np.clip(y.mean(), _EPS, 1.0 - _EPS))
    base = -(rate * np.log(rate) + (1.0 - rate) * np.log(1.0 - rate))
    return float(logloss(labels, probs) / base)


def calibration(labels: np.ndarray, probs: np.ndarray) -> float:
    """Mean prediction over positive rate (1.0 is calibrated on average)."""
    y, p = _as_arrays(labels, probs)
    rate = y.mean()
    return float(p.mean() / rate) if rate > 0 else float("nan")


def expected_calibration_error(labels: np.ndarray, probs: np.ndarray, bins: int = 10) -> float:
    """Weighted mean |observed rate - mean prediction| over equal-count bins of the predictions."""
    y, p = _as_arrays(labels, probs)
    if len(y) == 0:
        return float("nan")
    order = np.argsort(p, kind="mergesort")
    edges = np.linspace(0, len(y), bins + 1).astype(np.int64)
    csum_y = np.concatenate([[0.0], np.cumsum(y[order])])
    csum_p = np.concatenate([[0.0], np.cumsum(p[order])])
    sizes = np.diff(edges)
    keep = sizes > 0
    gap = np.abs(np.diff(csum_y[edges]) - np.diff(csum_p[edges]))[keep]
    return float(gap.sum() / len(y))


def evaluate_predictions(
    labels: np.ndarray,
    preds: np.ndarray,
    true_probs: np.ndarray | None = None,
) -> dict[str, float]:
    """All offline metrics of a set of predictions.

    Args:
        labels: 0/1 labels.
        preds: Predicted probabilities.
        true_probs: Ground-truth probabilities (synthetic data): adds ``ceiling_auc``,
            ``ceiling_logloss`` and ``auc_fraction_of_ceiling``.

    Returns:
        ``auc``, ``logloss``, ``normalized_entropy``, ``calibration``, ``ece``,
        ``positive_rate``, ``mean_prediction``, ``rows`` and, with ``true_probs``, the ceiling
        figures.
    """
    y, p = _as_arrays(labels, preds)
    metrics = {
        "rows": float(len(y)),
        "auc": roc_auc(y, p),
        "logloss": logloss(y, p),
        "normalized_entropy": normalized_entropy(y, p),
        "calibration": calibration(y, p),
        "ece": expected_calibration_error(y, p),
        "positive_rate": float(y.mean()) if len(y) else float("nan"),
        "mean_prediction": float(p.mean()) if len(p) else float("nan"),
    }
    if true_probs is not None:
        _, t = _as_arrays(labels, true_probs)
        metrics["ceiling_auc"] = roc_auc(y, t)
        metrics["ceiling_logloss"] = logloss(y, t)
        # How much of the attainable lift over a coin flip the model captured.
        lift = metrics["ceiling_auc"] - 0.5
        metrics["auc_fraction_of_ceiling"] = (metrics["auc"] - 0.5) / lift if lift > 0 else float("nan")
    return metrics


def segment_metrics(
    labels: np.ndarray,
    preds: np.ndarray,
    segments: dict[str, np.ndarray],
    true_probs: np.ndarray | None = None,
) -> dict[str, float]:
    """AUC (and ceiling AUC, row count) within each segment.

    Args:
        labels: 0/1 labels.
        preds: Predicted probabilities.
        segments: Segment name -> boolean mask of its rows.
        true_probs: Ground-truth probabilities, for the per-segment ceiling.

    Returns:
        ``auc_<segment>``, ``rows_<segment>`` and (with ``true_probs``) ``ceiling_auc_<segment>``;
        AUC is NaN for a segment with one class only.
    """
    y, p = _as_arrays(labels, preds)
    out: dict[str, float] = {}
    for name, mask in segments.items():
        m = np.asarray(mask, dtype=bool)
        out[f"rows_{name}"] = float(m.sum())
        out[f"auc_{name}"] = roc_auc(y[m], p[m]) if m.any() else float("nan")
        if true_probs is not None:
            t = np.asarray(true_probs, dtype=np.float64).ravel()
            out[f"ceiling_auc_{name}"] = roc_auc(y[m], t[m]) if m.any() else float("nan")
    return out


def frame_segments(frame: object) -> dict[str, np.ndarray]:
    """The standard segments of a Quests frame: new vs. running quests and each platform."""
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    segments: dict[str, np.ndarray] = {}
    if "quest_is_new" in frame.columns:
        new = frame["quest_is_new"].to_numpy(dtype=bool, na_value=False)
        segments["new_quests"] = new
        segments["running_quests"] = ~new
    if "platform" in frame.columns:
        platform = frame["platform"].astype("string").fillna("unknown").to_numpy(dtype=object)
        for value in sorted(set(platform)):
            segments[f"platform_{value}"] = platform == value
    return segments


def evaluate_frame(
    frame: object, preds: np.ndarray, label_column: str = "label", truth_column: str = "true_prob"
) -> dict[str, float]:
    """:func:`evaluate_predictions` plus :func:`segment_metrics` over :func:`frame_segments`.

    Args:
        frame: A pandas frame of the scored rows (labels, and ``true_prob`` when synthetic).
        preds: Predicted probabilities, in row order.
        label_column: Label column.
        truth_column: Ground-truth probability column (used when present).

    Returns:
        Overall metrics, ceiling figures and per-segment AUCs.
    """
    import pandas as pd

    assert isinstance(frame, pd.DataFrame)
    labels = frame[label_column].to_numpy(dtype=np.float64)
    truth = frame[truth_column].to_numpy(dtype=np.float64) if truth_column in frame.columns else None
    metrics = evaluate_predictions(labels, preds, truth)
    metrics.update(segment_metrics(labels, preds, frame_segments(frame), truth))
    return metrics
