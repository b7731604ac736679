"""Ray job driver: the XGBoost baseline on the partition's train/holdout split."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def main() -> None:
    """Fit XGBoost on ``split/train.parquet`` (on the cluster), score the holdout, report to Dagster."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import os

        import ray

        from discord_ml_platform.ads.params import BaselineParams, MetadataKey

        params = BaselineParams.model_validate(pipes.extras)
        model_dir = Path(params.model_dir)
        settings = {"max_depth": params.max_depth, "num_boost_round": params.num_boost_round}
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
        if params.use_ray_trainer:
            metrics = fit_and_evaluate_with_trainer(str(model_dir), settings, params.num_workers, params.cpus)
        else:
            # One task on the cluster (not the driver), so the fit uses cluster resources.
            task = ray.remote(num_cpus=params.cpus)(fit_and_evaluate)
            metrics = ray.get(task.remote(str(model_dir), settings, max(1, int(params.cpus))))
        pipes.log.info(
            f"XGBoost baseline AUC {metrics['auc']:.4f} (ceiling {metrics.get('ceiling_auc', float('nan')):.4f})"
        )
        pipes.report_asset_materialization(
            metadata={
                **{
                    k: round(float(v), 6)
                    for k, v in metrics.items()
                    if isinstance(v, (int, float)) and math.isfinite(v)
                },
                MetadataKey.BASELINE_PATH: {"raw_value": str(model_dir / "baseline"), "type": "path"},
            }
        )


def fit_and_evaluate(model_dir: str, settings: dict[str, Any], threads: int = 1) -> dict[str, float]:
    """Fit on ``model_dir/split/train.parquet``; write ``baseline/`` and ``baseline.json``; return holdout metrics."""
    from discord_ml_platform.ads.baseline import XGBoostSettings, fit_xgboost
    from discord_ml_platform.ads.data import read_window

    d = Path(model_dir)
    train = read_window(d / "split" / "train.parquet")
    model = fit_xgboost(train, XGBoostSettings.model_validate({"nthread": threads, **settings}))
    del train
    return _finish(d, model)


def fit_and_evaluate_with_trainer(
    model_dir: str, settings: dict[str, Any], num_workers: int, cpus: float
) -> dict[str, float]:
    """Same, with Ray Train's ``XGBoostTrainer`` doing the boosting on ``num_workers`` workers."""
    from discord_ml_platform.ads.baseline import XGBoostSettings, fit_xgboost_with_ray

    d = Path(model_dir)
    model = fit_xgboost_with_ray(
        str(d / "split" / "train.parquet"),
        XGBoostSettings.model_validate(settings),
        num_workers=num_workers,
        cpus_per_worker=cpus,
    )
    return _finish(d, model)


def _finish(d: Path, model: Any) -> dict[str, float]:
    from discord_ml_platform.ads.baseline import evaluate_baseline
    from discord_ml_platform.ads.data import read_window

    holdout = read_window(d / "split" / "holdout.parquet")
    metrics = evaluate_baseline(model, holdout)
    metrics["best_iteration"] = float(model.best_iteration)
    metrics["train_seconds"] = float(model.train_seconds)
    model.save(d / "baseline")
    (d / "baseline.json").write_text(json.dumps(metrics, indent=2))
    return metrics


if __name__ == "__main__":
    main()
