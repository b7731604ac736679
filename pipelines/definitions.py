"""The code location: assets, jobs, schedule, sensors and resources.

Backend and storage come from the environment so the same code location runs on a laptop
(``local``, the default) and in production (``DMP_BACKEND=kuberay``).
"""

from __future__ import annotations

import os

import dagster as dg

from pipelines.ad_relevance_quality import AD_RELEVANCE_QUALITY_ASSETS, AD_RELEVANCE_QUALITY_CHECKS
from pipelines.assets import AD_RELEVANCE_ASSETS, platform_smoke
from pipelines.jobs import (
    ad_relevance_batch_scoring,
    ad_relevance_gated_release,
    ad_relevance_training,
    platform_smoke_test,
)
from pipelines.schedules import ad_relevance_daily_retrain
from pipelines.sensors import new_quests_window_sensor
from resources import PipesRayJobClient, RayClusterResource
from resources.cleanup import build_cluster_cleanup_sensor
from resources.storage import DataRootResource


def build_resources() -> dict[str, object]:
    """Resources configured from ``DMP_*`` environment variables."""
    backend = os.environ.get("DMP_BACKEND", "local")
    if backend not in ("local", "kuberay"):
        raise ValueError(f"DMP_BACKEND={backend!r} is not a backend; allowed: local, kuberay")
    return {
        "ray_cluster": RayClusterResource(
            backend=backend,  # type: ignore[arg-type]
            namespace=os.environ.get("DMP_NAMESPACE", "ray"),
            ray_auth_mode=os.environ.get("DMP_RAY_AUTH_MODE", "disabled"),
            local_state_dir=os.environ.get("DMP_LOCAL_STATE_DIR"),
            kubeconfig=os.environ.get("DMP_KUBECONFIG"),
            kube_context=os.environ.get("DMP_KUBE_CONTEXT"),
        ),
        "pipes_ray": PipesRayJobClient(),
        "data_root": DataRootResource(),
    }


resources = build_resources()
# Deletes clusters whose run is gone or finished, or whose expiry passed (a killed process).
ray_cluster_cleanup_sensor = build_cluster_cleanup_sensor(backend_factory=resources["ray_cluster"].build_backend)

defs = dg.Definitions(
    assets=[*AD_RELEVANCE_ASSETS, *AD_RELEVANCE_QUALITY_ASSETS, platform_smoke],
    asset_checks=AD_RELEVANCE_QUALITY_CHECKS,
    jobs=[ad_relevance_training, ad_relevance_gated_release, ad_relevance_batch_scoring, platform_smoke_test],
    schedules=[ad_relevance_daily_retrain],
    sensors=[new_quests_window_sensor, ray_cluster_cleanup_sensor],
    resources=resources,
)
