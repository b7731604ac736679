"""Sensors: a run for each new data window that lands under the data root.

No `from __future__ import annotations` here: Dagster reads the annotations to find resources.
"""

import json
from datetime import date

import dagster as dg

from pipelines.jobs import TRAINING_CLUSTER, ad_relevance_training
from resources import DataRootResource
from resources.run_tags import gpu_pool_tags

SEEN_WINDOWS_KEPT = 400  # about a year of daily windows; older ones can't reappear in practice


def _seen(cursor: str | None) -> set[str]:
    try:
        return set(json.loads(cursor)) if cursor else set()
    except ValueError:
        return set()


@dg.sensor(
    job=ad_relevance_training,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.STOPPED,
    description="Requests exactly one training run per complete data window (its _SUCCESS marker written).",
)
def new_quests_window_sensor(context: dg.SensorEvaluationContext, data_root: DataRootResource) -> dg.SensorResult:
    """Look for complete windows not seen before; the cursor holds the windows already requested.

    The run key is the window's date as well, so even a lost cursor never starts a second run
    for the same window.
    """
    from discord_ml_platform.ads.data import list_windows

    seen = _seen(context.cursor)
    windows = [d for d in list_windows(data_root.root) if d.isoformat() not in seen]
    run_config = {**TRAINING_CLUSTER, "ops": {"quests_window": {"config": {"generate_if_missing": False}}}}
    requests = [
        dg.RunRequest(
            run_key=f"quests-window-{day.isoformat()}",
            partition_key=day.isoformat(),
            run_config=run_config,
            tags={**gpu_pool_tags(run_config), "dmp/trigger": "new-window"},
        )
        for day in windows
        if day >= date(2026, 1, 1)  # the partitions' start date
    ]
    seen.update(d.isoformat() for d in windows)
    cursor = json.dumps(sorted(seen)[-SEEN_WINDOWS_KEPT:])
    if not requests:
        return dg.SensorResult(skip_reason=dg.SkipReason("no new complete window"), cursor=cursor)
    return dg.SensorResult(run_requests=requests, cursor=cursor)
