"""The ``dmp/gpu-pool`` run tag, from the run config: what ``dagster.yaml``'s per-pool run limits count.

Every way a run starts tags it with the pool its cluster really uses: jobs, schedules and sensors
through :func:`gpu_pool_tags`; ``dmp run`` with the pool of its ``--gpu-type`` (the core cannot import
this module, and that flag is the pool its run config names); Launchpad and API launches through
:class:`~resources.run_coordinator.GpuPoolRunCoordinator`, which tags a run from its config (else its
job's tag, else :data:`DEFAULT_GPU_POOL`) before it queues; and the cluster resource corrects a run
that got past all of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from discord_ml_platform.spec.labels import CLUSTER_RESOURCE_KEY, GPU_POOL_RUN_TAG

# The pool of a run that names none: the cluster resource's default, the coordinator's tag for an
# untagged run, and the Launchpad's default choice when the catalog has it.
DEFAULT_GPU_POOL = "cpu"


def gpu_pool_of(run_config: Mapping[str, Any] | None, default: str | None = None) -> str | None:
    """The pool ``resources.ray_cluster.config.gpu_pool`` names, else ``default``."""
    resources = (run_config or {}).get("resources") or {}
    entry = resources.get(CLUSTER_RESOURCE_KEY) if isinstance(resources, Mapping) else None
    config = entry.get("config") if isinstance(entry, Mapping) else None
    pool = config.get("gpu_pool") if isinstance(config, Mapping) else None
    return str(pool) if pool else default


def gpu_pool_tags(run_config: Mapping[str, Any] | None, default: str = DEFAULT_GPU_POOL) -> dict[str, str]:
    """``{"dmp/gpu-pool": <pool>}`` for a run of ``run_config``."""
    return {GPU_POOL_RUN_TAG: gpu_pool_of(run_config, default) or default}


__all__ = ["DEFAULT_GPU_POOL", "gpu_pool_of", "gpu_pool_tags"]
