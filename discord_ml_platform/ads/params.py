"""What the Ad Relevance assets hand their Ray drivers, and what the drivers report back.

One set of defaults: the Launchpad's config classes inherit the hyper-parameter models defined here,
the asset builds a ``*Params`` model and sends it with ``model_dump()`` (as Pipes extras), and the driver
reads it back with ``model_validate()``. A field added here reaches both sides, with the same default
and the same bounds. Metadata keys the drivers report and the pipeline, ``dmp run`` and the gate read
are named once, in :class:`MetadataKey`.
"""

from __future__ import annotations

from typing import Final, Literal

from pydantic import BaseModel, ConfigDict, Field

MODEL_NAME_PATTERN = r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$"


class MetadataKey:
    """Materialization metadata keys of the Ad Relevance assets (plain strings: Dagster stores them as labels)."""

    MODEL_NAME: Final = "model_name"
    MODEL_DIR: Final = "model_dir"
    MODEL_PATH: Final = "model_path"
    TRAIN_ROWS: Final = "train_rows"
    HOLDOUT_ROWS: Final = "holdout_rows"
    AUC: Final = "auc"
    CEILING_AUC: Final = "ceiling_auc"
    LOGLOSS: Final = "logloss"
    CHAMPION_AUC: Final = "champion_auc"
    CHAMPION_VERSION: Final = "champion_version"
    ROWS_SCORED: Final = "rows"
    SCORES_PATH: Final = "scores_path"
    MODEL_VERSION: Final = "model_version"
    BASELINE_PATH: Final = "baseline_path"


class TrainingHyperparameters(BaseModel):
    """How the ranker is trained: the Launchpad's training form and the train driver's parameters."""

    window_days: int = Field(
        default=1, ge=1, le=30, description="Daily windows to train on, ending at the partition (1-30)."
    )
    epochs: int = Field(default=2, ge=1, le=100, description="Training epochs (1-100).")
    batch_size: int = Field(default=1024, ge=32, le=65_536, description="Per-worker batch size (32-65536).")
    learning_rate: float = Field(default=2e-3, gt=0, le=1, description="Optimizer learning rate (0-1].")
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="Share of the latest window held out for evaluation (0-0.5)."
    )
    sharding: Literal["none", "table", "row"] = Field(
        default="row",
        description="Embedding tables across workers: none (replicated, DDP), table (whole tables per worker) "
        "or row (row blocks).",
    )
    embedding_dim: int = Field(
        default=16,
        ge=4,
        le=256,
        description="Width of every embedding table (4-256); 32 wins on windows of millions of rows.",
    )
    interaction: Literal["dot", "dcn"] = Field(
        default="dot", description="Feature interaction: dot (DLRM pairwise dot products) or dcn (DCN-v2 cross layers)."
    )
    embedding_weight_decay: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="Decoupled weight decay of the embedding tables (0-10): shrinks rarely seen ids.",
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="cosine", description="Learning rate over the run: constant, or cosine decay to 5% of learning_rate."
    )


class TrainParams(TrainingHyperparameters):
    """Everything the train driver needs: the hyper-parameters, where the data is, how many workers."""

    model_config = ConfigDict(extra="forbid")

    model_name: str = Field(pattern=MODEL_NAME_PATTERN, description="Model name.")
    data_root: str = Field(description="Root of the daily windows.")
    partition: str = Field(description="The day trained for (YYYY-MM-DD): the last window and the holdout.")
    model_dir: str = Field(description="Where the split, the model and its reports go.")
    storage_path: str = Field(description="Ray Train's storage for checkpoints.")
    run_name: str = Field(description="Ray Train run name (a directory under storage_path).")
    num_workers: int = Field(ge=1, description="Ray Train workers.")
    use_gpu: bool = Field(description="Train on GPUs (NCCL) instead of CPUs (gloo).")
    cpus_per_worker: float = Field(gt=0, description="CPUs reserved per Ray Train worker.")


class EvaluateParams(BaseModel):
    """The evaluation driver's parameters: the candidate, and the champion to compare on the same holdout."""

    model_config = ConfigDict(extra="forbid")

    model_dir: str = Field(description="The candidate's directory (model and split).")
    champion_model_path: str | None = Field(default=None, description="The registry champion's model files.")
    champion_version: str | None = Field(default=None, description="The champion's registry version.")


class ScoringSettings(BaseModel):
    """How a window is scored: the Launchpad's scoring form."""

    batch_size: int = Field(default=4096, ge=64, le=1_000_000, description="Rows per inference batch (64-1000000).")
    concurrency: int = Field(default=1, ge=1, le=64, description="Scoring actors (1-64).")


class ScoreParams(ScoringSettings):
    """The scoring driver's parameters."""

    model_config = ConfigDict(extra="forbid")

    model_path: str = Field(description="Model files to score with (the partition's, or the champion's).")
    model_version: str = Field(default="partition", description="Registry version of the model, or 'partition'.")
    input_path: str = Field(description="The window to score.")
    output_path: str = Field(description="Where the scores go (replaced on a rerun).")
    num_gpus_per_actor: float = Field(default=0, ge=0, description="GPUs per scoring actor.")


class BaselineSettings(BaseModel):
    """How the XGBoost baseline is fitted: the Launchpad's baseline form."""

    use_ray_trainer: bool = Field(
        default=False, description="Boost with Ray Train's XGBoostTrainer across workers instead of one Ray task."
    )
    cpus: float = Field(default=1, gt=0, le=96, description="CPUs of the fitting task (or per XGBoostTrainer worker).")
    max_depth: int = Field(default=8, ge=1, le=16, description="Tree depth.")
    num_boost_round: int = Field(
        default=2000, ge=1, le=10_000, description="Most boosting rounds (early stopping picks fewer)."
    )


class BaselineParams(BaselineSettings):
    """The baseline driver's parameters."""

    model_config = ConfigDict(extra="forbid")

    model_dir: str = Field(description="The candidate's directory (its split is the baseline's too).")
    num_workers: int = Field(default=1, ge=1, description="XGBoostTrainer workers.")


__all__ = [
    "MODEL_NAME_PATTERN",
    "BaselineParams",
    "BaselineSettings",
    "EvaluateParams",
    "MetadataKey",
    "ScoreParams",
    "ScoringSettings",
    "TrainParams",
    "TrainingHyperparameters",
]
