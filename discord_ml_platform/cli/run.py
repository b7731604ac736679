"""``dmp run``: run the project's Dagster jobs in this process, against a persistent Dagster instance.

The run is recorded in ``$DAGSTER_HOME`` (default ``./.dagster_home``, seeded with the project's
``dagster.yaml``), so ``dagster dev`` shows it afterwards with its logs, metadata and metrics.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any

import typer

from discord_ml_platform.cli.backend_choice import BackendOpt, ContextOpt, KubeconfigOpt, choose_backend
from discord_ml_platform.cli.errors import CliError, UsageProblem
from discord_ml_platform.cli.output import OutputFormat, OutputOpt, print_data, stderr, stdout
from discord_ml_platform.cli.settings import complete_gpu_type

JOB_NAME = "ad_relevance_training"
# The code location `dmp run` loads through Dagster's loader (never imported by the core).
CODE_LOCATION_MODULE = "pipelines.definitions"
CODE_LOCATION_ATTRIBUTE = "defs"


def config_flags() -> dict[str, str]:
    """Run config path -> the flag a user typed, for error messages."""
    # Imported here: the spec layer pulls in pydantic, which `dmp --help` must not load.
    from discord_ml_platform.spec.labels import CLUSTER_RESOURCE_KEY

    cluster = f"resources.{CLUSTER_RESOURCE_KEY}.config"
    return {
        "ops.quests_window.config.rows": "--rows",
        "ops.quests_window.config.seed": "--seed",
        "ops.ad_relevance_model.config.epochs": "--epochs",
        "ops.ad_relevance_model.config.model_name": "--model-name",
        "ops.ad_relevance_model.config.batch_size": "--batch-size",
        "ops.ad_relevance_model.config.learning_rate": "--learning-rate",
        "ops.ad_relevance_model.config.window_days": "--window-days",
        "ops.ad_relevance_model.config.embedding_dim": "--embedding-dim",
        f"{cluster}.workers": "--workers",
        f"{cluster}.gpu_pool": "--gpu-type",
        f"{cluster}.gpus_per_worker": "--gpus-per-worker",
        f"{cluster}.cpus_per_worker": "--cpus",
        f"{cluster}.memory_per_worker": "--memory",
    }


def metric_keys() -> dict[str, tuple[str, ...]]:
    """Metadata keys the summary looks for, in order of preference, whatever asset reports them."""
    from discord_ml_platform.ads.params import MetadataKey

    return {
        MetadataKey.AUC: (MetadataKey.AUC, "val_auc", "test_auc", "holdout_auc"),
        MetadataKey.CEILING_AUC: (MetadataKey.CEILING_AUC, "val_ceiling_auc"),
        MetadataKey.LOGLOSS: (MetadataKey.LOGLOSS, "val_logloss", "test_logloss"),
    }


app = typer.Typer(
    help="Run the project's Dagster jobs in this process (recorded in $DAGSTER_HOME for `dagster dev`).",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def yesterday_utc() -> date:
    """The last complete daily partition."""
    return datetime.now(UTC).date() - timedelta(days=1)


def project_root() -> Path | None:
    """The directory holding the code location's package (and ``dagster.yaml``, ``workspace.yaml``)."""
    package = CODE_LOCATION_MODULE.split(".")[0]
    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))).resolve().parent


def ensure_dagster_home() -> Path:
    """``$DAGSTER_HOME``, or ``./.dagster_home`` seeded with the project's ``dagster.yaml``; exported.

    Dagster reads ``DAGSTER_HOME`` itself (``DagsterInstance.get()``), so it is set for this process.
    """
    home = os.environ.get("DAGSTER_HOME")
    path = Path(home).expanduser().resolve() if home else (Path.cwd() / ".dagster_home").resolve()
    path.mkdir(parents=True, exist_ok=True)
    root = project_root()
    if not (path / "dagster.yaml").exists() and root is not None and (root / "dagster.yaml").exists():
        shutil.copyfile(root / "dagster.yaml", path / "dagster.yaml")
    os.environ["DAGSTER_HOME"] = str(path)  # Dagster wants an absolute path
    return path


def _partition(value: str | None) -> str:
    if value is None:
        return yesterday_utc().isoformat()
    try:
        return date.fromisoformat(value).isoformat()
    except ValueError:
        raise UsageProblem(f"--date: expected YYYY-MM-DD, got {value!r}") from None


def load_code_location() -> Any:
    """The code location's ``Definitions``, loaded the way ``dagster`` loads it (by module name, lazily).

    Raises:
        CliError: the code location is not installed, or is not a ``Definitions``.
    """
    import dagster as dg
    from dagster._core.code_pointer import CodePointer

    try:
        target = CodePointer.from_module(CODE_LOCATION_MODULE, CODE_LOCATION_ATTRIBUTE, None).load_target()
    except ModuleNotFoundError as err:
        raise CliError(
            f"the code location {CODE_LOCATION_MODULE} is not installed: {err}",
            hint="install the project (scripts/install.sh) or run from its checkout",
        ) from None
    definitions = target() if callable(target) and not isinstance(target, dg.Definitions) else target
    if not isinstance(definitions, dg.Definitions):
        raise CliError(f"{CODE_LOCATION_MODULE}.{CODE_LOCATION_ATTRIBUTE} is not a Dagster Definitions")
    return definitions


