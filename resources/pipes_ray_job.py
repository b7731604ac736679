"""``PipesRayJobClient``: a workload as a Ray job that speaks Dagster Pipes, its events in the event log.

The Dagster side of the platform's job runner. The cluster resource says where the step's workload
runs (the run's cluster, or a RayJob of its own, by mode); the runner
(:class:`~discord_ml_platform.jobs.runner.JobRunner`) submits and follows it; this client turns the
runner's events into Dagster's: Pipes messages go to the session's handler (logs, materialization
metadata), ``epoch_metrics`` messages also become live ``AssetObservation`` events, every other line
is logged as it arrives, RayJob phases and retries are logged, and the end becomes the step's
materialization or a ``Failure`` quoting the job's last lines.

The Pipes context reaches the driver through environment variables in the job's runtime env
(``PipesEnvContextInjector``); the driver writes its messages to stdout, which the Jobs API streams
back with every other line (:class:`RayJobLogMessageReader`).
"""

from __future__ import annotations

import contextlib
import re
import warnings
from collections.abc import Callable, Generator, Iterator, Mapping
from typing import Any

import dagster as dg
from dagster._core.pipes.client import PipesMessageReader
from dagster._core.pipes.context import PipesMessageHandler
from pydantic import BaseModel, Field

from discord_ml_platform.jobs.events import (
    AttemptFailed,
    JobEvent,
    JobFinished,
    JobPhase,
    JobResult,
    JobSubmitted,
    LogLine,
    Metric,
    Notice,
    Workload,
)
from discord_ml_platform.jobs.runner import ClusterTarget, JobRunner, JobTarget, RayJobTarget
from discord_ml_platform.platform import Platform, current_platform
from discord_ml_platform.spec import ClusterSpec
from resources.ray_cluster import RayClusterResource, RunningCluster, StepContext, cluster_metadata, op_context

# `expected_writer_count` is a preview API that Dagster itself calls on every reader.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*expected_writer_count.*")


class RayJobLogMessageReader(PipesMessageReader):
    """Reads Pipes messages out of a Ray job's log stream (the driver writes them to stdout)."""

    def __init__(self) -> None:
        self.handler: PipesMessageHandler | None = None

    @contextlib.contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[dict[str, Any]]:
        """Keep the handler for the runner's lines; tell the driver to write to stdout."""
        self.handler = handler
        yield {"stdio": "stdout"}

    def no_messages_debug_text(self) -> str:
        """Shown by Dagster when the job sent no Pipes message."""
        return "Expected Pipes messages on the Ray job's stdout (PipesDefaultMessageWriter with stdio)."


# CSI sequences (colours, cursor moves) and the two-character escapes Ray's loggers may print.
_ANSI = re.compile(r"\x1b(?:\[[0-?]*[ -/]*[@-~]|[@-Z\\-_])")


def strip_ansi(text: str) -> str:
    """``text`` without terminal escape sequences: Ray's coloured ``(TrainController pid=1)`` prefix, plain."""
    return _ANSI.sub("", text)


def pipes_runtime_env(session: dg.PipesSession, runtime_env: Mapping[str, Any] | None) -> dict[str, Any]:
    """``runtime_env`` with the Pipes bootstrap variables (how the context reaches the driver)."""
    env = dict((runtime_env or {}).get("env_vars", {}))
    env.update(session.get_bootstrap_env_vars())
    env.setdefault("RAY_DEDUP_LOGS", "0")  # one line per worker, never "[repeated Nx]"
    return {**(runtime_env or {}), "env_vars": env}


class _EventLog:
    """Runner events -> Dagster: logs, the Pipes handler, observations (collected for the asset to yield)."""

    def __init__(self, context: StepContext, handler: PipesMessageHandler, asset_key: dg.AssetKey | None) -> None:
        self.context = context
        self.handler = handler
        self.asset_key = asset_key

    def on(self, event: JobEvent) -> dg.AssetObservation | None:
        log = self.context.log
        if isinstance(event, LogLine):
            if event.pipes is not None:
                self.handler.handle_message(event.pipes)  # type: ignore[arg-type]  # a PipesMessage dict
            else:
                text = strip_ansi(event.text)  # Ray colours its prefixes; the event log shows raw text
                if text.strip():
                    log.info(text)
        elif isinstance(event, Metric):
            log.info(f"epoch metrics: {dict(event.values)}")
            if self.asset_key is not None:
                return dg.AssetObservation(asset_key=self.asset_key, metadata=dict(event.values))
        elif isinstance(event, JobSubmitted) and event.rayjob:
            log.info(
                f"created RayJob {event.target} (Ray job {event.job_id}): {event.entrypoint}; "
                "KubeRay creates its cluster and deletes it after the job"
            )
        elif isinstance(event, JobSubmitted):
            log.info(f"submitted Ray job {event.job_id} to {event.target}: {event.entrypoint}")
        elif isinstance(event, JobPhase):
            log.info(event.description)
        elif isinstance(event, AttemptFailed):
            log.warning(
                f"attempt {event.attempt} of {event.attempts_allowed} failed"
                f"{' (' + event.reason + ')' if event.reason else ''}; KubeRay retries the job on a new cluster"
            )
        elif isinstance(event, Notice):
            log.warning(event.message)
        return None


