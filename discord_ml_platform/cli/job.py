"""``dmp job``: submit Ray jobs to a cluster through the Jobs API, follow logs, check, stop, list."""

from __future__ import annotations

import contextlib
import logging
import shlex
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from discord_ml_platform.cli.backend_choice import BackendOpt, ContextOpt, KubeconfigOpt, backend_for
from discord_ml_platform.cli.errors import EXIT_INTERRUPTED, CliError, UsageProblem
from discord_ml_platform.cli.output import OutputFormat, OutputOpt, print_data, print_rows, stderr
from discord_ml_platform.cli.settings import default_owner, ray_auth_mode

if TYPE_CHECKING:
    from ray.job_submission import JobSubmissionClient

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
STREAM_GRACE_S = 1.0
TERMINAL = frozenset({"SUCCEEDED", "FAILED", "STOPPED"})
JOB_COLUMNS = (
    ("submission_id", "SUBMISSION ID"),
    ("status", "STATUS"),
    ("started", "STARTED"),
    ("duration", "DURATION"),
    ("entrypoint", "ENTRYPOINT"),
    ("message", "MESSAGE"),
)


def cluster_client(
    cluster: str, namespace: str | None, backend: str | None, kubeconfig: str | None, context: str | None
) -> JobSubmissionClient:
    """A Jobs API client for the dashboard of ``cluster`` (found through the backend)."""
    from discord_ml_platform.cli.views import find_cluster
    from discord_ml_platform.jobs import job_client

    cluster_backend = backend_for(backend, kubeconfig, context)
    info = find_cluster(cluster_backend, cluster, namespace)
    endpoints = cluster_backend.endpoints(info.handle)
    try:
        client = job_client(endpoints.dashboard_url, auth_mode=ray_auth_mode())
    except Exception as err:  # the SDK raises ConnectionError/RuntimeError when the dashboard is down
        raise CliError(
            f"cannot reach the Jobs API of cluster {cluster!r} at {endpoints.dashboard_url}: {err}",
            hint=f"is the cluster ready? check with `dmp cluster get {cluster}`",
        ) from None
    # The SDK logs every closed log stream at INFO (set after import: Ray configures its loggers then).
    logging.getLogger("ray.dashboard.modules.job.sdk").setLevel(logging.WARNING)
    return client


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


def entrypoint_of(command: list[str]) -> str:
    """The shell command of a job: one argument is taken as written, several are quoted and joined."""
    if not command:
        raise UsageProblem("no command given", hint="put it after --, e.g. dmp job submit -c NAME -- python train.py")
    return command[0] if len(command) == 1 else shlex.join(command)


def load_runtime_env(path: Path | None, working_dir: Path | None, env: list[str]) -> dict[str, Any]:
    """The job's runtime env: the YAML/JSON file, then ``--working-dir`` and ``--env`` on top."""
    import yaml

    runtime_env: dict[str, Any] = {}
    if path is not None:
        try:
            loaded = yaml.safe_load(path.read_text())
        except OSError as err:
            raise UsageProblem(f"--runtime-env: cannot read {path}: {err.strerror or err}") from None
        except yaml.YAMLError as err:
            raise UsageProblem(f"--runtime-env: {path} is not valid YAML or JSON: {err}") from None
        if not isinstance(loaded, dict):
            raise UsageProblem(f"--runtime-env: {path} must hold a mapping such as {{pip: [...], env_vars: {{...}}}}")
        runtime_env.update(loaded)
    if working_dir is not None:
        if not working_dir.is_dir():
            raise UsageProblem(f"--working-dir: {working_dir} is not a directory")
        runtime_env["working_dir"] = str(working_dir.resolve())
    for item in env:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageProblem(f"--env: expected KEY=VALUE, got {item!r}")
        runtime_env.setdefault("env_vars", {})[key] = value
    return runtime_env


