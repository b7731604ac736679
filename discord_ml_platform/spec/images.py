"""Which Ray image a cluster runs: the pool's own image, else the platform's CPU or GPU image.

Pure data. The platform configuration (``images:`` of ``DMP_PLATFORM_CONFIG``, then
``DMP_RAY_IMAGE`` / ``DMP_RAY_GPU_IMAGE``) sets the two platform images; a GPU pool of the catalog
may name its own (``catalog.types.<pool>.image``), e.g. one built for that pool's CUDA version.

Every image is held to one grammar (:func:`check_image_reference`): the platform's images and the
pools' when the configuration loads, a spec's own by the policy check.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from pydantic import BaseModel, ConfigDict, Field, field_validator

from discord_ml_platform.spec.errors import shown

if TYPE_CHECKING:  # the catalog checks its pools' images with this module's grammar
    from discord_ml_platform.spec.catalog import GpuType

RAY_VERSION = "2.60.0"
DEFAULT_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-cpu"
# The CPU image has no CUDA: GPU pools get the GPU build unless the platform names another.
DEFAULT_GPU_IMAGE = f"rayproject/ray:{RAY_VERSION}-py311-gpu"

# An image reference as Docker's distribution/reference grammar has it: [host[:port]/]path[:tag][@digest].
IMAGE_REFERENCE = re.compile(
    r"^(?:(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9])(?:\.(?:[A-Za-z0-9]|[A-Za-z0-9][A-Za-z0-9-]*[A-Za-z0-9]))*"
    r"(?::[0-9]+)?/)?"
    r"[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*"
    r"(?::[A-Za-z0-9_][A-Za-z0-9_.-]{0,127})?"
    r"(?:@[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9A-Fa-f]{32,})?$"
)
MAX_IMAGE_CHARS = 512
IMAGE_REFERENCE_WORDS = (
    f"an image reference [registry/]repository[:tag][@digest] of at most {MAX_IMAGE_CHARS} characters, "
    f"e.g. {DEFAULT_IMAGE}"
)


def is_image_reference(image: str) -> bool:
    """Whether ``image`` is an image reference a kubelet can pull (see :data:`IMAGE_REFERENCE`)."""
    # fullmatch: ``$`` alone would also accept a reference followed by a newline.
    return len(image) <= MAX_IMAGE_CHARS and IMAGE_REFERENCE.fullmatch(image) is not None


def check_image_reference(image: str) -> str:
    """``image`` if it is an image reference (for field validators).

    Raises:
        ValueError: naming the image and the grammar it must follow.
    """
    if not is_image_reference(image):
        raise ValueError(f"image {shown(image)} must be {IMAGE_REFERENCE_WORDS}")
    return image


class RayImages(BaseModel):
    """The platform's Ray images: one for CPU pools, one for GPU pools."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    cpu: str = Field(default=DEFAULT_IMAGE, description="Image of clusters on pools without GPUs.")
    gpu: str = Field(default=DEFAULT_GPU_IMAGE, description="Image of clusters on GPU pools (with CUDA).")

    @field_validator("cpu", "gpu")
    @classmethod
    def _image_reference(cls, image: str) -> str:
        return check_image_reference(image)

    def for_pool(self, pool: GpuType) -> str:
        """The image a cluster on ``pool`` runs unless its spec names one."""
        if pool.image:
            return pool.image
        return self.gpu if pool.has_gpus else self.cpu


DEFAULT_IMAGES = RayImages()
