"""``ClusterInfo.details['gpus_per_worker']`` comes from the rendered worker group's GPU limits."""

from datetime import UTC, datetime

import pytest

from discord_ml_platform.backends.kuberay import _gpus_per_worker
from discord_ml_platform.spec import ClusterSpec
from discord_ml_platform.spec.render import render_raycluster

CREATED = datetime(2026, 11, 26, tzinfo=UTC)


@pytest.mark.parametrize(("gpu_type", "workers", "gpus", "expected"),
                         [("h100-80gb", 2, 8, 8), ("a10g", 1, 1, 1), ("cpu", 2, 0, 0), ("cpu", 0, 0, 0)])
def test_gpus_per_worker_is_read_back_from_the_manifest(gpu_type, workers, gpus, expected):
    spec = ClusterSpec(name="gpus", gpu_type=gpu_type, workers=workers, gpus_per_worker=gpus)
    assert _gpus_per_worker(render_raycluster(spec, created_at=CREATED)) == expected


def test_a_gpu_limit_written_as_a_quantity_is_read_and_an_unreadable_one_is_zero() -> None:
    manifest = render_raycluster(ClusterSpec(name="gpus", gpu_type="a10g", workers=1), created_at=CREATED)
    limits = manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]["containers"][0]["resources"]["limits"]
    limits["nvidia.com/gpu"] = "2000m"
    assert _gpus_per_worker(manifest) == 2
    limits["nvidia.com/gpu"] = "lots"
    assert _gpus_per_worker(manifest) == 0
