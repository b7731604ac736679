"""``PlatformConfig``: the GPU catalog and security policy in effect, from one YAML document.

Callers read the file named by the ``DMP_PLATFORM_CONFIG`` environment variable and pass its text
to :func:`platform_config_from_yaml`; without the variable they use :data:`DEFAULT_PLATFORM_CONFIG`.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from discord_ml_platform.spec.catalog import DEFAULT_CATALOG, GpuCatalog, catalog_from_mapping
from discord_ml_platform.spec.policy import DEFAULT_POLICY, SecurityPolicy, policy_from_mapping
from discord_ml_platform.spec.yamldoc import load_mapping, reject_unknown_keys, require_mapping

PLATFORM_CONFIG_ENV = "DMP_PLATFORM_CONFIG"
"""Environment variable holding the path of the platform config file (read by callers, not here)."""


class PlatformConfig(BaseModel):
    """The catalog and policy that a platform deployment runs with."""

    model_config = ConfigDict(frozen=True)

    catalog: GpuCatalog = Field(default=DEFAULT_CATALOG, description="GPU pools and their prices.")
    policy: SecurityPolicy = Field(default=DEFAULT_POLICY, description="Pod security settings and cluster limits.")


DEFAULT_PLATFORM_CONFIG = PlatformConfig()


def platform_config_from_yaml(text: str, base: PlatformConfig = DEFAULT_PLATFORM_CONFIG) -> PlatformConfig:
    """Parse a platform config document with optional ``catalog:`` and ``policy:`` sections.

    Example::

        catalog:
          types:
            h100-80gb: {hourly_price_usd: 4.10}
        policy:
          max_gpus_per_cluster: 32
          allowed_namespaces: [ray, ml-research]

    The ``catalog`` section has the format of :func:`~discord_ml_platform.spec.catalog.catalog_from_yaml`
    and the ``policy`` section that of :func:`~discord_ml_platform.spec.policy.policy_from_yaml`.

    Args:
        text: The YAML text of the file.
        base: The config the document extends; the built-in one by default.

    Raises:
        ConfigError: on bad YAML or an invalid value, naming the key (e.g. ``policy.max_ttl``).
    """
    data = load_mapping(text, "platform")
    reject_unknown_keys(data, ("catalog", "policy"), "platform config")
    catalog = base.catalog
    if data.get("catalog") is not None:
        catalog = catalog_from_mapping(require_mapping(data["catalog"], "catalog"), base.catalog)
    policy = base.policy
    if data.get("policy") is not None:
        policy = policy_from_mapping(require_mapping(data["policy"], "policy"), base.policy)
    return PlatformConfig(catalog=catalog, policy=policy)
