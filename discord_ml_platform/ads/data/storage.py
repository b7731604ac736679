"""Daily windows on disk: ``<root>/quests/date=YYYY-MM-DD/part-*.parquet`` plus ``_SUCCESS``.

The ``_SUCCESS`` marker is written last, after every part file is closed, so a sensor that lists
windows (:func:`list_windows`) never picks up one that is half written.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from discord_ml_platform.ads.data.generator import generate_window
from discord_ml_platform.ads.data.world import QuestWorld

DATASET = "quests"
SUCCESS_MARKER = "_SUCCESS"
_DATE_DIR = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def window_dir(data_root: str | Path, window_date: dt.date) -> Path:
    """Directory of the window of ``window_date`` under ``data_root``."""
    return Path(data_root) / DATASET / f"date={window_date.isoformat()}"


def is_complete(path: str | Path) -> bool:
    """Whether the window directory has its ``_SUCCESS`` marker."""
    return (Path(path) / SUCCESS_MARKER).is_file()


def write_window(
    data_root: str | Path,
    window_date: dt.date,
    num_rows: int,
    seed: int = 0,
    *,
    world: QuestWorld | None = None,
    rows_per_file: int = 500_000,
    row_group_size: int = 65_536,
) -> Path:
    """Generate a window and write it as Parquet, then mark it complete.

    An existing window directory is replaced (its marker is removed first, so readers never see
    old parts with a marker).

    Args:
        data_root: Root of the dataset.
        window_date: Day of the window.
        num_rows: Rows to generate.
        seed: Seed of the world and the day's draws.
        world: A prebuilt world; defaults to the default world of ``seed``.
        rows_per_file: Rows per part file.
        row_group_size: Rows per Parquet row group (the unit workers can shard on).

    Returns:
        The window directory.
    """
    out = window_dir(data_root, window_date)
    out.mkdir(parents=True, exist_ok=True)
    (out / SUCCESS_MARKER).unlink(missing_ok=True)
    for old in out.glob("part-*.parquet"):
        old.unlink()
    table = pa.Table.from_pandas(generate_window(window_date, num_rows, seed=seed, world=world), preserve_index=False)
    for part, start in enumerate(range(0, max(table.num_rows, 1), rows_per_file)):
        pq.write_table(
            table.slice(start, rows_per_file), out / f"part-{part:05d}.parquet", row_group_size=row_group_size
        )
    (out / SUCCESS_MARKER).write_text("")
    return out


def list_windows(data_root: str | Path) -> list[dt.date]:
    """Dates of the complete windows under ``data_root``, oldest first."""
    base = Path(data_root) / DATASET
    if not base.is_dir():
        return []
    dates = []
    for child in base.iterdir():
        match = _DATE_DIR.match(child.name)
        if match and child.is_dir() and is_complete(child):
            dates.append(dt.date.fromisoformat(match.group(1)))
    return sorted(dates)


def parquet_files(path: str | Path) -> list[Path]:
    """The Parquet files of a window directory (sorted), or ``[path]`` for a single file."""
    p = Path(path)
    if p.is_file():
        return [p]
    files = sorted(p.glob("*.parquet"))
    if not files:
        raise FileNotFoundError(f"no Parquet files in {p}")
    return files


def arrow_list_types(pa_type: pa.DataType) -> pd.ArrowDtype | None:
    """``types_mapper`` keeping list columns as Arrow-backed pandas columns.

    Converting list<int64> to pandas' default (an object column of numpy arrays) costs a Python
    object per row; an Arrow-backed column keeps offsets and values as two flat buffers.
    """
    if pa.types.is_list(pa_type) or pa.types.is_large_list(pa_type):
        return pd.ArrowDtype(pa_type)
    return None


def read_table(path: str | Path, columns: list[str] | None = None) -> pa.Table:
    """Read a window directory (or one Parquet file) as one Arrow table."""
    tables = [pq.read_table(f, columns=columns) for f in parquet_files(path)]
    return pa.concat_tables(tables) if len(tables) > 1 else tables[0]


def read_window(path: str | Path, columns: list[str] | None = None) -> pd.DataFrame:
    """Read a window directory (or one Parquet file) into pandas, list columns Arrow-backed.

    Args:
        path: A window directory (see :func:`window_dir`) or a Parquet file.
        columns: Columns to read; all by default.

    Returns:
        The rows of every part file, in file order.
    """
    return read_table(path, columns).to_pandas(types_mapper=arrow_list_types)
