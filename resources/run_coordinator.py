"""``GpuPoolRunCoordinator``: Dagster's queued run coordinator, tagging each run with its GPU pool first.

A run launched from the Launchpad or the GraphQL API carries its job's tags, not what its config
asks for: a user who picks ``h100-80gb`` under ``resources.ray_cluster.config.gpu_pool`` would be
counted against the ``cpu`` limit. This coordinator sets ``dmp/gpu-pool`` from the run config before
the run is queued, so ``tag_concurrency_limits`` count every run against the pool it really uses. A run
that names no pool at all (an ad-hoc materialization of the asset graph, ``__ASSET_JOB``, carries no
job tag) gets the default pool, the one its cluster resource then uses, so no run escapes the limits.

Configure it in the instance (``dagster.yaml``)::

    run_coordinator:
      module: resources.run_coordinator
      class: GpuPoolRunCoordinator
      config:
        max_concurrent_runs: 4
        tag_concurrency_limits:
          - {key: "dmp/gpu-pool", value: "cpu", limit: 2}
"""

from __future__ import annotations

from dagster._core.run_coordinator import QueuedRunCoordinator, SubmitRunContext
from dagster._core.storage.dagster_run import DagsterRun

from discord_ml_platform.spec.labels import GPU_POOL_RUN_TAG
from resources.run_tags import DEFAULT_GPU_POOL, gpu_pool_of


class GpuPoolRunCoordinator(QueuedRunCoordinator):
    """Queues runs like ``QueuedRunCoordinator``, after tagging each with the GPU pool its config names."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        """Tag the run with ``dmp/gpu-pool`` (its config's pool, else its job's tag, else the default), then queue it."""
        run = context.dagster_run
        pool = gpu_pool_of(run.run_config) or run.tags.get(GPU_POOL_RUN_TAG) or DEFAULT_GPU_POOL
        if run.tags.get(GPU_POOL_RUN_TAG) != pool:
            self._instance.add_run_tags(run.run_id, {GPU_POOL_RUN_TAG: pool})
        # The queued coordinator reads only the run's id, status, job and partition from the context
        # and returns the run re-read from storage: the new tag is on what it returns.
        return super().submit_run(context)


__all__ = ["GpuPoolRunCoordinator"]
