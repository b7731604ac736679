"""``dmp job``: submit Ray jobs to a cluster through the Jobs API, follow logs, check, stop, list.

``submit`` runs the job through the platform's job runner (:meth:`~discord_ml_platform.platform.Platform.runner`),
the one follow loop Dagster uses too, on a cluster's Jobs API or, with ``--rayjob``, as a KubeRay
RayJob whose cluster the cluster manager creates and deletes.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from discord_ml_platform.cli.backend_choice import BackendOpt, ContextOpt, KubeconfigOpt, using_backend
from discord_ml_platform.cli.errors import EXIT_INTERRUPTED, CliError
from discord_ml_platform.cli.hardware_flags import (
    CpusOpt,
    GpusPerWorkerOpt,
    GpuTypeOpt,
    HeadCpusOpt,
    HeadMemoryOpt,
    ImageOpt,
    LabelOpt,
    MaxWorkersOpt,
    MemoryOpt,
    MinWorkersOpt,
    WorkersOpt,
    hardware_fields,
)
from discord_ml_platform.cli.job_args import (
    CommandAfterDashes,
    check_cluster_name,
    entrypoint_of,
    load_runtime_env,
    refuse_jobs_api_flags,
    refuse_rayjob_flags,
    refuse_stray_args,
)
from discord_ml_platform.cli.job_follow import follow, outcome_line
from discord_ml_platform.cli.output import OutputFormat, OutputOpt, print_data, print_rows, stderr
from discord_ml_platform.cli.settings import cli_platform

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

    from discord_ml_platform.jobs.events import JobSubmitted
    from discord_ml_platform.platform import Platform

app = typer.Typer(
    help="Submit Ray jobs to a cluster, follow their logs, check, stop and list them.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

ClusterOpt = Annotated[str, typer.Option("--cluster", "-c", help="Name of the cluster the job runs on.")]
NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Namespace of the cluster (default: wherever it is).")
]
JobArg = Annotated[str, typer.Argument(help="Submission id (dmp-..., raysubmit_...) or job id.")]
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
JOB_COLUMNS = (
    ("submission_id", "SUBMISSION ID"),
    ("status", "STATUS"),
    ("started", "STARTED"),
    ("duration", "DURATION"),
    ("entrypoint", "ENTRYPOINT"),
    ("message", "MESSAGE"),
)


def dashboard_url(
    cluster: str,
    namespace: str | None,
    backend: str | None,
    kubeconfig: str | None,
    context: str | None,
    platform: Platform | None = None,
) -> str:
    """The dashboard (Jobs API) URL of ``cluster``, found through the backend (closed afterwards)."""
    from discord_ml_platform.cli.views import find_cluster

    with using_backend(backend, kubeconfig, context, platform) as cluster_backend:
        info = find_cluster(cluster_backend, cluster, namespace)
        return cluster_backend.endpoints(info.handle).dashboard_url


def unreachable_jobs_api(cluster: str, url: str, err: BaseException) -> CliError:
    """The error for a cluster whose Jobs API does not answer."""
    return CliError(
        f"cannot reach the Jobs API of cluster {cluster!r} at {url}: {err}",
        hint=f"is the cluster ready? check with `dmp cluster get {cluster}`",
    )


def cluster_client(
    cluster: str, namespace: str | None, backend: str | None, kubeconfig: str | None, context: str | None
) -> JobSubmissionClient:
    """A Jobs API client for the dashboard of ``cluster``, with the platform's auth mode."""
    from discord_ml_platform.jobs import job_client

    platform = cli_platform()
    url = dashboard_url(cluster, namespace, backend, kubeconfig, context, platform)
    try:
        return job_client(url, auth_mode=platform.auth_mode)
    except Exception as err:  # the SDK raises ConnectionError/RuntimeError when the dashboard is down
        raise unreachable_jobs_api(cluster, url, err) from None


@contextmanager
def jobs_api(job_id: str | None = None) -> Iterator[None]:
    """Turn the Jobs SDK's bare ``RuntimeError``s into messages (unknown job -> exit 1)."""
    try:
        yield
    except RuntimeError as err:
        text = str(err)
        if job_id and ("does not exist" in text or "404" in text):
            raise CliError(
                f"no job {job_id!r} on this cluster", hint="list the jobs with `dmp job list --cluster NAME`"
            ) from None
        raise CliError(f"Jobs API request failed: {text}") from None


