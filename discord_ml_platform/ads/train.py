"""Training the Quest ranker: one per-worker loop, run in process, under torchrun or Ray Train.

``train_loop_per_worker(config_dict)`` is the function handed to Ray Train's ``TorchTrainer``;
it is a plain function, so the same code trains in one process (:func:`fit_in_process`, used by
tests and benchmarks) and under ``torchrun``. Each worker reads its own shard of the Parquet
window (rows ``rank::world_size``), trains with AdamW under DDP when there are several workers,
evaluates on the validation window after each epoch, checkpoints and reports.
"""

from __future__ import annotations

import math
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import torch
from pydantic import BaseModel, ConfigDict, Field

from discord_ml_platform.ads.data.storage import arrow_list_types, read_table
from discord_ml_platform.ads.distributed import WorkerContext, default_device, detect_context
from discord_ml_platform.ads.evaluate import evaluate_predictions
from discord_ml_platform.ads.features import LABEL_KEY, EncodedFrame, encode_frame
from discord_ml_platform.ads.model import MODEL_CONFIG, MODEL_WEIGHTS, QuestRanker, RankerConfig, save_model, unwrap
from discord_ml_platform.ads.reporting import TRAIN_STATE, InProcessReporter, RayTrainReporter, TrainReporter
from discord_ml_platform.ads.schema import FeatureSchema
from discord_ml_platform.ads.telemetry import emit_epoch_metrics

EpochHook = Callable[[dict[str, Any]], None]


class CheckpointSettings(BaseModel):
    """How checkpoints are kept."""

    model_config = ConfigDict(extra="forbid")

    enabled: bool = Field(default=True, description="Write a checkpoint at the end of every epoch.")
    num_to_keep: int | None = Field(default=None, ge=1, description="Most recent checkpoints to keep; all when unset.")
    local_dir: str | None = Field(
        default=None,
        description="Without Ray: directory of epoch checkpoints, resumed from when it has one. Ignored under Ray Train.",
    )


class TrainLoopConfig(BaseModel):
    """Everything the per-worker training loop needs; JSON-serialisable for Ray and Dagster."""

    model_config = ConfigDict(extra="forbid")

    train_path: str = Field(description="Training window: a directory of Parquet files or one file.")
    validation_path: str | None = Field(default=None, description="Validation window; no validation metrics when unset.")
    epochs: int = Field(default=2, ge=1, le=1000, description="Passes over the training data.")
    batch_size: int = Field(default=512, ge=1, le=1_048_576, description="Rows per step per worker.")
    lr: float = Field(default=0.003, gt=0, le=1.0, description="AdamW learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay.")
    seed: int = Field(default=0, ge=0, description="Seed of model init and shuffling.")
    model: RankerConfig = Field(default_factory=RankerConfig, description="Model architecture and feature schema.")
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings, description="Checkpointing.")
    max_train_rows: int | None = Field(default=None, ge=1, description="Use at most this many training rows (all workers).")
    max_validation_rows: int | None = Field(default=None, ge=1, description="Use at most this many validation rows.")
    emit_pipes_metrics: bool = Field(default=True, description="Rank 0 prints each epoch's metrics as a Pipes message.")
    torch_threads: int | None = Field(default=None, ge=1, description="torch intra-op threads per worker; torch's default when unset.")


@dataclass
class TrainResult:
    """Outcome of a training run.

    Attributes:
        metrics: Metrics of the last epoch.
        history: Metrics of every epoch (under Ray: those whose checkpoints were kept).
        model_path: Directory with ``model.pt`` and ``model_config.json``, or None.
        checkpoint_path: Where the last checkpoint lives (local dir or Ray storage URI), or None.
        train_seconds: Wall time of the fit.
    """

    metrics: dict[str, Any]
    history: list[dict[str, Any]] = field(default_factory=list)
    model_path: str | None = None
    checkpoint_path: str | None = None
    train_seconds: float = 0.0


def _feature_columns(schema: FeatureSchema, with_truth: bool) -> list[str]:
    cols = [*schema.feature_columns, schema.label_column]
    return [*cols, schema.true_prob_column] if with_truth else cols


def load_shard(
    path: str,
    schema: FeatureSchema,
    rank: int,
    world_size: int,
    max_rows: int | None = None,
    with_truth: bool = False,
) -> tuple[EncodedFrame, np.ndarray | None, int]:
    """Read rows ``rank::world_size`` of a window (after capping at ``max_rows``) and encode them.

    Every worker reads the file metadata the same way, so they agree on the total row count,
    which fixes the number of steps per epoch (DDP hangs if workers take different numbers).

    Returns:
        The encoded shard, its ``true_prob`` values (if asked for and present), and the total
        row count across all shards.
    """
    table = read_table(path)
    wanted = [c for c in _feature_columns(schema, with_truth) if c in table.column_names]
    table = table.select(wanted)
    total = table.num_rows if max_rows is None else min(table.num_rows, max_rows)
    shard: pa.Table = table.take(pa.array(np.arange(rank, total, world_size)))
    frame = shard.to_pandas(types_mapper=arrow_list_types)
    truth = None
    if with_truth and schema.true_prob_column in frame.columns:
        truth = frame[schema.true_prob_column].to_numpy(dtype=np.float64)
    return encode_frame(frame, schema), truth, total


