"""Run a workload as a Ray job that speaks Dagster Pipes, with its logs streamed into the event log.

The context reaches the job's driver through environment variables in the job's runtime env
(``PipesEnvContextInjector``); the driver writes Pipes messages to stdout, which the Ray Jobs API
streams back with every other log line. :class:`RayJobLogMessageReader` follows that stream in a
thread: Pipes messages go to Dagster's handler (logs, materialization metadata, checks), custom
``epoch_metrics`` messages become live ``AssetObservation`` events, and every other line is
logged as it arrives.
"""

from __future__ import annotations

import logging
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
from resources.ray_cluster import RunningCluster

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
        events = self.stream(context=context, cluster=cluster, entrypoint=entrypoint,
                             runtime_env=runtime_env, extras=extras)
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
        observations: queue.Queue[dg.AssetObservation] = queue.Queue()
        recent: list[str] = []
        if asset_key is None and isinstance(context, dg.AssetExecutionContext):
            asset_key = context.asset_key
        client = job_client(cluster.endpoints.dashboard_url, cluster.auth_mode)

        with dg.open_pipes_session(
            context=context,
            context_injector=dg.PipesEnvContextInjector(),
            message_reader=reader,
            extras=extras,
        ) as session:
            handler = reader.handler
            assert handler is not None

            def on_line(line: str) -> None:
                message = find_pipes_message(line)
                if message is None:
                    recent.append(line)
                    del recent[: -self.log_tail_on_failure or None]
                    if line.strip():
                        context.log.info(line)
                    return
                payload = (message.get("params") or {}).get("payload")
                if message.get("method") == "report_custom_message" and isinstance(payload, dict) \
                        and payload.get("kind") == EPOCH_METRICS and asset_key is not None:
                    metrics = {k: v for k, v in payload.items() if k != "kind" and isinstance(v, (int, float, str))}
                    context.log.info(f"epoch metrics: {metrics}")
                    observations.put(dg.AssetObservation(asset_key=asset_key, metadata=metrics))
                handler.handle_message(message)

            env = dict((runtime_env or {}).get("env_vars", {}))
            env.update(session.get_bootstrap_env_vars())
            env.setdefault("RAY_DEDUP_LOGS", "0")  # one line per worker, never "[repeated Nx]"
            full_runtime_env = {**(runtime_env or {}), "env_vars": env}
            job_id = submit_job(
                client,
                entrypoint,
                runtime_env=full_runtime_env,
                metadata={"dagster_run_id": context.run_id, "cluster": cluster.handle.name},
            )
            context.log.info(f"submitted Ray job {job_id} to {cluster.handle.name}: {entrypoint}")
            follower = LogFollower(client, job_id, on_line).start()
            outcome: JobOutcome | None = None
            try:
                with UsageSampler(cluster.endpoints.dashboard_url, self.usage_interval_s) as sampler:
                    deadline = time.monotonic() + self.job_timeout_s
                    while outcome is None:
                        while not observations.empty():
                            yield observations.get()
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
            while not observations.empty():
                yield observations.get()
            if not outcome.succeeded:
                raise dg.Failure(
                    description=f"Ray job {job_id} {outcome.status}: {outcome.message}",
                    metadata={"ray_job_id": job_id, "last_log_lines": dg.MetadataValue.text("\n".join(recent))},
                )
        usage = sampler.summary()
        metadata: dict[str, Any] = {"ray_job_id": job_id, "log_lines": follower.lines}
        metadata.update({k: v for k, v in usage.items() if v is not None})
        metadata.update(cluster.metadata())
        return dg.PipesClientCompletedInvocation(session, metadata=metadata)


__all__ = ["EPOCH_METRICS", "PipesRayJobClient", "RayJobLogMessageReader"]
