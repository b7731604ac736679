"""Shared fixtures of the Ad Relevance tests: a small world, written windows, one local Ray."""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from discord_ml_platform.ads.data import QuestWorld, WorldConfig, write_window

TRAIN_DATE = dt.date(2025, 6, 1)
VALIDATION_DATE = dt.date(2025, 6, 2)
TRAIN_ROWS = 20_000
VALIDATION_ROWS = 10_000


@pytest.fixture(scope="session")
def small_world() -> QuestWorld:
    """A world small enough that 20k rows say something about most users and games."""
    return QuestWorld.from_seed(7, WorldConfig(num_users=20_000, num_games=1_000, num_guilds=4_000))


@pytest.fixture(scope="session")
def windows(tmp_path_factory: pytest.TempPathFactory, small_world: QuestWorld) -> dict[str, Path]:
    """A training and a validation window of the small world, written as Parquet."""
    root = tmp_path_factory.mktemp("quests-data")
    train = write_window(root, TRAIN_DATE, TRAIN_ROWS, seed=small_world.seed, world=small_world, row_group_size=4096)
    val = write_window(root, VALIDATION_DATE, VALIDATION_ROWS, seed=small_world.seed, world=small_world)
    return {"root": root, "train": train, "validation": val}


@pytest.fixture(scope="session")
def ray_session() -> Iterator[None]:
    """One local Ray for every Ray test: 2 CPUs, a small object store, no dashboard.

    ``address="local"`` and a private temp dir keep it apart from any other Ray on the machine;
    ``ray.shutdown()`` stops exactly the processes it started.
    """
    saved = {k: os.environ.get(k) for k in ("RAY_AUTH_MODE", "RAY_USAGE_STATS_ENABLED", "RAY_ADDRESS")}
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    os.environ.pop("RAY_ADDRESS", None)
    import ray

    temp_dir = tempfile.mkdtemp(prefix="rayads-")
    ray.init(
        address="local",
        num_cpus=2,
        object_store_memory=200 * 1024**2,
        include_dashboard=False,
        _temp_dir=temp_dir,
        log_to_driver=True,
    )
    try:
        yield
    finally:
        ray.shutdown()
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
