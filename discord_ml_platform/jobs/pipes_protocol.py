"""The Dagster Pipes message protocol as it appears in Ray job logs.

A Ray job's driver writes Pipes messages to stdout (``PipesDefaultMessageWriter`` with
``{"stdio": "stdout"}``); Ray Train workers print them too, and Ray prefixes forwarded worker
lines with ``(RayTrainWorker pid=123) ``. :func:`find_pipes_message` finds a message anywhere in
a log line; :func:`emit_pipes_message` writes one from any process (a worker has no Pipes context,
but the protocol is plain JSON lines).
"""

from __future__ import annotations

import json
import sys
from typing import Any

EPOCH_METRICS = "epoch_metrics"
"""``kind`` of the custom message a training driver reports per epoch (a live metric for the consumer)."""
PIPES_VERSION_FIELD = "__dagster_pipes_version"
PIPES_VERSION = "0.1"
_MARKER = '{"' + PIPES_VERSION_FIELD + '"'


def find_pipes_message(line: str) -> dict[str, Any] | None:
    """Return the Pipes message in ``line`` (after any Ray prefix), or None for a plain log line."""
    start = line.find(_MARKER)
    if start < 0:
        return None
    try:
        message = json.loads(line[start:])
    except ValueError:
        # Ray may append " [repeated 2x across cluster]" after the JSON; cut at the last brace.
        try:
            message = json.loads(line[start : line.rindex("}") + 1])
        except ValueError:
            return None
    return message if isinstance(message, dict) and PIPES_VERSION_FIELD in message else None


def emit_pipes_message(method: str, params: dict[str, Any] | None) -> None:
    """Print one Pipes message as a JSON line on stdout, flushed at once."""
    message = {PIPES_VERSION_FIELD: PIPES_VERSION, "method": method, "params": params}
    sys.stdout.write(json.dumps(message, default=str) + "\n")
    sys.stdout.flush()


def emit_custom(kind: str, **payload: Any) -> None:
    """Report a custom message ``{"kind": kind, ...}`` (e.g. per-epoch metrics) to Dagster."""
    emit_pipes_message("report_custom_message", {"payload": {"kind": kind, **payload}})
