"""Feature encoding and the QuestRanker network."""

from __future__ import annotations

import datetime as dt

import numpy as np
import pandas as pd
import pytest
import torch

from discord_ml_platform.ads.data import QuestWorld, generate_window
from discord_ml_platform.ads.features import OFFSETS_SUFFIX, batch_from_frame, encode_frame, list_column_arrays
from discord_ml_platform.ads.model import QuestRanker, RankerConfig, load_model, parameter_bytes, save_model

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def frame(small_world: QuestWorld) -> pd.DataFrame:
    return generate_window(dt.date(2025, 6, 1), 300, world=small_world)


def test_list_columns_arrow_and_object_agree(frame: pd.DataFrame) -> None:
    arrow_offsets, arrow_values = list_column_arrays(frame["guild_ids"])
    as_objects = pd.Series([np.asarray(v) for v in frame["guild_ids"].tolist()], dtype=object)
    obj_offsets, obj_values = list_column_arrays(as_objects)
    np.testing.assert_array_equal(arrow_offsets, obj_offsets)
    np.testing.assert_array_equal(arrow_values, obj_values)
    assert arrow_offsets[-1] == frame["guild_ids"].list.len().sum()


def test_batch_keys_shapes_and_offsets(frame: pd.DataFrame, small_world: QuestWorld) -> None:
    schema = small_world.schema
    batch = batch_from_frame(frame, schema)
    n = len(frame)
    assert batch["user_id"].shape == (n,) and batch["user_id"].dtype == torch.int64
    assert batch["dense"].shape == (n, schema.num_dense_inputs) and batch["dense"].dtype == torch.float32
    assert batch["label"].shape == (n,)
    offsets = batch["game_ids" + OFFSETS_SUFFIX]
    assert offsets.shape == (n,) and offsets[0] == 0
    assert batch["game_ids"].numel() == frame["game_ids"].list.len().sum()
    # Row 5's ids sit between its offset and the next one.
    lo, hi = int(offsets[5]), int(offsets[6])
    assert batch["game_ids"][lo:hi].tolist() == list(frame["game_ids"].iloc[5])
    assert set(batch["platform"].tolist()) <= {1, 2, 3, 4}


def test_encoded_batch_of_rows_matches_subframe(frame: pd.DataFrame, small_world: QuestWorld) -> None:
    schema = small_world.schema
    rows = np.array([7, 3, 3, 250])
    from_encoded = encode_frame(frame, schema).batch(rows)
    direct = batch_from_frame(frame.iloc[rows].reset_index(drop=True), schema)
    for key, value in direct.items():
        torch.testing.assert_close(from_encoded[key], value)


def test_unknown_platform_and_missing_label(frame: pd.DataFrame, small_world: QuestWorld) -> None:
    odd = frame.drop(columns=["label"]).head(3).copy()
    odd["platform"] = ["switch", None, "ios"]
    batch = batch_from_frame(odd, small_world.schema)
    assert batch["platform"].tolist() == [0, 0, 2]
    assert "label" not in batch


@pytest.mark.parametrize("interaction", ["dot", "dcn"])
def test_forward_shapes_and_gradients(frame: pd.DataFrame, small_world: QuestWorld, interaction: str) -> None:
    config = RankerConfig.from_schema(small_world.schema, interaction=interaction, cross_rank=4)
    model = QuestRanker(config)
    batch = batch_from_frame(frame, small_world.schema)
    logits = model(batch)
    assert logits.shape == (len(frame),)
    assert torch.isfinite(logits).all()
    logits.sum().backward()
    assert model.tables["game"].weight.grad is not None


def test_ids_beyond_the_table_are_hashed(frame: pd.DataFrame, small_world: QuestWorld) -> None:
    model = QuestRanker(RankerConfig.from_schema(small_world.schema))
    batch = batch_from_frame(frame.head(4), small_world.schema)
    size = small_world.schema.table("quest").num_embeddings
    shifted = {**batch, "quest_id": batch["quest_id"] + 10 * size}
    torch.testing.assert_close(model(batch), model(shifted))


def test_empty_multi_hot_lists_are_fine(frame: pd.DataFrame, small_world: QuestWorld) -> None:
    odd = frame.head(3).copy()
    odd["guild_ids"] = pd.Series([[], [1, 2], []], dtype=object)
    logits = QuestRanker(RankerConfig.from_schema(small_world.schema))(batch_from_frame(odd, small_world.schema))
    assert torch.isfinite(logits).all()


def test_save_load_round_trip(tmp_path, frame: pd.DataFrame, small_world: QuestWorld) -> None:
    torch.manual_seed(0)
    model = QuestRanker(RankerConfig.from_schema(small_world.schema, interaction="dcn")).eval()
    save_model(model, tmp_path / "m")
    loaded = load_model(tmp_path / "m")
    assert loaded.config == model.config
    batch = batch_from_frame(frame, small_world.schema)
    with torch.no_grad():
        torch.testing.assert_close(loaded(batch), model(batch))
    assert parameter_bytes(model) > 0
