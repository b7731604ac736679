"""Deterministic train / holdout split of the daily windows a training run uses."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from discord_ml_platform.ads.data import list_windows, read_window, window_dir

SPLIT_SEED = 20_260_101  # fixed: the same window always yields the same holdout rows


def training_windows(data_root: Path, end: dt.date, window_days: int) -> list[dt.date]:
    """Complete windows among the ``window_days`` days ending at ``end`` (``end`` must be one)."""
    wanted = {end - dt.timedelta(days=offset) for offset in range(window_days)}
    found = [d for d in list_windows(data_root) if d in wanted]
    if end not in found:
        raise FileNotFoundError(f"window {end} is not complete under {window_dir(data_root, end)}")
    return found


def write_split(
    data_root: Path, end: dt.date, window_days: int, holdout_fraction: float, out_dir: Path
) -> dict[str, Any]:
    """Write ``train.parquet`` (older windows + most of ``end``) and ``holdout.parquet`` (the rest of ``end``).

    Returns paths and row counts.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    windows = training_windows(data_root, end, window_days)
    latest = read_window(window_dir(data_root, end))
    mask = np.random.default_rng(SPLIT_SEED).random(len(latest)) < holdout_fraction
    frames = [read_window(window_dir(data_root, d)) for d in windows if d != end] + [latest[~mask]]
    train = pd.concat(frames, ignore_index=True)
    holdout = latest[mask].reset_index(drop=True)
    paths = {"train": out_dir / "train.parquet", "holdout": out_dir / "holdout.parquet"}
    pq.write_table(pa.Table.from_pandas(train, preserve_index=False), paths["train"], row_group_size=16_384)
    pq.write_table(pa.Table.from_pandas(holdout, preserve_index=False), paths["holdout"], row_group_size=16_384)
    return {
        "train_path": str(paths["train"]),
        "holdout_path": str(paths["holdout"]),
        "train_rows": len(train),
        "holdout_rows": len(holdout),
        "windows": [d.isoformat() for d in windows],
    }
