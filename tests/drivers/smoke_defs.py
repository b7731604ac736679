"""A code location for tests: the faulty smoke driver as an asset, on the platform's own resources.

Load it as Dagster loads any code location, e.g.
``dagster job execute -d tests -m drivers.smoke_defs -a defs -j faulty_smoke_test -c run.yaml``.

No ``from __future__ import annotations``: Dagster inspects the annotations for config and resources.
"""

from collections.abc import Iterator
from typing import Any

import dagster as dg

from discord_ml_platform.platform import current_platform
from drivers import FAULTY_SMOKE
from resources import PipesRayJobClient, RayClusterResource, ray_cluster_resource_type
from resources.cleanup import build_cluster_cleanup_sensor


class FaultySmokeConfig(dg.Config):
    """What the faulty smoke driver does (see ``faulty_smoke.py``)."""

    tasks: int = 1
    release_file: str | None = None
    fail: bool = False
    fail_once_marker: str | None = None


@dg.asset
def faulty_smoke(
    context: dg.AssetExecutionContext,
    config: FaultySmokeConfig,
    ray_cluster: RayClusterResource,
    pipes_ray: PipesRayJobClient,
) -> Iterator[Any]:
    """The smoke job, misbehaving as asked, where the cluster resource runs workloads."""
    invocation = yield from pipes_ray.run_workload(
        context=context, ray_cluster=ray_cluster, extras=config.model_dump(), **FAULTY_SMOKE
    )
    yield invocation.get_materialize_result()


SMOKE_SHAPE = {"resources": {"ray_cluster": {"config": {"workers": 0, "head_memory": "1Gi"}}}}

faulty_smoke_test = dg.define_asset_job(
    "faulty_smoke_test", selection=[faulty_smoke], executor_def=dg.in_process_executor, config=SMOKE_SHAPE
)


@dg.definitions
def defs() -> dg.Definitions:
    """The test code location."""
    cluster = ray_cluster_resource_type(current_platform().catalog)
    return dg.Definitions(
        assets=[faulty_smoke],
        jobs=[faulty_smoke_test],
        sensors=[build_cluster_cleanup_sensor(minimum_interval_seconds=15)],
        resources={"ray_cluster": cluster(), "pipes_ray": PipesRayJobClient()},
    )
