"""The cleanup sensor: deletes Ray clusters that a killed or finished run left behind.

A run deletes its cluster in a ``finally`` (see :class:`~resources.ray_cluster.RayClusterResource`);
a step process that is SIGKILLed, or a machine that dies, cannot. Every cluster the platform
creates carries ``app.kubernetes.io/managed-by``, the Dagster run id and an expiry as labels, so
this sensor finds leftovers on any backend and deletes a cluster when

* its expiry has passed, or
* it names a Dagster run that this instance does not know, or whose run has finished
  (``SUCCESS``, ``FAILURE``, ``CANCELED``).

A cluster whose run is still in progress and whose expiry has not passed is never touched.
Clusters without a run id label (created with the CLI) are deleted only when expired. The sensor
launches no runs: it reports what it did in its skip reason and the sensor's log.

Wire it with the backend the code location uses::

    cleanup = build_cluster_cleanup_sensor(backend_factory=ray_cluster_resource.build_backend)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone

import dagster as dg

from discord_ml_platform.backends import ClusterBackend, ClusterInfo
from discord_ml_platform.spec.labels import EXPIRES_AT, MANAGED_BY, MANAGED_BY_VALUE, RUN_ID, label_value, parse_expiry

TERMINAL_STATUSES = frozenset({dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE,
                               dg.DagsterRunStatus.CANCELED})
ACTIVE_STATUSES = [s for s in dg.DagsterRunStatus if s not in TERMINAL_STATUSES]


def active_run_labels(instance: dg.DagsterInstance) -> set[str]:
    """Label values of every run that has not finished (queued, starting, started, canceling...)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES))
    return {label_value(run.run_id) for run in runs}


@dataclass(frozen=True)
class CleanupDecision:
    """Whether one cluster goes, and why."""

    delete: bool
    reason: str


def decide(info: ClusterInfo, instance: dg.DagsterInstance, now: datetime,
           grace_period: timedelta = timedelta(0), active_labels: set[str] | None = None) -> CleanupDecision:
    """Decide the fate of one platform-managed cluster.

    Args:
        info: The cluster as the backend lists it.
        instance: The Dagster instance whose runs the run id labels refer to.
        now: The current time (UTC).
        grace_period: Clusters younger than this are only deleted when expired.
        active_labels: ``label_value(run_id)`` of every unfinished run (see :func:`active_run_labels`);
            looked up when ``None``.
    """
    expires = parse_expiry(info.labels.get(EXPIRES_AT))
    if expires is not None and expires <= now:
        return CleanupDecision(True, f"expired at {expires.isoformat()}")
    run_label = info.labels.get(RUN_ID)
    if not run_label:
        return CleanupDecision(False, "no run id label and not expired")
    created = info.created_at if info.created_at.tzinfo else info.created_at.replace(tzinfo=timezone.utc)
    if now - created < grace_period:
        return CleanupDecision(False, f"younger than the {grace_period} grace period")
    if run_label in (active_run_labels(instance) if active_labels is None else active_labels):
        return CleanupDecision(False, f"run {run_label} is in progress")
    # Run ids are UUIDs, valid label values as they are, so the label is the run id.
    run = instance.get_run_by_id(run_label)
    if run is None:
        return CleanupDecision(True, f"run {run_label} does not exist")
    if run.status in TERMINAL_STATUSES:
        return CleanupDecision(True, f"run {run_label} finished ({run.status.value})")
    return CleanupDecision(False, f"run {run_label} is {run.status.value}")


def build_cluster_cleanup_sensor(
    name: str = "ray_cluster_cleanup_sensor",
    backend_factory: Callable[[], ClusterBackend] | None = None,
    minimum_interval_seconds: int = 60,
    *,
    delete_timeout_s: float = 120,
    grace_period: timedelta = timedelta(0),
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
) -> dg.SensorDefinition:
    """A sensor that deletes leaked or expired Ray clusters of the platform.

    Args:
        name: Sensor name.
        backend_factory: Returns the backend to sweep, e.g. ``RayClusterResource(...).build_backend``;
            default: the ``local`` backend.
        minimum_interval_seconds: Seconds between evaluations.
        delete_timeout_s: How long each deletion may take.
        grace_period: Clusters younger than this are only deleted when expired (use it when
            several Dagster deployments share one Kubernetes cluster and label selector).
        default_status: Whether the sensor runs as soon as the code location loads.

    Returns:
        The sensor definition; it never requests runs.
    """

    def factory() -> ClusterBackend:
        if backend_factory is not None:
            return backend_factory()
        from discord_ml_platform.backends import get_backend

        return get_backend("local")

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Deletes Ray clusters whose Dagster run is gone or finished, or whose expiry passed.",
    )
    def cleanup_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        backend = factory()
        now = datetime.now(timezone.utc)
        clusters = backend.list({MANAGED_BY: MANAGED_BY_VALUE})
        active = active_run_labels(context.instance) if clusters else set()
        deleted, kept, failed = [], [], []
        for info in clusters:
            label = f"{info.handle.namespace}/{info.handle.name}"
            decision = decide(info, context.instance, now, grace_period, active)
            if not decision.delete:
                kept.append(label)
                context.log.debug(f"keeping Ray cluster {label}: {decision.reason}")
                continue
            try:
                backend.delete(info.handle, timeout_s=delete_timeout_s)
            except Exception as err:  # try the others; the next evaluation retries this one
                failed.append(label)
                context.log.error(f"could not delete Ray cluster {label} ({decision.reason}): {err}")
                continue
            deleted.append(f"{label} ({decision.reason})")
            context.log.info(f"deleted Ray cluster {label} on {backend.name}: {decision.reason}")
        summary = (f"checked {len(clusters)} {backend.name} cluster(s): deleted {len(deleted)}"
                   + (f" [{'; '.join(deleted)}]" if deleted else "")
                   + f", kept {len(kept)}" + (f", failed {len(failed)} [{', '.join(failed)}]" if failed else ""))
        return dg.SkipReason(summary)

    return cleanup_sensor
