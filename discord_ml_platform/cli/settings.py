"""The platform the commands share, from the core, with its configuration errors as usage errors.

Every ``DMP_*`` value and the platform config (catalog, policy, images) come from
:func:`discord_ml_platform.platform.current_platform`; the CLI reads none of them itself. A bad
value (``DMP_BACKEND=cloud``, an unreadable ``DMP_PLATFORM_CONFIG``) is a usage error (exit 2)
that names the variable or the file and key.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from discord_ml_platform.cli.errors import config_problem

if TYPE_CHECKING:
    from discord_ml_platform.platform import Platform


def cli_platform() -> Platform:
    """The platform of this process's environment (loaded once per environment by the core).

    Raises:
        UsageProblem: a ``DMP_*`` variable or the platform config is invalid (naming it).
    """
    # Imported here: the core pulls in pydantic and the spec layer, which `dmp --help` never needs.
    from discord_ml_platform.platform import current_platform
    from discord_ml_platform.spec import ConfigError

    try:
        return current_platform()
    except ConfigError as err:
        raise config_problem(err) from None


def dns_label(text: str, max_length: int = 63) -> str:
    """Lowercase ``text`` and turn it into a DNS-1123 label fragment (may be empty)."""
    cleaned = re.sub(r"[^a-z0-9-]+", "-", text.lower())
    cleaned = re.sub(r"-{2,}", "-", cleaned).strip("-")
    return cleaned[:max_length].strip("-")


def complete_gpu_type(incomplete: str) -> list[str]:
    """Shell completion of ``--gpu-type``: the names of the catalog in effect."""
    try:
        names = cli_platform().catalog.names()
    except Exception:  # completion must never print a traceback into the shell
        return []
    return [name for name in names if name.startswith(incomplete)]
