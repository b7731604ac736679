"""Ray job driver: evaluate the partition's model on its held-out rows."""

from __future__ import annotations

import json
from pathlib import Path


def main() -> None:
    """Score the holdout with the model (a Ray task), compute metrics, report them to Dagster."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import os

        import ray

        model_dir = Path(pipes.extras["model_dir"])
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
        # One task on the cluster (not the driver) so evaluation uses cluster resources.
        metrics = ray.get(ray.remote(num_cpus=1)(evaluate_holdout).remote(str(model_dir)))
        (model_dir / "evaluation.json").write_text(json.dumps(metrics, indent=2))
        pipes.log.info(f"AUC {metrics['auc']:.4f} (ceiling {metrics['ceiling_auc']:.4f}), logloss {metrics['logloss']:.4f}")
        pipes.report_asset_materialization(metadata={k: round(v, 6) for k, v in metrics.items()})


def evaluate_holdout(model_dir: str) -> dict[str, float]:
    """Metrics of ``model_dir/model`` on ``model_dir/split/holdout.parquet``."""
    from discord_ml_platform.ads.data import read_window
    from discord_ml_platform.ads.evaluate import evaluate_predictions
    from discord_ml_platform.ads.infer import QuestScorer

    holdout = read_window(Path(model_dir) / "split" / "holdout.parquet")
    scorer = QuestScorer(str(Path(model_dir) / "model"))
    predictions = scorer.predict(holdout)
    return evaluate_predictions(holdout["label"].to_numpy(), predictions, holdout["true_prob"].to_numpy())


if __name__ == "__main__":
    main()
