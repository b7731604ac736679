"""Launchpad config of the Ad Relevance ops: typed, bounded, described, checked when the run starts.

Each op sets only what is its own: the window its data, training its hyper-parameters (once per run;
evaluation and scoring read the trained model's artifact), scoring and the baseline their settings.
The cluster shape is the ``ray_cluster`` resource's config, set once per run. The field definitions
and defaults live with the workload (:mod:`discord_ml_platform.ads.params`), which the Ray drivers
validate against too.
"""

from __future__ import annotations

from typing import Literal

import dagster as dg
from pydantic import Field, ValidationInfo, field_validator

from discord_ml_platform.ads.params import (
    MODEL_NAME_PATTERN,
    BaselineSettings,
    ScoringSettings,
    TrainingHyperparameters,
)
from discord_ml_platform.jobs.smoke import SmokeParams

DEFAULT_MODEL_NAME = "ad-relevance"


class QuestsWindowConfig(dg.Config):
    """How the daily window is obtained (synthetic here; landed by upstream jobs in production)."""

    generate_if_missing: bool = Field(default=True, description="Generate a synthetic window when none has landed.")
    rows: int = Field(
        default=200_000, ge=1_000, le=50_000_000, description="Rows of a generated window (1000-50000000)."
    )
    seed: int = Field(default=7, ge=0, description="Seed of the synthetic world (same seed, same users and quests).")


class TrainingConfig(dg.Config, TrainingHyperparameters):
    """Training: the model's name and its hyper-parameters."""

    model_name: str = Field(
        default=DEFAULT_MODEL_NAME,
        pattern=MODEL_NAME_PATTERN,
        description="Model name: lowercase letters, digits and '-', at most 40 characters.",
    )


class ScoringConfig(dg.Config, ScoringSettings):
    """Batch scoring of the partition's window."""

    model_source: Literal["champion", "partition"] = Field(
        default="partition",
        description="Score with the partition's own model (default) or the registry's champion "
        "(the gated release job sets this).",
    )
    # Champion scoring needs no model of the partition (a newly landed window has none): only the
    # name of the model whose champion scores.
    model_name: str | None = Field(
        default=None,
        pattern=MODEL_NAME_PATTERN,
        description="model_source 'champion' only: the model whose champion scores; default: the partition's "
        f"trained model's name, else {DEFAULT_MODEL_NAME!r}.",
    )

    @field_validator("model_name")
    @classmethod
    def _model_name_only_for_the_champion(cls, value: str | None, info: ValidationInfo) -> str | None:
        # The partition's own model has its own name: one set here would be silently ignored.
        if value is not None and info.data.get("model_source") == "partition":
            raise ValueError(
                "applies to model_source 'champion' only (model_source 'partition' scores the partition's own model)"
            )
        return value


class BaselineConfig(dg.Config, BaselineSettings):
    """The XGBoost baseline run."""


class SmokeConfig(dg.Config, SmokeParams):
    """The trivial platform job used by the smoke test and the overhead benchmark."""
