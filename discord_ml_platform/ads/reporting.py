"""``TrainReporter``: where per-epoch metrics and checkpoints go, and where a resume comes from.

Under Ray Train that is ``ray.train.report`` / ``ray.train.get_checkpoint`` (Ray persists the
checkpoint to the run's storage and hands the latest one back after a worker failure). Without
Ray it is a list in memory and, optionally, a local directory of ``epoch=NNNN`` checkpoints.
A checkpoint is a directory holding the model (``model.pt`` + ``model_config.json``, loadable by
:func:`~discord_ml_platform.ads.model.load_model`) and ``train_state.pt`` (optimizer, epoch).
"""

from __future__ import annotations

import re
import shutil
from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any

import torch

TRAIN_STATE = "train_state.pt"
_EPOCH_DIR = re.compile(r"^epoch=(\d+)$")


def load_train_state(checkpoint_dir: str | Path) -> dict[str, Any]:
    """Read a checkpoint directory: ``{"model": state_dict, "optimizer": ..., "epoch": int}``."""
    d = Path(checkpoint_dir)
    state = torch.load(d / TRAIN_STATE, map_location="cpu", weights_only=False)
    state["model"] = torch.load(d / "model.pt", map_location="cpu", weights_only=True)
    return state


class TrainReporter(ABC):
    """Receives each epoch's metrics (every rank) and checkpoint (rank 0 only)."""

    @abstractmethod
    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        """Record one epoch.

        Args:
            metrics: The epoch's metrics.
            checkpoint_dir: A checkpoint written for this epoch, or None. The caller deletes it
                afterwards, so implementations copy what they keep.
        """

    @abstractmethod
    def restore(self) -> dict[str, Any] | None:
        """The training state to resume from (see :func:`load_train_state`), or None."""


class InProcessReporter(TrainReporter):
    """Keeps metrics in :attr:`history`; optionally keeps checkpoints under a local directory.

    Args:
        checkpoint_root: Directory for ``epoch=NNNN`` checkpoints; None keeps none.
        num_to_keep: Most recent checkpoints to keep (None: all).
    """

    def __init__(self, checkpoint_root: str | Path | None = None, num_to_keep: int | None = None) -> None:
        self.history: list[dict[str, Any]] = []
        self.checkpoint_root = Path(checkpoint_root) if checkpoint_root else None
        self.num_to_keep = num_to_keep

    def checkpoints(self) -> list[Path]:
        """Kept checkpoint directories, oldest first."""
        if self.checkpoint_root is None or not self.checkpoint_root.is_dir():
            return []
        found = [p for p in self.checkpoint_root.iterdir() if _EPOCH_DIR.match(p.name) and (p / TRAIN_STATE).is_file()]
        return sorted(found, key=lambda p: int(_EPOCH_DIR.match(p.name).group(1)))  # type: ignore[union-attr]

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        self.history.append(dict(metrics))
        if checkpoint_dir is None or self.checkpoint_root is None:
            return
        target = self.checkpoint_root / f"epoch={int(metrics['epoch']):04d}"
        if target.exists():
            shutil.rmtree(target)
        shutil.copytree(checkpoint_dir, target)
        if self.num_to_keep is not None:
            for old in self.checkpoints()[: -self.num_to_keep]:
                shutil.rmtree(old, ignore_errors=True)

    def restore(self) -> dict[str, Any] | None:
        kept = self.checkpoints()
        return load_train_state(kept[-1]) if kept else None

    def latest_checkpoint(self) -> Path | None:
        """The newest kept checkpoint directory."""
        kept = self.checkpoints()
        return kept[-1] if kept else None


class RayTrainReporter(TrainReporter):
    """Reports through Ray Train; must run inside a Ray Train worker."""

    def __init__(self) -> None:
        self.history: list[dict[str, Any]] = []

    def report(self, metrics: dict[str, Any], checkpoint_dir: Path | None) -> None:
        import ray.train

        self.history.append(dict(metrics))
        checkpoint = ray.train.Checkpoint.from_directory(str(checkpoint_dir)) if checkpoint_dir else None
        # report() is a barrier across workers and (default SYNC upload) copies the checkpoint
        # to the run's storage before returning, so the caller may delete the directory.
        ray.train.report(metrics, checkpoint=checkpoint)

    def restore(self) -> dict[str, Any] | None:
        import ray.train

        checkpoint = ray.train.get_checkpoint()
        if checkpoint is None:
            return None
        with checkpoint.as_directory() as directory:
            return load_train_state(directory)
