"""Dagster resources over the platform: per-run Ray clusters and a Pipes client for Ray jobs."""

from resources.pipes_ray_job import PipesRayJobClient, RayJobLogMessageReader
from resources.ray_cluster import RayClusterResource, RunningCluster, cluster_name_for_run

__all__ = [
    "PipesRayJobClient",
    "RayClusterResource",
    "RayJobLogMessageReader",
    "RunningCluster",
    "cluster_name_for_run",
]
