"""Run a workload as a Ray job that speaks Dagster Pipes, with its logs streamed into the event log.

The context reaches the job's driver through environment variables in the job's runtime env
(``PipesEnvContextInjector``); the driver writes Pipes messages to stdout, which the Ray Jobs API
streams back with every other log line. :class:`RayJobLogMessageReader` follows that stream in a
thread: Pipes messages go to Dagster's handler (logs, materialization metadata, checks), custom
``epoch_metrics`` messages become live ``AssetObservation`` events, and every other line is
logged as it arrives.
"""

from __future__ import annotations

import queue
import time
import warnings
from collections.abc import Generator, Iterator, Mapping
from contextlib import contextmanager
from typing import Any

import dagster as dg
from dagster._core.pipes.client import PipesMessageReader
from dagster._core.pipes.context import PipesMessageHandler
from pydantic import Field

from discord_ml_platform.jobs import (
    JobOutcome,
    LogFollower,
    RayJobError,
    UsageSampler,
    find_pipes_message,
    job_client,
    stop_job,
    submit_job,
)
from discord_ml_platform.spec import ClusterSpec
from resources.ray_cluster import RayClusterResource, RunningCluster

EPOCH_METRICS = "epoch_metrics"
# `expected_writer_count` is a preview API that Dagster itself calls on every reader.
warnings.filterwarnings("ignore", category=dg.PreviewWarning, message=".*expected_writer_count.*")


class RayJobLogMessageReader(PipesMessageReader):
    """Reads Pipes messages out of a Ray job's log stream (the driver writes them to stdout)."""

    def __init__(self) -> None:
        self.handler: PipesMessageHandler | None = None

    @contextmanager
    def read_messages(self, handler: PipesMessageHandler) -> Iterator[dict[str, Any]]:
        """Keep the handler for the log follower; tell the driver to write to stdout."""
        self.handler = handler
        yield {"stdio": "stdout"}

    def no_messages_debug_text(self) -> str:
        """Shown by Dagster when the job sent no Pipes message."""
        return "Expected Pipes messages on the Ray job's stdout (PipesDefaultMessageWriter with stdio)."


class PipesLogLines:
    """What happens to each line of a Pipes-speaking Ray job's log, in either mode.

    Pipes messages go to Dagster's handler (``epoch_metrics`` custom messages also become
    ``AssetObservation`` events, collected for the asset to yield), other lines are logged as they
    arrive, and the last ``tail`` of them are kept for the failure message.
    """

    def __init__(
        self,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        handler: PipesMessageHandler,
        asset_key: dg.AssetKey | None,
        tail: int,
    ) -> None:
        self.context = context
        self.handler = handler
        self.asset_key = asset_key
        self.tail_size = tail
        self.recent: list[str] = []
        self.observations: queue.Queue[dg.AssetObservation] = queue.Queue()

    def on_line(self, line: str) -> None:
        """Handle one line (called from the log follower's thread)."""
        message = find_pipes_message(line)
        if message is None:
            self.recent.append(line)
            del self.recent[: -self.tail_size or None]
            if line.strip():
                self.context.log.info(line)
            return
        payload = (message.get("params") or {}).get("payload")
        if (
            message.get("method") == "report_custom_message"
            and isinstance(payload, dict)
            and payload.get("kind") == EPOCH_METRICS
            and self.asset_key is not None
        ):
            metrics = {k: v for k, v in payload.items() if k != "kind" and isinstance(v, (int, float, str))}
            self.context.log.info(f"epoch metrics: {metrics}")
            self.observations.put(dg.AssetObservation(asset_key=self.asset_key, metadata=metrics))
        self.handler.handle_message(message)

    def drain(self) -> Iterator[dg.AssetObservation]:
        """The observations collected since the last call."""
        while not self.observations.empty():
            yield self.observations.get()

    def tail(self) -> dg.MetadataValue:
        """The last plain log lines, as failure metadata."""
        return dg.MetadataValue.text("\n".join(self.recent))


def pipes_runtime_env(session: dg.PipesSession, runtime_env: Mapping[str, Any] | None) -> dict[str, Any]:
    """``runtime_env`` with the Pipes bootstrap variables (how the context reaches the driver)."""
    env = dict((runtime_env or {}).get("env_vars", {}))
    env.update(session.get_bootstrap_env_vars())
    env.setdefault("RAY_DEDUP_LOGS", "0")  # one line per worker, never "[repeated Nx]"
    return {**(runtime_env or {}), "env_vars": env}


