"""Jobs the Launchpad, the schedule and the sensor run."""

from __future__ import annotations

import dagster as dg

from pipelines.assets import AD_RELEVANCE_ASSETS, PARTITIONS, ad_relevance_scores, platform_smoke

GPU_POOL_TAG = "dmp/gpu-pool"

# In-process execution: the run's steps share one Ray cluster (one per run), created on first use
# and deleted when the run's resources are torn down.
ad_relevance_training = dg.define_asset_job(
    name="ad_relevance_training",
    selection=AD_RELEVANCE_ASSETS,
    partitions_def=PARTITIONS,
    executor_def=dg.in_process_executor,
    tags={GPU_POOL_TAG: "cpu"},
    description="Daily Ad Relevance: data window -> train (Ray Train) -> evaluate -> batch scores (Ray Data).",
)

ad_relevance_batch_scoring = dg.define_asset_job(
    name="ad_relevance_batch_scoring",
    selection=[ad_relevance_scores],
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
