"""Ad Relevance quality gate: XGBoost baseline, champion/challenger checks, promotion.

Flow per daily partition (on top of ``pipelines.assets``)::

    ad_relevance_model ─┬─> ad_relevance_evaluation ──(checks)──> ad_relevance_promotion ──> ad_relevance_scores
                        └─> ad_relevance_baseline ────────────────┘

* ``ad_relevance_baseline``: XGBoost on the same train/holdout split as the model, as a Ray job.
* Blocking asset checks on ``ad_relevance_evaluation``: the candidate must beat the baseline and
  must not be worse than the current champion (both measured on the same holdout). A failing
  blocking check stops the downstream promotion (and so the scoring) in that run.
* ``ad_relevance_promotion``: registers the candidate in the model registry (metrics + lineage)
  and makes it champion when the gates pass; ``ad_relevance_scores`` scores with the champion.

No ``from __future__ import annotations``: Dagster inspects the annotations for config and resources.
"""

import json
import warnings
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any, NamedTuple

import dagster as dg
from pydantic import Field

from discord_ml_platform.ads.params import BaselineParams, MetadataKey
from pipelines.assets import (
    GROUP,
    PARTITIONS,
    TrainedModel,
    ad_relevance_evaluation,
    ad_relevance_model,
    python_module,
    trained_model,
)
from pipelines.config import BaselineConfig
from resources import DataRootResource, PipesRayJobClient, RayClusterResource

if TYPE_CHECKING:
    from discord_ml_platform.ads.registry import PromotionDecision


def partitioned_check(**kwargs: Any) -> Callable[[Callable[..., Any]], dg.AssetChecksDefinition]:
    """``dg.asset_check`` for a partitioned asset, without the preview warning Dagster prints on every
    load: the gate's checks must be partitioned like the assets they check, so it tells a user nothing."""

    def decorate(fn: Callable[..., Any]) -> dg.AssetChecksDefinition:
        with warnings.catch_warnings():
            warnings.filterwarnings(
                "ignore", category=dg.PreviewWarning, message=r".*partitions_def on an AssetCheckSpec.*"
            )
            return dg.asset_check(**kwargs)(fn)

    return decorate


class PromotionGate(dg.ConfigurableResource):
    """Thresholds of the promotion gate, set once per run: the checks and the promotion share them."""

    min_gain_over_baseline: float = Field(
        default=0.0, ge=-1, le=1, description="Candidate AUC must exceed the baseline's by more than this (-1..1)."
    )
    max_regression_vs_champion: float = Field(
        default=0.002, ge=0, le=1, description="Candidate AUC may trail the champion's by at most this (0..1)."
    )


def read_gate_inputs(
    model: TrainedModel,
) -> tuple[dict[str, Any], dict[str, Any] | None, dict[str, Any] | None]:
    """Candidate metrics, baseline metrics and champion metrics (same holdout) of a trained model."""
    evaluation_file = model.model_dir / "evaluation.json"
    if not evaluation_file.is_file():
        raise dg.Failure(f"no evaluation at {evaluation_file}: materialize ad_relevance_evaluation first")
    evaluation = json.loads(evaluation_file.read_text())
    baseline_file = model.model_dir / "baseline.json"
    baseline = json.loads(baseline_file.read_text()) if baseline_file.is_file() else None
    return evaluation, baseline, evaluation.get("champion_metrics")


class GateEvaluation(NamedTuple):
    """The gate's decision on a trained model, and the metrics it decided on (all on the same holdout)."""

    candidate: dict[str, Any]
    baseline: dict[str, Any] | None
    champion: dict[str, Any] | None
    decision: "PromotionDecision"


def _decision(model: TrainedModel, gate: PromotionGate) -> GateEvaluation:
    """The one decision the checks and the promotion share: each reads the same files with the same thresholds."""
    from discord_ml_platform.ads.registry import promotion_decision

    candidate, baseline, champion = read_gate_inputs(model)
    return GateEvaluation(
        candidate,
        baseline,
        champion,
        promotion_decision(
            candidate,
            baseline,
            champion,
            min_gain_over_baseline=gate.min_gain_over_baseline,
            max_regression_vs_champion=gate.max_regression_vs_champion,
        ),
    )


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[ad_relevance_model],
    kinds={"ray", "xgboost"},
    description="XGBoost baseline trained on the same train split as the model, scored on the same holdout.",
)
def ad_relevance_baseline(
    context: dg.AssetExecutionContext,
    config: BaselineConfig,
    ray_cluster: RayClusterResource,
    pipes_ray: PipesRayJobClient,
) -> Iterator[dg.AssetObservation | dg.MaterializeResult]:
    """Fit and evaluate the baseline as a Ray job on the run's cluster."""
    model = trained_model(context, context.partition_key)
    params = BaselineParams(
        **config.model_dump(), model_dir=str(model.model_dir), num_workers=max(ray_cluster.workers, 1)
    )
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=params,
        entrypoint=python_module("discord_ml_platform.ads.entrypoints.baseline"),
    )
    yield invocation.get_materialize_result()


