"""Run config of the Ad Relevance assets: typed, bounded and described, checked before any cluster starts."""

from __future__ import annotations

from enum import Enum

import dagster as dg
from pydantic import Field, field_validator

from discord_ml_platform.spec import DEFAULT_CATALOG, QuantityError, parse_quantity

GpuPool = Enum("GpuPool", {name.replace("-", "_").upper(): name for name in DEFAULT_CATALOG.names()}, type=str)
GpuPool.__doc__ = "GPU pools of the catalog; CPU is the embedded local default."


class ClusterConfig(dg.Config):
    """The shape of the run's Ray cluster."""

    gpu_pool: GpuPool = Field(default=GpuPool.CPU, description="GPU pool the workers run on ('cpu' locally).")  # type: ignore[attr-defined]
    workers: int = Field(default=2, ge=1, le=64, description="Ray Train workers, one per cluster worker node (1-64).")
    gpus_per_worker: int = Field(
        default=0, ge=0, le=8, description="GPUs per worker (0 on the cpu pool, 1-8 otherwise)."
    )
    cpus_per_worker: float = Field(default=1, gt=0, le=96, description="CPUs per worker (0-96].")
    memory_per_worker: str = Field(default="2Gi", description="Memory per worker as a Kubernetes quantity, e.g. 2Gi.")

    @field_validator("memory_per_worker")
    @classmethod
    def _is_quantity(cls, value: str) -> str:
        try:
            parse_quantity(value)
        except QuantityError as err:
            raise ValueError(str(err)) from None
        return value

    def cluster_fields(self) -> dict[str, object]:
        """``ClusterSpec`` fields for this config."""
        return {
            "gpu_type": self.gpu_pool.value,
            "workers": self.workers,
            "gpus_per_worker": self.gpus_per_worker,
            "cpus_per_worker": self.cpus_per_worker,
            "memory_per_worker": self.memory_per_worker,
        }


class QuestsWindowConfig(dg.Config):
    """How the daily window is obtained (synthetic here; landed by upstream jobs in production)."""

    generate_if_missing: bool = Field(default=True, description="Generate a synthetic window when none has landed.")
    rows: int = Field(default=200_000, ge=1_000, le=50_000_000, description="Rows of a generated window.")
    seed: int = Field(default=7, ge=0, description="Seed of the synthetic world (same seed, same users and quests).")


class TrainingConfig(ClusterConfig):
    """Training run config, shown in the Launchpad."""

    model_name: str = Field(
        default="ad-relevance",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$",
        description="Model name: lowercase letters, digits and '-', at most 40 characters.",
    )
    window_days: int = Field(
        default=1, ge=1, le=30, description="Daily windows to train on, ending at the partition (1-30)."
    )
    epochs: int = Field(default=2, ge=1, le=100, description="Training epochs (1-100).")
    batch_size: int = Field(default=1024, ge=32, le=65_536, description="Per-worker batch size (32-65536).")
    learning_rate: float = Field(default=2e-3, gt=0, le=1, description="Optimizer learning rate (0-1].")
    holdout_fraction: float = Field(
        default=0.2, gt=0, lt=0.5, description="Share of the latest window held out for evaluation."
    )
    sharding: str = Field(
        default="row",
        pattern=r"^(none|table|row)$",
        description="Embedding tables across workers: none (replicated, DDP), table (whole tables per worker) or row (row blocks).",
    )
    embedding_dim: int = Field(
        default=16,
        ge=4,
        le=256,
        description="Width of every embedding table (4-256); 32 wins on windows of millions of rows.",
    )
    interaction: str = Field(
        default="dot",
        pattern=r"^(dot|dcn)$",
        description="Feature interaction: dot (DLRM pairwise dot products) or dcn (DCN-v2 cross layers).",
    )
    embedding_weight_decay: float = Field(
        default=0.5,
        ge=0,
        le=10,
        description="Decoupled weight decay of the embedding tables (0-10): shrinks rarely seen ids.",
    )
    lr_schedule: str = Field(
        default="cosine",
        pattern=r"^(constant|cosine)$",
        description="Learning rate over the run: constant, or cosine decay to 5% of learning_rate.",
    )


class ScoringConfig(ClusterConfig):
    """Batch scoring config."""

    model_name: str = Field(
        default="ad-relevance",
        pattern=r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$",
        description="Model whose promoted version scores the window.",
    )
    batch_size: int = Field(default=4096, ge=64, le=1_000_000, description="Rows per inference batch (64-1000000).")
    workers: int = Field(
        default=1, ge=1, le=64, description="Cluster worker nodes when scoring runs on its own cluster."
    )
    concurrency: int = Field(default=1, ge=1, le=64, description="Scoring actors (1-64).")
    model_source: str = Field(
        default="partition",
        pattern=r"^(champion|partition)$",
        description="Score with the partition's own model (default) or the registry's champion "
        "(the gated release job sets this).",
    )


class SmokeConfig(ClusterConfig):
    """The trivial platform job used by the smoke test and the overhead benchmark."""

    workers: int = Field(default=0, ge=0, le=64, description="Worker nodes besides the head (0-64).")
    tasks: int = Field(default=4, ge=1, le=10_000, description="Trivial Ray tasks to run.")
    release_file: str | None = Field(default=None, description="If set, the job waits for this file before finishing.")
    fail: bool = Field(default=False, description="Make the job fail (to exercise teardown).")
