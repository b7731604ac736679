"""Metrics out of a training process as Dagster Pipes messages on stdout.

A Ray job's driver and workers cannot reach Dagster directly; what they print does reach it,
through the Ray job log the Dagster side tails. One JSON object per line, in the Pipes message
format, lets that log reader tell metric lines from ordinary output (it strips Ray's
``(RayTrainWorker pid=..)`` prefix first). Plain stdlib: this runs in every worker.
"""

from __future__ import annotations

import json
import math
import sys
from collections.abc import Mapping
from typing import Any

from discord_ml_platform.jobs.pipes_protocol import EPOCH_METRICS, PIPES_VERSION, PIPES_VERSION_FIELD


def _jsonable(value: Any) -> Any:
    # numpy and torch scalars expose item(); NaN and inf are not valid JSON, so they become null.
    if hasattr(value, "item") and callable(value.item):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, Mapping):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


def pipes_custom_message(payload: Mapping[str, Any]) -> str:
    """One line of JSON: a Pipes ``report_custom_message`` carrying ``payload``."""
    message = {
        PIPES_VERSION_FIELD: PIPES_VERSION,
        "method": "report_custom_message",
        "params": {"payload": _jsonable(dict(payload))},
    }
    return json.dumps(message, allow_nan=False)


def emit_epoch_metrics(metrics: Mapping[str, Any]) -> None:
    """Print one epoch's metrics to stdout as a Pipes custom message (``kind: "epoch_metrics"``), flushed.

    Args:
        metrics: Flat metrics of the epoch (epoch number, losses, AUC, throughput...).
    """
    line = pipes_custom_message({"kind": EPOCH_METRICS, **metrics})
    # Write to the stream rather than call print(): Ray Train V2 replaces builtins.print in its
    # workers with a version that both tees to stdout and logs the message, which would put
    # every metric line in the job log twice.
    sys.stdout.write(line + "\n")
    sys.stdout.flush()
