"""Batch inference memory stays flat as the input grows: peak RSS of ``score_in_process`` by input size.

``score_in_process`` streams (Parquet batches in, scored batches out), so its memory should not
depend on how many rows it scores. For each input size this scores a window in a fresh process
(spawned, so the parent's data generation does not count) and reports that process's peak RSS
(``ru_maxrss``), and how much of it the scoring loop added over the process after importing
torch and loading the model. Target: the largest input's peak RSS within 1.5x of the smallest's
while the input grows 16x.

The windows are copies of one generated window of ``--base-rows`` rows (file ``part-00000``
repeated): the rows cost what fresh rows would, and a 4M-row input takes seconds to build instead
of a generator pass that needs gigabytes itself. The model is an untrained ``QuestRanker`` of the
default schema: the same tables and layers, so the same memory and compute, as a trained one.

    python benchmarks/ads_inference_memory.py                       # 250k, 1M, 4M rows: ~1-2 min on 2 CPUs
    python benchmarks/ads_inference_memory.py --sizes 250000 16000000
"""

from __future__ import annotations

import argparse
import datetime as dt
import multiprocessing
import os
import resource
import shutil
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

MiB = 1024**2


def _peak_rss_bytes() -> int:
    """This process's peak resident set size so far (``ru_maxrss`` is KiB on Linux, bytes on macOS)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if os.uname().sysname == "Darwin" else peak * 1024


def _score_in_fresh_process(model_path: str, input_path: str, output_path: str, batch_size: int) -> dict[str, Any]:
    """Run in a spawned child: set up, then score, and report the peak RSS before and after."""
    from discord_ml_platform.ads.infer import QuestScorer, score_in_process

    # Set-up that any scorer pays whatever the input: torch, the model, one batch's code paths.
    QuestScorer(model_path)
    setup_peak = _peak_rss_bytes()
    result = score_in_process(model_path, input_path, output_path, batch_size=batch_size)
    return {**result, "setup_peak_bytes": setup_peak, "peak_bytes": _peak_rss_bytes()}


def _build_window(template: Path, out: Path, rows: int, base_rows: int) -> Path:
    """A window directory of ``rows // base_rows`` copies of ``template`` (a Parquet file)."""
    copies = rows // base_rows
    if copies < 1 or copies * base_rows != rows:
        raise SystemExit(f"--sizes must be multiples of --base-rows ({base_rows}); got {rows}")
    out.mkdir(parents=True)
    for i in range(copies):
        shutil.copyfile(template, out / f"part-{i:05d}.parquet")
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[250_000, 1_000_000, 4_000_000],
                        help="Input rows per measurement (multiples of --base-rows).")
    parser.add_argument("--base-rows", type=int, default=250_000, help="Rows of the generated window that is copied.")
    parser.add_argument("--batch-size", type=int, default=65_536, help="Rows per scoring batch.")
    args = parser.parse_args()

    from discord_ml_platform.ads.data import default_world, write_window
    from discord_ml_platform.ads.model import QuestRanker, RankerConfig, save_model

    # Spawned children: a forked child would inherit this process's pages (the generated window).
    context = multiprocessing.get_context("spawn")
    results = []
    with tempfile.TemporaryDirectory(prefix="adsim-", dir="/tmp" if os.path.isdir("/tmp") else None) as tmp:
        root = Path(tmp)
        model_path = save_model(QuestRanker(RankerConfig.from_schema(default_world(7).schema)), root / "model")
        template = write_window(root / "base", dt.date(2026, 1, 16), args.base_rows, seed=7) / "part-00000.parquet"
        for rows in args.sizes:
            window = _build_window(template, root / f"in-{rows}", rows, args.base_rows)
            started = time.perf_counter()
            with ProcessPoolExecutor(max_workers=1, mp_context=context) as pool:
                result = pool.submit(_score_in_fresh_process, str(model_path), str(window),
                                     str(root / f"out-{rows}.parquet"), args.batch_size).result()
            result["wall"] = time.perf_counter() - started
            if result["rows"] != rows:
                raise SystemExit(f"scored {result['rows']} rows of {rows}")
            results.append(result)
            shutil.rmtree(window)

    print(f"score_in_process peak RSS by input size (batch {args.batch_size:,}, fresh process each):")
    print(f"{'rows':>12s} {'peak RSS MiB':>13s} {'after set-up MiB':>17s} {'added by scoring MiB':>21s} {'rows/s':>10s}")
    for r in results:
        added = (r["peak_bytes"] - r["setup_peak_bytes"]) / MiB
        print(f"{r['rows']:12,d} {r['peak_bytes'] / MiB:13.1f} {r['setup_peak_bytes'] / MiB:17.1f} {added:21.1f} "
              f"{r['rows_per_second']:10,.0f}")
    smallest, largest = min(results, key=lambda r: r["rows"]), max(results, key=lambda r: r["rows"])
    ratio = largest["peak_bytes"] / smallest["peak_bytes"]
    growth = largest["rows"] / smallest["rows"]
    print(f"peak RSS ratio largest/smallest {ratio:.3f} while the input grew {growth:.0f}x   "
          f"target < 1.5: {'PASS' if ratio < 1.5 else 'FAIL'}")


if __name__ == "__main__":
    main()
