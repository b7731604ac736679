"""Synthetic Quests data: determinism, shape, label rate, ceiling, and window storage."""

from __future__ import annotations

import datetime as dt
import time

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from discord_ml_platform.ads.data import (
    SUCCESS_MARKER,
    QuestWorld,
    generate_window,
    list_windows,
    read_window,
    window_dir,
    write_window,
)
from discord_ml_platform.ads.evaluate import roc_auc

pytestmark = pytest.mark.timeout(60)

DAY = dt.date(2025, 6, 1)


def test_same_seed_and_date_give_identical_frames(small_world: QuestWorld) -> None:
    a = generate_window(DAY, 5_000, seed=small_world.seed, world=small_world)
    b = generate_window(DAY, 5_000, seed=small_world.seed, world=QuestWorld.from_seed(7, small_world.config))
    pd.testing.assert_frame_equal(a, b)


def test_other_date_or_seed_gives_other_rows(small_world: QuestWorld) -> None:
    base = generate_window(DAY, 2_000, world=small_world)
    next_day = generate_window(DAY + dt.timedelta(days=1), 2_000, world=small_world)
    other_seed = generate_window(DAY, 2_000, seed=1)
    assert not np.array_equal(base["user_id"], next_day["user_id"])
    assert not np.array_equal(base["true_prob"], other_seed["true_prob"])


def test_columns_and_types(small_world: QuestWorld) -> None:
    df = generate_window(DAY, 3_000, world=small_world)
    schema = small_world.schema
    for column in [*schema.feature_columns, schema.id_column, schema.label_column, schema.true_prob_column]:
        assert column in df.columns
    assert df["event_id"].is_unique
    assert set(df["platform"].unique()) <= {"desktop", "ios", "android", "web"}
    assert df["hour"].between(0, 23).all()
    lengths = df["game_ids"].list.len()
    assert lengths.min() >= 1 and lengths.max() <= 12
    assert (df["user_id"] < small_world.config.num_users).all()
    assert ((df["true_prob"] > 0) & (df["true_prob"] < 1)).all()


def test_positive_rate_and_ceiling_auc(small_world: QuestWorld) -> None:
    for day in (DAY, DAY + dt.timedelta(days=9)):
        df = generate_window(day, 50_000, world=small_world)
        assert 0.05 <= df["label"].mean() <= 0.15
        assert roc_auc(df["label"].to_numpy(), df["true_prob"].to_numpy()) > 0.75


def test_quests_launch_and_new_quests_appear(small_world: QuestWorld) -> None:
    today = generate_window(DAY, 20_000, world=small_world)
    tomorrow = generate_window(DAY + dt.timedelta(days=1), 20_000, world=small_world)
    assert today["quest_is_new"].any()
    new_tomorrow = set(tomorrow.loc[tomorrow["quest_is_new"], "quest_id"])
    assert new_tomorrow and not new_tomorrow & set(today["quest_id"])


def test_popularity_is_long_tailed(small_world: QuestWorld) -> None:
    df = generate_window(DAY, 50_000, world=small_world)
    counts = df["user_id"].value_counts().to_numpy()
    top_share = counts[: len(counts) // 100].sum() / counts.sum()
    assert top_share > 0.05  # the top 1% of users bring well over 1% of impressions


def test_generation_is_fast() -> None:
    generate_window(DAY, 1_000, seed=0)  # builds the default world once
    started = time.perf_counter()
    generate_window(DAY, 200_000, seed=0)
    assert time.perf_counter() - started < 10


def test_write_read_round_trip(tmp_path, small_world: QuestWorld) -> None:
    out = write_window(tmp_path, DAY, 3_000, world=small_world, rows_per_file=1_000)
    assert out == window_dir(tmp_path, DAY) == tmp_path / "quests" / "date=2025-06-01"
    assert (out / SUCCESS_MARKER).is_file()
    assert len(list(out.glob("part-*.parquet"))) == 3
    arrow_schema = pq.read_schema(next(out.glob("part-*.parquet")))
    for column in ("game_ids", "guild_ids"):
        list_type = arrow_schema.field(column).type
        assert pa.types.is_list(list_type) and list_type.value_type == pa.int64()
    back = read_window(out)
    original = generate_window(DAY, 3_000, world=small_world)
    assert back["event_id"].tolist() == original["event_id"].tolist()
    assert back["game_ids"].tolist() == original["game_ids"].tolist()
    np.testing.assert_allclose(back["true_prob"], original["true_prob"])


def test_list_windows_skips_incomplete(tmp_path, small_world: QuestWorld) -> None:
    write_window(tmp_path, DAY, 500, world=small_world)
    write_window(tmp_path, DAY + dt.timedelta(days=1), 500, world=small_world)
    half = write_window(tmp_path, DAY + dt.timedelta(days=2), 500, world=small_world)
    (half / SUCCESS_MARKER).unlink()  # as if the writer died before the marker
    (tmp_path / "quests" / "not-a-window").mkdir()
    assert list_windows(tmp_path) == [DAY, DAY + dt.timedelta(days=1)]
    assert list_windows(tmp_path / "missing") == []


def test_rewrite_replaces_old_parts(tmp_path, small_world: QuestWorld) -> None:
    write_window(tmp_path, DAY, 3_000, world=small_world, rows_per_file=1_000)
    out = write_window(tmp_path, DAY, 500, world=small_world)
    assert len(read_window(out)) == 500
