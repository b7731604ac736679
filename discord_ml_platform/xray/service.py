"""The service layer: backends' ``ClusterInfo`` turned into the dashboard's view models.

Prices and row facts come from the core's :func:`~discord_ml_platform.fleet.cluster_row` (with the
catalog in effect, ``settings.platform_config``), as ``dmp cluster list``'s do, so the two never
disagree. Cost so far is the hourly price times the hours since the cluster was created.

One cluster never blinds the dashboard: a view that cannot be built is logged and shown flagged
(built from the core's fallback row; its phase says why), and a listing that fails in the
background is logged and reported with the listing's backend errors, while the last good views
stay on screen.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from urllib.parse import quote, urlsplit

from discord_ml_platform.backends import ClusterBackend, ClusterInfo
from discord_ml_platform.fleet import cost_so_far, display_cells, fallback_row, safe_cluster_row
from discord_ml_platform.xray.models import (
    BackendError,
    ClusterDetail,
    ClusterList,
    ClusterView,
    ConditionView,
    EventView,
    Totals,
)
from discord_ml_platform.xray.settings import XRaySettings

log = logging.getLogger(__name__)
_T = TypeVar("_T")

# What a cluster page shows of a kept spec. ``env`` is left out on purpose: it may hold secrets.
SPEC_FIELDS = (
    "gpu_type",
    "gpus_per_worker",
    "workers",
    "min_workers",
    "max_workers",
    "cpus_per_worker",
    "memory_per_worker",
    "head_cpus",
    "head_memory",
    "object_store_memory",
    "image",
    "ray_version",
    "ttl",
    "service_account",
    "autoscaling",
)


@dataclass
class _Snapshot:
    """One listing of every backend, and the views built from it."""

    taken: float
    infos: list[ClusterInfo]
    errors: list[BackendError]
    views: list[ClusterView]
    at: datetime


class ClusterNotFoundError(LookupError):
    """No cluster with that backend, namespace and name."""


@dataclass(frozen=True)
class ClusterFilters:
    """Filters of the list; ``None`` or empty matches everything."""

    owner: str | None = None
    status: str | None = None
    gpu_type: str | None = None
    team: str | None = None
    backend: str | None = None

    def matches(self, view: ClusterView) -> bool:
        """Whether ``view`` passes every filter that is set."""
        wanted = {
            "owner": self.owner,
            "status": self.status,
            "gpu_type": self.gpu_type,
            "team": self.team,
            "backend": self.backend,
        }
        return all(not value or getattr(view, key) == value for key, value in wanted.items())

    def as_dict(self) -> dict[str, str | None]:
        """The filters as a plain dict (echoed in responses)."""
        return {
            "owner": self.owner,
            "status": self.status,
            "gpu_type": self.gpu_type,
            "team": self.team,
            "backend": self.backend,
        }


def safe_http_url(url: str | None) -> str | None:
    """``url`` when it is an absolute http(s) URL, else ``None`` (never a ``javascript:`` link)."""
    if not url:
        return None
    parts = urlsplit(url)
    return url if parts.scheme in ("http", "https") and parts.netloc else None


def cluster_key(info: ClusterInfo) -> str:
    """``backend/namespace/name``."""
    return f"{info.handle.backend}/{info.handle.namespace}/{info.handle.name}"


def phase_of(info: ClusterInfo) -> str:
    """A finer state than ``status``: missing workers, the head's readiness or the status reason."""
    details = info.details if isinstance(info.details, Mapping) else {}
    status = str(info.status).lower()
    if status == "ready":
        if info.ready_workers < info.desired_workers:
            return f"workers {info.ready_workers}/{info.desired_workers}"
        return "running"
    if details.get("reason"):
        return str(details["reason"])
    if str(details.get("head_pod_ready")) == "True":
        return f"head ready, workers {info.ready_workers}/{info.desired_workers}"
    conditions = details.get("conditions")
    for cond in reversed(list(conditions) if isinstance(conditions, (list, tuple)) else []):
        if isinstance(cond, Mapping) and cond.get("reason"):
            return str(cond["reason"])
    return status


