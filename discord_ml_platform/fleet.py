"""Clusters as people see them: one row per cluster with owner, hardware, price, age and expiry.

``dmp cluster list``/``get``/``sweep`` and the X-Ray dashboard build their rows here, so the
terminal and the browser never disagree about a cluster's price (from the GPU catalog in effect),
its age or when it expires. Pure functions over :class:`~discord_ml_platform.backends.ClusterInfo`;
the spec layer (pydantic) is imported only when a row is built, so ``dmp --help`` stays fast.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterInfo
    from discord_ml_platform.spec import GpuCatalog

DEAD_STATUSES = frozenset({"dead", "failed"})
"""Statuses (lower case) of clusters that will never become ready again: the sweeper removes them."""


def human_duration(seconds: float) -> str:
    """``42s``, ``5m``, ``3h12m``, ``2d4h``: the kubectl style of ages."""
    seconds = int(abs(seconds))
    if seconds < 60:
        return f"{seconds}s"
    minutes, sec = divmod(seconds, 60)
    if minutes < 60:
        return f"{minutes}m{sec}s" if minutes < 10 and sec else f"{minutes}m"
    hours, minutes = divmod(minutes, 60)
    if hours < 24:
        return f"{hours}h{minutes}m" if minutes else f"{hours}h"
    days, hours = divmod(hours, 24)
    return f"{days}d{hours}h" if hours else f"{days}d"


def human_until(moment: datetime | None, now: datetime | None = None) -> str:
    """``in 7h59m`` or ``expired 3m ago`` (``-`` when unknown)."""
    if moment is None:
        return "-"
    now = now or datetime.now(UTC)
    delta = (moment - now).total_seconds()
    return f"in {human_duration(delta)}" if delta > 0 else f"expired {human_duration(delta)} ago"


def _spec_of(info: ClusterInfo) -> Mapping[str, Any]:
    spec = info.details.get("spec") if isinstance(info.details, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def cluster_row(info: ClusterInfo, catalog: GpuCatalog, now: datetime | None = None) -> dict[str, Any]:
    """Machine-readable facts of one cluster, as ``dmp cluster list -o json`` prints them.

    GPU counts come from the spec the backend kept (``details["spec"]``) when there is one, else
    from the backend's details and the labels (one GPU per worker on a GPU pool). The price is the
    catalog's: per GPU on a GPU pool, per node (head included) on a pool without GPUs.

    Args:
        info: The cluster as its backend lists it.
        catalog: The GPU catalog in effect (the platform's).
        now: The time ages and expiry are computed at (default: now).
    """
    from discord_ml_platform.spec.labels import EXPIRES_AT, GPU_TYPE, OWNER, RUN_ID, TEAM, parse_expiry

    now = now or datetime.now(UTC)
    labels = dict(info.labels)
    spec = _spec_of(info)
    gpu_type = labels.get(GPU_TYPE) or spec.get("gpu_type")
    gpu = catalog.types.get(gpu_type) if gpu_type else None
    per_worker = spec.get("gpus_per_worker", info.details.get("gpus_per_worker"))
    if per_worker is None:
        per_worker = 1 if gpu is not None and gpu.has_gpus else 0
    total = info.desired_workers * int(per_worker)
    price = None
    if gpu is not None:
        price = round(gpu.hourly_price_usd * (total if gpu.has_gpus else info.desired_workers + 1), 4)
    created = info.created_at if info.created_at.tzinfo else info.created_at.replace(tzinfo=UTC)
    expires = parse_expiry(labels.get(EXPIRES_AT))
    endpoints = info.endpoints
    return {
        "name": info.handle.name,
        "namespace": info.handle.namespace,
        "backend": info.handle.backend,
        "owner": labels.get(OWNER),
        "team": labels.get(TEAM),
        "run_id": labels.get(RUN_ID),
        "gpu_type": gpu_type,
        "gpus_per_worker": int(per_worker),
        "total_gpus": total,
        "ready_workers": info.ready_workers,
        "desired_workers": info.desired_workers,
        "status": info.status,
        "created_at": created.isoformat(),
        "age_seconds": round((now - created).total_seconds(), 1),
        "expires_at": expires.isoformat() if expires else None,
        "expired": bool(expires and expires <= now),
        "hourly_price_usd": price,
        "dashboard_url": endpoints.dashboard_url if endpoints else None,
        "labels": labels,
    }


def display_cells(row: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The text a table shows for one row of :func:`cluster_row` (GPUs, workers, age, expiry, price)."""
    now = now or datetime.now(UTC)
    gpus = row["gpu_type"] or "?"
    if row["total_gpus"]:
        gpus = f"{gpus} x {row['total_gpus']}"
    expires = datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None
    price = row["hourly_price_usd"]
    return {
        **row,
        "gpus": gpus,
        "workers": f"{row['ready_workers']}/{row['desired_workers']}",
        "age": human_duration(row["age_seconds"]),
        "expires": human_until(expires, now),
        "price": f"${price:,.2f}" if price is not None else "-",
    }


def cost_so_far(row: Mapping[str, Any]) -> float | None:
    """What the cluster of a :func:`cluster_row` has cost since it was created (``None``: no price)."""
    price = row["hourly_price_usd"]
    return round(price * row["age_seconds"] / 3600, 4) if price is not None else None


def sweep_reason(row: Mapping[str, Any]) -> str | None:
    """Why the sweeper removes a cluster (expired, dead), or ``None`` to keep it."""
    if row["expired"]:
        return f"expired at {row['expires_at']}"
    if str(row["status"]).lower() in DEAD_STATUSES:
        return f"status {row['status']}"
    return None


__all__ = [
    "DEAD_STATUSES",
    "cluster_row",
    "cost_so_far",
    "display_cells",
    "human_duration",
    "human_until",
    "sweep_reason",
]