def build_run_config(window: dict[str, Any], training: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    """The run config of ``ad_relevance_training``: window and training op configs, the cluster shape."""
    from discord_ml_platform.spec.labels import CLUSTER_RESOURCE_KEY

    return {
        "ops": {"quests_window": {"config": window}, "ad_relevance_model": {"config": training}},
        "resources": {CLUSTER_RESOURCE_KEY: {"config": cluster}},
        "loggers": {"console": {"config": {"log_level": "INFO"}}},
    }


def check_run_config(definitions: Any, run_config: dict[str, Any]) -> None:
    """Validate ``run_config`` the way the run will when it starts, before anything is launched.

    Raises:
        UsageProblem: one ``--flag: problem`` line per invalid value.
    """
    from discord_ml_platform.spec.labels import CLUSTER_RESOURCE_KEY

    resource = definitions.resources[CLUSTER_RESOURCE_KEY]
    problems = resource.check_run_config(run_config)
    if problems:
        flags = config_flags()
        raise UsageProblem("\n".join(f"{flags.get(path, path)}: {message}" for path, message in problems))


def materializations(result: Any) -> dict[str, dict[str, Any]]:
    """Metadata of each asset materialized by the run, as plain values, keyed by asset."""
    found: dict[str, dict[str, Any]] = {}
    for event in result.get_asset_materialization_events():
        materialization = event.materialization
        values = {}
        for key, entry in (materialization.metadata or {}).items():
            value = getattr(entry, "value", entry)
            values[key] = value if isinstance(value, (int, float, str, bool)) or value is None else str(value)
        found.setdefault(materialization.asset_key.to_user_string(), {}).update(values)
    return found


def key_metrics(assets: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """AUC, ceiling AUC and logloss (the evaluation's first, then any asset's), and rows scored."""
    metrics: dict[str, Any] = {}
    ordered = sorted(assets.items(), key=lambda item: "evaluation" not in item[0])
    for name, keys in metric_keys().items():
        metrics[name] = next((md[k] for _, md in ordered for k in keys if k in md), None)
    scores = assets.get("ad_relevance_scores", {})
    metrics["rows_scored"] = next((scores[k] for k in ("rows_scored", "rows", "num_rows") if k in scores), None)
    return metrics


def _failures(result: Any) -> list[str]:
    lines = []
    for event in result.get_step_failure_events():
        error = getattr(event.step_failure_data, "error", None)
        message = (getattr(error, "message", None) or str(error or "")).strip().splitlines()
        lines.append(f"{event.step_key}: {message[0] if message else 'failed'}")
    return lines


@app.command(
    "ad-relevance",
    epilog=(
        "Examples:\n\n"
        "  dmp run ad-relevance                       (yesterday's partition, local Ray processes)\n\n"
        "  dmp run ad-relevance --date 2026-03-01 --rows 20000 --epochs 1 --workers 1\n\n"
        "  dmp run ad-relevance --backend kuberay --gpu-type a10g --gpus-per-worker 1 --workers 4 --memory 32Gi"
    ),
)
def ad_relevance(
    day: Annotated[
        str | None, typer.Option("--date", help="Daily partition YYYY-MM-DD (default: yesterday, UTC).")
    ] = None,
    rows: Annotated[int, typer.Option("--rows", help="Rows of the synthetic window when none has landed.")] = 40_000,
    seed: Annotated[int, typer.Option("--seed", help="Seed of the synthetic data.")] = 7,
    epochs: Annotated[int, typer.Option("--epochs", help="Training epochs.")] = 2,
    workers: Annotated[int, typer.Option("--workers", "-w", help="Ray Train workers (cluster worker nodes).")] = 2,
    gpu_type: Annotated[
        str, typer.Option("--gpu-type", "-g", autocompletion=complete_gpu_type, help="GPU pool of the workers.")
    ] = "cpu",
    gpus_per_worker: Annotated[int, typer.Option("--gpus-per-worker", help="GPUs per worker (0 on cpu).")] = 0,
    cpus_per_worker: Annotated[float, typer.Option("--cpus", help="CPUs per worker.")] = 1,
    memory: Annotated[str, typer.Option("--memory", "-m", help="Memory per worker (Kubernetes quantity).")] = "2Gi",
    # Smaller than the Launchpad's 1024: the default 40k-row window gives 2 workers only ~16 steps
    # an epoch at 1024, too few for the embeddings to learn anything.
    batch_size: Annotated[
        int, typer.Option("--batch-size", help="Per-worker training batch size (256 suits the default 40k rows).")
    ] = 256,
    embedding_dim: Annotated[
        int, typer.Option("--embedding-dim", help="Embedding width (32 wins on windows of millions of rows).")
    ] = 16,
    model_name: Annotated[
        str, typer.Option("--model-name", help="Model name (directory under the data root).")
    ] = "ad-relevance",
    output: OutputOpt = OutputFormat.table,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Run the `ad_relevance_training` job for one day: data window, training, evaluation, batch scores.

    Prints Dagster's progress, then the run id, the key metrics (AUC, ceiling AUC, logloss, rows scored) and where the model and the scores are. Exits 1 when the run fails.
    """
    partition = _partition(day)
    choice = choose_backend(backend, kubeconfig, context)
    home = ensure_dagster_home()
    err = stderr()
    err.print(f"[dim]loading the code location (backend {choice.name}, DAGSTER_HOME={home})[/]")
    cluster = {
        "gpu_pool": gpu_type,
        "workers": workers,
        "gpus_per_worker": gpus_per_worker,
        "cpus_per_worker": cpus_per_worker,
        "memory_per_worker": memory,
        "backend": choice.name,
        "kubeconfig": choice.kubeconfig,
        "kube_context": choice.context,
    }
    run_config = build_run_config(
        {"generate_if_missing": True, "rows": rows, "seed": seed},
        {"model_name": model_name, "epochs": epochs, "batch_size": batch_size, "embedding_dim": embedding_dim},
        {key: value for key, value in cluster.items() if value is not None},
    )

    import dagster as dg

    from discord_ml_platform.ads.params import MetadataKey
    from discord_ml_platform.spec.labels import GPU_POOL_RUN_TAG

    definitions = load_code_location()
    check_run_config(definitions, run_config)
    job = definitions.resolve_job_def(JOB_NAME)
    if job.partitions_def is not None and not job.partitions_def.has_partition_key(partition):
        raise UsageProblem(
            f"--date: {partition} is not a partition of {JOB_NAME} ({job.partitions_def})",
            hint=f"the latest complete day is {yesterday_utc().isoformat()}",
        )
    err.print(f"running {JOB_NAME} for {partition} on backend {choice.name} ...", markup=False)
    with dg.DagsterInstance.get() as instance:
        result = job.execute_in_process(
            partition_key=partition,
            run_config=run_config,
            instance=instance,
            tags={GPU_POOL_RUN_TAG: gpu_type, "dmp/trigger": "dmp-run"},
            raise_on_error=False,
        )
    assets = materializations(result)
    outputs = {
        "model_dir": assets.get("ad_relevance_model", {}).get(MetadataKey.MODEL_DIR),
        "scores_dir": assets.get("ad_relevance_scores", {}).get(MetadataKey.SCORES_PATH),
    }
    root = project_root()
    workspace = root / "workspace.yaml" if root else Path("workspace.yaml")
    summary = {
        "run_id": result.run_id,
        "success": result.success,
        "partition": partition,
        "backend": choice.name,
        "metrics": key_metrics(assets),
        "outputs": outputs,
        "assets": assets,
        "failures": _failures(result),
        "dagster_home": str(home),
        "ui": {"command": f"DAGSTER_HOME={home} dagster dev -w {workspace}", "path": f"/runs/{result.run_id}"},
    }
    if output in (OutputFormat.json, OutputFormat.yaml):
        print_data(summary, output)
    else:
        _print_summary(summary)
    if not result.success:
        raise CliError(f"run {result.run_id} failed", hint="see the step errors above, or the run in the Dagster UI")


def _print_summary(summary: dict[str, Any]) -> None:
    from rich.markup import escape

    console = stdout()
    state = "[green]succeeded[/]" if summary["success"] else "[red]FAILED[/]"
    console.print(
        f"\nrun [bold]{summary['run_id']}[/] {state} ({escape(summary['partition'])}, backend {summary['backend']})"
    )
    for line in summary["failures"]:
        console.print(f"  [red]✗[/] {escape(line)}")
    metrics = summary["metrics"]

    def fmt(value: Any) -> str:
        return f"{value:.4f}" if isinstance(value, float) else ("-" if value is None else str(value))

    console.print(
        f"  AUC {fmt(metrics['auc'])}   ceiling AUC {fmt(metrics['ceiling_auc'])}   "
        f"logloss {fmt(metrics['logloss'])}   rows scored {fmt(metrics['rows_scored'])}"
    )
    console.print(f"  model:  {escape(str(summary['outputs']['model_dir'] or '-'))}")
    console.print(f"  scores: {escape(str(summary['outputs']['scores_dir'] or '-'))}")
    console.print(f"  look at it: {escape(summary['ui']['command'])}")
    console.print(f"              then open http://localhost:3000{summary['ui']['path']}")
    sys.stdout.flush()
