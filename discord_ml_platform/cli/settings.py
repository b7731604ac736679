"""Settings the commands share: the platform config in effect, the default owner and namespace."""

from __future__ import annotations

import getpass
import os
import re
from pathlib import Path
from typing import TYPE_CHECKING

from discord_ml_platform.cli.errors import UsageProblem

if TYPE_CHECKING:
    from discord_ml_platform.spec import PlatformConfig

OWNER_ENV = "DMP_OWNER"
NAMESPACE_ENV = "DMP_NAMESPACE"
RAY_AUTH_ENV = "DMP_RAY_AUTH_MODE"
DEFAULT_NAMESPACE = "ray"


def platform_config() -> PlatformConfig:
    """The catalog and policy in effect: the file named by ``$DMP_PLATFORM_CONFIG``, else the defaults.

    Raises:
        UsageProblem: when the file is missing or invalid (names the key at fault).
    """
    from discord_ml_platform.spec import (
        DEFAULT_PLATFORM_CONFIG,
        PLATFORM_CONFIG_ENV,
        ConfigError,
        platform_config_from_yaml,
    )

    path = os.environ.get(PLATFORM_CONFIG_ENV)
    if not path:
        return DEFAULT_PLATFORM_CONFIG
    try:
        text = Path(path).expanduser().read_text()
    except OSError as err:
        raise UsageProblem(
            f"{PLATFORM_CONFIG_ENV}={path}: cannot read the platform config: {err.strerror or err}",
            hint=f"point {PLATFORM_CONFIG_ENV} at a readable YAML file, or unset it for the defaults",
        ) from None
    try:
        return platform_config_from_yaml(text)
    except ConfigError as err:
        raise UsageProblem(f"{PLATFORM_CONFIG_ENV}={path}: {err}") from None


def default_owner() -> str:
    """``$DMP_OWNER``, else the login name, else ``unknown``."""
    owner = os.environ.get(OWNER_ENV)
    if owner:
        return owner
    try:
        return getpass.getuser() or "unknown"
    except (KeyError, OSError):
        return "unknown"


def default_namespace() -> str:
    """``$DMP_NAMESPACE`` or ``ray``."""
    return os.environ.get(NAMESPACE_ENV) or DEFAULT_NAMESPACE


def ray_auth_mode() -> str:
    """``RAY_AUTH_MODE`` for Jobs API clients: ``$DMP_RAY_AUTH_MODE``, else the platform policy's."""
    return os.environ.get(RAY_AUTH_ENV) or platform_config().policy.ray_auth_mode


def dns_label(text: str, max_length: int = 63) -> str:
    """Lowercase ``text`` and turn it into a DNS-1123 label fragment (may be empty)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-")
    return cleaned[:max_length].strip("-")


def complete_gpu_type(incomplete: str) -> list[str]:
    """Shell completion of ``--gpu-type``: the names of the catalog in effect."""
    try:
        names = platform_config().catalog.names()
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [name for name in names if name.startswith(incomplete)]
