"""RayJob mode: a workload submitted as a KubeRay ``RayJob``, so KubeRay owns its cluster's life.

In RayCluster mode (the default) the run creates a cluster, submits jobs to it and deletes it in a
``finally``; a killed run process leaves the cluster to the cleanup sensor. In RayJob mode the
asset hands KubeRay one ``ray.io/v1`` RayJob, rendered from the same ``ClusterSpec`` (policy
applied) with the workload's entrypoint and its Pipes runtime env; KubeRay creates the cluster,
runs the entrypoint, and deletes the cluster ``ttl_seconds_after_finished`` after the job ends,
or stops it at ``active_deadline_seconds``, whether or not this process still runs.

The Dagster side follows the RayJob: each ``jobDeploymentStatus``/``jobStatus`` change is logged as a
phase, the job's logs are streamed into the event log through the cluster's dashboard (read from
the RayJob's ``status.dashboardURL``) with the same Pipes handling as RayCluster mode, and the end
maps to step success or a ``Failure`` naming KubeRay's reason (``AppFailed``, ``DeadlineExceeded``,
``SubmissionFailed``...). If the step itself ends early (run terminated, an error in the step), the
RayJob is deleted (or suspended), which takes its cluster with it.

Select it with ``RayClusterResource(mode="rayjob", backend="kuberay", ...)`` and run workloads with
``PipesRayJobClient.run_workload`` (either mode) or ``PipesRayJobClient.run_rayjob``.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable, Generator, Mapping
from typing import TYPE_CHECKING, Any, Literal

import dagster as dg
from pydantic import Field

from discord_ml_platform.spec import ClusterSpec

if TYPE_CHECKING:
    from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs, RayJobState
    from resources.pipes_ray_job import PipesLogLines, PipesRayJobClient
    from resources.ray_cluster import RayClusterResource


class RayJobOptions(dg.Config):
    """How KubeRay treats a RayJob of this resource. Defaults are safe: the cluster is removed after
    the job, kept a short while for its logs, and a job cannot run forever."""

    shutdown_after_job_finishes: bool = Field(
        default=True, description="Delete the cluster after the job ends (after ttl_seconds_after_finished)."
    )
    ttl_seconds_after_finished: int = Field(
        default=60,
        ge=0,
        le=86400,
        description="Seconds the finished job's cluster is kept (its logs stay readable) before KubeRay deletes it.",
    )
    active_deadline_seconds: int | None = Field(
        default=6 * 3600,
        ge=1,
        le=7 * 86400,
        description="KubeRay stops the job and fails the RayJob (DeadlineExceeded) after this many seconds; "
        "None for no deadline.",
    )
    backoff_limit: int = Field(default=0, ge=0, le=100, description="Retries of the whole job, each on a new cluster.")
    on_terminate: Literal["delete", "suspend"] = Field(
        default="delete",
        description="What ending the step early does to the RayJob: 'delete' it (and its cluster) or 'suspend' it "
        "(KubeRay stops the job and deletes the cluster, the RayJob stays for inspection).",
    )


def rayjob_name(spec: ClusterSpec, step_key: str) -> str:
    """A RayJob name per step of a run: the run's cluster name plus a hash of the step.

    Kept at most 41 characters, so KubeRay's ``<name>-<5 chars>`` cluster name stays within 47.
    """
    digest = hashlib.sha256(step_key.encode()).hexdigest()[:5]
    return f"{spec.name[:35].rstrip('-')}-{digest}"


def run_rayjob(
    client: PipesRayJobClient,
    *,
    context: dg.AssetExecutionContext | dg.OpExecutionContext,
    ray_cluster: RayClusterResource,
    spec: ClusterSpec,
    entrypoint: str,
    runtime_env: Mapping[str, Any] | None = None,
    extras: dict[str, Any] | None = None,
    asset_key: dg.AssetKey | None = None,
) -> Generator[dg.AssetObservation, None, dg.PipesClientCompletedInvocation]:
    """Run ``entrypoint`` as a RayJob on a cluster of ``spec`` and follow it to the end.

    Yields an ``AssetObservation`` per reported epoch while the job runs, and returns the completed
    Pipes invocation (its materialization carries the RayJob's metadata). With
    ``rayjob.backoff_limit`` KubeRay retries a failed job on a new cluster: ``Retrying`` is not an end,
    and the logs of every attempt reach the event log.

    Raises:
        dagster.Failure: the RayJob failed (the description names KubeRay's reason and message and
            the metadata holds the last log lines), or ``ray_cluster`` is not on the kuberay backend.
    """
    from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs, rayjob_submission_id
    from resources.pipes_ray_job import PipesLogLines, RayJobLogMessageReader, pipes_runtime_env

    if ray_cluster.backend != "kuberay":
        raise dg.Failure(
            f"mode='rayjob' needs backend='kuberay' (KubeRay runs the RayJob); got {ray_cluster.backend!r}"
        )
    options = ray_cluster.rayjob
    name = rayjob_name(spec, f"{context.run_id}/{_step_key(context)}")
    spec = spec.model_copy(update={"name": name})
    if asset_key is None and isinstance(context, dg.AssetExecutionContext):
        asset_key = context.asset_key
    log = context.log
    reader = RayJobLogMessageReader()
    jobs = KubeRayJobs(ray_cluster.kubeconfig, ray_cluster.kube_context, namespace=spec.namespace)
    started = time.time()
    try:
        with dg.open_pipes_session(
            context=context, context_injector=dg.PipesEnvContextInjector(), message_reader=reader, extras=extras
        ) as session:
            assert reader.handler is not None
            lines = PipesLogLines(context, reader.handler, asset_key, client.log_tail_on_failure)
            job_id = rayjob_submission_id(name)
            manifest = jobs.render(
                spec,
                entrypoint=entrypoint,
                runtime_env=pipes_runtime_env(session, runtime_env),
                submission_id=job_id,
                job_metadata={"dagster_run_id": context.run_id, "rayjob": name},
                shutdown_after_job_finishes=options.shutdown_after_job_finishes,
                ttl_seconds_after_finished=options.ttl_seconds_after_finished,
                active_deadline_seconds=options.active_deadline_seconds,
                backoff_limit=options.backoff_limit,
            )
            jobs.create(manifest)
            log.info(
                f"created RayJob {spec.namespace}/{name} (Ray job {job_id}): {entrypoint}; KubeRay creates its "
                f"cluster and deletes it {options.ttl_seconds_after_finished}s after the job ends"
            )
            logs = AttemptLogs(lines.on_line, ray_cluster.ray_auth_mode, log)
            try:
                state = yield from _follow(jobs, name, client, options, log, logs, lines)
                logs.finish()  # the last lines, while KubeRay keeps the cluster for the TTL
            except BaseException:
                _stop_early(jobs, name, options.on_terminate, log)
                raise
            yield from lines.drain()
            if not state.succeeded:
                raise dg.Failure(
                    description=f"RayJob {spec.namespace}/{name} {state.deployment_status or 'gone'}"
                    f"{' (' + state.reason + ')' if state.reason else ''}: "
                    f"{state.message or 'the RayJob was deleted before it finished'}",
                    metadata={
                        "rayjob": name,
                        "ray_job_id": job_id,
                        "reason": state.reason,
                        "job_status": state.job_status,
                        "failed_attempts": state.failed_attempts,
                        "last_log_lines": lines.tail(),
                    },
                )
    finally:
        jobs.close()
    metadata: dict[str, Any] = {
        "rayjob": name,
        "ray_job_id": job_id,
        "cluster_name": state.cluster_name,
        "cluster_backend": "kuberay",
        "cluster_mode": "rayjob",
        "cluster_namespace": spec.namespace,
        "gpu_type": spec.gpu_type,
        "gpu_count": spec.total_gpus,
        "cluster_workers": spec.workers,
        "rayjob_wall_seconds": round(time.time() - started, 2),
        "rayjob_attempts": state.failed_attempts + state.succeeded_attempts,
        "log_lines": logs.lines,
        "ttl_seconds_after_finished": options.ttl_seconds_after_finished,
    }
    if state.dashboard_url:
        metadata["ray_dashboard"] = dg.MetadataValue.url(state.dashboard_url)
    return dg.PipesClientCompletedInvocation(session, metadata=metadata)


def _follow(
    jobs: KubeRayJobs,
    name: str,
    client: PipesRayJobClient,
    options: RayJobOptions,
    log: Any,
    logs: AttemptLogs,
    lines: PipesLogLines,
) -> Generator[dg.AssetObservation, None, RayJobState]:
    """Poll the RayJob to its end: log phases and retries, follow each attempt's logs, yield observations.

    Raises:
        RayJobError: the job ran past the client's ``job_timeout_s``.
    """
    from discord_ml_platform.backends.kuberay_rayjob import RayJobState
    from discord_ml_platform.jobs import RayJobError

    deadline = time.monotonic() + client.job_timeout_s
    state = RayJobState(name, jobs.namespace)
    last: tuple[str, str] | None = None
    failures = 0
    for state in jobs.follow(name, client.poll_interval_s):
        if state.phase() != last:
            last = state.phase()
            _log_phase(log, state)
        if state.failed_attempts > failures and not state.finished:
            failures = state.failed_attempts
            log.warning(
                f"rayjob {name}: attempt {failures} of {options.backoff_limit + 1} failed"
                f"{' (' + state.reason + ')' if state.reason else ''}; KubeRay retries the job on a new "
                "cluster"
            )
        logs.update(state)
        yield from lines.drain()
        if time.monotonic() > deadline:
            raise RayJobError(f"RayJob {name} exceeded job_timeout_s={client.job_timeout_s}")
    return state


class AttemptLogs:
    """The logs of every attempt of one RayJob, in order, into one Pipes session.

    KubeRay runs each attempt (``backoffLimit``) on a new cluster with the same job id, so each gets
    its own :class:`~discord_ml_platform.jobs.LogFollower` on that cluster's dashboard, started once
    the attempt's job is submitted. Each attempt's Pipes ``closed`` message is held back: a retried
    attempt's is dropped (logged as a warning; the session stays open for the next attempt), the
    last attempt's is delivered by :meth:`finish`.

    Args:
        on_line: Receives every line (``PipesLogLines.on_line``).
        auth_mode: ``RAY_AUTH_MODE`` of the clusters.
        log: Where warnings go (the step's logger).
    """

    def __init__(self, on_line: Callable[[str], None], auth_mode: str, log: Any) -> None:
        self._on_line = on_line
        self._auth_mode = auth_mode
        self._log = log
        self._follower: Any = None
        self._cluster = ""
        self._closed: str | None = None
        self._lock = threading.Lock()
        self.lines = 0
        self.attempts = 0

    def update(self, state: RayJobState) -> None:
        """Follow the attempt that ``state`` shows once its job is submitted; end the previous one first."""
        from discord_ml_platform.jobs import LogFollower, job_client

        if state.retrying:
            self._end_attempt(superseded=True)
            return
        if not state.submitted or state.cluster_name == self._cluster:
            return
        self._end_attempt(superseded=True)  # a new attempt whose Retrying fell between two polls
        try:
            self._follower = LogFollower(
                job_client(state.dashboard_url, self._auth_mode), state.job_id, self._line
            ).start()
        except Exception as err:  # dashboard busy or already gone (short job, short TTL): next poll
            self._log.warning(f"cannot follow the logs of Ray job {state.job_id} yet: {err}")
            return
        self._cluster = state.cluster_name
        self.attempts += 1

    def finish(self) -> None:
        """The RayJob ended: deliver the last attempt's remaining lines and its ``closed`` message."""
        self._end_attempt(superseded=False)
        with self._lock:
            closed, self._closed = self._closed, None
        if closed is not None:
            self._on_line(closed)

    def _line(self, line: str) -> None:
        from discord_ml_platform.jobs.pipes_protocol import find_pipes_message

        message = find_pipes_message(line)
        if message is not None and message.get("method") == "closed":
            with self._lock:
                self._closed = line
            return
        self._on_line(line)

    def _end_attempt(self, *, superseded: bool) -> None:
        if self._follower is not None:
            self._follower.finish()
            self.lines += self._follower.lines
            self._follower = None
        if superseded:
            with self._lock:
                closed, self._closed = self._closed, None
            if closed is not None:
                self._log.warning(
                    f"attempt {self.attempts} of the RayJob failed: {_closed_error(closed)}; "
                    "KubeRay retries it on a new cluster"
                )


def _closed_error(line: str) -> str:
    """The exception a Pipes ``closed`` message reports, in one line."""
    from discord_ml_platform.jobs.pipes_protocol import find_pipes_message

    error = ((find_pipes_message(line) or {}).get("params") or {}).get("exception") or {}
    return f"{error.get('name') or 'no exception'}: {error.get('message') or ''}".strip().rstrip(":")


def _log_phase(log: Any, state: RayJobState) -> None:
    """One event-log line per change of ``(jobDeploymentStatus, jobStatus)``."""
    deployment, job = state.phase()
    log.info(
        f"rayjob {state.name} [{deployment}] job {job}"
        + (f" ({state.reason})" if state.reason else "")
        + (f" cluster {state.cluster_name}" if state.cluster_name else "")
        + (f": {state.message}" if state.message else "")
    )


def _step_key(context: dg.AssetExecutionContext | dg.OpExecutionContext) -> str:
    op_context = context.op_execution_context if isinstance(context, dg.AssetExecutionContext) else context
    return op_context.get_step_execution_context().step.key


def _stop_early(jobs: Any, name: str, how: str, log: Any) -> None:
    """The step ends before the RayJob: hand its cluster back through KubeRay (never raise)."""
    try:
        if how == "suspend":
            jobs.suspend(name)
            log.warning(f"suspended RayJob {name} because the step ended early; KubeRay deletes its cluster")
        else:
            jobs.delete(name, wait_s=10)
            log.warning(f"deleted RayJob {name} because the step ended early; its cluster goes with it")
    except Exception as err:  # the cleanup sensor and the RayJob's deadline still apply
        log.error(f"could not stop RayJob {name}: {err}")


__all__ = ["AttemptLogs", "RayJobOptions", "rayjob_name", "run_rayjob"]
