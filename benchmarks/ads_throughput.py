"""Ray overhead on the Ad Relevance workload: Ray Train vs. a plain loop, Ray Data vs. a plain loop.

Same model, same data, same threads, same machine, one run each:

* training: rows/s of the per-worker loop's epoch (``train_rows_per_second``, measured inside
  the loop, so Ray's startup is reported separately) run by ``fit_in_process`` vs. by
  ``TorchTrainer`` with one worker. Target: ratio >= 0.8.
* inference: rows/s of ``score_in_process`` (Parquet in, plain loop, Parquet out) vs.
  ``score_with_ray_data`` (Parquet in, ``map_batches`` actor pool, Parquet out), wall time of the
  whole pass. Target: ratio >= 0.8.

  Every Ray Data pass starts its scoring actors afresh (a new process each, which imports Ray Data
  and torch and loads the model), the measured pass too: the warm-up pass only starts Ray Data's
  helper actors and pooled workers. That start-up is a fixed cost per pass, seconds on a 2-CPU
  machine, so the ratio grows with ``--score-rows``. Both paths also score the small window, and
  the benchmark prints those passes' times as the fixed cost per pass, and the steady-state
  rates: the large window's extra rows over its extra seconds, for each path.

Starts its own local Ray (2 CPUs, small object store, private temp dir) and shuts it down.

    python benchmarks/ads_throughput.py --train-rows 300000 --score-rows 1000000
    python benchmarks/ads_throughput.py --inference-only   # no Ray Train run (the model is still trained in process)
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--train-rows", type=int, default=300_000)
    parser.add_argument("--score-rows", type=int, default=8_000_000)
    parser.add_argument("--batch-size", type=int, default=2048)
    parser.add_argument("--score-batch-size", type=int, default=65_536)
    parser.add_argument("--threads", type=int, default=1, help="torch threads of the training loops.")
    parser.add_argument("--actors", type=int, default=2, help="Ray Data scoring actors.")
    parser.add_argument("--cpus-per-actor", type=float, default=None,
                        help="CPUs (and torch threads) per actor; by default the cluster's CPUs shared out, at most one each.")
    parser.add_argument("--small-rows", type=int, default=20_000, help="Rows of the small window (warm-up and fixed-cost passes).")
    parser.add_argument("--inference-only", action="store_true", help="Skip the Ray Train run and the training figures.")
    args = parser.parse_args()

    os.environ.setdefault("RAY_AUTH_MODE", "disabled")
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    from discord_ml_platform.ads.data import default_world, write_window
    from discord_ml_platform.ads.infer import score_in_process, score_with_ray_data
    from discord_ml_platform.ads.model import RankerConfig
    from discord_ml_platform.ads.train import TrainLoopConfig, fit_in_process, fit_with_ray_train

    with tempfile.TemporaryDirectory(prefix="adsbt-", dir="/tmp" if os.path.isdir("/tmp") else None) as tmp:
        root = Path(tmp)
        train_dir = write_window(root, dt.date(2026, 1, 15), args.train_rows, seed=7)
        score_dir = write_window(root, dt.date(2026, 1, 16), args.score_rows, seed=7, rows_per_file=250_000)
        config = TrainLoopConfig(
            train_path=str(train_dir), epochs=1, batch_size=args.batch_size, torch_threads=args.threads,
            model=RankerConfig.from_schema(default_world(7).schema), emit_pipes_metrics=False,
            checkpoint={"enabled": False}, sharding="none",
        )
        plain = fit_in_process(config, output_dir=root / "model")
        plain_rps = plain.metrics["train_rows_per_second"]

        import ray

        ray.init(address="local", num_cpus=2, object_store_memory=300 * 1024**2, include_dashboard=False,
                 _temp_dir=str(root / "r"), log_to_driver=False)
        try:
            ray.data.DataContext.get_current().enable_progress_bars = False
            if not args.inference_only:
                t0 = time.perf_counter()
                ray_result = fit_with_ray_train(
                    config.model_copy(update={"checkpoint": config.checkpoint.model_copy(update={"enabled": True})}),
                    num_workers=1, use_gpu=False, storage_path=str(root / "ray-train"), name="bench",
                    max_failures=0, cpus_per_worker=1,
                )
                ray_wall = time.perf_counter() - t0
                ray_rps = ray_result.metrics["train_rows_per_second"]

            small = write_window(root, dt.date(2026, 1, 17), args.small_rows, seed=7)
            plain_score = score_in_process(plain.model_path, score_dir, root / "plain.parquet", batch_size=args.score_batch_size)
            plain_small = score_in_process(plain.model_path, small, root / "plain-small.parquet", batch_size=args.score_batch_size)

            def ray_pass(window: Path, out: str) -> dict[str, Any]:
                return score_with_ray_data(plain.model_path, window, root / out, batch_size=args.score_batch_size,
                                           concurrency=args.actors, num_cpus_per_actor=args.cpus_per_actor)

            # Warm-up pass on the small input: the first Ray Data run of a session also starts its
            # helper actors and worker processes, as they would be on a long-lived cluster.
            ray_pass(small, "warm")
            ray_small = ray_pass(small, "ray-small")
            ray_score = ray_pass(score_dir, "ray-scores")
        finally:
            ray.shutdown()

    if not args.inference_only:
        print(f"training ({args.train_rows:,} rows, batch {args.batch_size}, {args.threads} thread(s), 1 worker):")
        print(f"  plain loop        {plain_rps:12,.0f} rows/s")
        print(f"  Ray Train         {ray_rps:12,.0f} rows/s   (run wall {ray_wall:.1f}s incl. worker start)")
        print(f"  ratio Ray/plain   {ray_rps / plain_rps:12.3f}   target >= 0.8: {'PASS' if ray_rps / plain_rps >= 0.8 else 'FAIL'}")
    print(f"inference ({args.score_rows:,} rows, batch {args.score_batch_size:,}, Parquet in and out):")
    print(f"  plain loop        {plain_score['rows_per_second']:12,.0f} rows/s  ({plain_score['seconds']:.1f}s)")
    print(f"  Ray Data          {ray_score['rows_per_second']:12,.0f} rows/s  ({ray_score['seconds']:.1f}s, {args.actors} actors, after a warm-up pass)")
    ratio = ray_score["rows_per_second"] / plain_score["rows_per_second"]
    print(f"  ratio Ray/plain   {ratio:12.3f}   target >= 0.8: {'PASS' if ratio >= 0.8 else 'FAIL'}")
    print(f"  fixed cost per pass ({args.small_rows:,}-row window): plain loop {plain_small['seconds']:.1f}s, "
          f"Ray Data {ray_small['seconds']:.1f}s")
    # Throughput once running: the extra rows of the large window over its extra seconds, which
    # cancels what a pass costs whatever its size (for Ray Data, starting its scoring actors).
    plain_marginal = marginal_rows_per_second(plain_small, plain_score)
    ray_marginal = marginal_rows_per_second(ray_small, ray_score)
    print(f"  steady state      plain {plain_marginal:,.0f} rows/s, Ray Data {ray_marginal:,.0f} rows/s, "
          f"ratio {ray_marginal / plain_marginal:.3f}")


def marginal_rows_per_second(small: dict[str, Any], large: dict[str, Any]) -> float:
    """Rows per second of the rows ``large`` scored beyond ``small`` (inf when no slower)."""
    extra_seconds = large["seconds"] - small["seconds"]
    return (large["rows"] - small["rows"]) / extra_seconds if extra_seconds > 0 else float("inf")


if __name__ == "__main__":
    main()
