"""Loading the code location prints nothing a person has to read past (no known-harmless warnings)."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def test_loading_the_code_location_prints_no_warnings() -> None:
    result = subprocess.run(
        [sys.executable, "-W", "default", "-c",
         "from pipelines.definitions import defs; d = defs(); print(len(d.resolve_all_job_defs()))"],
        cwd=ROOT, capture_output=True, text=True, timeout=110,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Warning" not in result.stderr, result.stderr[-3000:]
