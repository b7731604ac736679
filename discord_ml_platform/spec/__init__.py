"""Cluster specification: ``ClusterSpec``, the GPU catalog, quantities. Pure, no I/O."""

from discord_ml_platform.spec.catalog import DEFAULT_CATALOG, GpuCatalog, GpuType, Toleration, UnknownGpuTypeError
from discord_ml_platform.spec.cluster_spec import RAY_VERSION, ClusterSpec
from discord_ml_platform.spec.quantities import QuantityError, bytes_to_quantity, parse_quantity, quantity_to_bytes

__all__ = [
    "DEFAULT_CATALOG",
    "RAY_VERSION",
    "ClusterSpec",
    "GpuCatalog",
    "GpuType",
    "QuantityError",
    "Toleration",
    "UnknownGpuTypeError",
    "bytes_to_quantity",
    "parse_quantity",
    "quantity_to_bytes",
]