class LogPrinter:
    """Prints a job's log lines as they stream in, and can finish from the stored logs without repeats."""

    def __init__(self, stream: Any) -> None:
        self._stream = stream
        self._lock = threading.Lock()
        self._printed = 0
        self._closed = False

    def line(self, text: str) -> None:
        """Print one streamed line (ignored once :meth:`finish` took over)."""
        with self._lock:
            if self._closed:
                return
            self._write(text)

    def finish(self, stored: str) -> None:
        """Stop taking streamed lines and print the stored lines not printed yet."""
        with self._lock:
            self._closed = True
            for text in stored.split("\n")[self._printed :]:
                if text:
                    self._write(text)

    def _write(self, text: str) -> None:
        self._printed += 1
        self._stream.write(text + "\n")
        self._stream.flush()


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
    context_settings={"allow_interspersed_args": False, "ignore_unknown_options": True},
    epilog=(
        "Examples:\n\n"
        "  dmp job submit --cluster my-exp -- python -c \"print('hello')\"\n\n"
        "  dmp job submit -c my-exp --working-dir . --runtime-env env.yaml -- python train.py --epochs 3\n\n"
        "  JOB=$(dmp job submit -c my-exp --no-wait -- python train.py)   (prints the submission id)"
    ),
)
def submit(
    cluster: ClusterOpt,
    command: Annotated[list[str] | None, typer.Argument(help="The command to run on the cluster, after --.")] = None,
    namespace: NamespaceOpt = None,
    working_dir: Annotated[
        Path | None, typer.Option("--working-dir", "-d", help="Local directory uploaded as the job's working dir.")
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
        float | None, typer.Option("--entrypoint-num-cpus", help="CPUs reserved for the driver.")
    ] = None,
    no_wait: Annotated[bool, typer.Option("--no-wait", help="Print the submission id and return at once.")] = False,
    timeout: Annotated[
        float | None,
        typer.Option("--timeout", help="Seconds to wait for the job before giving up (default: no limit)."),
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
        bool, typer.Option("--dry-run", help="--rayjob: print the RayJob instead of creating it.")
    ] = False,
) -> None:
    """Run a command as a Ray job on a cluster, streaming its logs; exit 0 only if it SUCCEEDED.

    With -o json the logs go to stderr and stdout holds one JSON object with the outcome.
    With --rayjob the cluster is KubeRay's to create and delete (see docs/rayjob-mode.md).
    """
    from discord_ml_platform.jobs import LogFollower, submit_job, wait_for_job

    entrypoint = entrypoint_of(command or [])
    env_spec = load_runtime_env(runtime_env, working_dir, env or [])
    if rayjob:
        _submit_rayjob(
            cluster,
            namespace or "ray",
            entrypoint,
            env_spec,
            submission_id,
            ttl_seconds,
            deadline_seconds,
            dry_run=dry_run,
            no_wait=no_wait,
            output=output,
            kubeconfig=kubeconfig,
            context=context,
        )
        return
    client = cluster_client(cluster, namespace, backend, kubeconfig, context)
    job_id = submit_job(
        client,
        entrypoint,
        runtime_env=env_spec,
        submission_id=submission_id,
        metadata={"submitted_by": default_owner(), "dmp_cluster": cluster},
        entrypoint_num_cpus=entrypoint_num_cpus,
    )
    scripted = output in (OutputFormat.json, OutputFormat.yaml)
    if no_wait:
        if scripted:
            print_data({"submission_id": job_id, "cluster": cluster, "status": "PENDING"}, output)
        else:
            print(job_id, flush=True)
        return
    log_stream = sys.stderr if scripted else sys.stdout
    stderr().print(f"[dim]submitted {job_id} to {cluster}; following its logs (Ctrl-C detaches)[/]")

    printer = LogPrinter(log_stream)
    follower = LogFollower(client, job_id, printer.line).start()
    try:
        outcome = wait_for_job(client, job_id, timeout_s=timeout)
        # The stream ends a few seconds after the job does; give it a moment, then print the rest
        # from the stored logs instead of waiting for the websocket to close.
        follower.join(STREAM_GRACE_S)
        if follower.running or follower.error is not None:
            with jobs_api(job_id):
                printer.finish(client.get_job_logs(job_id))
    except KeyboardInterrupt:
        raise CliError(
            f"detached from job {job_id}; it keeps running",
            hint=f"stop it with `dmp job stop {job_id} --cluster {cluster}`",
            exit_code=EXIT_INTERRUPTED,
        ) from None
    except TimeoutError as err:
        raise CliError(str(err), hint=f"stop it with `dmp job stop {job_id} --cluster {cluster}`") from None
    result = {
        "submission_id": job_id,
        "cluster": cluster,
        "status": outcome.status,
        "message": outcome.message,
        "duration_seconds": round(outcome.duration_s, 1),
    }
    if scripted:
        print_data(result, output)
    else:
        color = "green" if outcome.succeeded else "red"
        stderr().print(
            f"job {job_id} [{color}]{outcome.status}[/] after {outcome.duration_s:.1f}s"
            + (f": {outcome.message.splitlines()[0]}" if outcome.message and not outcome.succeeded else "")
        )
    if not outcome.succeeded:
        raise typer.Exit(1)