class PipesRayJobClient(dg.PipesClient, dg.ConfigurableResource):
    """Runs a Pipes-speaking entrypoint where the cluster resource says, and follows it to the end.

    Use :meth:`run_workload` from a generator asset to yield per-epoch observations live;
    :meth:`run` is the blocking ``PipesClient`` form.
    """

    poll_interval_s: float = Field(default=0.25, gt=0, le=10, description="How often job status is polled.")
    usage_interval_s: float = Field(default=1.0, gt=0, le=60, description="How often cluster resource use is sampled.")
    job_timeout_s: float = Field(default=6 * 3600, gt=0, description="Longest a job may run before it is stopped.")
    log_tail_on_failure: int = Field(default=40, ge=0, le=1000, description="Log lines quoted in the failure message.")

    def run(  # type: ignore[override]
        self,
        *,
        context: StepContext,
        ray_cluster: RayClusterResource,
        entrypoint: str,
        extras: BaseModel | Mapping[str, Any] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """Run the workload to completion; epoch observations are logged at the end."""
        events = self.run_workload(
            context=context, ray_cluster=ray_cluster, entrypoint=entrypoint, extras=extras, runtime_env=runtime_env
        )
        while True:
            try:
                context.log_event(next(events))
            except StopIteration as done:
                return done.value

    def run_workload(
        self,
        *,
        context: StepContext,
        ray_cluster: RayClusterResource,
        entrypoint: str,
        extras: BaseModel | Mapping[str, Any] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        spec: ClusterSpec | None = None,
        asset_key: dg.AssetKey | None = None,
    ) -> Generator[dg.AssetObservation, None, dg.PipesClientCompletedInvocation]:
        """Run ``entrypoint`` in the mode the cluster resource runs, yielding an observation per epoch.

        Args:
            context: The step's context.
            ray_cluster: Where the workload runs (the run's cluster, or a RayJob, by mode).
            entrypoint: The driver's shell command.
            extras: The workload's parameters: a pydantic model (dumped as JSON) or a mapping.
            runtime_env: Ray runtime env; the Pipes variables are added.
            spec: Another cluster than the run's (default: the resource's shape for this run).
            asset_key: Key of the observations (default: the asset being materialized).

        Returns:
            (As the generator's value) the completed invocation: the driver's reported materialization
            with the job's, the cluster's and the cost metadata merged in.

        Raises:
            dagster.Failure: the job failed or was stopped; the message names why and quotes its last lines.
        """
        target, cluster = ray_cluster.job_target(context, spec)
        runner = self._runner(target, ray_cluster.platform)
        return (
            yield from self.run_on(
                context=context,
                target=target,
                entrypoint=entrypoint,
                extras=extras,
                runtime_env=runtime_env,
                asset_key=asset_key,
                runner=runner,
                describe=lambda result: self._metadata(result, ray_cluster, cluster, target),
            )
        )

    def run_on(
        self,
        *,
        context: StepContext,
        target: JobTarget,
        entrypoint: str,
        extras: BaseModel | Mapping[str, Any] | None = None,
        runtime_env: Mapping[str, Any] | None = None,
        asset_key: dg.AssetKey | None = None,
        runner: JobRunner | None = None,
        describe: Callable[[JobResult], Mapping[str, Any]] | None = None,
    ) -> Generator[dg.AssetObservation, None, dg.PipesClientCompletedInvocation]:
        """Like :meth:`run_workload`, on a target you already have (a cluster you keep, a RayJob).

        Args:
            context: The step's context.
            target: A ready cluster's Jobs API, or a RayJob to create.
            entrypoint: The driver's shell command.
            extras: The workload's parameters: a pydantic model (dumped as JSON) or a mapping.
            runtime_env: Ray runtime env; the Pipes variables are added.
            asset_key: Key of the observations (default: the asset being materialized).
            runner: The job runner (default: the platform's, with this client's settings).
            describe: Materialization metadata from the job's result (default: job id and log lines).

        Raises:
            dagster.Failure: the job failed or was stopped.
        """
        if asset_key is None and isinstance(context, dg.AssetExecutionContext):
            asset_key = context.asset_key
        runner = runner or self._runner(target, current_platform())
        reader = RayJobLogMessageReader()
        params = extras.model_dump(mode="json") if isinstance(extras, BaseModel) else dict(extras or {})
        result: JobResult | None = None
        with dg.open_pipes_session(
            context=context, context_injector=dg.PipesEnvContextInjector(), message_reader=reader, extras=params
        ) as session:
            assert reader.handler is not None
            translate = _EventLog(context, reader.handler, asset_key)
            workload = Workload(
                entrypoint=entrypoint,
                runtime_env=pipes_runtime_env(session, runtime_env),
                metadata={"dagster_run_id": context.run_id, "dagster_step": op_context(context).op.name},
            )
            events = runner.run(target, workload)
            submitted = ""
            try:
                with contextlib.closing(events):  # closing early stops the job (the runner's contract)
                    for event in events:
                        if isinstance(event, JobSubmitted):
                            submitted = event.job_id
                        if isinstance(event, JobFinished):
                            result = event.result
                        observation = translate.on(event)
                        if observation is not None:
                            yield observation
            except BaseException:
                if submitted and result is None:
                    context.log.warning(f"the step ended early: {_stopped(target, submitted)}")
                raise
            assert result is not None
            if not result.succeeded:
                raise dg.Failure(
                    description=result.describe(),
                    metadata={
                        "ray_job_id": result.job_id,
                        "rayjob": result.rayjob or "",
                        "reason": result.reason,
                        "job_status": result.status,
                        "failed_attempts": result.failed_attempts,
                        "last_log_lines": dg.MetadataValue.text("\n".join(result.tail)),
                    },
                )
        metadata = dict(describe(result)) if describe else _job_metadata(result)
        return dg.PipesClientCompletedInvocation(session, metadata=metadata)

    def _runner(self, target: JobTarget, platform: Platform) -> JobRunner:
        """The job runner with this client's settings; cluster use is sampled only on a cluster we hold
        (a RayJob's cluster is KubeRay's, gone when the job ends)."""
        return platform.runner(
            poll_interval_s=self.poll_interval_s,
            usage_interval_s=self.usage_interval_s if isinstance(target, ClusterTarget) else None,
            job_timeout_s=self.job_timeout_s,
            log_tail=self.log_tail_on_failure,
        )

    @staticmethod
    def _metadata(
        result: JobResult, ray_cluster: RayClusterResource, cluster: RunningCluster | None, target: JobTarget
    ) -> dict[str, Any]:
        metadata = _job_metadata(result)
        if not isinstance(target, RayJobTarget):
            if cluster is not None:
                metadata.update(cluster.metadata())
            return metadata
        spec = target.spec
        metadata["rayjob"] = result.rayjob or ""
        metadata.update(
            cluster_metadata(
                spec,
                name=result.cluster_name,
                backend="kuberay",  # only KubeRay runs RayJobs
                mode="rayjob",
                namespace=spec.namespace,
                hourly_price_usd=ray_cluster.platform.hourly_price(spec),
                held_seconds=result.duration_s,  # KubeRay holds the cluster for the job's life
                dashboard_url=result.dashboard_url or None,
            )
        )
        metadata.update(
            {
                "rayjob_wall_seconds": round(result.duration_s, 2),
                "rayjob_attempts": result.attempts,
                "ttl_seconds_after_finished": ray_cluster.rayjob.ttl_seconds_after_finished,
            }
        )
        return metadata


def _stopped(target: JobTarget, job_id: str) -> str:
    """What the runner did to a job whose step ended early (it stops the job when its events are closed)."""
    if isinstance(target, RayJobTarget):
        done = "suspended" if target.options.on_terminate == "suspend" else "deleted"
        return f"{done} RayJob {target.spec.name} (Ray job {job_id}); its cluster goes with it"
    return f"stopped Ray job {job_id} on {target.name}"


def _job_metadata(result: JobResult) -> dict[str, Any]:
    metadata: dict[str, Any] = {"ray_job_id": result.job_id, "log_lines": result.log_lines}
    metadata.update({k: v for k, v in result.usage.items() if v is not None})
    return metadata


__all__ = ["PipesRayJobClient", "RayJobLogMessageReader", "pipes_runtime_env"]
