"""Helpers shared by the kuberay tests."""

from __future__ import annotations

from discord_ml_platform.backends.processes import live_command_lines
from discord_ml_platform.sandbox.runner import KubeRaySandbox


def ray_processes(sandbox: KubeRaySandbox) -> list[str]:
    """Command lines of live processes under the operator's Ray temp root."""
    return live_command_lines(str(sandbox.temp_root))


def rayclusters(sandbox: KubeRaySandbox) -> list[str]:
    """``namespace/name`` of every RayCluster in the sandbox's store."""
    rt = sandbox.server.store.registry.get("ray.io", "v1", "rayclusters")
    return sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in sandbox.server.store.select(rt, None))
