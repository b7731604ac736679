"""Ray job driver: batch-score a window with Ray Data."""

from __future__ import annotations

import shutil
from pathlib import Path


def main() -> None:
    """Stream the window through a ``QuestScorer`` actor pool into Parquet; report counts."""
    from dagster_pipes import open_dagster_pipes

    with open_dagster_pipes() as pipes:
        import os

        import ray

        from discord_ml_platform.ads.infer import score_with_ray_data
        from discord_ml_platform.ads.params import MetadataKey, ScoreParams

        params = ScoreParams.model_validate(pipes.extras)
        output = Path(params.output_path)
        shutil.rmtree(output, ignore_errors=True)  # a rerun replaces the partition's scores
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
        ray.data.DataContext.get_current().enable_progress_bars = False  # bars garble job logs
        result = score_with_ray_data(
            Path(params.model_path),
            params.input_path,
            output,
            batch_size=params.batch_size,
            concurrency=params.concurrency,
            num_gpus_per_actor=params.num_gpus_per_actor,
        )
        pipes.log.info(f"scored {result['rows']} rows at {result['rows_per_second']:.0f} rows/s")
        pipes.report_asset_materialization(
            metadata={
                MetadataKey.ROWS_SCORED: int(result["rows"]),
                "rows_per_second": round(float(result["rows_per_second"]), 1),
                MetadataKey.SCORES_PATH: {"raw_value": str(output), "type": "path"},
                MetadataKey.MODEL_VERSION: params.model_version,
            }
        )


if __name__ == "__main__":
    main()