def _submit_rayjob(
    name: str,
    namespace: str,
    entrypoint: str,
    runtime_env: dict[str, Any],
    submission_id: str | None,
    ttl_seconds: int,
    deadline_seconds: int | None,
    *,
    dry_run: bool,
    no_wait: bool,
    output: OutputFormat,
    kubeconfig: str | None,
    context: str | None,
) -> None:
    """``dmp job submit --rayjob``: create a RayJob (head-only cluster of the defaults) and follow it."""
    from discord_ml_platform.backends.kuberay import load_platform_config
    from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs, RayJobState, rayjob_submission_id
    from discord_ml_platform.jobs import LogFollower, job_client
    from discord_ml_platform.spec import ClusterSpec
    from discord_ml_platform.spec.render import manifests_to_yaml, render_rayjob

    spec = ClusterSpec(name=name, namespace=namespace, owner=default_owner())
    cfg = load_platform_config()
    manifest = render_rayjob(
        spec,
        entrypoint=entrypoint,
        runtime_env=runtime_env or None,
        submission_id=submission_id or rayjob_submission_id(name),
        ttl_seconds_after_finished=ttl_seconds,
        active_deadline_seconds=deadline_seconds,
        job_metadata={"submitted_by": default_owner()},
        catalog=cfg.catalog,
        policy=cfg.policy,
        created_at=datetime.now(UTC),
    )
    if dry_run:
        sys.stdout.write(manifests_to_yaml([manifest]))
        return
    import ray.job_submission  # noqa: F401 - slow to import: not while the job's short TTL runs

    with KubeRayJobs(kubeconfig, context, namespace=namespace, platform_config=cfg) as jobs:
        jobs.create(manifest)
        scripted = output in (OutputFormat.json, OutputFormat.yaml)
        if no_wait:
            print_data(
                {"rayjob": name, "namespace": namespace, "job_id": manifest["spec"]["jobId"]}, output
            ) if scripted else print(name, flush=True)
            return
        stderr().print(f"[dim]created RayJob {namespace}/{name}; following it (Ctrl-C detaches, KubeRay keeps it)[/]")
        printer = LogPrinter(sys.stderr if scripted else sys.stdout)
        follower: LogFollower | None = None
        last = None
        seen = state = RayJobState(name, namespace)
        try:
            for state in jobs.follow(name, 0.5):
                seen = state if state.exists else seen
                if state.phase() != last:
                    last = state.phase()
                    stderr().print(f"[dim]{state.describe()}[/]")
                if follower is None and state.submitted:
                    try:
                        follower = LogFollower(
                            job_client(state.dashboard_url, ray_auth_mode()), state.job_id, printer.line
                        ).start()
                    except Exception as err:  # dashboard busy or already gone (short job, short TTL)
                        stderr().print(f"[yellow]cannot follow the job's logs yet: {err}[/]")
        except KeyboardInterrupt:
            raise CliError(
                f"detached from RayJob {name}; KubeRay keeps running it",
                hint=f"delete it with `kubectl delete rayjob -n {namespace} {name}`",
                exit_code=EXIT_INTERRUPTED,
            ) from None
        if follower is not None:
            follower.join(STREAM_GRACE_S)
        if follower is None or follower.running or follower.error is not None:
            if seen.dashboard_url and seen.job_id:
                with contextlib.suppress(Exception):
                    printer.finish(job_client(seen.dashboard_url, ray_auth_mode()).get_job_logs(seen.job_id))
    result = {
        "rayjob": name,
        "namespace": namespace,
        "job_id": state.job_id,
        "deployment_status": state.deployment_status,
        "status": state.job_status,
        "reason": state.reason,
        "message": state.message,
    }
    if scripted:
        print_data(result, output)
    else:
        stderr().print(("[green]" if state.succeeded else "[red]") + state.describe() + "[/]")
    if not state.succeeded:
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
    from discord_ml_platform.cli.output import human_duration

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
