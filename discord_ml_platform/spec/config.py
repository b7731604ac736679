"""``PlatformConfig``: the GPU catalog, security policy and Ray images in effect, from one YAML document.

The platform core (:mod:`discord_ml_platform.platform`) reads the file named by
``DMP_PLATFORM_CONFIG`` and passes its text to :func:`platform_config_from_yaml`; this module does no
I/O. Without the file the built-in :data:`DEFAULT_PLATFORM_CONFIG` applies.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from discord_ml_platform.spec.catalog import DEFAULT_CATALOG, GpuCatalog, catalog_from_mapping
from discord_ml_platform.spec.errors import ConfigError, format_validation_error
from discord_ml_platform.spec.images import DEFAULT_IMAGES, RayImages
from discord_ml_platform.spec.policy import DEFAULT_POLICY, SecurityPolicy, policy_from_mapping
from discord_ml_platform.spec.yamldoc import load_mapping, reject_unknown_keys, require_mapping

PLATFORM_CONFIG_ENV = "DMP_PLATFORM_CONFIG"
"""Environment variable holding the path of the platform config file (read by the core, not here)."""

SECTIONS = ("catalog", "policy", "images")


class PlatformConfig(BaseModel):
    """The catalog, policy and images that a platform deployment runs with."""

    model_config = ConfigDict(frozen=True)

    catalog: GpuCatalog = Field(default=DEFAULT_CATALOG, description="GPU pools, their prices and images.")
    policy: SecurityPolicy = Field(default=DEFAULT_POLICY, description="Pod security settings and cluster limits.")
    images: RayImages = Field(default=DEFAULT_IMAGES, description="Ray images of CPU and GPU pools.")


DEFAULT_PLATFORM_CONFIG = PlatformConfig()


def images_from_mapping(data: dict[str, object], base: RayImages = DEFAULT_IMAGES, where: str = "images") -> RayImages:
    """Apply a parsed ``images:`` section (``cpu:``, ``gpu:``) to ``base``.

    Raises:
        ConfigError: naming the key at fault.
    """
    reject_unknown_keys(data, ("cpu", "gpu"), where)
    try:
        return RayImages.model_validate({**base.model_dump(), **data})
    except ValidationError as err:
        raise ConfigError(format_validation_error(err, where)) from None


def platform_config_from_yaml(text: str, base: PlatformConfig = DEFAULT_PLATFORM_CONFIG) -> PlatformConfig:
    """Parse a platform config document with optional ``catalog:``, ``policy:`` and ``images:`` sections.

    Example::

        catalog:
          types:
            h100-80gb: {hourly_price_usd: 4.10}
        policy:
          max_gpus_per_cluster: 32
          allowed_namespaces: [ray, ml-research]
        images:
          cpu: registry.example.com/ml/dmp-ray:1.4.0-cpu
          gpu: registry.example.com/ml/dmp-ray:1.4.0-gpu

    The ``catalog`` section has the format of :func:`~discord_ml_platform.spec.catalog.catalog_from_yaml`
    (a pool may name its own ``image``), the ``policy`` section that of
    :func:`~discord_ml_platform.spec.policy.policy_from_yaml`.

    Args:
        text: The YAML text of the file.
        base: The config the document extends; the built-in one by default.

    Raises:
        ConfigError: on bad YAML or an invalid value, naming the key (e.g. ``policy.max_ttl``).
    """
    data = load_mapping(text, "platform")
    reject_unknown_keys(data, SECTIONS, "platform config")
    catalog = base.catalog
    if data.get("catalog") is not None:
        catalog = catalog_from_mapping(require_mapping(data["catalog"], "catalog"), base.catalog)
    policy = base.policy
    if data.get("policy") is not None:
        policy = policy_from_mapping(require_mapping(data["policy"], "policy"), base.policy)
    images = base.images
    if data.get("images") is not None:
        images = images_from_mapping(require_mapping(data["images"], "images"), base.images)
    return PlatformConfig(catalog=catalog, policy=policy, images=images)
