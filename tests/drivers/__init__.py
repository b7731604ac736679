"""Ray job drivers and Dagster definitions that exist only for tests (fault injection lives here)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

DRIVERS = Path(__file__).resolve().parent
# How to run the faulty smoke driver as a workload: Ray uploads this directory as the job's working dir.
FAULTY_SMOKE: dict[str, Any] = {
    "entrypoint": "python faulty_smoke.py",
    "runtime_env": {"working_dir": str(DRIVERS), "excludes": ["__pycache__"]},
}
