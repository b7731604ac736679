"""The specs the golden and property tests render; the golden files are the contract for these."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from discord_ml_platform.spec import ClusterSpec, render_raycluster, render_rayjob
from discord_ml_platform.spec.policy import SecurityPolicy

CREATED_AT = datetime(2026, 3, 14, 15, 9, 26, tzinfo=UTC)
ODD_OWNER = "Ada Lovelace <ada@discord.com> / Growth-Team (Quests & Ads ranking) — on call: yes!!"


def _cluster(policy: SecurityPolicy | None = None, **fields: Any) -> Callable[[], dict[str, Any]]:
    def build() -> dict[str, Any]:
        spec = ClusterSpec(**fields)
        if policy is None:
            return render_raycluster(spec, created_at=CREATED_AT)
        return render_raycluster(spec, policy=policy, created_at=CREATED_AT)

    return build


JOB_SPEC_FIELDS: dict[str, Any] = {
    "name": "ads-train-nightly", "namespace": "ml-jobs", "gpu_type": "a100-80gb", "workers": 2,
    "gpus_per_worker": 4, "owner": "dagster", "team": "ads-relevance",
    "run_id": "8d1f3c0e-2b7a-4c55-9a1e-5f6b2c9d0a11", "env": {"ADS_DATA_WINDOW": "2026-03-13"}, "ttl": "PT6H",
}


def _rayjob() -> dict[str, Any]:
    spec = ClusterSpec(**JOB_SPEC_FIELDS)
    return render_rayjob(
        spec,
        entrypoint="python -m discord_ml_platform.ads.train --epochs 3",
        runtime_env={"env_vars": {"DAGSTER_PIPES_CONTEXT": "e30="}, "working_dir": "/app"},
        active_deadline_seconds=4 * 3600,
        submission_id="dagster-8d1f3c0e",
        job_metadata={"dagster_run_id": "8d1f3c0e-2b7a-4c55-9a1e-5f6b2c9d0a11"},
        created_at=CREATED_AT,
    )


CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "cpu-head-only": _cluster(name="scratch", owner="ada"),
    "cpu-2-workers": _cluster(name="etl-small", workers=2, owner="grace", team="data-eng"),
    "a10g-2x1": _cluster(name="eval-a10g", gpu_type="a10g", workers=2, gpus_per_worker=1, owner="linus",
                         run_id="0b6f7a52-3c1e-4f0b-8f59-0e7d1b6c2a33"),
    "h100-4x8": _cluster(name="dlrm-train", gpu_type="h100-80gb", workers=4, gpus_per_worker=8,
                         owner="ml-platform-bot", team="ads-relevance", head_cpus=4, head_memory="16Gi",
                         env={"NCCL_DEBUG": "INFO", "TORCH_NCCL_ASYNC_ERROR_HANDLING": "1"}),
    "l4-autoscaling": _cluster(name="batch-infer", gpu_type="l4", workers=0, min_workers=0, max_workers=4,
                               owner="barbara"),
    "odd-owner": _cluster(name="growth-exp-7", owner=ODD_OWNER, team="Growth Team / Quests",
                          labels={"cost-center": "CC 1234 / ads"}),
    "readonly-root": _cluster(
        SecurityPolicy(read_only_root_filesystem=True, service_account="ml-runner", ray_auth_mode="token"),
        name="locked-down", workers=1, min_workers=1, max_workers=3, head_cpus=0.5, object_store_memory="1Gi",
        owner="sec-review",
    ),
    "rayjob-a100": _rayjob,
}
