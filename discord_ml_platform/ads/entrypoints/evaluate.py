"""Ray job driver: evaluate the partition's model (and the current champion) on its held-out rows."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any


def main() -> None:
    """Score the holdout with the candidate and the champion (a Ray task), report metrics to Dagster.

    ``evaluation.json`` holds the candidate's metrics at the top level (AUC, logloss, NE,
    calibration, ceiling, per-segment AUC) and, when a champion exists, ``champion_version`` and
    ``champion_metrics`` measured on the *same* holdout, so the promotion gate compares like
    with like.
    """
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import os

        import ray

        from discord_ml_platform.ads.params import EvaluateParams, MetadataKey

        params = EvaluateParams.model_validate(pipes.extras)
        model_dir = Path(params.model_dir)
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
        # One task on the cluster (not the driver) so evaluation uses cluster resources.
        task = ray.remote(num_cpus=1)(evaluate_holdout)
        report = ray.get(task.remote(str(model_dir), params.champion_model_path))
        if params.champion_version:
            report["champion_version"] = params.champion_version
        (model_dir / "evaluation.json").write_text(json.dumps(report, indent=2))
        pipes.log.info(
            f"AUC {report['auc']:.4f} (ceiling {report['ceiling_auc']:.4f}), logloss {report['logloss']:.4f}"
        )
        metadata: dict[str, Any] = {
            k: round(v, 6) for k, v in report.items() if isinstance(v, float) and math.isfinite(v)
        }
        metadata[MetadataKey.MODEL_DIR] = {"raw_value": str(model_dir), "type": "path"}
        if "champion_metrics" in report:
            metadata[MetadataKey.CHAMPION_AUC] = round(report["champion_metrics"]["auc"], 6)
            metadata[MetadataKey.CHAMPION_VERSION] = str(report.get("champion_version", ""))
        pipes.report_asset_materialization(metadata=metadata)


def evaluate_holdout(model_dir: str, champion_model_path: str | None = None) -> dict[str, Any]:
    """Metrics of ``model_dir/model`` (and of the champion) on ``model_dir/split/holdout.parquet``."""
    from discord_ml_platform.ads.data import read_window
    from discord_ml_platform.ads.evaluate import evaluate_frame
    from discord_ml_platform.ads.infer import QuestScorer

    holdout = read_window(Path(model_dir) / "split" / "holdout.parquet")
    report: dict[str, Any] = evaluate_frame(holdout, QuestScorer(str(Path(model_dir) / "model")).predict(holdout))
    if champion_model_path and Path(champion_model_path).is_dir():
        report["champion_metrics"] = evaluate_frame(holdout, QuestScorer(champion_model_path).predict(holdout))
    return report


if __name__ == "__main__":
    main()
