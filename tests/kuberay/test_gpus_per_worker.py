"""``ClusterInfo.details['gpus_per_worker']`` comes from the rendered worker group's GPU limits."""

from datetime import datetime, timezone

import pytest

from discord_ml_platform.backends.kuberay import _gpus_per_worker
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.render import render_raycluster

CREATED = datetime(2026, 11, 26, tzinfo=timezone.utc)


@pytest.mark.parametrize(("gpu_type", "workers", "gpus", "expected"),
                         [("h100-80gb", 2, 8, 8), ("a10g", 1, 1, 1), ("cpu", 2, 0, 0), ("cpu", 0, 0, 0)])
def test_gpus_per_worker_is_read_back_from_the_manifest(gpu_type, workers, gpus, expected):
    spec = ClusterSpec(name="gpus", gpu_type=gpu_type, workers=workers, gpus_per_worker=gpus)
    assert _gpus_per_worker(render_raycluster(spec, created_at=CREATED)) == expected
