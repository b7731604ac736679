"""Ad Relevance assets: daily data window -> model -> evaluation -> batch scores.

Each heavy step runs as a Ray job (with a Pipes-speaking driver) where the ``ray_cluster`` resource
says: on the run's cluster (created on first use, deleted when the run ends), or as a RayJob of its
own. The cluster shape is the resource's config, set once per run; training's hyper-parameters are
the model asset's config, and the steps after it read the trained model's artifact (its
materialization) instead of repeating them.

No ``from __future__ import annotations``: Dagster inspects the annotations for config and resources.
"""

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from datetime import date
from pathlib import Path

import dagster as dg

from discord_ml_platform.ads.params import EvaluateParams, MetadataKey, ScoreParams, TrainParams
from pipelines.config import DEFAULT_MODEL_NAME, QuestsWindowConfig, ScoringConfig, SmokeConfig, TrainingConfig
from resources import DataRootResource, PipesRayJobClient, RayClusterResource

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
GROUP = "ad_relevance"
MODEL_ASSET = dg.AssetKey("ad_relevance_model")


def python_module(module: str) -> str:
    """The entrypoint running ``module``; ``python`` resolves on the cluster's PATH (the head's
    environment locally, the image on KubeRay)."""
    return f"python -m {module}"


@dataclass(frozen=True)
class TrainedModel:
    """The partition's trained model, as its materialization describes it."""

    model_name: str
    model_dir: Path

    @property
    def model_path(self) -> Path:
        """The exported model files."""
        return self.model_dir / "model"


def trained_model(context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, partition: str) -> TrainedModel:
    """The model ``ad_relevance_model`` last materialized for ``partition`` (in this run or before).

    Raises:
        dagster.Failure: the partition has no trained model yet.
    """
    metadata = _model_metadata(context, partition)
    if metadata is None:
        raise dg.Failure(f"no trained model for {partition}: materialize ad_relevance_model for that partition first")
    name = metadata.get(MetadataKey.MODEL_NAME)
    model_dir = metadata.get(MetadataKey.MODEL_DIR)
    if name is None or model_dir is None:
        raise dg.Failure(
            f"the last materialization of ad_relevance_model for {partition} names no {MetadataKey.MODEL_NAME} "
            f"and {MetadataKey.MODEL_DIR}: materialize it again"
        )
    return TrainedModel(str(name.value), Path(str(model_dir.value)))


def champion_model_name(context: dg.AssetExecutionContext, config: ScoringConfig, partition: str) -> str:
    """The model whose champion scores ``partition`` in champion mode, without needing a model of the partition.

    The config's ``model_name``; else the name of the partition's trained model, if it has one (the
    gated release job trains it in the same run); else :data:`~pipelines.config.DEFAULT_MODEL_NAME`
    (a newly landed window scored with the champion has no model of its own).
    """
    if config.model_name:
        return config.model_name
    name = (_model_metadata(context, partition) or {}).get(MetadataKey.MODEL_NAME)
    return str(name.value) if name is not None else DEFAULT_MODEL_NAME


def _model_metadata(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext, partition: str
) -> Mapping[str, dg.MetadataValue] | None:
    """Metadata of ``ad_relevance_model``'s last materialization for ``partition``; ``None``: it has none."""
    records = context.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=MODEL_ASSET, asset_partitions=[partition]), limit=1
    ).records
    if not records:
        return None
    materialization = records[0].asset_materialization
    return materialization.metadata if materialization else {}


def champion_of(data_root: DataRootResource, model_name: str) -> tuple[str, str] | None:
    """``(model path, version)`` of the registry's champion of ``model_name``, if there is one."""
    from discord_ml_platform.ads.registry import ModelRegistry

    champion = ModelRegistry(data_root.root).get_champion(model_name)
    return None if champion is None else (str(champion.model_path), champion.version)


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    kinds={"parquet"},
    description="One day of Quest impressions with participation labels (synthetic when none landed).",
)
def quests_window(
    context: dg.AssetExecutionContext, config: QuestsWindowConfig, data_root: DataRootResource
) -> dg.MaterializeResult:
    """Make sure the partition's window exists under the data root and describe it."""
    from discord_ml_platform.ads.data import list_windows, read_window, window_dir, write_window

    day = date.fromisoformat(context.partition_key)
    path = window_dir(data_root.root, day)
    if day not in list_windows(data_root.root):
        if not config.generate_if_missing:
            raise dg.Failure(f"no complete window for {day} under {path} and generate_if_missing is false")
        context.log.info(f"generating synthetic window {day} with {config.rows} rows (seed {config.seed})")
        write_window(data_root.root, day, config.rows, seed=config.seed)
    frame = read_window(path)
    return dg.MaterializeResult(
        metadata={
            "path": dg.MetadataValue.path(str(path)),
            "rows": len(frame),
            "positive_rate": round(float(frame["label"].mean()), 5),
        }
    )


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[quests_window],
    kinds={"ray", "pytorch"},
    description="Quest ranking model trained with Ray Train (TorchTrainer) on the run's Ray cluster.",
)
def ad_relevance_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    ray_cluster: RayClusterResource,
    pipes_ray: PipesRayJobClient,
    data_root: DataRootResource,
) -> Iterator[dg.AssetObservation | dg.MaterializeResult]:
    """Train on the last ``window_days`` windows; yields an observation per epoch while training."""
    partition = context.partition_key
    params = TrainParams(
        **config.model_dump(include=set(TrainParams.model_fields)),
        data_root=str(data_root.root),
        partition=partition,
        model_dir=str(data_root.model_dir(config.model_name, partition)),
        storage_path=str(data_root.checkpoints_dir()),
        run_name=f"{config.model_name}-{partition}-{context.run_id[:8]}",
        num_workers=ray_cluster.train_workers,
        use_gpu=ray_cluster.uses_gpus,
        cpus_per_worker=1 if ray_cluster.uses_gpus else ray_cluster.cpus_per_worker,
    )
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=params,
        entrypoint=python_module("discord_ml_platform.ads.entrypoints.train"),
    )
    yield invocation.get_materialize_result()


