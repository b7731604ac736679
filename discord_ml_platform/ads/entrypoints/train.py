"""Ray job driver: train the Ad Relevance model with Ray Train on the cluster it runs on."""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path


def main() -> None:
    """Split the windows, run ``TorchTrainer``, export the model, report metrics to Dagster."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import ray

        from discord_ml_platform.ads.entrypoints.split import write_split
        from discord_ml_platform.ads.model import RankerConfig
        from discord_ml_platform.ads.train import TrainLoopConfig, fit_with_ray_train

        extras = pipes.extras
        model_dir = Path(extras["model_dir"])
        split = write_split(
            Path(extras["data_root"]),
            dt.date.fromisoformat(extras["partition"]),
            int(extras["window_days"]),
            float(extras["holdout_fraction"]),
            model_dir / "split",
        )
        pipes.log.info(
            f"training on {split['train_rows']} rows of {split['windows']}, holding out {split['holdout_rows']} rows"
        )
        config = TrainLoopConfig(
            train_path=str(split["train_path"]),
            validation_path=str(split["holdout_path"]),
            epochs=int(extras["epochs"]),
            batch_size=int(extras["batch_size"]),
            lr=float(extras["learning_rate"]),
            seed=0,
            # .get() with the defaults of older configs: a run launched before these fields existed
            # still re-executes the same way.
            lr_schedule=str(extras.get("lr_schedule", "constant")),
            embedding_weight_decay=float(extras.get("embedding_weight_decay", 0.0)),
            model=RankerConfig(
                embedding_dim=int(extras.get("embedding_dim", 16)), interaction=str(extras.get("interaction", "dot"))
            ),
            torch_threads=1,
            sharding=str(extras.get("sharding", "row")),
        )
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
        result = fit_with_ray_train(
            config,
            num_workers=int(extras["num_workers"]),
            use_gpu=bool(extras["use_gpu"]),
            storage_path=str(extras["storage_path"]),
            name=str(extras["run_name"]),
            cpus_per_worker=float(extras["cpus_per_worker"]),
            output_dir=model_dir / "model",
        )
        (model_dir / "split.json").write_text(json.dumps(split, indent=2))
        final = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        pipes.report_asset_materialization(
            metadata={
                **{k: round(v, 6) for k, v in final.items()},
                "model_path": {"raw_value": str(result.model_path), "type": "path"},
                "train_rows": split["train_rows"],
                "holdout_rows": split["holdout_rows"],
                "windows": {"raw_value": split["windows"], "type": "json"},
                "train_seconds": round(result.train_seconds, 2),
                "epochs_history": {"raw_value": result.history, "type": "json"},
            }
        )


if __name__ == "__main__":
    main()
