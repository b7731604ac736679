"""The daily Ad Relevance retrain."""

from __future__ import annotations

import dagster as dg

from pipelines.jobs import ad_relevance_training

# 06:00 UTC: after the previous day's window has landed; the partition is the day that ended.
ad_relevance_daily_retrain = dg.build_schedule_from_partitioned_job(
    ad_relevance_training,
    name="ad_relevance_daily_retrain",
    hour_of_day=6,
    minute_of_hour=0,
    description="Retrains, evaluates and re-scores Ad Relevance every day on the previous day's window.",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
