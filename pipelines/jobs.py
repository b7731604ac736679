"""Jobs the Launchpad, the schedule and the sensor run."""

from __future__ import annotations

import dagster as dg

from pipelines.ad_relevance_quality import AD_RELEVANCE_QUALITY_ASSETS
from pipelines.assets import AD_RELEVANCE_ASSETS, PARTITIONS, ad_relevance_scores, platform_smoke

GPU_POOL_TAG = "dmp/gpu-pool"

# In-process execution: the run's steps share one Ray cluster (one per run), created on first use
# and deleted when the run's resources are torn down.
ad_relevance_training = dg.define_asset_job(
    name="ad_relevance_training",
    # Without the promotion gate's checks: they belong to the gated release job below.
    selection=dg.AssetSelection.assets(*AD_RELEVANCE_ASSETS).without_checks(),
    partitions_def=PARTITIONS,
    executor_def=dg.in_process_executor,
    tags={GPU_POOL_TAG: "cpu"},
    description="Daily Ad Relevance: data window -> train (Ray Train) -> evaluate -> batch scores (Ray Data).",
)

# The release path: the XGBoost baseline, blocking checks against baseline and champion, promotion
# in the registry, and scoring with the champion. Not yet the daily default: at the demo's data
# size the network does not beat XGBoost, so the gate (correctly) blocks promotion.
ad_relevance_gated_release = dg.define_asset_job(
    name="ad_relevance_gated_release",
    selection=[*AD_RELEVANCE_ASSETS, *AD_RELEVANCE_QUALITY_ASSETS],
    partitions_def=PARTITIONS,
    executor_def=dg.in_process_executor,
    tags={GPU_POOL_TAG: "cpu"},
    config={"ops": {"ad_relevance_scores": {"config": {"model_source": "champion"}}}},
    description="Train, evaluate against the XGBoost baseline and the champion, promote when the gates pass, "
    "score with the champion.",
)

ad_relevance_batch_scoring = dg.define_asset_job(
    name="ad_relevance_batch_scoring",
    selection=dg.AssetSelection.assets(ad_relevance_scores).without_checks(),
    partitions_def=PARTITIONS,
    executor_def=dg.in_process_executor,
    tags={GPU_POOL_TAG: "cpu"},
    description="Re-score a window with its trained model.",
)

platform_smoke_test = dg.define_asset_job(
    name="platform_smoke_test",
    selection=[platform_smoke],
    executor_def=dg.in_process_executor,
    tags={GPU_POOL_TAG: "cpu"},
    description="A trivial Ray job through the whole platform: cluster, Pipes, logs, teardown.",
)
