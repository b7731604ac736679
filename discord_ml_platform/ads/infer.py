"""Batch scoring: ``QuestScorer`` on Arrow or pandas batches, in process or as a Ray Data actor pool.

Both paths stream: input is read in bounded batches and output written as it is produced, so
memory stays flat as the input grows. Both score Arrow tables end to end (Parquet batch ->
features -> scores -> Parquet batch), with no pandas frame per batch.

:func:`score_with_ray_data` gives Ray Data the window as *work units*, runs of row groups of
about ``batch_size`` rows listed from the files' footers (:func:`scoring_units`), and a fixed
pool of :class:`ParquetScoringActor` reads, scores and writes each unit in one place. Measured
on 2 CPUs against ``ray.data.read_parquet``-style reading (``read -> map_batches -> write``, read
and write as separate tasks):

* the rows never pass through the object store, and nothing but the actors needs CPUs, so the
  pool cannot starve its own input on a small cluster (no deadlock);
* no write operator to backpressure the actors: they were busy 64% of the time behind it, and
  the pass ran at 0.6 of the plain loop's rows/s; reading and writing in the actor, two actors
  score faster than the plain loop once running (``benchmarks/ads_throughput.py``);
* every output file is named by its unit and renamed into place when complete, so a retried
  unit overwrites its own file instead of adding a duplicate, and readers never see half a file.

Every :func:`score_with_ray_data` call starts its scoring actors afresh: a process each that
imports Ray Data and torch and loads the model, a fixed cost per call (seconds on a 2-CPU
machine) that a large window amortizes and a small one does not.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from discord_ml_platform.ads.data.storage import parquet_files

if TYPE_CHECKING:
    from discord_ml_platform.ads.schema import FeatureSchema

SCORE_COLUMN = "score"


class QuestScorer:
    """Loads a saved :class:`~discord_ml_platform.ads.model.QuestRanker` and scores batches.

    A callable class so Ray Data can build it once per actor (``fn_constructor_kwargs``) and
    call it for every batch.

    Args:
        model_path: Directory written by :func:`~discord_ml_platform.ads.model.save_model`.
        device: Torch device; the first GPU when available, else the CPU.
        max_rows_per_forward: Split larger batches into forwards of at most this many rows.
        torch_threads: Intra-op threads for this scorer (fractional-CPU actors want 1).
    """

    def __init__(
        self,
        model_path: str | Path,
        device: str | None = None,
        max_rows_per_forward: int = 65_536,
        torch_threads: int | None = None,
    ) -> None:
        import torch

        from discord_ml_platform.ads.model import load_model

        if torch_threads:
            torch.set_num_threads(torch_threads)
        self.device = torch.device(device or ("cuda" if torch.cuda.is_available() else "cpu"))
        self.model = load_model(model_path, map_location=self.device)
        self.schema = self.model.config.feature_schema
        self.max_rows_per_forward = max_rows_per_forward

    def output_columns(self, columns: Iterable[str]) -> list[str]:
        """Of ``columns``, those kept next to the score: id, passthrough ids, label and truth."""
        return _output_columns(self.schema, columns)

    def predict(self, batch: pd.DataFrame | pa.Table) -> np.ndarray:
        """Participation probabilities for the rows of ``batch`` (float32, row order).

        Args:
            batch: Rows with the model's feature columns, as pandas or as an Arrow table (read
                straight from its buffers, the cheaper of the two).
        """
        import torch

        from discord_ml_platform.ads.features import encode_frame

        encoded = encode_frame(batch, self.schema)
        out = []
        with torch.inference_mode():
            for start in range(0, encoded.num_rows, self.max_rows_per_forward):
                rows = np.arange(start, min(start + self.max_rows_per_forward, encoded.num_rows))
                logits = self.model(encoded.batch(rows, self.device))
                out.append(torch.sigmoid(logits).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)

    @overload
    def __call__(self, batch: pa.Table) -> pa.Table: ...

    # pyarrow ships no type information, so to mypy pa.Table is Any and swallows this overload.
    @overload
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame: ...  # type: ignore[overload-cannot-match]

    def __call__(self, batch: pd.DataFrame | pa.Table) -> pd.DataFrame | pa.Table:
        """Score a batch.

        Args:
            batch: Rows with the model's feature columns: an Arrow table (what Parquet readers
                and Ray Data with ``batch_format="pyarrow"`` hand over; list columns stay two
                flat buffers instead of a Python object per row) or pandas.

        Returns:
            The same kind of table as ``batch``: the id column (plus ``user_id``, ``quest_id``,
            ``label``, ``true_prob`` when present) and a float32 ``score`` column.
        """
        if isinstance(batch, pa.Table):
            scores = pa.array(self.predict(batch), type=pa.float32())
            out = batch.select(self.output_columns(batch.column_names)).append_column(SCORE_COLUMN, scores)
            # The input's schema metadata (pandas' column list, from the writer of the window)
            # describes columns the output no longer has.
            return out.replace_schema_metadata(None)
        out = batch[self.output_columns(batch.columns)].reset_index(drop=True).copy()
        out[SCORE_COLUMN] = self.predict(batch)
        return out


def _output_columns(schema: FeatureSchema, columns: Iterable[str]) -> list[str]:
    """Of ``columns``, those a scorer for ``schema`` keeps next to the score, in output order."""
    present = set(columns)
    wanted = [schema.id_column, *schema.passthrough_columns, schema.label_column, schema.true_prob_column]
    return [c for c in wanted if c in present]


def _columns_to_read(schema: FeatureSchema, names: Sequence[str]) -> list[str]:
    """The columns of a file with ``names`` that scoring reads: features and output columns."""
    needed = set(schema.feature_columns) | set(_output_columns(schema, names))
    return [c for c in names if c in needed]


def _feature_schema(model_path: str | Path) -> FeatureSchema:
    """The feature schema of a saved model, from its config file (no weights are loaded)."""
    from discord_ml_platform.ads.model import MODEL_CONFIG, RankerConfig

    return RankerConfig.model_validate_json((Path(model_path) / MODEL_CONFIG).read_text()).feature_schema


def score_in_process(
    model_path: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    batch_size: int = 65_536,
) -> dict[str, Any]:
    """Score a window with a plain loop (no Ray), streaming batch by batch into one Parquet file.

    Args:
        model_path: Saved model directory.
        input_path: Window directory or Parquet file.
        output_path: Output Parquet file (parent directories are created).
        batch_size: Rows read and scored at a time.

    Returns:
        ``rows`` scored, ``output_path``, ``seconds`` and ``rows_per_second``.
    """
    started = time.perf_counter()
    scorer = QuestScorer(model_path)
    out = Path(output_path)
    out.parent.mkdir(parents=True, exist_ok=True)

    def batches() -> Iterator[pa.RecordBatch]:
        for file in parquet_files(input_path):
            parquet = pq.ParquetFile(file)
            yield from parquet.iter_batches(
                batch_size=batch_size, columns=_columns_to_read(scorer.schema, parquet.schema_arrow.names)
            )

    rows = _score_into_file(scorer, batches(), out)
    seconds = time.perf_counter() - started
    return {"rows": rows, "output_path": str(out), "seconds": seconds, "rows_per_second": rows / max(seconds, 1e-9)}


def _score_into_file(scorer: QuestScorer, batches: Iterable[pa.RecordBatch], path: Path) -> int:
    """Score ``batches`` one at a time into the Parquet file ``path``; returns the rows written.

    The file is written under a hidden temporary name and renamed when complete, so readers of
    the directory, and a retry of the same unit, never see half a file. No file when no rows.
    """
    partial = path.with_name(f".{path.name}.partial")
    writer: pq.ParquetWriter | None = None
    rows = 0
    try:
        for record_batch in batches:
            table = scorer(pa.Table.from_batches([record_batch]))
            if writer is None:
                writer = pq.ParquetWriter(partial, table.schema)
            writer.write_table(table)
            rows += table.num_rows
    except BaseException:
        if writer is not None:
            writer.close()
            partial.unlink(missing_ok=True)
        raise
    if writer is not None:
        writer.close()
        os.replace(partial, path)
    return rows


def _row_group_runs(meta: pq.FileMetaData, min_rows: int) -> list[tuple[tuple[int, ...], int]]:
    """Consecutive row groups of one file, cut into runs of at least ``min_rows`` rows.

    A run closes as soon as it reaches ``min_rows``, so a run is one row group when row groups
    hold ``min_rows`` or more; only a file's last run may be shorter.

    Returns:
        ``(row groups, rows)`` per run.
    """
    runs: list[tuple[tuple[int, ...], int]] = []
    group: list[int] = []
    rows = 0
    for i in range(meta.num_row_groups):
        group.append(i)
        rows += meta.row_group(i).num_rows
        if rows >= min_rows:
            runs.append((tuple(group), rows))
            group, rows = [], 0
    if group:
        runs.append((tuple(group), rows))
    return runs


def scoring_units(files: Sequence[str | Path], batch_size: int) -> list[dict[str, Any]]:
    """The work units of a Ray Data scoring pass: runs of row groups of about ``batch_size`` rows.

    Only the files' footers are read (on the caller, no Ray tasks). When the files' row groups
    hold ``batch_size`` rows, as :func:`~discord_ml_platform.ads.data.write_window` writes them by
    default, a unit is one row group and one scoring call, and a window spreads over the whole
    actor pool from its first rows.

    Returns:
        One ``{"unit", "path", "row_groups", "rows"}`` per run, ``unit`` numbering them from 0.
    """
    runs = [
        (str(file), groups, rows)
        for file in files
        for groups, rows in _row_group_runs(pq.ParquetFile(str(file)).metadata, batch_size)
    ]
    return [
        {"unit": i, "path": path, "row_groups": list(groups), "rows": rows}
        for i, (path, groups, rows) in enumerate(runs)
    ]


UNIT_OUTPUT_GLOB = "part-*.parquet"
"""Matches every :func:`unit_output_name`: the files a scoring pass owns in its output directory."""


def unit_output_name(unit: int) -> str:
    """The output file of scoring unit ``unit``: a name fixed by the unit, so a retry overwrites it."""
    return f"part-{unit:05d}.parquet"


class ParquetScoringActor:
    """A Ray Data scoring actor that reads, scores and writes its own units of a window.

    Each call gets a few rows of :func:`scoring_units`, reads those row groups straight from
    Parquet, scores them ``batch_size`` rows at a time with a :class:`QuestScorer` and writes one
    Parquet file per unit (:func:`unit_output_name`) under ``output_dir``. It returns one row per
    unit: ``unit``, ``file``, ``rows``.

    Args:
        model_path: Saved model directory, readable from every node.
        output_dir: Output directory, writable from every node.
        columns: Input columns to read (features and the output passthrough columns).
        batch_size: Rows read and scored at a time.
        torch_threads: Intra-op threads (one per reserved CPU).
    """

    def __init__(
        self, model_path: str, output_dir: str, columns: list[str], batch_size: int, torch_threads: int = 1
    ) -> None:
        self.scorer = QuestScorer(model_path, torch_threads=torch_threads, max_rows_per_forward=batch_size)
        self.output_dir = Path(output_dir)
        self.columns = columns
        self.batch_size = batch_size

    def __call__(self, units: pa.Table) -> pa.Table:
        """Score the units in ``units`` (rows of :func:`scoring_units`); one summary row each."""
        files, rows = [], []
        for unit, path, row_groups in zip(
            units["unit"].to_pylist(), units["path"].to_pylist(), units["row_groups"].to_pylist(), strict=True
        ):
            batches = pq.ParquetFile(path).iter_batches(
                batch_size=self.batch_size, row_groups=row_groups, columns=self.columns
            )
            out = self.output_dir / unit_output_name(unit)
            rows.append(_score_into_file(self.scorer, batches, out))
            files.append(str(out))
        return pa.table(
            {"unit": units["unit"], "file": pa.array(files, pa.string()), "rows": pa.array(rows, pa.int64())}
        )


def default_cpus_per_actor(concurrency: int, cluster_cpus: float) -> float:
    """One CPU per scoring actor, or an equal share of the cluster's CPUs when it has fewer.

    A fixed-size actor pool that asks for more CPUs than the cluster has waits for them, so the
    share is rounded down (to a hundredth) to keep every actor schedulable.
    """
    if concurrency < 1:
        raise ValueError(f"concurrency (scoring actors) must be at least 1, got {concurrency}")
    if cluster_cpus <= 0:
        raise ValueError("the Ray cluster has no CPUs to run scoring actors on")
    return min(1.0, math.floor(cluster_cpus / concurrency * 100) / 100) or 0.01


def score_with_ray_data(
    model_path: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    batch_size: int,
    concurrency: int = 1,
    num_cpus_per_actor: float | None = None,
    num_gpus_per_actor: float = 0,
    actor_class: type[ParquetScoringActor] = ParquetScoringActor,
) -> dict[str, Any]:
    """Score a window with a Ray Data actor pool on the cluster this driver is connected to.

    ``from_items(scoring_units) -> map_batches(ParquetScoringActor)``: Ray Data hands the units
    (runs of row groups) to a fixed pool of actors, each of which reads its units' row groups,
    scores them and writes one Parquet file per unit into ``output_path``. Earlier
    ``part-*.parquet`` files there are removed first, so a rerun replaces the scores.

    Args:
        model_path: Saved model directory, readable from every node (shared or object storage).
        input_path: Window directory or Parquet file(s).
        output_path: Output directory for Parquet files, writable from every node.
        batch_size: Rows per scoring call (and per unit: whole row groups, at least this many).
        concurrency: Scoring actors (a fixed-size ``ActorPoolStrategy``); GPU actors when
            ``num_gpus_per_actor`` > 0.
        num_cpus_per_actor: CPUs reserved per actor, also its torch thread count (at least one).
            By default :func:`default_cpus_per_actor` of the cluster's CPUs.
        num_gpus_per_actor: GPUs per actor. Fractions share a GPU, which overlaps one actor's
            Parquet reads and writes with another's forward passes.
        actor_class: :class:`ParquetScoringActor` or a subclass of it (one that adds output
            columns, say); it must be importable on every node.

    Returns:
        ``rows`` scored, ``files`` written, ``output_path``, ``seconds`` and ``rows_per_second``.

    Raises:
        ValueError: ``batch_size``, ``concurrency`` or a resource count out of range (before any
            Ray work starts).
    """
    import ray

    if batch_size < 1:
        raise ValueError(f"batch_size (rows per scoring call) must be at least 1, got {batch_size}")
    if concurrency < 1:
        raise ValueError(f"concurrency (scoring actors) must be at least 1, got {concurrency}")
    if num_gpus_per_actor < 0 or (num_cpus_per_actor is not None and num_cpus_per_actor <= 0):
        raise ValueError(
            "num_cpus_per_actor must be positive and num_gpus_per_actor not negative, got "
            f"{num_cpus_per_actor} and {num_gpus_per_actor}"
        )
    started = time.perf_counter()
    if num_cpus_per_actor is None:
        num_cpus_per_actor = default_cpus_per_actor(concurrency, ray.cluster_resources().get("CPU", 0))
    files = [str(f) for f in parquet_files(input_path)]
    schema = _feature_schema(model_path)
    # Only the columns scoring reads or writes, as the in-process loop does.
    columns = _columns_to_read(schema, pq.read_schema(files[0]).names)
    units = scoring_units(files, batch_size)
    out = Path(output_path)
    out.mkdir(parents=True, exist_ok=True)
    for stale in out.glob(UNIT_OUTPUT_GLOB):  # an earlier pass's units
        stale.unlink()
    written: list[dict[str, Any]] = []
    if units:
        summary = ray.data.from_items(units, override_num_blocks=len(units)).map_batches(
            actor_class,
            fn_constructor_kwargs={
                "model_path": str(model_path),
                "output_dir": str(out),
                "columns": columns,
                "batch_size": batch_size,
                "torch_threads": max(1, int(num_cpus_per_actor)),
            },
            batch_size=1,  # one unit per call: units spread over the pool one at a time
            batch_format="pyarrow",
            # An explicit actor pool (``concurrency=`` for classes is deprecated in Ray 2.60).
            compute=ray.data.ActorPoolStrategy(size=concurrency),
            num_cpus=num_cpus_per_actor,
            num_gpus=num_gpus_per_actor,
        )
        written = summary.take_all()
    rows = sum(int(w["rows"]) for w in written)
    seconds = time.perf_counter() - started
    return {
        "rows": rows,
        "files": len(written),
        "output_path": str(out),
        "seconds": seconds,
        "rows_per_second": rows / max(seconds, 1e-9),
    }
