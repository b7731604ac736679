"""Clusters as people see them: one row per cluster with owner, hardware, price, age and expiry.

``dmp cluster list``/``get``/``sweep`` and the X-Ray dashboard build their rows here, so the
terminal and the browser never disagree about a cluster's price (from the GPU catalog in effect),
its age or when it expires. Pure functions over :class:`~discord_ml_platform.backends.ClusterInfo`;
the spec layer (pydantic) is imported only when a row is built, so ``dmp --help`` stays fast.

Labels, annotations and kept specs are anyone's to edit (a ``kubectl patch``, a hand-written
record), so a row never fails on what they hold: a value it cannot read is left out and named in
the row's ``problems``, and :func:`safe_cluster_row` turns any other failure into a flagged row, so
one odd cluster never hides the others from a listing, a sweep or the dashboard.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterInfo
    from discord_ml_platform.spec import GpuCatalog

log = logging.getLogger(__name__)

DEAD_STATUSES = frozenset({"dead", "failed"})
"""Statuses (lower case) of clusters that will never become ready again: the sweeper removes them."""
# Above this a count read from a label or a kept spec is garbage, not a cluster.
_MAX_COUNT = 100_000


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


def _details_of(info: ClusterInfo) -> Mapping[str, Any]:
    return info.details if isinstance(info.details, Mapping) else {}


def _spec_of(info: ClusterInfo) -> Mapping[str, Any]:
    spec = _details_of(info).get("spec")
    return spec if isinstance(spec, Mapping) else {}


def _text(value: object) -> str | None:
    return value if isinstance(value, str) and value else None


def _count(value: object) -> int | None:
    """A non-negative count from a spec or the backend (``None``: missing or not a count)."""
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) < 7:
        value = int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= _MAX_COUNT:
        return value
    return None


def _labels_of(info: ClusterInfo) -> dict[str, str]:
    labels = info.labels if isinstance(info.labels, Mapping) else {}
    return {str(key): str(value) for key, value in labels.items()}


def cluster_row(info: ClusterInfo, catalog: GpuCatalog, now: datetime | None = None) -> dict[str, Any]:
    """Machine-readable facts of one cluster, as ``dmp cluster list -o json`` prints them.

    GPU counts come from the spec the backend kept (``details["spec"]``) when there is one, else
    from the backend's details and the labels (one GPU per worker on a GPU pool). The price is the
    catalog's: per GPU on a GPU pool, per node (head included) on a pool without GPUs. A label or
    kept value that cannot be read (an expiry past the year 9999, a count that is not one) is left
    out and described in ``problems``; it never raises.

    Args:
        info: The cluster as its backend lists it.
        catalog: The GPU catalog in effect (the platform's).
        now: The time ages and expiry are computed at (default: now).
    """
    from discord_ml_platform.spec.labels import DEPLOYMENT, EXPIRES_AT, GPU_TYPE, OWNER, RUN_ID, TEAM, parse_expiry

    now = now or datetime.now(UTC)
    problems: list[str] = []
    labels = _labels_of(info)
    spec = _spec_of(info)
    gpu_type = _text(labels.get(GPU_TYPE)) or _text(spec.get("gpu_type"))
    gpu = catalog.types.get(gpu_type) if gpu_type else None
    raw_per_worker = spec.get("gpus_per_worker", _details_of(info).get("gpus_per_worker"))
    per_worker = _count(raw_per_worker)
    if per_worker is None:
        if raw_per_worker is not None:
            problems.append(f"gpus_per_worker {raw_per_worker!r} is not a count")
        per_worker = 1 if gpu is not None and gpu.has_gpus else 0
    desired, ready = _count(info.desired_workers) or 0, _count(info.ready_workers) or 0
    total = desired * per_worker
    price = None
    if gpu is not None:
        price = round(gpu.cluster_price(desired, per_worker), 4)
    created = info.created_at if isinstance(info.created_at, datetime) else now
    if created is now:
        problems.append("creation time unknown")
    created = created if created.tzinfo else created.replace(tzinfo=UTC)
    raw_expiry = labels.get(EXPIRES_AT)
    expires = parse_expiry(raw_expiry)
    if raw_expiry is not None and expires is None:
        problems.append(f"label {EXPIRES_AT}={raw_expiry!r} is not a time this platform can read: expiry unknown")
    dashboard_url = getattr(info.endpoints, "dashboard_url", None)
    return {
        "name": info.handle.name,
        "namespace": info.handle.namespace,
        "backend": info.handle.backend,
        "owner": labels.get(OWNER),
        "team": labels.get(TEAM),
        "run_id": labels.get(RUN_ID),
        "deployment": labels.get(DEPLOYMENT),
        "gpu_type": gpu_type,
        "gpus_per_worker": per_worker,
        "total_gpus": total,
        "ready_workers": ready,
        "desired_workers": desired,
        "status": str(info.status),
        "created_at": created.isoformat(),
        "age_seconds": round((now - created).total_seconds(), 1),
        "expires_at": expires.isoformat() if expires else None,
        "expired": bool(expires and expires <= now),
        "hourly_price_usd": price,
        "dashboard_url": dashboard_url if isinstance(dashboard_url, str) else None,
        "labels": labels,
        "problems": problems,
    }


def safe_cluster_row(info: ClusterInfo, catalog: GpuCatalog, now: datetime | None = None) -> dict[str, Any]:
    """:func:`cluster_row`, or, when building it fails, a row that still names the cluster and says
    why in ``problems`` (the failure is logged). What every listing uses, so one cluster never
    hides the others."""
    now = now or datetime.now(UTC)
    try:
        return cluster_row(info, catalog, now)
    except Exception as err:
        handle = getattr(info, "handle", None)
        log.exception("could not read cluster %s/%s", getattr(handle, "namespace", "?"), getattr(handle, "name", "?"))
        return fallback_row(info, f"could not read this cluster: {type(err).__name__}: {err}", now)


def fallback_row(info: ClusterInfo, problem: str, now: datetime) -> dict[str, Any]:
    """The row of a cluster that cannot be read: its name and status (read defensively), nothing
    else known, and ``problem`` as its one problem. Building it never raises."""
    handle = getattr(info, "handle", None)
    return {
        "name": str(getattr(handle, "name", "?")),
        "namespace": str(getattr(handle, "namespace", "?")),
        "backend": str(getattr(handle, "backend", "?")),
        **dict.fromkeys(("owner", "team", "run_id", "deployment", "gpu_type", "expires_at", "dashboard_url")),
        **dict.fromkeys(("gpus_per_worker", "total_gpus", "ready_workers", "desired_workers"), 0),
        "status": str(getattr(info, "status", "unknown")),
        "created_at": now.isoformat(),
        "age_seconds": 0.0,
        "expired": False,
        "hourly_price_usd": None,
        "labels": {},
        "problems": [problem],
    }


def display_cells(row: Mapping[str, Any], now: datetime | None = None) -> dict[str, Any]:
    """The text a table shows for one row of :func:`cluster_row` (GPUs, workers, age, expiry, price)."""
    from discord_ml_platform.spec.labels import EXPIRES_AT

    now = now or datetime.now(UTC)
    gpus = row["gpu_type"] or "?"
    if row["total_gpus"]:
        gpus = f"{gpus} x {row['total_gpus']}"
    expires = datetime.fromisoformat(row["expires_at"]) if row["expires_at"] else None
    price = row["hourly_price_usd"]
    unreadable_expiry = expires is None and EXPIRES_AT in (row.get("labels") or {})
    return {
        **row,
        "gpus": gpus,
        "workers": f"{row['ready_workers']}/{row['desired_workers']}",
        "age": human_duration(row["age_seconds"]),
        "expires": "invalid label" if unreadable_expiry else human_until(expires, now),
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


@dataclass(frozen=True)
class SweepRight:
    """What a deployment's sweeper may do with one cluster or RayJob, by its labels.

    Attributes:
        may_delete: Whether any rule may delete it at all.
        expired_only: Only its expiry may delete it (its run id or status are another's to judge).
        reason: Why it is kept, or kept until it expires (empty when it is fully the sweeper's).
    """

    may_delete: bool
    expired_only: bool = False
    reason: str = ""


def sweep_right(labels: Mapping[str, str], deployment: str | None) -> SweepRight:
    """May the sweeper of ``deployment`` delete this cluster or RayJob? The one ownership rule of
    ``dmp cluster sweep`` and the cleanup sensor.

    * A RayCluster that KubeRay made for a RayJob is never swept: its RayJob would fail and, with
      ``backoffLimit``, start another; the RayJob is swept instead (and takes its cluster with it).
    * Another deployment's is kept, even when expired: that deployment's sweeper decides (run ids
      mean something only to the Dagster instance that made them).
    * One without a deployment label (from before deployments were labelled) has no owner to ask:
      only its expiry may delete it, by whichever sweeper sees it first.

    Args:
        labels: Its labels (anything else counts as none: labels are anyone's to edit).
        deployment: The sweeping deployment (``DMP_DEPLOYMENT``); ``None``: every deployment's
            (``dmp cluster sweep --all-deployments``), unlabelled ones included.
    """
    from discord_ml_platform.spec.labels import (
        DEPLOYMENT,
        ORIGIN_CRD_LABEL,
        ORIGIN_NAME_LABEL,
        ORIGIN_RAYJOB,
        label_value,
    )

    labels = labels if isinstance(labels, Mapping) else {}
    if labels.get(ORIGIN_CRD_LABEL) == ORIGIN_RAYJOB:
        return SweepRight(False, reason=f"belongs to RayJob {labels.get(ORIGIN_NAME_LABEL)}")
    if deployment is None:
        return SweepRight(True)
    owner = labels.get(DEPLOYMENT)
    if owner is None:
        return SweepRight(
            True,
            expired_only=True,
            reason="no deployment label (created before deployments): deleted only when expired",
        )
    if owner != label_value(deployment):
        return SweepRight(False, reason=f"belongs to deployment {owner}")
    return SweepRight(True)


__all__ = [
    "DEAD_STATUSES",
    "SweepRight",
    "cluster_row",
    "cost_so_far",
    "display_cells",
    "fallback_row",
    "human_duration",
    "human_until",
    "safe_cluster_row",
    "sweep_reason",
    "sweep_right",
]
