"""The GPU catalog: which accelerator pools exist, how pods reach them, and what they cost.

Pure data and parsing. A platform team can replace or extend the built-in catalog with a YAML
document (see :func:`catalog_from_yaml`); reading that file is the caller's job.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Mapping
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from discord_ml_platform.spec.errors import ConfigError, format_validation_error
from discord_ml_platform.spec.images import check_image_reference
from discord_ml_platform.spec.quantities import QuantityError, parse_quantity
from discord_ml_platform.spec.yamldoc import load_mapping, reject_unknown_keys, require_mapping

# Type names end up in worker group names (``gpu-<name>``) and label values: keep them DNS labels.
_TYPE_NAME = re.compile(r"^[a-z0-9]([-a-z0-9]{0,38}[a-z0-9])?$")


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
    image: str | None = Field(
        default=None,
        description="Ray image of this pool's clusters (e.g. one built for its CUDA version); "
        "default: the platform's CPU or GPU image.",
    )

    @field_validator("name")
    @classmethod
    def _name_is_dns_label(cls, name: str) -> str:
        if not _TYPE_NAME.match(name):
            raise ValueError(f"GPU type name {name!r} must be lowercase letters, digits and '-', at most 40 characters")
        return name

    @field_validator("memory_per_gpu")
    @classmethod
    def _memory_is_quantity(cls, value: str) -> str:
        try:
            parse_quantity(value)
        except QuantityError as err:
            raise ValueError(str(err)) from None
        return value

    @field_validator("image")
    @classmethod
    def _image_reference(cls, image: str | None) -> str | None:
        # Checked when the catalog loads, so a typo names its pool's key, not every cluster on it later.
        return None if image is None else check_image_reference(image)

    @property
    def has_gpus(self) -> bool:
        """True for accelerator pools."""
        return self.resource_name is not None and self.max_gpus_per_node > 0

    def cluster_price(self, workers: int, gpus_per_worker: int) -> float:
        """Price per hour of a cluster on this pool with ``workers`` workers of ``gpus_per_worker`` GPUs.

        A GPU pool bills its GPUs (the head holds none); a CPU pool bills its nodes, head included.
        """
        if self.has_gpus:
            return self.hourly_price_usd * (workers * gpus_per_worker)
        return self.hourly_price_usd * (workers + 1)


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
    GpuType(
        name="cpu", resource_name=None, cpus_per_gpu=2, memory_per_gpu="8Gi", max_gpus_per_node=0, hourly_price_usd=0.10
    ),
    _nvidia("t4", "Tesla-T4", 16, 4, "16Gi", 0.53),
    _nvidia("l4", "NVIDIA-L4", 24, 8, "32Gi", 0.80),
    _nvidia("a10g", "NVIDIA-A10G", 24, 8, "32Gi", 1.01),
    # Per-GPU CPUs and memory of the 8-GPU pools leave room for the kubelet and daemonsets, so a
    # worker with all 8 GPUs still fits the smallest common 8-GPU machine of the clouds (96 vCPUs
    # and 633 GiB for A100 40GB, 192 vCPUs and 1743 GiB for H100): a pod asking for the whole
    # node's CPUs would stay Pending forever.
    _nvidia("a100-40gb", "NVIDIA-A100-SXM4-40GB", 40, 11, "72Gi", 3.67),
    _nvidia("a100-80gb", "NVIDIA-A100-SXM4-80GB", 80, 11, "120Gi", 5.12),
    _nvidia("h100-80gb", "NVIDIA-H100-80GB-HBM3", 80, 22, "200Gi", 6.98),
    _nvidia("h200-141gb", "NVIDIA-H200", 141, 22, "230Gi", 10.60),
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


CATALOG_KEYS = ("replace", "remove", "types")


def catalog_from_mapping(
    data: Mapping[str, Any], base: GpuCatalog = DEFAULT_CATALOG, where: str = "catalog"
) -> GpuCatalog:
    """Apply a parsed catalog document to ``base``; see :func:`catalog_from_yaml` for the format.

    Args:
        data: The parsed document.
        base: The catalog that the document extends (ignored with ``replace: true``).
        where: Path of the document for error messages (``"catalog"`` in a platform config).

    Raises:
        ConfigError: naming the key at fault.
    """
    reject_unknown_keys(data, CATALOG_KEYS, where)
    replace = data.get("replace", False)
    if not isinstance(replace, bool):
        raise ConfigError(f"{where}.replace must be true or false, got {replace!r}")
    remove = data.get("remove") or []
    if not isinstance(remove, list) or not all(isinstance(n, str) for n in remove):
        raise ConfigError(f"{where}.remove must be a list of GPU type names, got {remove!r}")
    entries = require_mapping(data.get("types") or {}, f"{where}.types")

    types: dict[str, GpuType] = {} if replace else dict(base.types)
    for name in remove:
        if name not in types:
            raise ConfigError(f"{where}.remove: no GPU type {name!r} to remove (have: {', '.join(types) or 'none'})")
        del types[name]
    for name, entry in entries.items():
        fields = require_mapping(entry if entry is not None else {}, f"{where}.types.{name}")
        if fields.get("name", name) != name:
            raise ConfigError(f"{where}.types.{name}.name is {fields['name']!r}; it must match its key or be left out")
        # Extending an existing type changes only the fields given (e.g. a negotiated price).
        previous = types.get(name)
        merged = {**(previous.model_dump() if previous else {}), **fields, "name": name}
        try:
            types[name] = GpuType.model_validate(merged)
        except ValidationError as err:
            raise ConfigError(format_validation_error(err, f"{where}.types.{name}")) from None
    if not types:
        raise ConfigError(f"{where} leaves no GPU types; give at least one under {where}.types")
    return GpuCatalog(types=types)


def catalog_from_yaml(text: str, base: GpuCatalog = DEFAULT_CATALOG) -> GpuCatalog:
    """Build the catalog in effect from a platform team's YAML document.

    The document looks like::

        replace: false          # true: `types` is the whole catalog; false: extend/override `base`
        remove: [t4]            # optional: drop types of `base`
        types:
          h100-80gb:            # an existing type: only the given fields change
            hourly_price_usd: 4.10
          b200-180gb:           # a new type: all required fields
            node_selector: {nvidia.com/gpu.product: NVIDIA-B200}
            tolerations: [{key: nvidia.com/gpu}]
            cpus_per_gpu: 28
            memory_per_gpu: 250Gi
            gpu_memory_gib: 180
            hourly_price_usd: 12.0

    Args:
        text: The YAML text (callers read the file; this function does no I/O).
        base: The catalog to extend; the built-in one by default.

    Returns:
        A new catalog; ``base`` is not modified.

    Raises:
        ConfigError: on bad YAML or an invalid entry, naming the key at fault.
    """
    return catalog_from_mapping(load_mapping(text, "catalog"), base)
