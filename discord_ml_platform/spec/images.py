"""Which Ray image a cluster runs: the pool's own image, else the platform's CPU or GPU image.

Pure data. The platform configuration (``images:`` of ``DMP_PLATFORM_CONFIG``, then
``DMP_RAY_IMAGE`` / ``DMP_RAY_GPU_IMAGE``) sets the two platform images; a GPU pool of the catalog
may name its own (``catalog.types.<pool>.image``), e.g. one built for that pool's CUDA version.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from discord_ml_platform.spec.catalog import GpuType

RAY_VERSION = "2.60.0"
DEFAULT_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-cpu"
# The CPU image has no CUDA: GPU pools get the GPU build unless the platform names another.
DEFAULT_GPU_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-gpu"


class RayImages(BaseModel):
    """The platform's Ray images: one for CPU pools, one for GPU pools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str = Field(default=DEFAULT_IMAGE, description="Image of clusters on pools without GPUs.")
    gpu: str = Field(default=DEFAULT_GPU_IMAGE, description="Image of clusters on GPU pools (with CUDA).")

    @field_validator("cpu", "gpu")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip() or any(ch.isspace() for ch in value):
            raise ValueError(f"image {value!r} must be an image reference without spaces")
        return value

    def for_pool(self, pool: GpuType) -> str:
        """The image a cluster on ``pool`` runs unless its spec names one."""
        if pool.image:
            return pool.image
        return self.gpu if pool.has_gpus else self.cpu


DEFAULT_IMAGES = RayImages()
