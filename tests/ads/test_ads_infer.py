"""Batch inference on Arrow: encoding straight from Arrow tables, the scorer's Arrow path, and
``score_with_ray_data``'s row-group work units and per-unit output files."""

from __future__ import annotations

import datetime as dt
import os
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from discord_ml_platform.ads.data import QuestWorld, generate_window, parquet_files, read_table, write_window
from discord_ml_platform.ads.data.storage import arrow_list_types
from discord_ml_platform.ads.features import encode_frame
from discord_ml_platform.ads.infer import (
    ParquetScoringActor,
    QuestScorer,
    _row_group_runs,
    default_cpus_per_actor,
    score_in_process,
    scoring_units,
)
from discord_ml_platform.ads.model import QuestRanker, RankerConfig, save_model

pytestmark = pytest.mark.timeout(120)


@pytest.fixture(scope="module")
def model_path(small_world: QuestWorld, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained ranker: scoring paths are compared with each other, not with labels."""
    import torch

    torch.manual_seed(0)
    return save_model(QuestRanker(RankerConfig.from_schema(small_world.schema)), tmp_path_factory.mktemp("model") / "m")


@pytest.fixture(scope="module")
def table(small_world: QuestWorld) -> pa.Table:
    return pa.Table.from_pandas(generate_window(dt.date(2025, 6, 3), 2_000, world=small_world), preserve_index=False)


def _assert_same_encoding(a, b) -> None:
    assert a.num_rows == b.num_rows
    assert a.one_hot.keys() == b.one_hot.keys() and a.multi_hot.keys() == b.multi_hot.keys()
    for name in a.one_hot:
        np.testing.assert_array_equal(a.one_hot[name], b.one_hot[name], err_msg=name)
    for name in a.multi_hot:
        for x, y in zip(a.multi_hot[name], b.multi_hot[name], strict=True):
            np.testing.assert_array_equal(x, y, err_msg=name)
    np.testing.assert_array_equal(a.dense, b.dense)
    if a.labels is None:
        assert b.labels is None
    else:
        np.testing.assert_array_equal(a.labels, b.labels)


def test_arrow_and_pandas_encodings_agree(table: pa.Table, small_world: QuestWorld) -> None:
    schema = small_world.schema
    _assert_same_encoding(encode_frame(table, schema), encode_frame(table.to_pandas(types_mapper=arrow_list_types), schema))
    # A sliced, multi-chunk table (what Ray Data and Parquet readers hand over) encodes the same.
    chunked = pa.concat_tables([table.slice(0, 700), table.slice(700, 600), table.slice(1_300)])
    _assert_same_encoding(encode_frame(chunked, schema), encode_frame(table, schema))
    sliced = table.slice(123, 456)
    _assert_same_encoding(encode_frame(sliced, schema), encode_frame(sliced.to_pandas(types_mapper=arrow_list_types), schema))


def test_arrow_encoding_of_nulls_unknowns_and_empty_lists(table: pa.Table, small_world: QuestWorld) -> None:
    frame = table.slice(0, 4).to_pandas(types_mapper=arrow_list_types).drop(columns=["label"])
    frame["platform"] = pd.Series(["switch", None, "ios", "web"], dtype="string")
    frame["guild_ids"] = pd.Series([[], None, [1, 2], [3]], dtype=object)
    frame["sessions_last_week"] = [np.nan, 1.0, 2.0, np.nan]
    frame["user_id"] = pd.array([5, None, -3, 7], dtype="Int64")
    arrow = pa.Table.from_pandas(frame, preserve_index=False)
    _assert_same_encoding(encode_frame(arrow, small_world.schema), encode_frame(frame, small_world.schema))
    encoded = encode_frame(arrow, small_world.schema)
    assert encoded.one_hot["platform"].tolist() == [0, 0, 2, 4]
    assert encoded.one_hot["user_id"].tolist() == [5, 0, 0, 7]
    assert encoded.multi_hot["guild_ids"][0].tolist() == [0, 0, 0, 2, 3]
    assert encoded.labels is None
    # Dictionary-encoded strings (as some Parquet writers store them) give the same codes.
    dictionary = arrow.set_column(arrow.schema.get_field_index("platform"), "platform",
                                  arrow["platform"].dictionary_encode())
    np.testing.assert_array_equal(encode_frame(dictionary, small_world.schema).one_hot["platform"], [0, 0, 2, 4])


def test_scorer_arrow_in_arrow_out(table: pa.Table, model_path: Path) -> None:
    scorer = QuestScorer(model_path)
    scored = scorer(table)
    assert isinstance(scored, pa.Table)
    assert scored.column_names == ["event_id", "user_id", "quest_id", "label", "true_prob", "score"]
    assert scored.schema.field("score").type == pa.float32()
    # The input's pandas metadata names columns the output lacks: it must not travel along.
    assert scored.schema.metadata is None
    assert scored["event_id"].equals(table["event_id"])
    from_pandas = scorer(table.to_pandas(types_mapper=arrow_list_types))
    np.testing.assert_array_equal(scored["score"].to_numpy(), from_pandas["score"].to_numpy())


def test_score_in_process_matches_the_scorer(table: pa.Table, model_path: Path, tmp_path: Path) -> None:
    window = tmp_path / "window"
    window.mkdir()
    pq.write_table(table.slice(0, 1_200), window / "part-00000.parquet", row_group_size=500)
    pq.write_table(table.slice(1_200), window / "part-00001.parquet", row_group_size=500)
    summary = score_in_process(model_path, window, tmp_path / "scores.parquet", batch_size=300)
    out = pq.read_table(summary["output_path"])
    assert summary["rows"] == out.num_rows == table.num_rows
    expected = QuestScorer(model_path)(table)
    assert out.column_names == expected.column_names
    np.testing.assert_array_equal(out["event_id"].to_numpy(), expected["event_id"].to_numpy())
    np.testing.assert_allclose(out["score"].to_numpy(), expected["score"].to_numpy(), rtol=1e-6)


def test_row_group_runs(tmp_path: Path) -> None:
    table = pa.table({"a": np.arange(1_000), "b": np.arange(1_000) * 2.0})
    pq.write_table(table, tmp_path / "f.parquet", row_group_size=300)  # 300, 300, 300, 100
    meta = pq.ParquetFile(tmp_path / "f.parquet").metadata
    assert _row_group_runs(meta, 300) == [((0,), 300), ((1,), 300), ((2,), 300), ((3,), 100)]
    # Smaller row groups are joined until a run reaches the wanted rows; the tail may be shorter.
    assert _row_group_runs(meta, 500) == [((0, 1), 600), ((2, 3), 400)]


def test_scoring_units_are_row_group_runs(small_world: QuestWorld, tmp_path: Path) -> None:
    window = write_window(tmp_path / "data", dt.date(2025, 6, 4), 9_000, seed=small_world.seed, world=small_world,
                          rows_per_file=4_000, row_group_size=2_000)
    files = [str(f) for f in parquet_files(window)]
    units = scoring_units(files, 2_000)
    # Files of 4000, 4000 and 1000 rows in row groups of 2000: one unit per row group, numbered.
    assert [(u["unit"], u["path"], u["row_groups"], u["rows"]) for u in units] == [
        (0, files[0], [0], 2_000), (1, files[0], [1], 2_000), (2, files[1], [0], 2_000), (3, files[1], [1], 2_000),
        (4, files[2], [0], 1_000),
    ]


def test_default_cpus_per_actor_fits_the_cluster() -> None:
    assert default_cpus_per_actor(2, 2.0) == 1.0
    assert default_cpus_per_actor(3, 2.0) == 0.66  # rounded down: 3 x 0.66 fits in 2 CPUs
    assert default_cpus_per_actor(1, 16.0) == 1.0
    with pytest.raises(ValueError, match="concurrency"):
        default_cpus_per_actor(0, 2.0)


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_ray_data_scoring_writes_a_file_per_unit_and_matches_the_plain_loop(
        ray_session, small_world: QuestWorld, model_path: Path, tmp_path: Path) -> None:
    from discord_ml_platform.ads.infer import score_with_ray_data

    window = write_window(tmp_path / "data", dt.date(2025, 6, 4), 9_000, seed=small_world.seed, world=small_world,
                          rows_per_file=4_000, row_group_size=2_000)
    out = tmp_path / "scored"
    out.mkdir()
    # A larger earlier pass left more units than this one writes: the rerun replaces them all.
    pq.write_table(pa.table({"event_id": [1]}), out / "part-00009.parquet")
    summary = score_with_ray_data(model_path, window, out, batch_size=2_000, concurrency=2)
    assert summary["rows"] == 9_000 and summary["files"] == 5
    assert sorted(p.name for p in out.iterdir()) == [f"part-0000{i}.parquet" for i in range(5)]
    scored = pd.read_parquet(out).sort_values("event_id").reset_index(drop=True)
    reference = pd.read_parquet(
        score_in_process(model_path, window, tmp_path / "ref.parquet", batch_size=2_000)["output_path"]
    )
    assert list(scored.columns) == list(reference.columns)
    np.testing.assert_array_equal(scored["event_id"], reference["event_id"])
    np.testing.assert_allclose(scored["score"], reference["score"], rtol=1e-5, atol=1e-6)


class DiesOnceAfterWritingUnit2(ParquetScoringActor):
    """Kills its own process right after writing unit 2, once (a marker file remembers)."""

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.marker = self.output_dir.parent / "died-once"

    def __call__(self, units: pa.Table) -> pa.Table:
        summary = super().__call__(units)
        if 2 in units["unit"].to_pylist() and not self.marker.exists():
            self.marker.touch()
            os._exit(1)  # the unit's file is written, its result never returned
        return summary


@pytest.mark.ray
@pytest.mark.timeout(240)
def test_a_scoring_actor_that_dies_mid_pass_is_replaced_and_every_row_is_scored_once(
        ray_session, small_world: QuestWorld, model_path: Path, tmp_path: Path) -> None:
    import ray.cloudpickle

    from discord_ml_platform.ads.infer import score_with_ray_data

    # The workers cannot import this test module by name: ship the actor class by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    window = write_window(tmp_path / "data", dt.date(2025, 6, 4), 9_000, seed=small_world.seed, world=small_world,
                          rows_per_file=4_000, row_group_size=2_000)
    out = tmp_path / "scored"
    try:
        summary = score_with_ray_data(model_path, window, out, batch_size=2_000, concurrency=2,
                                      actor_class=DiesOnceAfterWritingUnit2)
    finally:
        ray.cloudpickle.unregister_pickle_by_value(sys.modules[__name__])
    assert (tmp_path / "died-once").exists()
    # Ray Data restarted the actor and retried unit 2, which rewrote its own file: no duplicates.
    assert summary["rows"] == 9_000 and summary["files"] == 5
    assert sorted(p.name for p in out.iterdir()) == [f"part-0000{i}.parquet" for i in range(5)]
    scored = pd.read_parquet(out)
    assert len(scored) == 9_000 and scored["event_id"].is_unique


@pytest.mark.ray
def test_ray_data_scoring_rejects_bad_settings_before_starting_actors(
        ray_session, small_world: QuestWorld, model_path: Path, tmp_path: Path) -> None:
    from discord_ml_platform.ads.infer import score_with_ray_data

    window = write_window(tmp_path / "data", dt.date(2025, 6, 4), 100, seed=small_world.seed, world=small_world)
    for bad, message in (({"batch_size": 0}, "batch_size"), ({"concurrency": 0}, "concurrency"),
                         ({"num_cpus_per_actor": 0}, "num_cpus_per_actor")):
        with pytest.raises(ValueError, match=message):
            score_with_ray_data(model_path, window, tmp_path / "out", **{"batch_size": 100, **bad})
    assert not (tmp_path / "out").exists()


def test_read_table_and_arrow_scoring_of_a_window(small_world: QuestWorld, model_path: Path, tmp_path: Path) -> None:
    """A whole window read as Arrow scores like the same window read into pandas."""
    window = write_window(tmp_path / "data", dt.date(2025, 6, 5), 1_500, seed=small_world.seed, world=small_world)
    scorer = QuestScorer(model_path)
    arrow = read_table(window)
    np.testing.assert_array_equal(scorer.predict(arrow), scorer.predict(arrow.to_pandas(types_mapper=arrow_list_types)))
