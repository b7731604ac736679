"""Batch scoring: ``QuestScorer`` on pandas batches, in process or as a Ray Data actor pool.

Both paths stream: input is read in bounded batches and output written as it is produced, so
memory stays flat as the input grows. :func:`score_with_ray_data` gives each scoring actor a
*fraction* of a CPU: a Ray Data actor pool can otherwise reserve every CPU of a small cluster and
starve the read tasks that feed it, and the pipeline hangs.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from discord_ml_platform.ads.data.storage import arrow_list_types, parquet_files

SCORE_COLUMN = "score"


class QuestScorer:
    """Loads a saved :class:`~discord_ml_platform.ads.model.QuestRanker` and scores pandas batches.

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
        s = self.schema
        present = set(columns)
        wanted = [s.id_column, *s.passthrough_columns, s.label_column, s.true_prob_column]
        return [c for c in wanted if c in present]

    def predict(self, batch: pd.DataFrame) -> np.ndarray:
        """Participation probabilities for the rows of ``batch`` (float32, row order)."""
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

    def __call__(self, batch: pd.DataFrame | pa.Table) -> pd.DataFrame:
        """Score a batch.

        Args:
            batch: Rows with the model's feature columns: pandas, or an Arrow table (what Ray
                Data hands over with ``batch_format="pyarrow"``; list columns then stay two flat
                buffers instead of a Python object per row).

        Returns:
            The id column (plus ``user_id``, ``quest_id``, ``label``, ``true_prob`` when present)
            and a float32 ``score`` column.
        """
        if isinstance(batch, pa.Table):
            batch = batch.to_pandas(types_mapper=arrow_list_types)
        out = batch[self.output_columns(batch.columns)].reset_index(drop=True).copy()
        out[SCORE_COLUMN] = self.predict(batch)
        return out


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
    needed = set(scorer.schema.feature_columns)
    rows = 0
    writer: pq.ParquetWriter | None = None
    try:
        for file in parquet_files(input_path):
            parquet = pq.ParquetFile(file)
            names = parquet.schema_arrow.names
            keep = [c for c in names if c in needed or c in scorer.output_columns(names)]
            for record_batch in parquet.iter_batches(batch_size=batch_size, columns=keep):
                frame = pa.Table.from_batches([record_batch]).to_pandas(types_mapper=arrow_list_types)
                table = pa.Table.from_pandas(scorer(frame), preserve_index=False)
                if writer is None:
                    writer = pq.ParquetWriter(out, table.schema)
                writer.write_table(table)
                rows += table.num_rows
    finally:
        if writer is not None:
            writer.close()
    seconds = time.perf_counter() - started
    return {"rows": rows, "output_path": str(out), "seconds": seconds, "rows_per_second": rows / max(seconds, 1e-9)}


def score_with_ray_data(
    model_path: str | Path,
    input_path: str | Path,
    output_path: str | Path,
    *,
    batch_size: int,
    concurrency: int = 1,
    num_cpus_per_actor: float = 0.5,
    num_gpus_per_actor: float = 0,
) -> dict[str, Any]:
    """Score a window with Ray Data on the cluster this driver is connected to.

    ``read_parquet -> map_batches(QuestScorer) -> write_parquet``, streamed by Ray Data.

    Args:
        model_path: Saved model directory, readable from every node (shared or object storage).
        input_path: Window directory or Parquet file(s).
        output_path: Output directory for Parquet files.
        batch_size: Rows per scoring call.
        concurrency: Scoring actors (a fixed-size ``ActorPoolStrategy``); GPU actors when
            ``num_gpus_per_actor`` > 0.
        num_cpus_per_actor: CPUs reserved per actor; keep it fractional on small clusters so
            read and write tasks still get CPUs.
        num_gpus_per_actor: GPUs per actor (fractions share a GPU).

    Returns:
        ``rows`` scored, ``output_path``, ``seconds`` and ``rows_per_second``.
    """
    import ray

    started = time.perf_counter()
    files = [str(f) for f in parquet_files(input_path)]
    dataset = ray.data.read_parquet(files)
    scored = dataset.map_batches(
        QuestScorer,
        fn_constructor_kwargs={"model_path": str(model_path), "torch_threads": max(1, int(num_cpus_per_actor))},
        batch_size=batch_size,
        # Arrow batches: pandas conversion inside Ray Data would turn list<int64> columns into
        # object columns (a Python object per row), several times slower to encode.
        batch_format="pyarrow",
        # An explicit actor pool (``concurrency=`` for classes is deprecated in Ray 2.60).
        compute=ray.data.ActorPoolStrategy(size=concurrency),
        num_cpus=num_cpus_per_actor,
        num_gpus=num_gpus_per_actor,
    )
    out = str(output_path)
    scored.write_parquet(out)
    rows = sum(pq.ParquetFile(f).metadata.num_rows for f in parquet_files(out))
    seconds = time.perf_counter() - started
    return {"rows": rows, "output_path": out, "seconds": seconds, "rows_per_second": rows / max(seconds, 1e-9)}
