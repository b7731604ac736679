"""Promotion gate without Ray: checks and the promotion asset on hand-written evaluation files."""

import json
from pathlib import Path

import dagster as dg
import pytest

from discord_ml_platform.ads.params import MetadataKey
from discord_ml_platform.ads.registry import ModelRegistry, promotion_decision
from pipelines.ad_relevance_quality import (
    PromotionGate,
    ad_relevance_promotion,
    candidate_beats_baseline,
    candidate_not_worse_than_champion,
)
from resources import DataRootResource

pytestmark = pytest.mark.timeout(60)
PARTITION = "2026-01-15"


@pytest.fixture
def instance():
    with dg.instance_for_test() as instance:
        yield instance


def _trained(instance: dg.DagsterInstance, model_dir: Path) -> None:
    """What ``ad_relevance_model`` records for the partition: the gate finds the model through it."""
    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="ad_relevance_model", partition=PARTITION,
        metadata={MetadataKey.MODEL_NAME: "ad-relevance", MetadataKey.MODEL_DIR: dg.MetadataValue.path(str(model_dir))},
    ))


def _write(data_root: DataRootResource, auc: float, baseline_auc: float | None, champion_auc: float | None) -> Path:
    model_dir = data_root.model_dir("ad-relevance", PARTITION)
    (model_dir / "model").mkdir(parents=True, exist_ok=True)
    (model_dir / "model" / "model.pt").write_bytes(b"weights")
    evaluation = {"auc": auc, "ceiling_auc": 0.96, "logloss": 0.13}
    if champion_auc is not None:
        evaluation.update(champion_metrics={"auc": champion_auc}, champion_version="old")
    (model_dir / "evaluation.json").write_text(json.dumps(evaluation))
    if baseline_auc is not None:
        (model_dir / "baseline.json").write_text(json.dumps({"auc": baseline_auc}))
    (model_dir / "split.json").write_text(json.dumps({"windows": [PARTITION], "train_rows": 10}))
    return model_dir


def _checks(instance: dg.DagsterInstance) -> tuple[bool, bool]:
    results = []
    for check in (candidate_beats_baseline, candidate_not_worse_than_champion):
        context = dg.build_op_context(partition_key=PARTITION, instance=instance)
        results.append(check(context, PromotionGate()).passed)
    return results[0], results[1]


@pytest.mark.parametrize(
    ("auc", "baseline", "champion", "expected"),
    [
        (0.95, 0.93, None, (True, True)),  # first model: beats baseline, no champion
        (0.92, 0.93, None, (False, True)),  # worse than XGBoost
        (0.95, 0.93, 0.96, (True, False)),  # regresses against the champion
        (0.95, None, None, (False, True)),  # no baseline: no evidence, no promotion
    ],
)
def test_gate_decisions(auc, baseline, champion, expected) -> None:
    decision = promotion_decision({"auc": auc}, None if baseline is None else {"auc": baseline},
                                  None if champion is None else {"auc": champion}, max_regression_vs_champion=0.002)
    assert (decision.checks["beats_baseline"], decision.checks["not_worse_than_champion"]) == expected
    assert decision.promote == all(expected)


def test_promotion_registers_and_promotes_only_when_gates_pass(tmp_path, monkeypatch, instance) -> None:
    import pipelines.ad_relevance_quality as quality

    data_root = DataRootResource(path=str(tmp_path))
    registry = ModelRegistry(tmp_path)

    _trained(instance, _write(data_root, auc=0.95, baseline_auc=0.93, champion_auc=None))
    context = dg.build_asset_context(partition_key=PARTITION, instance=instance)
    result = ad_relevance_promotion(context, PromotionGate(), data_root)
    meta = result.metadata
    assert meta["promoted"] is True or getattr(meta["promoted"], "value", None) is True
    champion = registry.get_champion("ad-relevance")
    assert champion is not None and (champion.model_path / "model.pt").read_bytes() == b"weights"
    assert champion.lineage["partition"] == PARTITION and champion.lineage["windows"] == [PARTITION]
    assert champion.metrics["auc"] == 0.95 and champion.metrics["baseline_auc"] == 0.93

    # A worse candidate is registered but does not replace the champion.
    _write(data_root, auc=0.90, baseline_auc=0.93, champion_auc=0.95)
    monkeypatch.setattr(quality, "version_id", lambda partition, run_id: f"{partition}-second")
    ad_relevance_promotion(dg.build_asset_context(partition_key=PARTITION, instance=instance), PromotionGate(), data_root)
    assert registry.get_champion("ad-relevance").version == champion.version
    assert len(registry.versions("ad-relevance")) == 2


def test_asset_checks_block_on_failure(tmp_path, instance) -> None:
    data_root = DataRootResource(path=str(tmp_path))
    _trained(instance, _write(data_root, auc=0.95, baseline_auc=0.93, champion_auc=0.94))
    assert _checks(instance) == (True, True)
    _write(data_root, auc=0.92, baseline_auc=0.93, champion_auc=0.95)
    assert _checks(instance) == (False, False)
    assert candidate_beats_baseline.check_specs and all(s.blocking for s in candidate_beats_baseline.check_specs)


