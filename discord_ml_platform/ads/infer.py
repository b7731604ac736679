"""Batch scoring: ``QuestScorer`` on Arrow or pandas batches, in process or as a Ray Data actor pool.

Both paths stream: input is read in bounded batches and output written as it is produced, so
memory stays flat as the input grows. Both score Arrow tables end to end (Parquet batch ->
features -> scores -> Parquet batch), with no pandas frame per batch.

:func:`score_with_ray_data` reads through :func:`read_parquet_batches`, not
``ray.data.read_parquet``. In Ray 2.60 ``read_parquet`` lists the files on a pool of 32
footer-reader actors started for every read (seconds of process start-up on a small node before
the first row is read), and coalesces row groups into blocks of up to 128 MiB: a window then is a
few huge blocks, scored by one or two actors while the others idle, and spilled from a small
object store. :func:`read_parquet_batches` reads the footers on the driver and makes one read
task and one block per row group (or run of row groups) of about ``batch_size`` rows, so every
block is one scoring call and the window spreads over the whole pool as it is read.

Each scoring actor reserves a *fraction* of a CPU: a Ray Data actor pool can otherwise reserve
every CPU of a small cluster and starve the read tasks that feed it, and the pipeline hangs. Read
and write tasks reserve a quarter of one (:data:`IO_TASK_CPUS`) and run a few at a time, so the
output is written while the window is scored rather than after.

Every :func:`score_with_ray_data` call starts its scoring actors afresh: a process each that
imports Ray, Ray Data and torch and loads the model, a fixed cost per call (about 5 s for two
actors on a 2-CPU machine) that a large window amortizes and a small one does not.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Iterable, Sequence
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

IO_TASK_CPUS = 0.25
"""CPUs reserved by each Ray Data read or write task of :func:`score_with_ray_data`.