class PipesRayJobClient(dg.PipesClient, dg.ConfigurableResource):
    """Submits a Pipes-speaking entrypoint to a cluster's Jobs API and follows it to the end.

    Use :meth:`stream` from a generator asset to yield per-epoch observations live;
    :meth:`run` is the blocking ``PipesClient`` form.
    """

    poll_interval_s: float = Field(default=0.25, gt=0, le=10, description="How often job status is polled.")
    usage_interval_s: float = Field(default=1.0, gt=0, le=60, description="How often cluster resource use is sampled.")
    job_timeout_s: float = Field(default=6 * 3600, gt=0, description="Longest a job may run before it is stopped.")
    log_tail_on_failure: int = Field(default=40, ge=0, le=1000, description="Log lines quoted in the failure message.")

    def run(  # type: ignore[override]
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        cluster: RunningCluster,
        entrypoint: str,
        runtime_env: Mapping[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
    ) -> dg.PipesClientCompletedInvocation:
        """Run the job to completion; epoch observations are logged at the end."""
        events = self.stream(
            context=context, cluster=cluster, entrypoint=entrypoint, runtime_env=runtime_env, extras=extras
        )
        while True:
            try:
                context.log_event(next(events))
            except StopIteration as done:
                return done.value

    def stream(
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        cluster: RunningCluster,
        entrypoint: str,
        runtime_env: Mapping[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
        asset_key: dg.AssetKey | None = None,
    ) -> Generator[dg.AssetObservation, None, dg.PipesClientCompletedInvocation]:
        """Run the job, yielding an ``AssetObservation`` per reported epoch while it runs.

        Returns (as the generator's value) the completed invocation, whose ``get_results()`` holds
        the driver's reported materialization with usage and cluster metadata merged in.

        Raises:
            dagster.Failure: when the Ray job fails or is stopped; the message quotes its last lines.
        """
        reader = RayJobLogMessageReader()
        if asset_key is None and isinstance(context, dg.AssetExecutionContext):
            asset_key = context.asset_key
        client = job_client(cluster.endpoints.dashboard_url, cluster.auth_mode)

        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesEnvContextInjector(),
            message_reader=reader,
            extras=extras,
        ) as session:
            assert reader.handler is not None
            lines = PipesLogLines(context, reader.handler, asset_key, self.log_tail_on_failure)
            full_runtime_env = pipes_runtime_env(session, runtime_env)
            job_id = submit_job(
                client,
                entrypoint,
                runtime_env=full_runtime_env,
                metadata={"dagster_run_id": context.run_id, "cluster": cluster.handle.name},
            )
            context.log.info(f"submitted Ray job {job_id} to {cluster.handle.name}: {entrypoint}")
            follower = LogFollower(client, job_id, lines.on_line).start()
            outcome: JobOutcome | None = None
            try:
                with UsageSampler(cluster.endpoints.dashboard_url, self.usage_interval_s) as sampler:
                    deadline = time.monotonic() + self.job_timeout_s
                    while outcome is None:
                        yield from lines.drain()
                        info = client.get_job_info(job_id)
                        if info.status.is_terminal():
                            outcome = JobOutcome(job_id, str(info.status.value), info.message or "", 0.0)
                        elif time.monotonic() > deadline:
                            raise RayJobError(f"Ray job {job_id} exceeded job_timeout_s={self.job_timeout_s}")
                        else:
                            time.sleep(self.poll_interval_s)
                follower.finish()  # the job's last lines, without waiting for Ray to close the stream
            except BaseException:
                final = stop_job(client, job_id, wait_s=30)
                context.log.warning(f"stopped Ray job {job_id} (status {final}) because the step ended early")
                raise
            yield from lines.drain()
            if not outcome.succeeded:
                raise dg.Failure(
                    description=f"Ray job {job_id} {outcome.status}: {outcome.message}",
                    metadata={"ray_job_id": job_id, "last_log_lines": lines.tail()},
                )
        usage = sampler.summary()
        metadata: dict[str, Any] = {"ray_job_id": job_id, "log_lines": follower.lines}
        metadata.update({k: v for k, v in usage.items() if v is not None})
        metadata.update(cluster.metadata())
        return dg.PipesClientCompletedInvocation(session, metadata=metadata)

    def run_rayjob(
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        ray_cluster: RayClusterResource,
        spec: ClusterSpec,
        entrypoint: str,
        runtime_env: Mapping[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
        asset_key: dg.AssetKey | None = None,
    ) -> Generator[dg.AssetObservation, None, dg.PipesClientCompletedInvocation]:
        """Like :meth:`stream`, but as a KubeRay RayJob that owns its cluster (see ``resources.rayjob_mode``)."""
        from resources.rayjob_mode import run_rayjob

        return (
            yield from run_rayjob(
                self,
                context=context,
                ray_cluster=ray_cluster,
                spec=spec,
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                extras=extras,
                asset_key=asset_key,
            )
        )

    def run_workload(
        self,
        *,
        context: dg.AssetExecutionContext | dg.OpExecutionContext,
        ray_cluster: RayClusterResource,
        spec: ClusterSpec,
        entrypoint: str,
        runtime_env: Mapping[str, Any] | None = None,
        extras: dict[str, Any] | None = None,
        asset_key: dg.AssetKey | None = None,
    ) -> Generator[dg.AssetObservation, None, dg.PipesClientCompletedInvocation]:
        """Run a workload in the mode ``ray_cluster.mode`` picks: one call for an asset, either mode.

        ``raycluster``: on the run's cluster ``spec.name`` (created on first use, shared by the run's
        steps, deleted when the run ends) through :meth:`stream`. ``rayjob``: as a RayJob whose
        cluster KubeRay creates for this job alone and deletes after it (:meth:`run_rayjob`).
        """
        if ray_cluster.mode == "rayjob":
            return (
                yield from self.run_rayjob(
                    context=context,
                    ray_cluster=ray_cluster,
                    spec=spec,
                    entrypoint=entrypoint,
                    runtime_env=runtime_env,
                    extras=extras,
                    asset_key=asset_key,
                )
            )
        cluster = ray_cluster.get_cluster(context, spec)
        return (
            yield from self.stream(
                context=context,
                cluster=cluster,
                entrypoint=entrypoint,
                runtime_env=runtime_env,
                extras=extras,
                asset_key=asset_key,
            )
        )


__all__ = ["EPOCH_METRICS", "PipesLogLines", "PipesRayJobClient", "RayJobLogMessageReader", "pipes_runtime_env"]
