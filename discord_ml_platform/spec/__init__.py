"""Cluster specification: ``ClusterSpec``, GPU catalog, security policy, KubeRay manifests. Pure, no I/O."""

from discord_ml_platform.spec.catalog import (
    DEFAULT_CATALOG,
    GpuCatalog,
    GpuType,
    Toleration,
    UnknownGpuTypeError,
    catalog_from_yaml,
)
from discord_ml_platform.spec.cluster_spec import RAY_VERSION, ClusterSpec
from discord_ml_platform.spec.config import (
    DEFAULT_PLATFORM_CONFIG,
    PLATFORM_CONFIG_ENV,
    PlatformConfig,
    platform_config_from_yaml,
)
from discord_ml_platform.spec.errors import ConfigError, FieldProblem, PolicyViolation, SpecError, Violation
from discord_ml_platform.spec.images import DEFAULT_IMAGES, RayImages
from discord_ml_platform.spec.policy import DEFAULT_POLICY, SecurityPolicy, check_policy, policy_from_yaml
from discord_ml_platform.spec.quantities import QuantityError, bytes_to_quantity, parse_quantity, quantity_to_bytes
from discord_ml_platform.spec.render import manifests_to_yaml, render_manifests, render_raycluster, render_rayjob

__all__ = [
    "DEFAULT_CATALOG",
    "DEFAULT_IMAGES",
    "DEFAULT_PLATFORM_CONFIG",
    "DEFAULT_POLICY",
    "PLATFORM_CONFIG_ENV",
    "RAY_VERSION",
    "ClusterSpec",
    "ConfigError",
    "FieldProblem",
    "GpuCatalog",
    "GpuType",
    "PlatformConfig",
    "PolicyViolation",
    "QuantityError",
    "RayImages",
    "SecurityPolicy",
    "SpecError",
    "Toleration",
    "UnknownGpuTypeError",
    "Violation",
    "bytes_to_quantity",
    "catalog_from_yaml",
    "check_policy",
    "manifests_to_yaml",
    "parse_quantity",
    "platform_config_from_yaml",
    "policy_from_yaml",
    "quantity_to_bytes",
    "render_manifests",
    "render_raycluster",
    "render_rayjob",
]
