"""``FeatureSchema``: the columns of a Quests window and the embedding tables they index.

The schema is the contract between the data generator, the model and the scorer. It is plain
pydantic (no numpy, no torch) so it can travel inside configs, checkpoints and Ray job arguments
as JSON. Embedding tables are first-class (not one per column) because several features share a
table (the game a quest promotes and the games a user played live in one space) and because the
later sharded model places *tables*, not columns, on devices.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

PLATFORMS: tuple[str, ...] = ("desktop", "ios", "android", "web")
"""Platform vocabulary; index 0 of the platform table is reserved for unknown values."""


class EmbeddingTable(BaseModel):
    """One embedding table: a bounded id space shared by one or more sparse features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Table name, e.g. 'user' or 'game'.")
    num_embeddings: int = Field(gt=0, description="Rows in the table; raw ids are taken modulo this.")


class SparseFeature(BaseModel):
    """A categorical column: one id per row (one-hot) or a list of ids per row (multi-hot)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Column name in the window's Parquet files.")
    table: str = Field(description="Name of the embedding table the ids index.")
    kind: Literal["one_hot", "multi_hot"] = Field(description="One id per row, or a list<int64> of ids.")
    vocabulary: tuple[str, ...] | None = Field(
        default=None,
        description="For string columns: known values, mapped to 1..len (0 = unknown).",
    )


class DenseFeature(BaseModel):
    """A numeric column, fed to the model as ``(log1p(x) - shift) / scale``.

    ``log1p`` because counts, ages and rewards are heavy-tailed; the fixed shift and scale (known
    from the generator) keep the transform stateless, so training and serving cannot disagree.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Column name in the window's Parquet files.")
    shift: float = Field(default=0.0, description="Subtracted after log1p.")
    scale: float = Field(default=1.0, gt=0, description="Divides after the shift.")


class MatchFeature(BaseModel):
    """A 0/1 cross feature: whether a row's one-hot id appears in its multi-hot list.

    E.g. "the user plays the game the quest promotes": ``quest_game_id`` in ``game_ids``. Fed to
    the model next to the dense features; computed from the columns, so serving cannot disagree.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Name of the derived feature.")
    one_hot: str = Field(description="Column with one id per row.")
    multi_hot: str = Field(description="list<int64> column searched for that id.")


class FeatureSchema(BaseModel):
    """Columns of a Quests window and the embedding tables behind its sparse features."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    id_column: str = Field(default="event_id", description="Unique row id, kept through scoring.")
    label_column: str = Field(default="label", description="Binary label: 1 if the user participated.")
    true_prob_column: str = Field(default="true_prob", description="Ground-truth probability (synthetic data only).")
    passthrough_columns: tuple[str, ...] = Field(
        default=("user_id", "quest_id"),
        description="Columns copied next to the score in batch inference output.",
    )
    tables: tuple[EmbeddingTable, ...] = Field(description="Embedding tables.")
    sparse: tuple[SparseFeature, ...] = Field(description="Categorical features.")
    dense: tuple[DenseFeature, ...] = Field(description="Numeric features.")
    match: tuple[MatchFeature, ...] = Field(
        default=(), description="0/1 'id in list' cross features, after the dense ones."
    )

    @model_validator(mode="after")
    def _tables_exist(self) -> FeatureSchema:
        names = {t.name for t in self.tables}
        if len(names) != len(self.tables):
            raise ValueError("embedding table names must be unique")
        for feature in self.sparse:
            if feature.table not in names:
                raise ValueError(f"sparse feature {feature.name!r} uses unknown table {feature.table!r}")
            table = self.table(feature.table)
            if feature.vocabulary is not None and table.num_embeddings <= len(feature.vocabulary):
                raise ValueError(f"table {table.name!r} must hold the vocabulary of {feature.name!r} plus 'unknown'")
        return self

    def table(self, name: str) -> EmbeddingTable:
        """Return the table called ``name``.

        Raises:
            KeyError: no such table.
        """
        for table in self.tables:
            if table.name == name:
                return table
        raise KeyError(name)

    @property
    def cardinalities(self) -> dict[str, int]:
        """Rows per embedding table, by table name."""
        return {t.name: t.num_embeddings for t in self.tables}

    @property
    def feature_columns(self) -> list[str]:
        """Every column the model reads."""
        cols = [f.name for f in self.sparse] + [f.name for f in self.dense]
        for m in self.match:
            cols += [c for c in (m.one_hot, m.multi_hot) if c not in cols]
        return cols

    @property
    def num_dense_inputs(self) -> int:
        """Width of the dense input: dense features plus match features."""
        return len(self.dense) + len(self.match)


def _next_pow2(n: int) -> int:
    return 1 << max(0, math.ceil(math.log2(max(n, 1))))


def quest_feature_schema(
    num_users: int = 50_000,
    num_games: int = 2_000,
    num_guilds: int = 10_000,
    quest_table_size: int = 4_096,
) -> FeatureSchema:
    """The schema of the synthetic Quests data for a world of the given size.

    Table sizes are rounded up to powers of two. The quest table is a hashing table: quest ids
    grow every day, but only a few hundred quests are live at once and their ids are consecutive,
    so ``id % quest_table_size`` does not collide among live quests while the table stays bounded.

    Args:
        num_users: Users in the world.
        num_games: Games in the world.
        num_guilds: Guilds in the world.
        quest_table_size: Rows of the (hashed) quest table.

    Returns:
        The schema used by the model and the scorer.
    """
    tables = (
        EmbeddingTable(name="user", num_embeddings=_next_pow2(num_users)),
        EmbeddingTable(name="quest", num_embeddings=quest_table_size),
        EmbeddingTable(name="game", num_embeddings=_next_pow2(num_games)),
        EmbeddingTable(name="guild", num_embeddings=_next_pow2(num_guilds)),
        EmbeddingTable(name="platform", num_embeddings=len(PLATFORMS) + 1),
        EmbeddingTable(name="hour", num_embeddings=24),
    )
    sparse = (
        SparseFeature(name="user_id", table="user", kind="one_hot"),
        SparseFeature(name="quest_id", table="quest", kind="one_hot"),
        SparseFeature(name="quest_game_id", table="game", kind="one_hot"),
        SparseFeature(name="game_ids", table="game", kind="multi_hot"),
        SparseFeature(name="guild_ids", table="guild", kind="multi_hot"),
        SparseFeature(name="platform", table="platform", kind="one_hot", vocabulary=PLATFORMS),
        SparseFeature(name="hour", table="hour", kind="one_hot"),
    )
    # Shifts and scales are rough means and spreads of log1p(x) under the generator.
    dense = (
        DenseFeature(name="account_age_days", shift=7.2, scale=0.6),
        DenseFeature(name="sessions_last_week", shift=1.75, scale=0.8),
        DenseFeature(name="quest_reward", shift=4.4, scale=0.8),
        DenseFeature(name="quest_age_days", shift=2.0, scale=1.1),
    )
    match = (MatchFeature(name="plays_quest_game", one_hot="quest_game_id", multi_hot="game_ids"),)
    return FeatureSchema(tables=tables, sparse=sparse, dense=dense, match=match)
