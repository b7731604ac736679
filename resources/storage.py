"""``DataRootResource``: where data windows, models and scores live (a path every cluster shares)."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
from pydantic import Field

from discord_ml_platform.platform import current_platform


class DataRootResource(dg.ConfigurableResource):
    """The storage root shared by the Dagster process and the Ray cluster."""

    path: str | None = Field(
        default=None, description="Root directory (or mount) for windows, models and scores; default $DMP_DATA_ROOT."
    )

    @property
    def root(self) -> Path:
        """The root as a ``Path`` (created on first use)."""
        root = Path(self.path or current_platform().data_root).expanduser().resolve()
        root.mkdir(parents=True, exist_ok=True)
        return root

    def model_dir(self, model_name: str, partition: str) -> Path:
        """Directory of the model trained for ``partition``."""
        return self.root / "models" / model_name / f"date={partition}"

    def scores_dir(self, model_name: str, partition: str) -> Path:
        """Directory of the batch scores for ``partition``."""
        return self.root / "scores" / model_name / f"date={partition}"

    def checkpoints_dir(self) -> Path:
        """Ray Train storage for checkpoints (shared by all workers)."""
        return self.root / "ray-train"
