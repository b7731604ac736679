"""A local Kubernetes API sandbox (and, alongside it, a local KubeRay operator).

The API server is in :mod:`discord_ml_platform.sandbox.apiserver`; fault switches in
:mod:`discord_ml_platform.sandbox.faults`. Nothing heavy is imported here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .apiserver import ApiServer, Sandbox

__all__ = ["ApiServer", "Sandbox"]


def __getattr__(name: str) -> Any:
    # Lazy so that importing the package (e.g. by the operator) does not start pulling modules in.
    if name in __all__:
        from . import apiserver

        return getattr(apiserver, name)
    raise AttributeError(name)
