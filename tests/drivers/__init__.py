"""Ray job drivers and Dagster definitions that exist only for tests (fault injection lives here)."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

DRIVERS = Path(__file__).resolve().parent
# How to run the faulty smoke driver as a workload: Ray uploads this directory as the job's working dir.
FAULTY_SMOKE: dict[str, Any] = {
    "entrypoint": "python faulty_smoke.py",
    "runtime_env": {"working_dir": str(DRIVERS), "excludes": ["__pycache__"]},
}


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.2) -> bool:
    """Poll ``predicate`` until it is true or ``timeout_s`` passes; its last value, as a bool."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(interval_s)
    return bool(predicate())