def test_registry_champion_pointer_is_atomic_and_versions_are_listed(tmp_path) -> None:
    registry = ModelRegistry(tmp_path)
    src = tmp_path / "m"
    src.mkdir()
    (src / "model.pt").write_text("x")
    assert registry.get_champion("ad-relevance") is None
    a = registry.register("ad-relevance", "2026-01-14-aaaa", src, {"auc": 0.9}, {"run_id": "a"})
    b = registry.register("ad-relevance", "2026-01-15-bbbb", src, {"auc": 0.91}, {"run_id": "b"})
    registry.promote("ad-relevance", a.version)
    registry.promote("ad-relevance", b.version)
    assert registry.get_champion("ad-relevance").version == b.version
    pointer = json.loads((tmp_path / "registry" / "ad-relevance" / "champion.json").read_text())
    assert [h["version"] for h in pointer["history"]] == [a.version, b.version]
    assert not [p for p in (tmp_path / "registry" / "ad-relevance").iterdir() if p.name.startswith(".")]
    assert "code_version" in b.lineage
    with pytest.raises(KeyError):
        registry.promote("ad-relevance", "missing")


def test_gate_thresholds_are_set_once_per_run_for_the_checks_and_the_promotion(tmp_path, instance) -> None:
    """One ``promotion_gate`` resource: a stricter threshold fails the check the default passes."""
    data_root = DataRootResource(path=str(tmp_path))
    _trained(instance, _write(data_root, auc=0.95, baseline_auc=0.94, champion_auc=None))
    strict = PromotionGate(min_gain_over_baseline=0.02)
    context = dg.build_op_context(partition_key=PARTITION, instance=instance)
    assert candidate_beats_baseline(context, PromotionGate()).passed
    assert not candidate_beats_baseline(context, strict).passed
    result = ad_relevance_promotion(dg.build_asset_context(partition_key=PARTITION, instance=instance), strict, data_root)
    assert getattr(result.metadata["promoted"], "value", result.metadata["promoted"]) is False


def test_the_gate_fails_clearly_when_the_partition_has_no_trained_model(instance) -> None:
    context = dg.build_op_context(partition_key=PARTITION, instance=instance)
    with pytest.raises(dg.Failure, match="no trained model for 2026-01-15"):
        candidate_beats_baseline(context, PromotionGate())


def test_the_release_job_orders_the_gate_before_scoring() -> None:
    """Checks in the gated release job, scores after promotion."""
    from pipelines.definitions import build_definitions

    defs = build_definitions()
    resolved = defs.resolve_job_def("ad_relevance_gated_release")
    graph = defs.resolve_asset_graph()
    scores_parents = graph.get(dg.AssetKey("ad_relevance_scores")).parent_keys
    assert dg.AssetKey("ad_relevance_promotion") in scores_parents
    check_keys = {k.name for k in resolved.asset_layer.asset_graph.asset_check_keys}
    assert {"candidate_beats_baseline", "candidate_not_worse_than_champion"} <= check_keys


def test_champion_scoring_needs_no_model_of_the_partition(tmp_path, instance) -> None:
    """Champion mode scores with the champion of a model name: the config's, else the partition's trained
    model's, else the default. A window without a trained model gets as far as asking the registry."""
    from pipelines.assets import ad_relevance_scores, champion_model_name
    from pipelines.config import DEFAULT_MODEL_NAME, ScoringConfig
    from resources import PipesRayJobClient, RayClusterResource

    champion = ScoringConfig(model_source="champion")
    context = dg.build_asset_context(partition_key=PARTITION, instance=instance)
    assert champion_model_name(context, champion, PARTITION) == DEFAULT_MODEL_NAME  # no model of the partition
    assert champion_model_name(context, ScoringConfig(model_source="champion", model_name="other"), PARTITION) == "other"
    scores = ad_relevance_scores(context, config=champion, ray_cluster=RayClusterResource(),
                                 pipes_ray=PipesRayJobClient(), data_root=DataRootResource(path=str(tmp_path)))
    with pytest.raises(dg.Failure, match=f"no champion of '{DEFAULT_MODEL_NAME}' in the registry yet"):
        next(iter(scores))

    instance.report_runless_asset_event(dg.AssetMaterialization(
        asset_key="ad_relevance_model", partition=PARTITION, metadata={MetadataKey.MODEL_NAME: "trained-here"}))
    assert champion_model_name(context, champion, PARTITION) == "trained-here"
    # Partition mode scores the partition's own model: a model name there would be ignored, so it is refused.
    with pytest.raises(ValueError, match="applies to model_source 'champion' only"):
        ScoringConfig(model_name="other")
