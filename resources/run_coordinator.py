"""``GpuPoolRunCoordinator``: Dagster's queued run coordinator, tagging each run with its GPU pool first.

A run launched from the Launchpad or the GraphQL API carries its job's tags, not what its config
asks for: a user who picks ``h100-80gb`` under ``resources.ray_cluster.config.gpu_pool`` would be
counted against the ``cpu`` limit. This coordinator sets ``dmp/gpu-pool`` from the run config before
the run is queued, so ``tag_concurrency_limits`` count every run against the pool it really uses.

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

from resources.run_tags import GPU_POOL_TAG, gpu_pool_of


class GpuPoolRunCoordinator(QueuedRunCoordinator):
    """Queues runs like ``QueuedRunCoordinator``, after tagging each with the GPU pool its config names."""

    def submit_run(self, context: SubmitRunContext) -> DagsterRun:
        """Tag the run with ``dmp/gpu-pool`` from its config (when it names a pool), then queue it."""
        run = context.dagster_run
        pool = gpu_pool_of(run.run_config)
        if pool and run.tags.get(GPU_POOL_TAG) != pool:
            self._instance.add_run_tags(run.run_id, {GPU_POOL_TAG: pool})
            tagged = self._instance.get_run_by_id(run.run_id)
            if tagged is not None:
                context = SubmitRunContext(tagged, context.workspace)
        return super().submit_run(context)


__all__ = ["GpuPoolRunCoordinator"]