@partitioned_check(
    asset=ad_relevance_evaluation,
    blocking=True,
    partitions_def=PARTITIONS,
    additional_deps=[ad_relevance_baseline],
    description="The candidate's holdout AUC is above the XGBoost baseline's (same split).",
)
def candidate_beats_baseline(
    context: dg.AssetCheckExecutionContext, promotion_gate: PromotionGate
) -> dg.AssetCheckResult:
    """Blocks promotion when the neural model does not beat XGBoost."""
    candidate, baseline, _, decision = _decision(trained_model(context, context.partition_key), promotion_gate)
    return dg.AssetCheckResult(
        passed=decision.checks["beats_baseline"],
        metadata={
            "candidate_auc": float(candidate[MetadataKey.AUC]),
            "baseline_auc": float(baseline[MetadataKey.AUC]) if baseline else None,
            MetadataKey.CEILING_AUC: float(candidate.get(MetadataKey.CEILING_AUC, float("nan"))),
            "reason": decision.reasons[0],
        },
    )


@partitioned_check(
    asset=ad_relevance_evaluation,
    blocking=True,
    partitions_def=PARTITIONS,
    description="The candidate's holdout AUC is not worse than the champion's on the same holdout.",
)
def candidate_not_worse_than_champion(
    context: dg.AssetCheckExecutionContext, promotion_gate: PromotionGate
) -> dg.AssetCheckResult:
    """Blocks promotion when the candidate regresses against the model in production."""
    candidate, _, champion, decision = _decision(trained_model(context, context.partition_key), promotion_gate)
    return dg.AssetCheckResult(
        passed=decision.checks["not_worse_than_champion"],
        metadata={
            "candidate_auc": float(candidate[MetadataKey.AUC]),
            MetadataKey.CHAMPION_AUC: float(champion[MetadataKey.AUC]) if champion else None,
            MetadataKey.CHAMPION_VERSION: str(candidate.get(MetadataKey.CHAMPION_VERSION, "")),
            "reason": decision.reasons[1],
        },
    )


def version_id(partition: str, run_id: str) -> str:
    """Registry version of a partition's candidate: ``<date>-<run id prefix>``."""
    return f"{partition}-{run_id[:8]}"


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[ad_relevance_evaluation, ad_relevance_baseline],
    kinds={"registry"},
    description="The candidate registered with metrics and lineage, and promoted to champion when the gates pass.",
)
def ad_relevance_promotion(
    context: dg.AssetExecutionContext, promotion_gate: PromotionGate, data_root: DataRootResource
) -> dg.MaterializeResult:
    """Register the partition's model; promote it when it beats the baseline and the champion."""
    from discord_ml_platform.ads.registry import ModelRegistry

    partition = context.partition_key
    model = trained_model(context, partition)
    candidate, baseline, champion, decision = _decision(model, promotion_gate)
    model_dir = model.model_dir
    split_file = model_dir / "split.json"
    split = json.loads(split_file.read_text()) if split_file.is_file() else {}
    registry = ModelRegistry(data_root.root)
    previous = registry.get_champion(model.model_name)
    metrics: dict[str, Any] = {k: v for k, v in candidate.items() if isinstance(v, (int, float))}
    if baseline:
        metrics["baseline_auc"] = baseline.get(MetadataKey.AUC)
    version = registry.register(
        model.model_name,
        version_id(partition, context.run_id),
        model.model_path,
        metrics,
        lineage={
            "run_id": context.run_id,
            "partition": partition,
            "windows": split.get("windows", []),
            "train_path": split.get("train_path"),
            "holdout_path": split.get("holdout_path"),
            "train_rows": split.get("train_rows"),
            "model_dir": str(model_dir),
            "previous_champion": previous.version if previous else None,
        },
    )
    if decision.promote:
        registry.promote(model.model_name, version.version, reason="; ".join(decision.reasons))
        context.log.info(f"promoted {version.version} to champion: {'; '.join(decision.reasons)}")
    else:
        context.log.warning(f"kept champion {previous.version if previous else None}: {'; '.join(decision.reasons)}")
    champion_now = registry.get_champion(model.model_name)
    return dg.MaterializeResult(
        metadata={
            "version": version.version,
            "promoted": decision.promote,
            "champion_version": champion_now.version if champion_now else "",
            "previous_champion": previous.version if previous else "",
            "candidate_auc": float(candidate[MetadataKey.AUC]),
            "baseline_auc": float(baseline[MetadataKey.AUC]) if baseline else None,
            "champion_auc_same_holdout": float(champion[MetadataKey.AUC]) if champion else None,
            "reasons": dg.MetadataValue.json(decision.reasons),
            "registry_path": dg.MetadataValue.path(str(version.path)),
        }
    )


AD_RELEVANCE_QUALITY_ASSETS = [ad_relevance_baseline, ad_relevance_promotion]
AD_RELEVANCE_QUALITY_CHECKS = [candidate_beats_baseline, candidate_not_worse_than_champion]
