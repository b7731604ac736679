"""Clusters as the commands show them: lookup by name, list rows, prices from the catalog."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from discord_ml_platform.cli.errors import CliError, UsageProblem
from discord_ml_platform.cli.output import human_duration, human_until

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend, ClusterInfo
    from discord_ml_platform.spec import GpuCatalog

LIST_COLUMNS = (
    ("name", "NAME"),
    ("namespace", "NAMESPACE"),
    ("owner", "OWNER"),
    ("gpus", "GPUS"),
    ("workers", "WORKERS"),
    ("status", "STATUS"),
    ("age", "AGE"),
    ("expires", "EXPIRES"),
    ("price", "$/HOUR"),
)
DEAD_STATUSES = frozenset({"dead", "failed"})


def find_cluster(backend: ClusterBackend, name: str, namespace: str | None = None) -> ClusterInfo:
    """The cluster called ``name`` (in ``namespace`` when given, else in whichever namespace holds it).

    Raises:
        CliError: when there is none (exit 1).
        UsageProblem: when several namespaces hold one and no namespace was given.
    """
    from discord_ml_platform.spec.labels import CLUSTER, label_value

    matches = [i for i in backend.list({CLUSTER: label_value(name)}) if i.handle.name == name]
    if not matches:  # created without our labels (e.g. by kubectl): look at everything
        matches = [i for i in backend.list() if i.handle.name == name]
    if namespace:
        matches = [i for i in matches if i.handle.namespace == namespace]
    if not matches:
        where = f" in namespace {namespace!r}" if namespace else ""
        raise CliError(
            f"no cluster named {name!r}{where} on backend {backend.name}",
            hint="list the clusters with `dmp cluster list -A`",
        )
    if len(matches) > 1:
        spaces = ", ".join(sorted(i.handle.namespace for i in matches))
        raise UsageProblem(f"clusters named {name!r} exist in several namespaces ({spaces})", hint="pass --namespace")
    return matches[0]


def _spec_of(info: ClusterInfo) -> Mapping[str, Any]:
    spec = info.details.get("spec") if isinstance(info.details, Mapping) else None
    return spec if isinstance(spec, Mapping) else {}


def cluster_row(info: ClusterInfo, catalog: GpuCatalog, now: datetime | None = None) -> dict[str, Any]:
    """Machine-readable facts of one cluster, as ``list -o json`` prints them.

    GPU counts and prices come from the spec the backend kept (``details["spec"]``) when there is
    one, else from the labels and the catalog (one GPU per worker on a GPU pool).
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
    """The table's text for one row of :func:`cluster_row`."""
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


def sweep_reason(row: Mapping[str, Any]) -> str | None:
    """Why the sweeper removes a cluster (expired, dead), or ``None`` to keep it."""
    if row["expired"]:
        return f"expired at {row['expires_at']}"
    if str(row["status"]).lower() in DEAD_STATUSES:
        return f"status {row['status']}"
    return None
