"""Synthetic Quests data: a seeded world, daily windows of impressions, and their storage."""

from discord_ml_platform.ads.data.generator import default_world, generate_window
from discord_ml_platform.ads.data.storage import (
    SUCCESS_MARKER,
    is_complete,
    list_windows,
    parquet_files,
    read_table,
    read_window,
    window_dir,
    write_window,
)
from discord_ml_platform.ads.data.world import EPOCH, QuestWorld, WorldConfig
from discord_ml_platform.ads.schema import FeatureSchema, quest_feature_schema

__all__ = [
    "EPOCH",
    "SUCCESS_MARKER",
    "FeatureSchema",
    "QuestWorld",
    "WorldConfig",
    "default_world",
    "generate_window",
    "is_complete",
    "list_windows",
    "parquet_files",
    "quest_feature_schema",
    "read_table",
    "read_window",
    "window_dir",
    "write_window",
]
