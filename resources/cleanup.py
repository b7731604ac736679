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

Ownership: every cluster carries the deployment it belongs to (``mlplatform.discord.com/deployment``,
from ``DMP_DEPLOYMENT``). Run ids are only meaningful to the Dagster instance that made them, so the
sensor touches only clusters of its own deployment: another deployment's cluster is kept ("belongs
to deployment X"), even when expired, since that deployment's sensor sweeps it. A cluster without
the label (created before deployments were labelled) has no owner to ask: only its expiry may delete
it, by whichever sensor sees it first, never its run id. ``dmp cluster sweep`` follows the same rule
(:func:`~discord_ml_platform.fleet.sweep_right`).

One cluster never stops the sweep: a failure to decide on or delete one is logged and counted as
failed, and the others are still swept (the next evaluation tries it again).

On the kuberay backend it sweeps RayJobs (RayJob mode) the same way, by the same labels, which
the RayJob carries: a RayJob whose run finished or is gone, or whose expiry passed, is deleted, and
its RayCluster with it (KubeRay's owner reference). The RayCluster of a RayJob is never deleted on
its own: its RayJob would just fail and, with ``backoffLimit``, start another one.

The backend is the platform's (``DMP_BACKEND`` and friends), opened for each evaluation and closed
after it; RayJobs are swept on any backend that has the RayJob capability.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Protocol, TypeVar

import dagster as dg

from discord_ml_platform.backends import ClusterBackend
from discord_ml_platform.backends.rayjobs import RayJobCapable, RayJobs
from discord_ml_platform.fleet import sweep_right
from discord_ml_platform.platform import current_platform
from discord_ml_platform.spec.labels import (
    EXPIRES_AT,
    MANAGED_BY,
    MANAGED_BY_VALUE,
    RUN_ID,
    label_value,
    parse_expiry,
)

TERMINAL_STATUSES = frozenset({dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED})
ACTIVE_STATUSES = [s for s in dg.DagsterRunStatus if s not in TERMINAL_STATUSES]


def active_run_labels(instance: dg.DagsterInstance) -> set[str]:
    """Label values of every run that has not finished (queued, starting, started, canceling...)."""
    runs = instance.get_runs(filters=dg.RunsFilter(statuses=ACTIVE_STATUSES))
    return {label_value(run.run_id) for run in runs}


class Labelled(Protocol):
    """What a decision needs: a cluster (``ClusterInfo``) or a RayJob (``RayJobInfo``)."""

    @property
    def labels(self) -> Mapping[str, str]: ...

    @property
    def created_at(self) -> datetime: ...


@dataclass(frozen=True)
class CleanupDecision:
    """Whether one cluster goes, and why."""

    delete: bool
    reason: str


def decide(
    info: Labelled,
    instance: dg.DagsterInstance,
    now: datetime,
    grace_period: timedelta = timedelta(0),
    active_labels: set[str] | None = None,
    *,
    deployment: str,
) -> CleanupDecision:
    """Decide the fate of one platform-managed cluster or RayJob.

    Args:
        info: The cluster as the backend lists it, or a RayJob as ``KubeRayJobs.list`` does.
        instance: The Dagster instance whose runs the run id labels refer to.
        now: The current time (UTC).
        grace_period: Clusters younger than this are only deleted when expired.
        active_labels: ``label_value(run_id)`` of every unfinished run (see :func:`active_run_labels`);
            looked up when ``None``.
        deployment: The sweeping deployment (``DMP_DEPLOYMENT``, worked out once by the sensor). What it
            may sweep is :func:`~discord_ml_platform.fleet.sweep_right`'s to say: never another
            deployment's or a RayJob's cluster; one without the deployment label only when expired.
    """
    right = sweep_right(info.labels, deployment)
    if not right.may_delete:
        return CleanupDecision(False, right.reason)
    expires = parse_expiry(info.labels.get(EXPIRES_AT))
    if expires is not None and expires <= now:
        return CleanupDecision(True, f"expired at {expires.isoformat()}")
    if right.expired_only:  # e.g. from before deployments were labelled: its run id may be another instance's
        return CleanupDecision(False, right.reason)
    run_label = info.labels.get(RUN_ID)
    if not run_label:
        return CleanupDecision(False, "no run id label and not expired")
    created = info.created_at if info.created_at.tzinfo else info.created_at.replace(tzinfo=UTC)
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


@dataclass
class Sweep:
    """What one sweep of one kind of object did, for the sensor's skip reason."""

    noun: str
    checked: int = 0
    deleted: list[str] = field(default_factory=list)
    kept: list[str] = field(default_factory=list)
    failed: list[str] = field(default_factory=list)

    def summary(self) -> str:
        """``checked N <noun>: deleted D [...], kept K, failed F [...]``."""
        return (
            f"checked {self.checked} {self.noun}: deleted {len(self.deleted)}"
            + (f" [{'; '.join(self.deleted)}]" if self.deleted else "")
            + f", kept {len(self.kept)}"
            + (f", failed {len(self.failed)} [{', '.join(self.failed)}]" if self.failed else "")
        )


_Item = TypeVar("_Item", bound=Labelled)


def _sweep(
    items: Sequence[_Item],
    context: dg.SensorEvaluationContext,
    now: datetime,
    grace_period: timedelta,
    deployment: str,
    *,
    noun: str,
    what: str,
    where: Callable[[_Item], str],
    delete: Callable[[_Item], object],
    deleted_note: Callable[[_Item], str],
) -> Sweep:
    """Decide on each of ``items`` (:func:`decide`), delete the condemned, log and count both.

    Args:
        items: The listed clusters or RayJobs.
        noun: What the summary counts, e.g. ``kuberay cluster(s)``.
        what: What the log calls one item, e.g. ``Ray cluster``.
        where: ``namespace/name`` of an item.
        delete: Deletes an item.
        deleted_note: Text after the name in the log line of a deletion (``" on kuberay"``).
    """
    done = Sweep(noun, len(items))
    active = active_run_labels(context.instance) if items else set()
    for item in items:
        label = where(item)
        try:
            decision = decide(item, context.instance, now, grace_period, active, deployment=deployment)
        except Exception as err:  # one odd object must not stop the sweep of the others
            done.failed.append(label)
            context.log.error(f"could not decide on {what} {label}: {type(err).__name__}: {err}")
            continue
        if not decision.delete:
            done.kept.append(label)
            context.log.debug(f"keeping {what} {label}: {decision.reason}")
            continue
        try:
            delete(item)
        except Exception as err:  # try the others; the next evaluation retries this one
            done.failed.append(label)
            context.log.error(f"could not delete {what} {label} ({decision.reason}): {err}")
            continue
        done.deleted.append(f"{label} ({decision.reason})")
        context.log.info(f"deleted {what} {label}{deleted_note(item)}: {decision.reason}")
    return done


def sweep_clusters(
    backend: ClusterBackend,
    context: dg.SensorEvaluationContext,
    now: datetime,
    grace_period: timedelta,
    delete_timeout_s: float,
    deployment: str,
) -> Sweep:
    """Delete the platform's clusters that :func:`decide` condemns; a RayJob's cluster is left to its RayJob.

    ``deployment``: the sweeping deployment; see :func:`decide`.
    """
    return _sweep(
        backend.list({MANAGED_BY: MANAGED_BY_VALUE}),
        context,
        now,
        grace_period,
        deployment,
        noun=f"{backend.name} cluster(s)",
        what="Ray cluster",
        where=lambda info: f"{info.handle.namespace}/{info.handle.name}",
        delete=lambda info: backend.delete(info.handle, timeout_s=delete_timeout_s),
        deleted_note=lambda _: f" on {backend.name}",
    )


def sweep_rayjobs(
    jobs: RayJobs,
    context: dg.SensorEvaluationContext,
    now: datetime,
    grace_period: timedelta,
    deployment: str,
    *,
    all_namespaces: bool | None = None,
) -> Sweep:
    """Delete the platform's RayJobs that :func:`decide` condemns (KubeRay deletes their clusters).

    ``all_namespaces``: ``None`` sweeps the scope ``jobs`` was made with (its backend's).
    ``deployment``: the sweeping deployment; see :func:`decide`.
    """
    return _sweep(
        jobs.list({MANAGED_BY: MANAGED_BY_VALUE}, all_namespaces=all_namespaces),
        context,
        now,
        grace_period,
        deployment,
        noun="RayJob(s)",
        what="RayJob",
        where=lambda info: f"{info.namespace}/{info.name}",
        delete=lambda info: jobs.delete(info.name, namespace=info.namespace),
        deleted_note=lambda info: f" ({info.state.deployment_status or 'New'}) and with it its cluster",
    )


def build_cluster_cleanup_sensor(
    name: str = "ray_cluster_cleanup_sensor",
    backend_factory: Callable[[], ClusterBackend] | None = None,
    minimum_interval_seconds: int = 60,
    *,
    delete_timeout_s: float = 120,
    grace_period: timedelta = timedelta(0),
    sweep_rayjobs_too: bool = True,
    default_status: dg.DefaultSensorStatus = dg.DefaultSensorStatus.RUNNING,
    deployment: str | None = None,
) -> dg.SensorDefinition:
    """A sensor that deletes leaked or expired Ray clusters (and, on kuberay, RayJobs) of the platform.

    Args:
        name: Sensor name.
        backend_factory: Returns the backend to sweep (closed after each evaluation); default: the
            platform's (``DMP_BACKEND``, in ``DMP_NAMESPACE``).
        minimum_interval_seconds: Seconds between evaluations.
        delete_timeout_s: How long each cluster deletion may take.
        grace_period: Clusters and RayJobs younger than this are only deleted when expired.
        sweep_rayjobs_too: On a backend that runs RayJobs, also sweep them (same scope, same rules).
        default_status: Whether the sensor runs as soon as the code location loads.
        deployment: The deployment whose clusters this sensor owns (default: ``DMP_DEPLOYMENT`` at
            each evaluation); others' are kept, unlabelled ones go only when expired.

    Returns:
        The sensor definition; it never requests runs.
    """

    def factory() -> ClusterBackend:
        if backend_factory is not None:
            return backend_factory()
        # Namespace-scoped, like the run pods' Role: list and delete in DMP_NAMESPACE only.
        return current_platform().open_backend()

    @dg.sensor(
        name=name,
        minimum_interval_seconds=minimum_interval_seconds,
        default_status=default_status,
        description="Deletes Ray clusters and RayJobs whose Dagster run is gone or finished, or whose expiry passed.",
    )
    def cleanup_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        backend = factory()
        try:
            now = datetime.now(UTC)
            own = deployment or current_platform().settings.deployment
            sweeps: list[Callable[[], Sweep]] = [
                lambda: sweep_clusters(backend, context, now, grace_period, delete_timeout_s, own)
            ]
            if sweep_rayjobs_too and isinstance(backend, RayJobCapable):
                rayjobs = backend.rayjobs()
                sweeps.append(lambda: sweep_rayjobs(rayjobs, context, now, grace_period, own))
            summaries, errors = [], []
            for run_sweep in sweeps:  # a listing that fails must not keep the other kind from its sweep
                try:
                    summaries.append(run_sweep().summary())
                except Exception as err:
                    errors.append(err)
                    context.log.error(f"sweep failed: {type(err).__name__}: {err}")
            if errors:  # reported as a failed tick, after sweeping what could be swept
                context.log.info("; ".join(summaries) or "nothing swept")
                raise errors[0]
            return dg.SkipReason("; ".join(summaries))
        finally:
            backend.close()

    return cleanup_sensor
