"""Faults the tests inject into the training loop through its ``on_epoch_start`` hook."""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path

from discord_ml_platform.ads.distributed import WorkerContext


@dataclass(frozen=True)
class KillRankOnce:
    """Rank 1 (or the only rank) dies abruptly, like a killed pod, at the start of ``epoch``, once.

    The marker file makes it happen on the first attempt only, so Ray Train's restart then succeeds.
    """

    epoch: int
    marker: str

    def __call__(self, ctx: WorkerContext, epoch: int) -> None:
        if epoch != self.epoch or ctx.rank != min(1, ctx.world_size - 1):
            return
        marker = Path(self.marker)
        if marker.exists():
            return
        marker.parent.mkdir(parents=True, exist_ok=True)
        marker.write_text(f"killed rank {ctx.rank} at epoch {epoch}\n")
        # Die a few seconds into the epoch, as a crash mid-epoch would: Ray Train's controller
        # registers reported checkpoints when it polls the workers (every 2 s by default), so a
        # death right after report() could beat the registration of the previous epoch's checkpoint.
        time.sleep(6.0)
        os._exit(1)
