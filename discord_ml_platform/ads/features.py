"""From pandas frames or Arrow tables to model input: ``encode_frame`` (numpy, once) and ``batch_from_frame``.

Model input is a flat ``dict[str, Tensor]``:

* ``<sparse feature>``: int64 ids, one per row for one-hot features, concatenated for multi-hot
* ``<multi-hot feature>__offsets``: int64 start of each row's ids (``EmbeddingBag`` offsets)
* ``dense``: float32 ``(rows, schema.num_dense_inputs)``: the dense features, already
  ``(log1p(x) - shift) / scale``, then the 0/1 match features
* ``label``: float32 ``(rows,)`` when the frame has labels

A training loop encodes its shard once (:func:`encode_frame`) and then cuts batches by row index
(:meth:`EncodedFrame.batch`), which gathers multi-hot lists vectorised instead of going back to
pandas for every batch. Batch inference hands :func:`encode_frame` Arrow tables as read from
Parquet: every column then goes to numpy straight from its Arrow buffers, with no pandas frame
built per batch.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TypeAlias

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc
import torch

from discord_ml_platform.ads.data.world import gather_lists
from discord_ml_platform.ads.schema import FeatureSchema

OFFSETS_SUFFIX = "__offsets"
DENSE_KEY = "dense"
LABEL_KEY = "label"

Column: TypeAlias = pd.Series | pa.Array | pa.ChunkedArray
"""One column of a frame: a pandas Series or an Arrow (chunked) array."""
Frame: TypeAlias = pd.DataFrame | pa.Table
"""Rows to encode: a pandas frame or an Arrow table with the same columns."""


def _is_arrow(column: Column) -> bool:
    return isinstance(column, (pa.Array, pa.ChunkedArray))


def _numeric(column: Column, dtype: type[np.generic], fill: float) -> np.ndarray:
    """``column`` as a numpy array of ``dtype``, nulls replaced by ``fill``."""
    if _is_arrow(column):
        if column.null_count:
            column = pc.fill_null(column, pa.scalar(fill).cast(column.type))
        # One copy at most (none for a single chunk of the right type).
        return np.asarray(column.to_numpy(zero_copy_only=False), dtype=dtype)
    return column.fillna(fill).to_numpy(dtype=dtype)


def list_column_arrays(column: Column) -> tuple[np.ndarray, np.ndarray]:
    """CSR ``(offsets, values)`` of a list-of-ids column; nulls count as empty lists.

    Accepts Arrow list arrays (a column of an Arrow table), Arrow-backed list columns (what
    :func:`read_window` returns) and object columns of lists or numpy arrays (what pandas or Ray
    Data may hand over).
    """
    if _is_arrow(column):
        arr = column
    elif isinstance(column.dtype, pd.ArrowDtype):
        arr = column.array.__arrow_array__()
    else:
        arr = pa.array(list(column), type=pa.list_(pa.int64()), from_pandas=True)
    if isinstance(arr, pa.ChunkedArray):
        arr = arr.combine_chunks()
    lengths = pc.fill_null(pc.list_value_length(arr), 0).to_numpy(zero_copy_only=False)
    offsets = np.zeros(len(arr) + 1, dtype=np.int64)
    np.cumsum(lengths, out=offsets[1:])
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.int64, copy=False)
    return offsets, values


def categorical_codes(column: Column, vocabulary: tuple[str, ...]) -> np.ndarray:
    """Map strings to ``1..len(vocabulary)``; unknown or missing values map to 0."""
    if _is_arrow(column):
        if pa.types.is_dictionary(column.type):
            column = column.cast(column.type.value_type)
        if not (pa.types.is_string(column.type) or pa.types.is_large_string(column.type)):
            column = column.cast(pa.string())
        # index_in is null for values outside the vocabulary and for nulls: both become 0.
        index = pc.index_in(column, value_set=pa.array(list(vocabulary), type=column.type))
        return _numeric(index, np.int64, -1) + 1
    codes = pd.Categorical(column.astype("string"), categories=list(vocabulary)).codes
    return codes.astype(np.int64) + 1


def _match(ids: np.ndarray, offsets: np.ndarray, values: np.ndarray) -> np.ndarray:
    row_of_value = np.repeat(np.arange(len(ids)), np.diff(offsets))
    hits = np.bincount(row_of_value, weights=values == ids[row_of_value], minlength=len(ids))
    return hits > 0


def match_indicator(df: Frame, one_hot: str, multi_hot: str) -> np.ndarray:
    """Whether each row's ``one_hot`` id appears in its ``multi_hot`` list (bool per row)."""
    offsets, values = list_column_arrays(df[multi_hot])
    return _match(_numeric(df[one_hot], np.int64, -1), offsets, values)


