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
from typing import Any, Literal

import numpy as np
import pyarrow as pa
import torch
import torch.distributed as dist
from pydantic import BaseModel, ConfigDict, Field

from discord_ml_platform.ads.data.storage import arrow_list_types, read_table
from discord_ml_platform.ads.distributed import WorkerContext, default_device, detect_context
from discord_ml_platform.ads.evaluate import evaluate_predictions
from discord_ml_platform.ads.features import LABEL_KEY, EncodedFrame, encode_frame
from discord_ml_platform.ads.model import MODEL_CONFIG, MODEL_WEIGHTS, QuestRanker, RankerConfig, save_model, unwrap
from discord_ml_platform.ads.reporting import TRAIN_STATE, InProcessReporter, RayTrainReporter, TrainReporter
from discord_ml_platform.ads.schema import FeatureSchema
from discord_ml_platform.ads.sharding import ShardedQuestRanker
from discord_ml_platform.ads.telemetry import emit_epoch_metrics

EpochHook = Callable[[dict[str, Any]], None]
EpochStartHook = Callable[[WorkerContext, int], None]
"""Called on every rank at the start of each epoch (an extension point; the tests inject faults with it)."""


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
    validation_path: str | None = Field(
        default=None, description="Validation window; no validation metrics when unset."
    )
    epochs: int = Field(default=2, ge=1, le=1000, description="Passes over the training data.")
    batch_size: int = Field(default=512, ge=1, le=1_048_576, description="Rows per step per worker.")
    lr: float = Field(default=0.003, gt=0, le=1.0, description="AdamW learning rate.")
    weight_decay: float = Field(default=0.0, ge=0, description="AdamW weight decay of the dense layers.")
    embedding_weight_decay: float = Field(
        default=0.0,
        ge=0,
        description="AdamW (decoupled) weight decay of the embedding tables: shrinks rarely seen ids toward zero.",
    )
    lr_schedule: Literal["constant", "cosine"] = Field(
        default="constant",
        description="Learning rate over the run: constant, or cosine decay to lr_floor * lr by the last step "
        "(better on long single-pass runs such as the reference window; too timid for a few dozen steps).",
    )
    lr_floor: float = Field(default=0.05, ge=0, le=1, description="Final learning rate as a fraction of lr (cosine).")
    seed: int = Field(default=0, ge=0, description="Seed of model init and shuffling.")
    model: RankerConfig = Field(default_factory=RankerConfig, description="Model architecture and feature schema.")
    checkpoint: CheckpointSettings = Field(default_factory=CheckpointSettings, description="Checkpointing.")
    max_train_rows: int | None = Field(
        default=None, ge=1, description="Use at most this many training rows (all workers)."
    )
    max_validation_rows: int | None = Field(default=None, ge=1, description="Use at most this many validation rows.")
    emit_pipes_metrics: bool = Field(default=True, description="Rank 0 prints each epoch's metrics as a Pipes message.")
    torch_threads: int | None = Field(
        default=None, ge=1, description="torch intra-op threads per worker; torch's default when unset."
    )
    sharding: Literal["none", "table", "row"] = Field(
        default="row",
        description="Embedding tables across workers when there are several: replicated (none, plain DDP), "
        "whole tables per worker (table) or row blocks of every table per worker (row).",
    )
    mixed_precision: bool = Field(
        default=True, description="bf16 autocast of the forward pass on GPU (ignored on CPU)."
    )


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
def predict(
    model: torch.nn.Module,
    data: EncodedFrame,
    batch_size: int,
    device: torch.device,
    context: WorkerContext | None = None,
) -> np.ndarray:
    """Probabilities for every row of an encoded frame, in row order.

    Runs the unwrapped module: a DDP forward may broadcast buffers, a collective that would hang
    when workers have different numbers of validation batches. A sharded model's forward *is* a
    collective, so with one every worker runs the same number of (possibly empty) batches.
    """
    model = unwrap(model)
    model.eval()
    sharded = isinstance(model, ShardedQuestRanker)
    if isinstance(model, ShardedQuestRanker):
        model = _EvalSharded(model)
    batches = math.ceil(data.num_rows / batch_size)
    if sharded and context is not None and context.distributed:
        batches = round(context.max(float(batches)))
    out = []
    for b in range(batches):
        rows = np.arange(min(b * batch_size, data.num_rows), min((b + 1) * batch_size, data.num_rows))
        out.append(torch.sigmoid(model(data.batch(rows, device))).float().cpu().numpy())
    return np.concatenate(out) if out else np.zeros(0, dtype=np.float32)