@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[ad_relevance_model],
    kinds={"ray"},
    description="Held-out AUC, logloss and the ceiling AUC of the true probabilities.",
)
def ad_relevance_evaluation(
    context: dg.AssetExecutionContext,
    ray_cluster: RayClusterResource,
    pipes_ray: PipesRayJobClient,
    data_root: DataRootResource,
) -> Iterator[dg.AssetObservation | dg.MaterializeResult]:
    """Evaluate the partition's model on its held-out rows (and the champion on the same rows)."""
    model = trained_model(context, context.partition_key)
    champion = champion_of(data_root, model.model_name)
    params = EvaluateParams(
        model_dir=str(model.model_dir),
        champion_model_path=champion[0] if champion else None,
        champion_version=champion[1] if champion else None,
    )
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=params,
        entrypoint=python_module("discord_ml_platform.ads.entrypoints.evaluate"),
    )
    yield invocation.get_materialize_result()


# ad_relevance_promotion lives in pipelines.ad_relevance_quality (which imports this module), so
# it is named by key here.
@dg.asset(
    partitions_def=PARTITIONS,
    group_name=GROUP,
    deps=[ad_relevance_evaluation, dg.AssetKey("ad_relevance_promotion"), quests_window],
    kinds={"ray", "parquet"},
    description="Participation scores for every row of the window, from Ray Data batch inference with the champion model.",
)
def ad_relevance_scores(
    context: dg.AssetExecutionContext,
    config: ScoringConfig,
    ray_cluster: RayClusterResource,
    pipes_ray: PipesRayJobClient,
    data_root: DataRootResource,
) -> Iterator[dg.AssetObservation | dg.MaterializeResult]:
    """Score the partition's window with its model, or the registry's champion, on a Ray Data actor pool.

    The champion needs no model of the partition: a window that just landed can be scored with it.
    """
    from discord_ml_platform.ads.data import window_dir

    partition = context.partition_key
    if config.model_source == "champion":
        model_name = champion_model_name(context, config, partition)
        champion = champion_of(data_root, model_name)
        if champion is None:
            raise dg.Failure(
                f"no champion of {model_name!r} in the registry yet: materialize ad_relevance_promotion "
                "(its gates must pass) or score with model_source='partition'"
            )
        model_path, version = champion
    else:
        model = trained_model(context, partition)
        model_name, model_path, version = model.model_name, str(model.model_path), "partition"
    params = ScoreParams(
        **config.model_dump(include=set(ScoreParams.model_fields)),
        model_path=model_path,
        model_version=version,
        input_path=str(window_dir(data_root.root, date.fromisoformat(partition))),
        output_path=str(data_root.scores_dir(model_name, partition)),
        num_gpus_per_actor=1 if ray_cluster.uses_gpus else 0,
    )
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=params,
        entrypoint=python_module("discord_ml_platform.ads.entrypoints.score"),
    )
    yield invocation.get_materialize_result()


@dg.asset(
    group_name="platform",
    kinds={"ray"},
    description="A trivial Ray job through the full platform path: smoke test and overhead benchmark.",
)
def platform_smoke(
    context: dg.AssetExecutionContext,
    config: SmokeConfig,
    ray_cluster: RayClusterResource,
    pipes_ray: PipesRayJobClient,
) -> Iterator[dg.AssetObservation | dg.MaterializeResult]:
    """Run the smoke job on the run's cluster."""
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=config.model_dump(),
        entrypoint=python_module("discord_ml_platform.jobs.smoke"),
    )
    yield invocation.get_materialize_result()


AD_RELEVANCE_ASSETS = [quests_window, ad_relevance_model, ad_relevance_evaluation, ad_relevance_scores]