@dataclass
class EncodedFrame:
    """A frame's model inputs as numpy arrays; slice with :meth:`batch`.

    Attributes:
        num_rows: Rows in the frame.
        one_hot: Ids per row of each one-hot feature.
        multi_hot: ``(offsets, values)`` of each multi-hot feature.
        dense: Transformed dense features, float32 ``(rows, features)``.
        labels: Labels as float32, or None.
    """

    num_rows: int
    one_hot: dict[str, np.ndarray]
    multi_hot: dict[str, tuple[np.ndarray, np.ndarray]]
    dense: np.ndarray
    labels: np.ndarray | None

    def batch(
        self, rows: np.ndarray | None = None, device: torch.device | str | None = None
    ) -> dict[str, torch.Tensor]:
        """Tensors of the given rows (all rows by default).

        Args:
            rows: Row indices, in batch order.
            device: Where to put the tensors.

        Returns:
            The model input dict described in the module docstring.
        """
        if rows is None:
            rows = np.arange(self.num_rows)
        out: dict[str, torch.Tensor] = {}
        for name, ids in self.one_hot.items():
            out[name] = torch.from_numpy(np.ascontiguousarray(ids[rows]))
        for name, (offsets, values) in self.multi_hot.items():
            batch_offsets, batch_values = gather_lists(offsets, values, rows)
            out[name] = torch.from_numpy(batch_values)
            out[name + OFFSETS_SUFFIX] = torch.from_numpy(batch_offsets[:-1].copy())
        out[DENSE_KEY] = torch.from_numpy(np.ascontiguousarray(self.dense[rows]))
        if self.labels is not None:
            out[LABEL_KEY] = torch.from_numpy(np.ascontiguousarray(self.labels[rows]))
        if device is not None:
            out = {k: v.to(device, non_blocking=True) for k, v in out.items()}
        return out


def encode_frame(df: Frame, schema: FeatureSchema) -> EncodedFrame:
    """Turn a frame into numpy model inputs (ids, CSR lists, transformed dense features).

    Args:
        df: Rows with at least the schema's feature columns, as a pandas frame or an Arrow table
            (both give the same arrays); labels are kept when present.
        schema: The feature schema.

    Returns:
        The encoded frame.

    Raises:
        KeyError: a feature column is missing.
    """
    columns = df.column_names if isinstance(df, pa.Table) else df.columns
    missing = [c for c in schema.feature_columns if c not in columns]
    if missing:
        raise KeyError(f"frame lacks feature columns {missing}")
    num_rows = len(df)
    one_hot: dict[str, np.ndarray] = {}
    multi_hot: dict[str, tuple[np.ndarray, np.ndarray]] = {}
    for feature in schema.sparse:
        column = df[feature.name]
        if feature.kind == "multi_hot":
            multi_hot[feature.name] = list_column_arrays(column)
        elif feature.vocabulary is not None:
            one_hot[feature.name] = categorical_codes(column, feature.vocabulary)
        else:
            # Negative or missing ids fold into row 0 of the (modulo-hashed) table.
            one_hot[feature.name] = np.maximum(_numeric(column, np.int64, 0), 0)
    dense = np.empty((num_rows, schema.num_dense_inputs), dtype=np.float32)
    for j, dense_feature in enumerate(schema.dense):
        x = _numeric(df[dense_feature.name], np.float64, 0.0)
        dense[:, j] = (np.log1p(np.maximum(x, 0.0)) - dense_feature.shift) / dense_feature.scale
    for j, match in enumerate(schema.match, start=len(schema.dense)):
        # The lists were already flattened for the embedding lookup when the list column is a
        # sparse feature too; reuse them instead of converting the column twice.
        lists = multi_hot.get(match.multi_hot) or list_column_arrays(df[match.multi_hot])
        dense[:, j] = _match(_numeric(df[match.one_hot], np.int64, -1), *lists)
    labels = None
    if schema.label_column in columns:
        label = df[schema.label_column]
        # Missing labels stay NaN, as pandas' to_numpy gives them.
        values = label.to_numpy(zero_copy_only=False) if _is_arrow(label) else label.to_numpy(dtype=np.float32)
        labels = np.asarray(values, dtype=np.float32)
    return EncodedFrame(num_rows=num_rows, one_hot=one_hot, multi_hot=multi_hot, dense=dense, labels=labels)


def batch_from_frame(df: Frame, schema: FeatureSchema) -> dict[str, torch.Tensor]:
    """Model input tensors for every row of ``df`` (see the module docstring for the keys).

    Args:
        df: Rows with the schema's feature columns (pandas or Arrow).
        schema: The feature schema.

    Returns:
        A dict of CPU tensors.
    """
    return encode_frame(df, schema).batch()
