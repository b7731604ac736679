"""Helpers shared by the RayJob tests."""

from __future__ import annotations

from typing import Any

from discord_ml_platform.backends.processes import live_command_lines
from discord_ml_platform.sandbox.runner import KubeRaySandbox


def ray_processes(sandbox: KubeRaySandbox) -> list[str]:
    """Command lines of live processes under the operator's Ray temp root."""
    return live_command_lines(str(sandbox.temp_root))


def objects(sandbox: KubeRaySandbox, plural: str, group: str = "ray.io", version: str = "v1") -> list[dict[str, Any]]:
    """Every stored object of a resource type."""
    rt = sandbox.server.store.registry.get(group, version, plural)
    return list(sandbox.server.store.select(rt, None))


def stored(sandbox: KubeRaySandbox, plural: str) -> list[str]:
    """``namespace/name`` of every stored RayJob / RayCluster."""
    return sorted(f"{o['metadata']['namespace']}/{o['metadata']['name']}" for o in objects(sandbox, plural))


def events_about(sandbox: KubeRaySandbox, name: str) -> list[tuple[str, str]]:
    """``(reason, message)`` of the Events about the object ``name``."""
    return [(e.get("reason", ""), e.get("message", "")) for e in objects(sandbox, "events", "", "v1")
            if (e.get("involvedObject") or {}).get("name") == name]
