"""``DataRootResource``: where data windows, models and scores live (a path every cluster shares)."""

from __future__ import annotations

import os
from pathlib import Path

import dagster as dg
from pydantic import Field


def default_data_root() -> str:
    """``$DMP_DATA_ROOT`` or ``~/.dmp/data``."""
    return os.environ.get("DMP_DATA_ROOT", str(Path.home() / ".dmp" / "data"))


class DataRootResource(dg.ConfigurableResource):
    """The storage root shared by the Dagster process and the Ray cluster."""

    path: str = Field(
        default_factory=default_data_root, description="Root directory (or mount) for windows, models and scores."
    )

    @property
    def root(self) -> Path:
        """The root as a ``Path`` (created on first use)."""
        root = Path(self.path).expanduser().resolve()
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
