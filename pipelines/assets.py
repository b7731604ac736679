"""Ad Relevance assets: daily data window -> model -> evaluation -> batch scores.

Each heavy step runs as a Ray job (with a Pipes-speaking driver) on the run's Ray cluster, which
``RayClusterResource`` creates on first use and deletes when the run ends.

No ``from __future__ import annotations``: Dagster inspects the annotations for config and resources.
"""

from collections.abc import Iterator
from datetime import date

import dagster as dg

from pipelines.config import ClusterConfig, QuestsWindowConfig, ScoringConfig, SmokeConfig, TrainingConfig
from resources import PipesRayJobClient, RayClusterResource
from resources.storage import DataRootResource

PARTITIONS = dg.DailyPartitionsDefinition(start_date="2026-01-01", timezone="UTC")
GROUP = "ad_relevance"


def _python_module(module: str) -> str:
    # `python` resolves on the cluster's PATH: the head's environment (local) or the image (KubeRay).
    return f"python -m {module}"


def _spec_for(context: dg.AssetExecutionContext, ray_cluster: RayClusterResource, config: ClusterConfig):
    # The run's cluster (RayCluster mode, shared by its steps) or each step's RayJob cluster (RayJob mode).
    return ray_cluster.spec_for_run(context.run_id, head_memory="2Gi", **config.cluster_fields())


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
    extras = {
        "data_root": str(data_root.root),
        "partition": context.partition_key,
        "model_dir": str(data_root.model_dir(config.model_name, context.partition_key)),
        "storage_path": str(data_root.checkpoints_dir()),
        "run_name": f"{config.model_name}-{context.partition_key}-{context.run_id[:8]}",
        "num_workers": config.workers * max(config.gpus_per_worker, 1),
        "use_gpu": config.gpus_per_worker > 0,
        "cpus_per_worker": config.cpus_per_worker if config.gpus_per_worker == 0 else 1,
        **config.model_dump(
            include={
                "window_days",
                "epochs",
                "batch_size",
                "learning_rate",
                "holdout_fraction",
                "sharding",
                "embedding_dim",
                "interaction",
                "embedding_weight_decay",
                "lr_schedule",
            }
        ),
    }
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=extras,
        spec=_spec_for(context, ray_cluster, config),
        entrypoint=_python_module("discord_ml_platform.ads.entrypoints.train"),
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
    config: TrainingConfig,
    ray_cluster: RayClusterResource,
    pipes_ray: PipesRayJobClient,
    data_root: DataRootResource,
) -> Iterator[dg.MaterializeResult]:
    """Evaluate the partition's model on its held-out rows, as a Ray job on the run's cluster."""
    extras = {
        "model_dir": str(data_root.model_dir(config.model_name, context.partition_key)),
        # The champion is scored on the same holdout, for the champion/challenger check.
        **_champion_extras(data_root, config.model_name),
    }
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=extras,
        spec=_spec_for(context, ray_cluster, config),
        entrypoint=_python_module("discord_ml_platform.ads.entrypoints.evaluate"),
    )
    yield invocation.get_materialize_result()


def _champion_extras(data_root: DataRootResource, model_name: str) -> dict[str, str]:
    from discord_ml_platform.ads.registry import ModelRegistry

    champion = ModelRegistry(data_root.root).get_champion(model_name)
    if champion is None:
        return {}
    return {"champion_model_path": str(champion.model_path), "champion_version": champion.version}


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
) -> Iterator[dg.MaterializeResult]:
    """Score the partition's window with the promoted (champion) model using a Ray Data actor pool."""
    from discord_ml_platform.ads.data import window_dir

    champion = _champion_extras(data_root, config.model_name)
    if config.model_source == "champion" and not champion:
        raise dg.Failure(
            f"no champion of {config.model_name!r} in the registry yet: materialize "
            "ad_relevance_promotion (its gates must pass) or score with model_source='partition'"
        )
    extras = {
        "model_dir": str(data_root.model_dir(config.model_name, context.partition_key)),
        **(
            {"model_path": champion["champion_model_path"], "model_version": champion["champion_version"]}
            if config.model_source == "champion"
            else {}
        ),
        "input_path": str(window_dir(data_root.root, date.fromisoformat(context.partition_key))),
        "output_path": str(data_root.scores_dir(config.model_name, context.partition_key)),
        "batch_size": config.batch_size,
        "concurrency": config.concurrency,
        "num_gpus_per_actor": 1 if config.gpus_per_worker else 0,
    }
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        extras=extras,
        spec=_spec_for(context, ray_cluster, config),
        entrypoint=_python_module("discord_ml_platform.ads.entrypoints.score"),
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
    """Run the smoke job on a fresh cluster."""
    spec = ray_cluster.spec_for_run(context.run_id, head_memory="1Gi", **config.cluster_fields())
    extras = {"tasks": config.tasks, "release_file": config.release_file, "fail": config.fail}
    invocation = yield from pipes_ray.run_workload(
        context=context,
        ray_cluster=ray_cluster,
        spec=spec,
        extras=extras,
        entrypoint=_python_module("discord_ml_platform.jobs.smoke"),
    )
    yield invocation.get_materialize_result()


AD_RELEVANCE_ASSETS = [quests_window, ad_relevance_model, ad_relevance_evaluation, ad_relevance_scores]