def _stamp(ms: int | None) -> str | None:
    return datetime.fromtimestamp(ms / 1000, tz=UTC).isoformat() if ms else None


def job_record(details: Any) -> dict[str, Any]:
    """Plain facts of a ``JobDetails``/``JobInfo`` object."""
    status = getattr(details, "status", None)
    start, end = getattr(details, "start_time", None), getattr(details, "end_time", None)
    return {
        "submission_id": getattr(details, "submission_id", None),
        "job_id": getattr(details, "job_id", None),
        "status": getattr(status, "value", status),
        "entrypoint": getattr(details, "entrypoint", None),
        "message": getattr(details, "message", None),
        "error_type": getattr(details, "error_type", None),
        "start_time": _stamp(start),
        "end_time": _stamp(end),
        "duration_seconds": round((end - start) / 1000, 1) if start and end else None,
        "driver_exit_code": getattr(details, "driver_exit_code", None),
        "metadata": getattr(details, "metadata", None) or {},
    }


@app.command(
    "submit",
    cls=CommandAfterDashes,
    epilog=(
        "Examples:\n\n"
        "  dmp job submit --cluster my-exp -- python -c \"print('hello')\"\n\n"
        "  dmp job submit -c my-exp --working-dir . --runtime-env env.yaml -- python train.py --epochs 3\n\n"
        "  JOB=$(dmp job submit -c my-exp --no-wait -- python train.py)   (prints the submission id)\n\n"
        "  dmp job submit --rayjob -c my-rj --gpu-type l4 --workers 2 --dry-run -o json -- python train.py"
    ),
)
def submit(
    ctx: typer.Context,
    cluster: ClusterOpt,
    command: Annotated[
        list[str] | None,
        typer.Argument(metavar="-- COMMAND", help="The command to run on the cluster, after --."),
    ] = None,
    namespace: NamespaceOpt = None,
    working_dir: Annotated[
        Path | None,
        typer.Option(
            "--working-dir", "-d", help="Local directory uploaded as the job's working dir (not with --rayjob)."
        ),
    ] = None,
    runtime_env: Annotated[
        Path | None, typer.Option("--runtime-env", help="Ray runtime env as a YAML or JSON file.")
    ] = None,
    env: Annotated[
        list[str] | None, typer.Option("--env", "-e", help="Environment variable KEY=VALUE for the job (repeatable).")
    ] = None,
    submission_id: Annotated[
        str | None, typer.Option("--submission-id", help="Id to give the job (default: generated).")
    ] = None,
    entrypoint_num_cpus: Annotated[
        float | None,
        typer.Option("--entrypoint-num-cpus", min=0, help="CPUs reserved for the driver (not with --rayjob)."),
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the submission id and return at once.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", min=0, help="Seconds to wait for the job before giving up (default: no limit)."),
    ] = None,
    output: OutputOpt = OutputFormat.table,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    rayjob: Annotated[
        bool,
        typer.Option(
            "--rayjob",
            help="Submit as a KubeRay RayJob named --cluster: KubeRay creates "
            "the cluster, runs the command and deletes the cluster after it.",
        ),
    ] = False,
    ttl_seconds: Annotated[
        int, typer.Option("--ttl-seconds", min=0, help="--rayjob: seconds the cluster is kept after the job.")
    ] = 60,
    deadline_seconds: Annotated[
        int | None,
        typer.Option("--deadline-seconds", min=1, help="--rayjob: KubeRay stops the job after this many seconds."),
    ] = 6 * 3600,
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="--rayjob: print the RayJob (-o json for JSON, else YAML) instead of creating it."
        ),
    ] = False,
    gpu_type: GpuTypeOpt = None,
    workers: WorkersOpt = 0,
    gpus_per_worker: GpusPerWorkerOpt = None,
    memory: MemoryOpt = None,
    cpus: CpusOpt = None,
    image: ImageOpt = None,
    min_workers: MinWorkersOpt = None,
    max_workers: MaxWorkersOpt = None,
    head_cpus: HeadCpusOpt = None,
    head_memory: HeadMemoryOpt = None,
    label: LabelOpt = None,
) -> None:
    """Run a command as a Ray job on a cluster, streaming its logs; exit 0 only if it SUCCEEDED.

    The command is what follows --; an option this command does not know is an error (exit 2).
    With -o json the logs go to stderr and stdout holds one JSON object with the outcome.
    With --rayjob the cluster is KubeRay's to create and delete (see docs/rayjob-mode.md).
    The hardware flags (--gpu-type, --workers, --memory, ...) shape that cluster as in `dmp cluster create`.
    """
    from discord_ml_platform.jobs.events import Workload

    refuse_stray_args(ctx)
    entrypoint = entrypoint_of(list(command or []))
    # The flags of the other mode are refused before anything is read or contacted: none is dropped silently.
    if rayjob:
        refuse_jobs_api_flags(ctx)
    else:
        refuse_rayjob_flags(ctx, dry_run=dry_run)
        check_cluster_name(cluster)
    env_spec = load_runtime_env(runtime_env, working_dir, env or [])
    hardware = hardware_fields(
        gpu_type=gpu_type,
        workers=workers,
        gpus_per_worker=gpus_per_worker,
        memory=memory,
        cpus=cpus,
        image=image,
        min_workers=min_workers,
        max_workers=max_workers,
        head_cpus=head_cpus,
        head_memory=head_memory,
        label=label,
    )
    platform = cli_platform()
    scripted = output in (OutputFormat.json, OutputFormat.yaml)
    # The job's own output: stdout for people, stderr when stdout holds the JSON/YAML outcome.
    log_stream = sys.stderr if scripted else sys.stdout
    runner = platform.runner(stop_on_exit=False, usage_interval_s=None, job_timeout_s=timeout)
    owner = platform.default_owner()
    if rayjob:
        from discord_ml_platform.cli.job_rayjob import rayjob_options, submit_rayjob

        submit_rayjob(
            platform,
            runner,
            cluster,
            platform.settings.namespace if namespace is None else namespace,  # "" is an error, not the default
            Workload(entrypoint, env_spec, {"submitted_by": owner}, submission_id),
            rayjob_options(ttl_seconds, deadline_seconds),
            hardware=hardware,
            dry_run=dry_run,
            no_wait=no_wait,
            output=output,
            backend=backend,
            kubeconfig=kubeconfig,
            context=context,
        )
        return

    from discord_ml_platform.jobs.runner import ClusterTarget

    target = ClusterTarget(cluster, dashboard_url(cluster, namespace, backend, kubeconfig, context, platform))
    workload = Workload(
        entrypoint,
        env_spec,
        {"submitted_by": owner, "dmp_cluster": cluster},
        submission_id,
        entrypoint_num_cpus,
    )
    if no_wait:
        from discord_ml_platform.jobs.client import RayJobError

        try:
            job_id = runner.submit(target, workload)
        except (ConnectionError, RuntimeError) as err:
            if isinstance(err, RayJobError):  # the cluster answered and refused the job
                raise
            raise unreachable_jobs_api(cluster, target.dashboard_url, err) from None
        if scripted:
            print_data({"submission_id": job_id, "cluster": cluster, "status": "PENDING"}, output)
        else:
            print(job_id, flush=True)
        return

    def submitted(event: JobSubmitted) -> None:
        stderr().print(f"[dim]submitted {event.job_id} to {cluster}; following its logs (Ctrl-C detaches)[/]")

    result = follow(
        runner.run(target, workload),
        log_stream,
        on_submitted=submitted,
        detach=lambda event: (
            f"job {event.job_id}",
            f"stop it with `dmp job stop {event.job_id} --cluster {cluster}`",
        ),
        unreachable=lambda err: unreachable_jobs_api(cluster, target.dashboard_url, err),
        timeout_s=timeout,
    )
    if scripted:
        print_data(
            {
                "submission_id": result.job_id,
                "cluster": cluster,
                "status": result.status,
                "message": result.message,
                "duration_seconds": round(result.duration_s, 1),
            },
            output,
        )
    else:
        stderr().print(outcome_line(result))
    if not result.succeeded:
        raise typer.Exit(1)