@torch.no_grad()
def predict(model: torch.nn.Module, data: EncodedFrame, batch_size: int, device: torch.device) -> np.ndarray:
    """Probabilities for every row of an encoded frame, in row order.

    Runs the unwrapped module: a DDP forward may broadcast buffers, a collective that would hang
    when workers have different numbers of validation batches.
    """
    model = unwrap(model)
    model.eval()
    out = []
    for start in range(0, data.num_rows, batch_size):
        rows = np.arange(start, min(start + batch_size, data.num_rows))
        out.append(torch.sigmoid(model(data.batch(rows, device))).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


def _write_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int, directory: Path) -> Path:
    save_model(model, directory)
    torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch}, directory / TRAIN_STATE)
    return directory


def run_training(
    config: TrainLoopConfig,
    reporter: TrainReporter,
    context: WorkerContext | None = None,
    on_epoch_end: EpochHook | None = emit_epoch_metrics,
) -> torch.nn.Module:
    """The training loop of one worker.

    Args:
        config: What to train and how.
        reporter: Receives metrics and checkpoints, provides the state to resume from.
        context: This worker's place in the group; detected when None.
        on_epoch_end: Called on rank 0 with each epoch's metrics (default: print a Pipes message).

    Returns:
        The trained model (DDP-wrapped when distributed; see :func:`~.model.unwrap`).
    """
    ctx = context or detect_context()
    if config.torch_threads:
        torch.set_num_threads(config.torch_threads)
    # Same seed on every rank: identical initial weights (DDP broadcasts rank 0's anyway).
    torch.manual_seed(config.seed)
    schema = config.model.feature_schema

    train, _, train_total = load_shard(config.train_path, schema, ctx.rank, ctx.world_size, config.max_train_rows)
    val = None
    if config.validation_path:
        val, val_truth, _ = load_shard(
            config.validation_path, schema, ctx.rank, ctx.world_size, config.max_validation_rows, with_truth=True
        )

    model: torch.nn.Module = QuestRanker(config.model)
    state = reporter.restore()
    start_epoch = 0
    if state is not None:
        model.load_state_dict(state["model"])
        start_epoch = int(state["epoch"]) + 1
    model = ctx.prepare_model(model)
    optimizer = torch.optim.AdamW(model.parameters(), lr=config.lr, weight_decay=config.weight_decay)
    if state is not None:
        optimizer.load_state_dict(state["optimizer"])

    # Equal steps on every rank: shards differ by at most one row, so all use the smallest size.
    rows_per_worker = train_total // ctx.world_size
    steps = max(1, math.ceil(rows_per_worker / config.batch_size))
    loss_fn = torch.nn.BCEWithLogitsLoss()

    for epoch in range(start_epoch, config.epochs):
        started = time.perf_counter()
        model.train()
        rng = np.random.default_rng([config.seed, epoch, ctx.rank])
        order = rng.permutation(train.num_rows)[:rows_per_worker]
        loss_sum = torch.zeros((), dtype=torch.float64)
        for step in range(steps):
            batch = train.batch(order[step * config.batch_size : (step + 1) * config.batch_size], ctx.device)
            loss = loss_fn(model(batch), batch[LABEL_KEY])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            loss_sum += loss.detach().double().cpu()
        train_seconds = time.perf_counter() - started

        metrics: dict[str, Any] = {
            "epoch": epoch,
            "train_loss": ctx.mean(float(loss_sum) / steps),
            "train_seconds": train_seconds,
            "train_rows_per_second": rows_per_worker * ctx.world_size / max(train_seconds, 1e-9),
            "world_size": ctx.world_size,
        }
        if val is not None:
            preds = ctx.gather(predict(model, val, max(config.batch_size, 4096), ctx.device))
            labels = ctx.gather(val.labels if val.labels is not None else np.zeros(0, dtype=np.float32))
            truth = ctx.gather(val_truth) if val_truth is not None else None
            scored = evaluate_predictions(labels, preds, truth)
            metrics.update({f"val_{k}": v for k, v in scored.items()})

        with tempfile.TemporaryDirectory(prefix="quest-ckpt-") as tmp:
            ckpt = None
            if ctx.is_chief and config.checkpoint.enabled:
                ckpt = _write_checkpoint(model, optimizer, epoch, Path(tmp))
            reporter.report(metrics, ckpt)
        if ctx.is_chief and on_epoch_end is not None:
            on_epoch_end(metrics)
    return model


