"""Jobs the Launchpad, the schedule and the sensor run.

Each job's default run config holds its cluster shape (``resources.ray_cluster.config``), shown and
editable in the Launchpad; its ``dmp/gpu-pool`` tag is derived from that config, and the run
coordinator re-derives it from the config a run is launched with.
"""

from __future__ import annotations

from typing import Any

import dagster as dg

from discord_ml_platform.spec.labels import CLUSTER_RESOURCE_KEY
from pipelines.ad_relevance_quality import AD_RELEVANCE_QUALITY_ASSETS
from pipelines.assets import AD_RELEVANCE_ASSETS, ad_relevance_scores, platform_smoke
from resources.run_tags import DEFAULT_GPU_POOL, gpu_pool_tags


def cluster_config(**shape: Any) -> dict[str, Any]:
    """Run config that sets the cluster shape (the ``ray_cluster`` resource's fields)."""
    return {"resources": {CLUSTER_RESOURCE_KEY: {"config": shape}}}


TRAINING_CLUSTER = cluster_config(gpu_pool=DEFAULT_GPU_POOL, workers=2)
SCORING_CLUSTER = cluster_config(gpu_pool=DEFAULT_GPU_POOL, workers=1)
SMOKE_CLUSTER = cluster_config(gpu_pool=DEFAULT_GPU_POOL, workers=0, head_memory="1Gi")

# In-process execution: the run's steps share one Ray cluster (one per run), created on first use
# and deleted when the run's resources are torn down.
ad_relevance_training = dg.define_asset_job(
    name="ad_relevance_training",
    # Without the promotion gate's checks: they belong to the gated release job below.
    selection=dg.AssetSelection.assets(*AD_RELEVANCE_ASSETS).without_checks(),
    executor_def=dg.in_process_executor,
    config=TRAINING_CLUSTER,
    tags=gpu_pool_tags(TRAINING_CLUSTER),
    description="Daily Ad Relevance: data window -> train (Ray Train) -> evaluate -> batch scores (Ray Data).",
)

# The release path: the XGBoost baseline, blocking checks against baseline and champion, promotion
# in the registry, and scoring with the champion. Not yet the daily default: at the demo's data
# size the network does not beat XGBoost, so the gate (correctly) blocks promotion.
GATED_RELEASE_CONFIG = {**TRAINING_CLUSTER, "ops": {"ad_relevance_scores": {"config": {"model_source": "champion"}}}}
ad_relevance_gated_release = dg.define_asset_job(
    name="ad_relevance_gated_release",
    selection=[*AD_RELEVANCE_ASSETS, *AD_RELEVANCE_QUALITY_ASSETS],
    executor_def=dg.in_process_executor,
    config=GATED_RELEASE_CONFIG,
    tags=gpu_pool_tags(GATED_RELEASE_CONFIG),
    description="Train, evaluate against the XGBoost baseline and the champion, promote when the gates pass, "
    "score with the champion.",
)

ad_relevance_batch_scoring = dg.define_asset_job(
    name="ad_relevance_batch_scoring",
    selection=dg.AssetSelection.assets(ad_relevance_scores).without_checks(),
    executor_def=dg.in_process_executor,
    config=SCORING_CLUSTER,
    tags=gpu_pool_tags(SCORING_CLUSTER),
    description="Re-score a window with its trained model (model_source 'partition'), or with the registry's "
    "champion (model_source 'champion': no trained model of the window needed).",
)

platform_smoke_test = dg.define_asset_job(
    name="platform_smoke_test",
    selection=[platform_smoke],
    executor_def=dg.in_process_executor,
    config=SMOKE_CLUSTER,
    tags=gpu_pool_tags(SMOKE_CLUSTER),
    description="A trivial Ray job through the whole platform: cluster, Pipes, logs, teardown.",
)

JOBS = [ad_relevance_training, ad_relevance_gated_release, ad_relevance_batch_scoring, platform_smoke_test]
