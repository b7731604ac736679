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
        from discord_ml_platform.ads.params import MetadataKey, TrainParams
        from discord_ml_platform.ads.train import TrainLoopConfig, fit_with_ray_train

        params = TrainParams.model_validate(pipes.extras)
        model_dir = Path(params.model_dir)
        split = write_split(
            Path(params.data_root),
            dt.date.fromisoformat(params.partition),
            params.window_days,
            params.holdout_fraction,
            model_dir / "split",
        )
        pipes.log.info(
            f"training on {split['train_rows']} rows of {split['windows']}, holding out {split['holdout_rows']} rows"
        )
        config = TrainLoopConfig(
            train_path=str(split["train_path"]),
            validation_path=str(split["holdout_path"]),
            epochs=params.epochs,
            batch_size=params.batch_size,
            lr=params.learning_rate,
            seed=0,
            lr_schedule=params.lr_schedule,
            embedding_weight_decay=params.embedding_weight_decay,
            model=RankerConfig(embedding_dim=params.embedding_dim, interaction=params.interaction),
            torch_threads=1,
            sharding=params.sharding,
        )
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
        result = fit_with_ray_train(
            config,
            num_workers=params.num_workers,
            use_gpu=params.use_gpu,
            storage_path=params.storage_path,
            name=params.run_name,
            cpus_per_worker=params.cpus_per_worker,
            output_dir=model_dir / "model",
        )
        (model_dir / "split.json").write_text(json.dumps(split, indent=2))
        (model_dir / "training.json").write_text(params.model_dump_json(indent=2))
        final = {k: float(v) for k, v in result.metrics.items() if isinstance(v, (int, float))}
        pipes.report_asset_materialization(
            metadata={
                **{k: round(v, 6) for k, v in final.items()},
                MetadataKey.MODEL_NAME: params.model_name,
                MetadataKey.MODEL_DIR: {"raw_value": str(model_dir), "type": "path"},
                MetadataKey.MODEL_PATH: {"raw_value": str(result.model_path), "type": "path"},
                MetadataKey.TRAIN_ROWS: int(split["train_rows"]),
                MetadataKey.HOLDOUT_ROWS: int(split["holdout_rows"]),
                "windows": {"raw_value": split["windows"], "type": "json"},
                "train_seconds": round(result.train_seconds, 2),
                "epochs_history": {"raw_value": result.history, "type": "json"},
            }
        )


if __name__ == "__main__":
    main()