class ClusterService:
    """Lists, describes and deletes clusters across backends.

    Args:
        backends: Backends by name (``local``, ``kuberay``).
        settings: Dashboard settings (catalog, Dagster URL, cache TTL).
    """

    def __init__(self, backends: Mapping[str, ClusterBackend], settings: XRaySettings) -> None:
        self.backends = dict(backends)
        self.settings = settings
        self._refresh_lock = threading.Lock()
        self._snapshot: _Snapshot | None = None
        self._generation = 0  # listings completed; a reader that waited on one in flight takes it
        self._invalidations = 0

    # --- reading -----------------------------------------------------------------------------

    def infos(self, fresh: bool = False) -> tuple[list[ClusterInfo], list[BackendError]]:
        """Every backend's clusters, and the backends that failed to list.

        A listing younger than ``cache_ttl_s`` is reused as it is. An older one, up to
        ``max_stale_s``, is served while a background thread lists again (stale while
        revalidate), so a slow API server never sits in a browser's request; anything older is
        listed before answering. ``fresh`` always lists.
        """
        snap = self._current(fresh)
        return snap.infos, snap.errors

    def _current(self, fresh: bool = False) -> _Snapshot:
        snap = self._snapshot
        ttl = self.settings.cache_ttl_s
        if not fresh and snap is not None and ttl > 0:
            age = time.monotonic() - snap.taken
            if age < ttl:
                return snap
            if age < max(ttl, self.settings.max_stale_s):
                self._refresh_in_background()
                return snap
        return self._refresh(self._generation)

    def _refresh(self, seen_generation: int) -> _Snapshot:
        with self._refresh_lock:  # one listing at a time; who waited for it takes its result
            snap = self._snapshot
            if snap is not None and self._generation != seen_generation:
                return snap
            taken = time.monotonic()
            invalidations = self._invalidations
            infos: list[ClusterInfo] = []
            errors: list[BackendError] = []
            try:
                for name, backend in self.backends.items():
                    try:
                        infos.extend(backend.list())
                    except Exception as err:  # one unreachable backend must not hide the others
                        log.warning("listing backend %s failed: %s", name, err)
                        errors.append(BackendError(backend=name, message=str(err) or type(err).__name__))
                # Views are built here, once per listing (in the background thread when revalidating),
                # so a request only filters and serializes. Ages and costs are as of the listing.
                now = datetime.now(UTC)
                views = sorted((self.view(i, now) for i in infos), key=lambda v: (v.backend, v.namespace, v.name))
            except Exception as err:  # a bug here must neither kill the refresh thread nor answer 500
                log.exception("listing clusters failed")
                now = datetime.now(UTC)
                infos, views = (snap.infos, snap.views) if snap is not None else ([], [])
                errors.append(BackendError(backend="xray", message=f"listing failed: {type(err).__name__}: {err}"))
                taken = snap.taken if snap is not None else taken  # stale stays stale: try again soon
            if invalidations != self._invalidations:  # a delete happened meanwhile: never reuse this one
                taken = float("-inf")
            self._snapshot = _Snapshot(taken, infos, errors, views, now)
            self._generation += 1
            return self._snapshot

    def _refresh_in_background(self) -> None:
        if self._refresh_lock.locked():
            return
        threading.Thread(
            # _refresh catches and reports what a listing raises: nothing is left for the thread to lose.
            target=self._refresh,
            args=(self._generation,),
            name="xray-list-refresh",
            daemon=True,
        ).start()

    def wait_idle(self, timeout_s: float = 30.0) -> bool:
        """Wait until no listing is in flight (before closing the backends); ``False`` on timeout."""
        if self._refresh_lock.acquire(timeout=timeout_s):
            self._refresh_lock.release()
            return True
        return False

    def invalidate(self) -> None:
        """Forget the listing (after a delete): the next reader lists again."""
        self._invalidations += 1
        self._snapshot = None

    def views(self) -> tuple[list[ClusterView], list[BackendError], datetime]:
        """View models of every cluster (sorted by backend, namespace, name), the failed backends,
        and the time the views were computed at."""
        snap = self._current()
        return snap.views, snap.errors, snap.at

    def view(self, info: ClusterInfo, now: datetime | None = None) -> ClusterView:
        """The list's view of one cluster; never fails on what the cluster holds.

        What cannot be read of it is named in its phase; a view that cannot be built at all is
        logged and shown flagged: its name and status from the core's fallback row, and why.
        """
        now = now or datetime.now(UTC)
        try:
            row = safe_cluster_row(info, self.settings.platform_config.catalog, now)
            phase = phase_of(info) + (f" [{'; '.join(row['problems'])}]" if row["problems"] else "")
            return self._view_of(row, phase, now)
        except Exception as err:
            log.exception("building the view of cluster %s failed", _describe(info))
            problem = f"could not show this cluster: {type(err).__name__}: {err}"
            return self._view_of(fallback_row(info, problem, now), problem, now, machine="?")

    def _view_of(self, row: Mapping[str, Any], phase: str, now: datetime, machine: str | None = None) -> ClusterView:
        """The view of a :func:`~discord_ml_platform.fleet.cluster_row` (``machine``: shown instead of
        the hardware the row names)."""
        cells = display_cells(row, now)
        if machine is None:
            machine = f"{row['gpu_type'] or '?'}"
            if row["gpus_per_worker"]:
                machine += f" x {row['gpus_per_worker']}"
            machine += f", workers {row['ready_workers']}/{row['desired_workers']}"
        run_id = row["run_id"]
        run_url = None
        if run_id and self.settings.dagster_url:
            run_url = safe_http_url(f"{self.settings.dagster_url.rstrip('/')}/runs/{quote(run_id, safe='')}")
        key = f"{row['backend']}/{row['namespace']}/{row['name']}"
        return ClusterView(
            key=key,
            backend=row["backend"],
            name=row["name"],
            namespace=row["namespace"],
            owner=row["owner"],
            team=row["team"],
            run_id=run_id,
            gpu_type=row["gpu_type"],
            gpus_per_worker=row["gpus_per_worker"],
            total_gpus=row["total_gpus"],
            ready_workers=row["ready_workers"],
            desired_workers=row["desired_workers"],
            machine=machine,
            status=str(row["status"]),
            phase=phase,
            created_at=row["created_at"],
            age_seconds=row["age_seconds"],
            age=cells["age"],
            expires_at=row["expires_at"],
            expires=cells["expires"],
            expired=row["expired"],
            hourly_price_usd=row["hourly_price_usd"],
            cost_so_far_usd=cost_so_far(row),
            dashboard_url=safe_http_url(row["dashboard_url"]),
            dagster_run_url=run_url,
            detail_url="/clusters/" + "/".join(quote(p, safe="") for p in key.split("/")),
            labels={str(k): str(v) for k, v in row["labels"].items()},
        )

    def list_clusters(self, filters: ClusterFilters | None = None) -> ClusterList:
        """Clusters matching ``filters``, sorted by backend, namespace and name, with totals."""
        filters = filters or ClusterFilters()
        views, errors, now = self.views()
        choices = {
            "owner": sorted({v.owner for v in views if v.owner}),
            "status": sorted({v.status for v in views}),
            "gpu_type": sorted({v.gpu_type for v in views if v.gpu_type}),
            "team": sorted({v.team for v in views if v.team}),
            "backend": sorted(self.backends),
        }
        shown = [v for v in views if filters.matches(v)]
        totals = Totals(
            clusters=len(shown),
            gpus=sum(v.total_gpus for v in shown),
            cost_per_hour_usd=round(sum(v.hourly_price_usd or 0 for v in shown), 2),
            cost_so_far_usd=round(sum(v.cost_so_far_usd or 0 for v in shown), 2),
        )
        return ClusterList(
            clusters=shown,
            totals=totals,
            errors=errors,
            filters=filters.as_dict(),
            choices=choices,
            generated_at=now.isoformat(),
        )

    def find(self, backend: str, namespace: str, name: str) -> ClusterInfo:
        """The cluster, freshly listed from its backend.

        Raises:
            ClusterNotFoundError: unknown backend or no such cluster.
        """
        from discord_ml_platform.spec.labels import CLUSTER, label_value

        chosen = self.backends.get(backend)
        if chosen is None:
            raise ClusterNotFoundError(f"unknown backend {backend!r}")
        matches = [
            i
            for i in chosen.list({CLUSTER: label_value(name)})
            if i.handle.name == name and i.handle.namespace == namespace
        ]
        if not matches:  # created without our labels (e.g. by kubectl)
            matches = [i for i in chosen.list() if i.handle.name == name and i.handle.namespace == namespace]
        if not matches:
            raise ClusterNotFoundError(f"no cluster {namespace}/{name} on backend {backend}")
        return matches[0]

    def detail(self, info: ClusterInfo) -> ClusterDetail:
        """Spec summary, conditions and events of one cluster (entries that cannot be read are left out)."""
        view = self.view(info)
        details: Mapping[str, Any] = info.details if isinstance(info.details, Mapping) else {}
        kept_spec = details.get("spec")
        kept: Mapping[str, Any] = kept_spec if isinstance(kept_spec, Mapping) else {}
        spec: dict[str, Any] = {k: kept[k] for k in SPEC_FIELDS if kept.get(k) is not None}
        spec.setdefault("gpu_type", view.gpu_type)
        spec.setdefault("gpus_per_worker", view.gpus_per_worker)
        spec.setdefault("workers", view.desired_workers)
        spec["total_gpus"] = view.total_gpus
        head = details.get("head")
        if isinstance(head, Mapping):
            spec.update({f"head.{k}": str(v) for k, v in sorted(head.items()) if isinstance(v, (str, int))})
        conditions = _readable(
            lambda c: ConditionView(
                type=str(c.get("type")),
                status=str(c.get("status")),
                reason=c.get("reason"),
                message=c.get("message"),
                last_transition=c.get("lastTransitionTime"),
            ),
            details.get("conditions"),
        )
        events = _readable(
            lambda e: EventView(**{k: e.get(k) for k in EventView.model_fields if e.get(k) is not None}),
            details.get("events"),
        )
        return ClusterDetail(
            cluster=view,
            spec=spec,
            conditions=conditions,
            events=events,
            gcs_address=info.endpoints.gcs_address if info.endpoints else None,
        )

    # --- changing ----------------------------------------------------------------------------

    def delete(self, info: ClusterInfo) -> None:
        """Tear the cluster down the way every other caller does: ``backend.delete``."""
        self.backends[info.handle.backend].delete(info.handle, timeout_s=self.settings.delete_timeout_s)
        self.invalidate()


def _describe(info: ClusterInfo) -> str:
    handle = getattr(info, "handle", None)
    return f"{getattr(handle, 'backend', '?')}/{getattr(handle, 'namespace', '?')}/{getattr(handle, 'name', '?')}"


def _readable(build: Callable[[Mapping[str, Any]], _T], items: object) -> list[_T]:
    """``build(item)`` for each mapping in ``items``; an item it cannot build is logged and left out."""
    built: list[_T] = []
    for item in items if isinstance(items, (list, tuple)) else []:
        if not isinstance(item, Mapping):
            continue
        try:
            built.append(build(item))
        except Exception as err:
            log.warning("left out an unreadable status entry: %s", err)
    return built