class _EvalSharded(torch.nn.Module):
    """A sharded model's forward without DDP's wrapper (no buffer broadcast in eval)."""

    def __init__(self, model: ShardedQuestRanker) -> None:
        super().__init__()
        self.model = model

    def forward(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        return unwrap(self.model.dense)(batch, self.model.embeddings(batch))


def make_optimizer(model: torch.nn.Module, config: TrainLoopConfig) -> torch.optim.Optimizer:
    """AdamW with two groups: embedding tables (``embedding_weight_decay``) and the rest."""
    tables: list[torch.nn.Parameter] = []
    dense: list[torch.nn.Parameter] = []
    for name, param in model.named_parameters():
        is_table = name.startswith(("tables.", "module.tables.", "embeddings.shards."))
        (tables if is_table else dense).append(param)
    groups = [
        {"params": dense, "weight_decay": config.weight_decay},
        {"params": tables, "weight_decay": config.embedding_weight_decay},
    ]
    return torch.optim.AdamW([g for g in groups if g["params"]], lr=config.lr)


def _write_checkpoint(model: torch.nn.Module, optimizer: torch.optim.Optimizer, epoch: int, directory: Path) -> Path:
    save_model(model, directory)
    torch.save({"optimizer": optimizer.state_dict(), "epoch": epoch}, directory / TRAIN_STATE)
    return directory


def _checkpoint_state(
    model: torch.nn.Module, optimizer: torch.optim.Optimizer, ctx: WorkerContext
) -> tuple[dict[str, torch.Tensor] | None, Any]:
    """For a sharded model (a collective): the full model state and every rank's optimizer state.

    Shards' optimizer states differ per rank, so all of them travel to rank 0 and into the
    checkpoint; a resume with the same world size and sharding hands each rank its own back.
    """
    full = model.full_state_dict()  # type: ignore[operator]
    states: list[Any] = [None] * ctx.world_size
    dist.all_gather_object(states, optimizer.state_dict())
    return full, states


def run_training(
    config: TrainLoopConfig,
    reporter: TrainReporter,
    context: WorkerContext | None = None,
    on_epoch_end: EpochHook | None = emit_epoch_metrics,
    on_epoch_start: EpochStartHook | None = None,
) -> torch.nn.Module:
    """The training loop of one worker.

    Args:
        config: What to train and how.
        reporter: Receives metrics and checkpoints, provides the state to resume from.
        context: This worker's place in the group; detected when None.
        on_epoch_end: Called on rank 0 with each epoch's metrics (default: print a Pipes message).
        on_epoch_start: Called on every rank with its context and the epoch, before the epoch runs.

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
    sharded = config.sharding != "none" and ctx.distributed
    if sharded:
        # Every rank built the same full model (same seed, or the same checkpoint) and keeps
        # only its shards of the tables; dense layers go into DDP.
        full = {k: v.detach() for k, v in model.state_dict().items()}
        del model
        model = ShardedQuestRanker(config.model, config.sharding, ctx.rank, ctx.world_size, ctx.device, full)  # type: ignore[arg-type]
        del full
    else:
        model = ctx.prepare_model(model)
    optimizer = make_optimizer(model, config)
    if state is not None:
        saved = state.get("optimizer_shards") if sharded else state.get("optimizer")
        same_layout = not sharded or (
            state.get("world_size") == ctx.world_size and state.get("sharding") == config.sharding and saved
        )
        if saved is not None and same_layout:
            optimizer.load_state_dict(saved[ctx.rank] if sharded else saved)
    amp = config.mixed_precision and ctx.device.type == "cuda"

    # Equal steps on every rank: shards differ by at most one row, so all use the smallest size.
    rows_per_worker = train_total // ctx.world_size
    steps = max(1, math.ceil(rows_per_worker / config.batch_size))
    loss_fn = torch.nn.BCEWithLogitsLoss()
    total_steps = steps * config.epochs

    def lr_at(step: int) -> float:
        if config.lr_schedule == "constant":
            return config.lr
        progress = min(1.0, step / max(1, total_steps - 1))
        return config.lr * (config.lr_floor + (1 - config.lr_floor) * 0.5 * (1 + math.cos(math.pi * progress)))

    for epoch in range(start_epoch, config.epochs):
        if on_epoch_start is not None:
            on_epoch_start(ctx, epoch)
        started = time.perf_counter()
        model.train()
        rng = np.random.default_rng([config.seed, epoch, ctx.rank])
        order = rng.permutation(train.num_rows)[:rows_per_worker]
        loss_sum = torch.zeros((), dtype=torch.float64)
        for step in range(steps):
            for group in optimizer.param_groups:
                group["lr"] = lr_at(epoch * steps + step)
            batch = train.batch(order[step * config.batch_size : (step + 1) * config.batch_size], ctx.device)
            with torch.autocast(device_type=ctx.device.type, dtype=torch.bfloat16, enabled=amp):
                logits = model(batch)
            loss = loss_fn(logits.float(), batch[LABEL_KEY])
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
            "start_epoch": start_epoch,  # > 0 after a restore from a checkpoint
            "sharding": config.sharding if sharded else "none",
        }
        if val is not None:
            preds = ctx.gather(predict(model, val, max(config.batch_size, 4096), ctx.device, ctx))
            labels = ctx.gather(val.labels if val.labels is not None else np.zeros(0, dtype=np.float32))
            truth = ctx.gather(val_truth) if val_truth is not None else None
            scored = evaluate_predictions(labels, preds, truth)
            metrics.update({f"val_{k}": v for k, v in scored.items()})

        with tempfile.TemporaryDirectory(prefix="quest-ckpt-") as tmp:
            ckpt = None
            if config.checkpoint.enabled and sharded:
                state, optimizer_shards = _checkpoint_state(model, optimizer, ctx)
                if ctx.is_chief and state is not None:
                    ckpt = Path(tmp)
                    unsharded = QuestRanker(config.model)
                    unsharded.load_state_dict(state)
                    save_model(unsharded, ckpt)
                    torch.save(
                        {
                            "optimizer_shards": optimizer_shards,
                            "epoch": epoch,
                            "world_size": ctx.world_size,
                            "sharding": config.sharding,
                        },
                        ckpt / TRAIN_STATE,
                    )
            elif ctx.is_chief and config.checkpoint.enabled:
                ckpt = _write_checkpoint(model, optimizer, epoch, Path(tmp))
            reporter.report(metrics, ckpt)
        if ctx.is_chief and on_epoch_end is not None:
            on_epoch_end(metrics)
    return model


def train_loop_per_worker(config: dict[str, Any], on_epoch_start: EpochStartHook | None = None) -> None:
    """Entry point for Ray Train's ``TorchTrainer`` (also runs without Ray).

    Args:
        config: A :class:`TrainLoopConfig` as a dict (``model_dump(mode="json")``).
        on_epoch_start: Called on every rank at the start of each epoch (bind it with
            ``functools.partial`` to pass it through Ray Train).
    """
    cfg = TrainLoopConfig.model_validate(config)
    ctx = detect_context()
    reporter: TrainReporter
    if ctx.launcher == "ray":
        reporter = RayTrainReporter()
    else:
        reporter = InProcessReporter(cfg.checkpoint.local_dir, cfg.checkpoint.num_to_keep)
    run_training(cfg, reporter, ctx, emit_epoch_metrics if cfg.emit_pipes_metrics else None, on_epoch_start)


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


def scaling_from_cluster(num_workers: int | None = None, use_gpu: bool | None = None) -> tuple[int, bool]:
    """Workers and GPU use from the connected Ray cluster's resources where not given.

    With GPUs in the cluster: ``use_gpu`` and one worker per GPU. Without: CPU workers (1 unless
    given).
    """
    import ray

    gpus = int(ray.cluster_resources().get("GPU", 0)) if ray.is_initialized() else 0
    if use_gpu is None:
        use_gpu = gpus > 0
    if num_workers is None:
        num_workers = max(1, gpus) if use_gpu else 1
    return num_workers, use_gpu


def fit_with_ray_train(
    config: TrainLoopConfig,
    *,
    num_workers: int | None,
    use_gpu: bool | None,
    storage_path: str,
    name: str,
    max_failures: int = 1,
    cpus_per_worker: float = 1,
    output_dir: str | Path | None = None,
    train_loop: Callable[[dict[str, Any]], None] = train_loop_per_worker,
) -> TrainResult:
    """Train with Ray Train's ``TorchTrainer`` on the Ray cluster this driver is connected to.

    The caller owns the connection (``ray.init(address=...)``). Checkpoints go to
    ``storage_path/name``; the last one is exported as a plain model directory.

    Args:
        config: What to train and how.
        num_workers: Training workers (one process each; one GPU each with ``use_gpu``); None:
            one per GPU of the cluster (or 1 without GPUs).
        use_gpu: Train on GPUs (NCCL, bf16 autocast) instead of CPUs (gloo); None: when the
            cluster has GPUs.
        storage_path: Absolute local path or URI where Ray Train persists the run.
        name: Run name (a directory under ``storage_path``).
        max_failures: Worker-group restarts (from the latest checkpoint) before giving up.
        cpus_per_worker: CPUs reserved per worker; fractions let several fit on a small node.
        output_dir: Where to export the final model; default ``<storage_path>/<name>/model``
            (local storage only).
        train_loop: The per-worker function Ray Train runs with ``config`` as a dict; default
            :func:`train_loop_per_worker` (a wrapper may add hooks around :func:`run_training`).

    Returns:
        Last-epoch metrics, the history of kept checkpoints, and the exported model path.

    Raises:
        ray.train.TrainingFailedError: training failed more than ``max_failures`` times.
    """
    from ray.train import CheckpointConfig, FailureConfig, RunConfig, ScalingConfig
    from ray.train.torch import TorchTrainer

    num_workers, use_gpu = scaling_from_cluster(num_workers, use_gpu)
    started = time.perf_counter()
    resources: dict[str, float] = {"CPU": cpus_per_worker}
    if use_gpu:
        resources["GPU"] = 1
    trainer = TorchTrainer(
        train_loop,
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
    "scaling_from_cluster",
    "train_loop_per_worker",
]