@app.command(
    "logs",
    epilog="Examples:\n\n  dmp job logs dmp-3f2a9c --cluster my-exp\n\n  dmp job logs dmp-3f2a9c -c my-exp --follow",
)
def logs(
    job: JobArg,
    cluster: ClusterOpt,
    namespace: NamespaceOpt = None,
    follow: Annotated[bool, typer.Option("--follow", "-f", help="Keep streaming until the job ends.")] = False,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Print a job's logs (all of them so far, or streamed with --follow)."""
    from discord_ml_platform.jobs import LogFollower

    client = cluster_client(cluster, namespace, backend, kubeconfig, context)
    with jobs_api(job):
        client.get_job_info(job)  # a clear error for an unknown job before streaming
        if not follow:
            sys.stdout.write(client.get_job_logs(job))
            sys.stdout.flush()
            return
    follower = LogFollower(client, job, lambda line: print(line, flush=True)).start()
    try:
        while follower.running:
            follower.join(0.5)
    except KeyboardInterrupt:
        raise typer.Exit(EXIT_INTERRUPTED) from None
    if follower.error is not None and follower.lines == 0:
        raise CliError(f"log stream of {job} failed: {follower.error}")


@app.command(
    "status",
    epilog="Examples:\n\n  dmp job status dmp-3f2a9c --cluster my-exp\n\n  dmp job status dmp-3f2a9c -c my-exp -o json",
)
def status(
    job: JobArg,
    cluster: ClusterOpt,
    namespace: NamespaceOpt = None,
    output: OutputOpt = OutputFormat.table,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Show a job's status, message and timing; exit 0 whatever the status (see `submit` for gating)."""
    client = cluster_client(cluster, namespace, backend, kubeconfig, context)
    with jobs_api(job):
        record = job_record(client.get_job_info(job))
    if output in (OutputFormat.json, OutputFormat.yaml):
        print_data(record, output)
        return
    for key in (
        "submission_id",
        "status",
        "message",
        "entrypoint",
        "start_time",
        "end_time",
        "duration_seconds",
        "driver_exit_code",
    ):
        if record.get(key) not in (None, ""):
            print(f"{key.replace('_', ' ')}: {record[key]}")


@app.command("stop", epilog="Example:\n\n  dmp job stop dmp-3f2a9c --cluster my-exp")
def stop(
    job: JobArg,
    cluster: ClusterOpt,
    namespace: NamespaceOpt = None,
    wait_s: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the job to stop.")] = 30,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Stop a running job and print its final status."""
    from discord_ml_platform.jobs import stop_job

    client = cluster_client(cluster, namespace, backend, kubeconfig, context)
    with jobs_api(job):
        client.get_job_info(job)
    final = stop_job(client, job, wait_s=wait_s)
    print(f"job {job}: {final}", flush=True)
    if final not in TERMINAL:
        raise CliError(f"job {job} did not stop within {wait_s:.0f}s (status {final})")


@app.command("list", epilog="Examples:\n\n  dmp job list --cluster my-exp\n\n  dmp job list -c my-exp -o json")
def list_jobs(
    cluster: ClusterOpt,
    namespace: NamespaceOpt = None,
    output: OutputOpt = OutputFormat.table,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """List the jobs of a cluster, newest first."""
    from discord_ml_platform.fleet import human_duration

    client = cluster_client(cluster, namespace, backend, kubeconfig, context)
    with jobs_api():
        records = [job_record(details) for details in client.list_jobs()]
    records.sort(key=lambda r: r["start_time"] or "", reverse=True)
    cells = [
        {
            **r,
            "started": (r["start_time"] or "-")[:19].replace("T", " "),
            "duration": human_duration(r["duration_seconds"]) if r["duration_seconds"] is not None else "-",
            "entrypoint": (r["entrypoint"] or "")[:60],
            "message": (r["message"] or "")[:60],
        }
        for r in records
    ]
    print_rows(records, JOB_COLUMNS, output, cells=cells, empty=f"no jobs on cluster {cluster}")