A block's read or write takes tens of milliseconds. At Ray Data's default of one CPU per task,
its resource allocator hands every CPU the scoring actors leave free to the read tasks and none to
the write tasks: on a 2-CPU node the writes then wait until every block has been read and scored,
a tail of seconds."""


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

    @overload
    def __call__(self, batch: pd.DataFrame) -> pd.DataFrame: ...

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
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for file in parquet_files(input_path):
            parquet = pq.ParquetFile(file)
            keep = _columns_to_read(scorer.schema, parquet.schema_arrow.names)
            for record_batch in parquet.iter_batches(batch_size=batch_size, columns=keep):
                table = scorer(pa.Table.from_batches([record_batch]))
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema)
                writer.write_table(table)
                rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    return {"rows": rows, "output_path": str(out), "seconds": seconds, "rows_per_second": rows / max(seconds, 1e-9)}


def _read_row_groups(path: str, row_groups: tuple[int, ...], columns: list[str] | None) -> list[pa.Table]:
    """One block: the given row groups of one Parquet file."""
    return [pq.ParquetFile(path).read_row_groups(list(row_groups), columns=columns)]


def _row_group_runs(
    path: str, meta: pq.FileMetaData, columns: list[str] | None, min_rows: int
) -> list[tuple[str, tuple[int, ...], int, int]]:
    """Consecutive row groups of one file, cut into runs of at least ``min_rows`` rows.

    A run closes as soon as it reaches ``min_rows``, so a run is one row group when row groups
    hold ``min_rows`` or more; only a file's last run may be shorter.

    Returns:
        ``(path, row groups, rows, uncompressed bytes of the columns read)`` per run.
    """
    wanted = None if columns is None else set(columns)
    runs: list[tuple[str, tuple[int, ...], int, int]] = []
    group: list[int] = []
    rows = size = 0
    for i in range(meta.num_row_groups):
        rg = meta.row_group(i)
        group.append(i)
        rows += rg.num_rows
        for c in range(rg.num_columns):
            chunk = rg.column(c)
            if wanted is None or chunk.path_in_schema.split(".")[0] in wanted:
                size += chunk.total_uncompressed_size
        if rows >= min_rows:
            runs.append((path, tuple(group), rows, size))
            group, rows, size = [], 0, 0
    if group:
        runs.append((path, tuple(group), rows, size))
    return runs


@functools.cache
def _parquet_batch_datasource() -> type:
    """The Ray Data datasource behind :func:`read_parquet_batches`.

    Defined on first use: ``ray.data`` is imported lazily, so importing this module (Dagster code
    locations, the evaluation job, tests) does not pull in Ray.
    """
    from ray.data import Datasource, ReadTask
    from ray.data.block import BlockMetadata

    class ParquetBatchDatasource(Datasource):  # type: ignore[misc]
        """Parquet files, one read task and one block per run of row groups (see ``_row_group_runs``)."""

        def __init__(self, files: Sequence[str | Path], columns: list[str] | None, min_rows: int) -> None:
            super().__init__()
            if min_rows < 1:
                raise ValueError(f"rows per block must be positive, got {min_rows}")
            self._columns = columns
            self._units: list[tuple[str, tuple[int, ...], int, int]] = []
            self._schema: pa.Schema | None = None
            for file in files:
                # Only the footer is read, here on the driver: no listing tasks, no actors.
                parquet = pq.ParquetFile(str(file))
                if self._schema is None:
                    names = parquet.schema_arrow.names if columns is None else columns
                    self._schema = pa.schema([parquet.schema_arrow.field(c) for c in names])
                self._units.extend(_row_group_runs(str(file), parquet.metadata, columns, min_rows))

        @property
        def num_read_tasks(self) -> int:
            return len(self._units)

        def get_name(self) -> str:
            return "ParquetBatches"

        def estimate_inmemory_data_size(self) -> int | None:
            return sum(unit[3] for unit in self._units)

        def get_read_tasks(
            self, parallelism: int, per_task_row_limit: int | None = None, data_context: Any = None
        ) -> list[ReadTask]:
            # One task per run whatever ``parallelism`` asks: a run is the block we want.
            return [
                ReadTask(
                    functools.partial(_read_row_groups, path, row_groups, self._columns),
                    BlockMetadata(num_rows=rows, size_bytes=int(size), exec_stats=None, input_files=(path,)),
                    schema=self._schema,
                    per_task_row_limit=per_task_row_limit,
                )
                for path, row_groups, rows, size in self._units
            ]

    return ParquetBatchDatasource


def read_parquet_batches(
    files: Sequence[str | Path],
    *,
    batch_size: int,
    columns: list[str] | None = None,
    num_cpus: float | None = None,
    concurrency: int | None = None,
) -> Any:
    """A Ray Dataset of Parquet files in blocks of about ``batch_size`` rows: whole row groups.

    One read task per block: consecutive row groups of a file, at least ``batch_size`` rows
    (a file's last block may hold fewer). When the files' row groups hold ``batch_size`` rows, as
    :func:`~discord_ml_platform.ads.data.write_window` writes them by default, every block is
    exactly one scoring batch: ``map_batches`` hands it to an actor as it is (no slicing, no
    concatenation), and a window spreads over the whole actor pool as it is read.

    Args:
        files: Parquet files, readable from every node (shared or object storage mount).
        batch_size: Rows per block, at least (whole row groups).
        columns: Columns to read; all by default.
        num_cpus: CPUs reserved per read task (Ray Data's default, 1, when None).
        concurrency: Read tasks running at a time (unbounded when None).

    Returns:
        A lazy ``ray.data.Dataset``.
    """
    import ray

    source = _parquet_batch_datasource()(files, columns, batch_size)
    # As many output blocks as read tasks: a larger count makes Ray Data split every task's
    # output into smaller blocks, which map_batches then has to glue back into batches.
    return ray.data.read_datasource(
        source, override_num_blocks=source.num_read_tasks, num_cpus=num_cpus, concurrency=concurrency
    )


def score_with_ray_data(
    model_path: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    batch_size: int,
    concurrency: int = 1,
    num_cpus_per_actor: float = 0.5,
    num_gpus_per_actor: float = 0,
    io_concurrency: int | None = None,
) -> dict[str, Any]:
    """Score a window with Ray Data on the cluster this driver is connected to.

    ``read_parquet_batches -> map_batches(QuestScorer) -> write_parquet``, streamed by Ray Data.
    Read and write tasks reserve :data:`IO_TASK_CPUS` each and run at most ``io_concurrency`` at a
    time (each), so they interleave with scoring instead of queueing behind it, and reuse a few
    worker processes instead of starting one per task.

    Args:
        model_path: Saved model directory, readable from every node (shared or object storage).
        input_path: Window directory or Parquet file(s).
        output_path: Output directory for Parquet files.
        batch_size: Rows per scoring call (and per block read).
        concurrency: Scoring actors (a fixed-size ``ActorPoolStrategy``); GPU actors when
            ``num_gpus_per_actor`` > 0.
        num_cpus_per_actor: CPUs reserved per actor; keep it fractional on small clusters so
            read and write tasks still get CPUs.
        num_gpus_per_actor: GPUs per actor (fractions share a GPU).
        io_concurrency: Read tasks, and write tasks, running at a time. By default one per four
            CPU actors (a block's read takes about a tenth of its scoring on one CPU thread), or
            one per GPU actor (a GPU scores a block much faster than a CPU thread).

    Returns:
        ``rows`` scored, ``output_path``, ``seconds`` and ``rows_per_second``.
    """
    import ray

    if io_concurrency is None:
        io_concurrency = concurrency if num_gpus_per_actor > 0 else math.ceil(concurrency / 4)
    started = time.perf_counter()
    files = [str(f) for f in parquet_files(input_path)]
    schema = _feature_schema(model_path)
    # Only the columns scoring reads or writes, as the in-process loop does.
    columns = _columns_to_read(schema, pq.read_schema(files[0]).names)
    dataset = read_parquet_batches(
        files, batch_size=batch_size, columns=columns, num_cpus=IO_TASK_CPUS, concurrency=io_concurrency
    )
    scored = dataset.map_batches(
        QuestScorer,
        fn_constructor_kwargs={"model_path": str(model_path), "torch_threads": max(1, int(num_cpus_per_actor))},
        batch_size=batch_size,
        # Arrow batches, scored as Arrow: no pandas frame per batch (a pandas list column is a
        # Python object per row), and an Arrow table back, which Ray Data writes as it is.
        batch_format="pyarrow",
        # The scorer only reads its input: no copy of the block out of the object store.
        zero_copy_batch=True,
        # An explicit actor pool (``concurrency=`` for classes is deprecated in Ray 2.60).
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
    )
    out = str(output_path)
    scored.write_parquet(out, ray_remote_args={"num_cpus": IO_TASK_CPUS}, concurrency=io_concurrency)
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(out))
    seconds = time.perf_counter() - started
    return {"rows": rows, "output_path": out, "seconds": seconds, "rows_per_second": rows / max(seconds, 1e-9)}
