"""Dagster adapters over the platform core: the run's Ray cluster, the Pipes client, storage, cleanup."""

from resources.pipes_ray_job import PipesRayJobClient, RayJobLogMessageReader
from resources.ray_cluster import (
    RayClusterResource,
    RayJobConfig,
    RunningCluster,
    cluster_name_for_run,
    ray_cluster_resource_type,
)
from resources.storage import DataRootResource

__all__ = [
    "DataRootResource",
    "PipesRayJobClient",
    "RayClusterResource",
    "RayJobConfig",
    "RayJobLogMessageReader",
    "RunningCluster",
    "cluster_name_for_run",
    "ray_cluster_resource_type",
]
