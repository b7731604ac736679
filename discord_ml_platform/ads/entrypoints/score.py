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

        extras = pipes.extras
        output = Path(extras["output_path"])
        shutil.rmtree(output, ignore_errors=True)  # a rerun replaces the partition's scores
        ray.init(address=os.environ.get("RAY_ADDRESS", "auto"))
        ray.data.DataContext.get_current().enable_progress_bars = False  # bars garble job logs
        result = score_with_ray_data(
            # The promoted (champion) version's files when given, else the partition's model.
            Path(extras["model_path"]) if extras.get("model_path") else Path(extras["model_dir"]) / "model",
            extras["input_path"],
            output,
            batch_size=int(extras["batch_size"]),
            concurrency=int(extras["concurrency"]),
            num_gpus_per_actor=float(extras.get("num_gpus_per_actor", 0)),
        )
        pipes.log.info(f"scored {result['rows']} rows at {result['rows_per_second']:.0f} rows/s")
        pipes.report_asset_materialization(
            metadata={
                "rows": int(result["rows"]),
                "rows_per_second": round(float(result["rows_per_second"]), 1),
                "scores_path": {"raw_value": str(output), "type": "path"},
                "model_version": str(extras.get("model_version", "partition")),
            }
        )


if __name__ == "__main__":
    main()
