"""The GPU catalog: which accelerator pools exist, how pods reach them, and what they cost.

Pure data and parsing. A platform team can replace or extend the built-in catalog with a YAML
document (see :func:`catalog_from_yaml`); reading that file is the caller's job.
"""

from __future__ import annotations

import difflib
from collections.abc import Mapping

from pydantic import BaseModel, ConfigDict, Field


class Toleration(BaseModel):
    """A Kubernetes toleration, as written in a pod spec."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    key: str
    operator: str = "Exists"
    value: str | None = None
    effect: str | None = "NoSchedule"

    def to_manifest(self) -> dict[str, str]:
        """Return the toleration as a pod-spec dict without empty fields."""
        return {k: v for k, v in self.model_dump().items() if v is not None}


class GpuType(BaseModel):
    """One pool of nodes in the catalog (``cpu`` is the pool without accelerators)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    name: str = Field(description="Catalog key, e.g. 'h100-80gb'.")
    resource_name: str | None = Field(
        default="nvidia.com/gpu", description="Extended resource requested per GPU; None for CPU pools."
    )
    node_selector: dict[str, str] = Field(default_factory=dict, description="Labels that pin pods to the pool.")
    tolerations: tuple[Toleration, ...] = Field(default=(), description="Taints of the pool that pods tolerate.")
    cpus_per_gpu: float = Field(description="Default CPUs per GPU (per worker when the pool has none).", gt=0)
    memory_per_gpu: str = Field(description="Default memory per GPU as a Kubernetes quantity.")
    gpu_memory_gib: int = Field(default=0, ge=0, description="Memory of one GPU, GiB.")
    max_gpus_per_node: int = Field(default=8, ge=0, description="Most GPUs one worker pod may hold.")
    hourly_price_usd: float = Field(ge=0, description="On-demand price per GPU-hour (per node-hour for CPU).")

    @property
    def has_gpus(self) -> bool:
        """True for accelerator pools."""
        return self.resource_name is not None and self.max_gpus_per_node > 0


def _nvidia(name: str, product: str, gpu_memory_gib: int, cpus: float, memory: str, price: float) -> GpuType:
    return GpuType(
        name=name,
        node_selector={"nvidia.com/gpu.product": product},
        tolerations=(Toleration(key="nvidia.com/gpu"),),
        cpus_per_gpu=cpus,
        memory_per_gpu=memory,
        gpu_memory_gib=gpu_memory_gib,
        hourly_price_usd=price,
    )


# Prices are list on-demand prices per GPU-hour of the common clouds, rounded; platform teams
# override them with their negotiated rates through the catalog file.
BUILTIN_GPU_TYPES: tuple[GpuType, ...] = (
    GpuType(name="cpu", resource_name=None, cpus_per_gpu=2, memory_per_gpu="8Gi",
            max_gpus_per_node=0, hourly_price_usd=0.10),
    _nvidia("t4", "Tesla-T4", 16, 4, "16Gi", 0.53),
    _nvidia("l4", "NVIDIA-L4", 24, 8, "32Gi", 0.80),
    _nvidia("a10g", "NVIDIA-A10G", 24, 8, "32Gi", 1.01),
    _nvidia("a100-40gb", "NVIDIA-A100-SXM4-40GB", 40, 12, "85Gi", 3.67),
    _nvidia("a100-80gb", "NVIDIA-A100-SXM4-80GB", 80, 12, "120Gi", 5.12),
    _nvidia("h100-80gb", "NVIDIA-H100-80GB-HBM3", 80, 24, "230Gi", 6.98),
    _nvidia("h200-141gb", "NVIDIA-H200", 141, 24, "230Gi", 10.60),
)


class UnknownGpuTypeError(ValueError):
    """A GPU type that the catalog does not hold (a ValueError, so pydantic reports it per field)."""


class GpuCatalog(BaseModel):
    """The GPU types in effect, keyed by name."""

    model_config = ConfigDict(frozen=True)

    types: dict[str, GpuType]

    def get(self, name: str) -> GpuType:
        """Return a GPU type, or raise with the closest names when it is unknown."""
        try:
            return self.types[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self.types), n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise UnknownGpuTypeError(
                f"unknown gpu_type {name!r}{hint} Allowed: {', '.join(sorted(self.types))}"
            ) from None

    def names(self) -> list[str]:
        """All GPU type names, in catalog order."""
        return list(self.types)

    def merged(self, override: Mapping[str, GpuType], replace: bool = False) -> GpuCatalog:
        """Return a catalog with ``override`` added (or, with ``replace``, only ``override``)."""
        base = {} if replace else dict(self.types)
        base.update(override)
        return GpuCatalog(types=base)


DEFAULT_CATALOG = GpuCatalog(types={t.name: t for t in BUILTIN_GPU_TYPES})