def train_loop_per_worker(config: dict[str, Any]) -> None:
    """Entry point for Ray Train's ``TorchTrainer`` (also runs without Ray).

    Args:
        config: A :class:`TrainLoopConfig` as a dict (``model_dump(mode="json")``).
    """
    cfg = TrainLoopConfig.model_validate(config)
    ctx = detect_context()
    reporter: TrainReporter
    if ctx.launcher == "ray":
        reporter = RayTrainReporter()
    else:
        reporter = InProcessReporter(cfg.checkpoint.local_dir, cfg.checkpoint.num_to_keep)
    run_training(cfg, reporter, ctx, emit_epoch_metrics if cfg.emit_pipes_metrics else None)


def fit_in_process(
    config: TrainLoopConfig,
    *,
    output_dir: str | Path | None = None,
    on_epoch_end: EpochHook | None = None,
) -> TrainResult:
    """Train in this process (no Ray, world size 1); for tests, benchmarks and notebooks.

    Args:
        config: What to train and how; ``checkpoint.local_dir`` enables checkpoints and resume.
        output_dir: Where to save the final model; not saved when None.
        on_epoch_end: Hook called with each epoch's metrics; defaults to the Pipes printer when
            ``config.emit_pipes_metrics`` is set.

    Returns:
        Metrics, per-epoch history and the model path.
    """
    started = time.perf_counter()
    reporter = InProcessReporter(config.checkpoint.local_dir, config.checkpoint.num_to_keep)
    hook = on_epoch_end or (emit_epoch_metrics if config.emit_pipes_metrics else None)
    model = run_training(config, reporter, WorkerContext(device=default_device()), hook)
    model_path = str(save_model(model, output_dir)) if output_dir is not None else None
    latest = reporter.latest_checkpoint()
    return TrainResult(
        metrics=reporter.history[-1] if reporter.history else {},
        history=reporter.history,
        model_path=model_path,
        checkpoint_path=str(latest) if latest else None,
        train_seconds=time.perf_counter() - started,
    )


def fit_with_ray_train(
    config: TrainLoopConfig,
    *,
    num_workers: int,
    use_gpu: bool,
    storage_path: str,
    name: str,
    max_failures: int = 1,
    cpus_per_worker: float = 1,
    output_dir: str | Path | None = None,
) -> TrainResult:
    """Train with Ray Train's ``TorchTrainer`` on the Ray cluster this driver is connected to.

    The caller owns the connection (``ray.init(address=...)``). Checkpoints go to
    ``storage_path/name``; the last one is exported as a plain model directory.

    Args:
        config: What to train and how.
        num_workers: Training workers (one process each; one GPU each with ``use_gpu``).
        use_gpu: Train on GPUs (NCCL) instead of CPUs (gloo).
        storage_path: Absolute local path or URI where Ray Train persists the run.
        name: Run name (a directory under ``storage_path``).
        max_failures: Worker-group restarts (from the latest checkpoint) before giving up.
        cpus_per_worker: CPUs reserved per worker; fractions let several fit on a small node.
        output_dir: Where to export the final model; default ``<storage_path>/<name>/model``
            (local storage only).

    Returns:
        Last-epoch metrics, the history of kept checkpoints, and the exported model path.

    Raises:
        ray.train.TrainingFailedError: training failed more than ``max_failures`` times.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    started = time.perf_counter()
    resources: dict[str, float] = {"CPU": cpus_per_worker}
    if use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop_per_worker,
        train_loop_config=config.model_dump(mode="json"),
        scaling_config=ScalingConfig(num_workers=num_workers, use_gpu=use_gpu, resources_per_worker=resources),
        run_config=RunConfig(
            name=name,
            storage_path=storage_path,
            failure_config=FailureConfig(max_failures=max_failures),
            checkpoint_config=CheckpointConfig(num_to_keep=config.checkpoint.num_to_keep),
        ),
    )
    result = trainer.fit()
    if result.error is not None:
        raise result.error
    history: list[dict[str, Any]] = []
    if result.metrics_dataframe is not None:
        history = sorted(result.metrics_dataframe.to_dict("records"), key=lambda m: m.get("epoch", 0))
    model_path = None
    if result.checkpoint is not None:
        target = Path(output_dir) if output_dir is not None else Path(storage_path) / name / "model"
        target.mkdir(parents=True, exist_ok=True)
        with result.checkpoint.as_directory() as directory:
            for filename in (MODEL_WEIGHTS, MODEL_CONFIG):
                shutil.copy2(Path(directory) / filename, target / filename)
        model_path = str(target)
    return TrainResult(
        metrics=dict(result.metrics or {}),
        history=history,
        model_path=model_path,
        checkpoint_path=result.checkpoint.path if result.checkpoint is not None else None,
        train_seconds=time.perf_counter() - started,
    )


__all__ = [
    "CheckpointSettings",
    "TrainLoopConfig",
    "TrainResult",
    "fit_in_process",
    "fit_with_ray_train",
    "load_shard",
    "predict",
    "run_training",
    "train_loop_per_worker",
]
