"""Where Ray clusters live: the ``ClusterBackend`` protocol and its implementations.

Implementations are imported lazily by :func:`get_backend` so that importing this package stays
cheap (the kuberay backend pulls in the kubernetes client).
"""

from __future__ import annotations

from typing import Any

from discord_ml_platform.backends.base import (
    ClusterBackend,
    ClusterEndpoints,
    ClusterError,
    ClusterHandle,
    ClusterInfo,
    ClusterNotReadyError,
    HeadFailedError,
    PhaseCallback,
    PhaseEvent,
)

BACKEND_NAMES = ("local", "kuberay")


def get_backend(name: str, **options: Any) -> ClusterBackend:
    """Return a backend by name (``local`` or ``kuberay``) built with ``options``."""
    if name == "local":
        from discord_ml_platform.backends.local import LocalBackend

        return LocalBackend(**options)
    if name == "kuberay":
        from discord_ml_platform.backends.kuberay import KubeRayBackend

        return KubeRayBackend(**options)
    raise ValueError(f"unknown backend {name!r}; allowed: {', '.join(BACKEND_NAMES)}")


__all__ = [
    "BACKEND_NAMES",
    "ClusterBackend",
    "ClusterEndpoints",
    "ClusterError",
    "ClusterHandle",
    "ClusterInfo",
    "ClusterNotReadyError",
    "HeadFailedError",
    "PhaseCallback",
    "PhaseEvent",
    "get_backend",
]
