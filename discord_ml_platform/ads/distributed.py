"""``WorkerContext``: rank, world size, device and collectives, whoever launched the process.

The training loop runs in three settings and must not care which: a single plain process, a
``torchrun`` worker (``RANK``/``WORLD_SIZE`` in the environment) and a Ray Train worker (where
Ray has already set up the process group). :func:`detect_context` tells them apart; the methods
here hide the differences (how to wrap the model in DDP, how to gather validation predictions).
"""

from __future__ import annotations

import os
import sys
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.distributed as dist
from torch import nn

Launcher = Literal["single", "torchrun", "ray"]


CPU = torch.device("cpu")  # immutable: safe as a dataclass default


@dataclass(frozen=True)
class WorkerContext:
    """Where this training process sits in its group.

    Attributes:
        rank: Global rank, 0-based.
        world_size: Number of training processes.
        local_rank: Rank on this node (picks the GPU).
        launcher: ``single`` (no distribution), ``torchrun`` or ``ray``.
        device: Device the model and batches go to.
    """

    rank: int = 0
    world_size: int = 1
    local_rank: int = 0
    launcher: Launcher = "single"
    device: torch.device = CPU

    @property
    def is_chief(self) -> bool:
        """Rank 0: the one that writes checkpoints and emits metrics."""
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        """Whether gradients and metrics must be exchanged with other processes."""
        return self.world_size > 1 and dist.is_available() and dist.is_initialized()

    def prepare_model(self, model: nn.Module) -> nn.Module:
        """Move the model to the device and wrap it in DDP when there are several workers."""
        if self.launcher == "ray":
            import ray.train.torch

            # Ray's helper also pins the CUDA device and passes device_ids on GPU.
            return ray.train.torch.prepare_model(model)
        model = model.to(self.device)
        if self.distributed:
            device_ids = [self.device] if self.device.type == "cuda" else None
            return nn.parallel.DistributedDataParallel(model, device_ids=device_ids)
        return model

    def mean(self, value: float) -> float:
        """Average of a scalar over all workers (the value itself when alone)."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        dist.all_reduce(t)
        return float(t.item()) / self.world_size

    def max(self, value: float) -> float:
        """Maximum of a scalar over all workers (the value itself when alone)."""
        if not self.distributed:
            return float(value)
        t = torch.tensor([float(value)], dtype=torch.float64)
        if dist.get_backend() == "nccl":
            t = t.to(self.device)
        dist.all_reduce(t, op=dist.ReduceOp.MAX)
        return float(t.item())

    def gather(self, array: np.ndarray) -> np.ndarray:
        """Concatenate a 1-D array from every worker, in rank order, on every worker."""
        if not self.distributed:
            return array
        # Shards differ in length by a row or so; object gather handles that without padding
        # and validation sets are small enough for pickling to be cheap.
        parts: list[np.ndarray | None] = [None] * self.world_size
        dist.all_gather_object(parts, array)
        return np.concatenate([p for p in parts if p is not None])


def default_device(local_rank: int = 0) -> torch.device:
    """The GPU of ``local_rank`` when CUDA is available, else the CPU."""
    if torch.cuda.is_available():
        return torch.device("cuda", local_rank % torch.cuda.device_count())
    return torch.device("cpu")


def _ray_context() -> WorkerContext | None:
    # Only a process that has imported ray.train can be a Ray Train worker; checking
    # sys.modules first keeps plain runs from paying for importing ray.
    if "ray.train" not in sys.modules:
        return None
    import ray.train

    try:
        ctx = ray.train.get_context()
        rank, world, local = ctx.get_world_rank(), ctx.get_world_size(), ctx.get_local_rank()
    except (RuntimeError, AttributeError):
        return None
    import ray.train.torch

    return WorkerContext(rank, world, local, "ray", ray.train.torch.get_device())


def detect_context() -> WorkerContext:
    """Work out how this process was launched.

    Under ``torchrun`` the default process group is created here (gloo on CPU, NCCL on GPU)
    if the caller has not done so.

    Returns:
        The context of this worker.
    """
    ray_ctx = _ray_context()
    if ray_ctx is not None:
        return ray_ctx
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and "RANK" in os.environ:
        rank = int(os.environ["RANK"])
        local = int(os.environ.get("LOCAL_RANK", "0"))
        device = default_device(local)
        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
        if device.type == "cuda":
            torch.cuda.set_device(device)
        return WorkerContext(rank, world, local, "torchrun", device)
    return WorkerContext(device=default_device(0))
