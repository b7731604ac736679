"""The code location: assets, checks, jobs, schedule, sensors and resources.

Loaded lazily (``@dg.definitions``): nothing is built at import time. When Dagster loads the code
location, the platform core reads the configuration in effect once (``DMP_*``, the platform config
file): the Launchpad's GPU pool choices are that catalog's pools, and the resources take the
backend, namespace, mode, images and data root from it at the start of each run. The same code
location runs on a laptop (``local``, the default) and in production (``DMP_BACKEND=kuberay``).
"""

from __future__ import annotations

import dagster as dg

from discord_ml_platform.platform import Platform, current_platform
from discord_ml_platform.spec.labels import CLUSTER_RESOURCE_KEY
from pipelines.ad_relevance_quality import AD_RELEVANCE_QUALITY_ASSETS, AD_RELEVANCE_QUALITY_CHECKS, PromotionGate
from pipelines.assets import AD_RELEVANCE_ASSETS, platform_smoke
from pipelines.jobs import JOBS
from pipelines.schedules import ad_relevance_daily_retrain
from pipelines.sensors import new_quests_window_sensor
from resources import DataRootResource, PipesRayJobClient, ray_cluster_resource_type
from resources.cleanup import build_cluster_cleanup_sensor
from resources.preflight import RunConfigPreflight, op_config_models

ASSETS = [*AD_RELEVANCE_ASSETS, *AD_RELEVANCE_QUALITY_ASSETS, platform_smoke]
CHECKS = AD_RELEVANCE_QUALITY_CHECKS


def build_definitions(platform: Platform | None = None) -> dg.Definitions:
    """The code location's definitions for ``platform`` (default: the one of this environment).

    Raises:
        ConfigError: the platform configuration is invalid (the code location does not load, and says why).
    """
    platform = platform or current_platform()
    others: dict[str, dg.ConfigurableResource] = {
        "pipes_ray": PipesRayJobClient(),
        "data_root": DataRootResource(),
        "promotion_gate": PromotionGate(),
    }
    # Checked when a run starts, before anything is provisioned: every op's config and every
    # resource's (the cluster resource checks its own shape against the platform).
    preflight = RunConfigPreflight(
        op_config_models([*ASSETS, *CHECKS]), {key: type(resource) for key, resource in others.items()}
    )
    cluster_resource = ray_cluster_resource_type(platform.catalog, preflight)
    return dg.Definitions(
        assets=ASSETS,
        asset_checks=CHECKS,
        jobs=JOBS,
        schedules=[ad_relevance_daily_retrain],
        # The cleanup sensor deletes clusters whose run is gone or finished, or whose expiry passed.
        sensors=[new_quests_window_sensor, build_cluster_cleanup_sensor()],
        resources={CLUSTER_RESOURCE_KEY: cluster_resource(), **others},
    )


@dg.definitions
def defs() -> dg.Definitions:
    """What Dagster loads (``dagster dev -m pipelines.definitions``, ``workspace.yaml``, the code server)."""
    return build_definitions()
