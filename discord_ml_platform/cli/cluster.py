"""``dmp cluster``: create, list, inspect, delete and sweep Ray clusters."""

from __future__ import annotations

import secrets
import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from discord_ml_platform.cli.backend_choice import BackendOpt, ContextOpt, KubeconfigOpt, backend_for
from discord_ml_platform.cli.errors import EXIT_INTERRUPTED, CliError, UsageProblem, policy_lines, validation_lines
from discord_ml_platform.cli.output import (
    OutputFormat,
    OutputOpt,
    dump_json,
    human_duration,
    is_terminal,
    print_data,
    print_rows,
    stderr,
    stdout,
)
from discord_ml_platform.cli.settings import (
    complete_gpu_type,
    default_namespace,
    default_owner,
    dns_label,
    platform_config,
)

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend, ClusterEndpoints, ClusterHandle, PhaseEvent
    from discord_ml_platform.spec import ClusterSpec, PlatformConfig

app = typer.Typer(
    help="Create, list, inspect, delete and sweep Ray clusters.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

# ClusterSpec field -> the flag a user typed, for error messages.
SPEC_FLAGS = {
    "name": "NAME",
    "namespace": "--namespace",
    "gpu_type": "--gpu-type",
    "workers": "--workers",
    "min_workers": "--min-workers",
    "max_workers": "--max-workers",
    "gpus_per_worker": "--gpus-per-worker",
    "cpus_per_worker": "--cpus",
    "memory_per_worker": "--memory",
    "head_cpus": "--head-cpus",
    "head_memory": "--head-memory",
    "object_store_memory": "--object-store-memory",
    "image": "--image",
    "owner": "--owner",
    "team": "--team",
    "ttl": "--ttl",
    "labels": "--label",
    "env": "--env",
}
MAX_NAME = 47

NamespaceOpt = Annotated[
    str | None, typer.Option("--namespace", "-n", help="Kubernetes namespace (default: $DMP_NAMESPACE or 'ray').")
]


# Building the spec ------------------------------------------------------------------------------


def generate_name(owner: str, gpu_type: str) -> str:
    """``<owner>-<gpu>-<random4>``, a DNS-1123 label of at most 47 characters."""
    suffix = secrets.token_hex(2)
    gpu = dns_label(gpu_type, 20) or "cpu"
    room = MAX_NAME - len(gpu) - len(suffix) - 2
    person = dns_label(owner.split("@")[0], room) or "user"
    return f"{person}-{gpu}-{suffix}"


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageProblem(f"{flag}: expected KEY=VALUE, got {item!r}")
        pairs[key] = value
    return pairs


def build_spec(fields: dict[str, Any], config: PlatformConfig, typed: dict[str, str] | None = None) -> ClusterSpec:
    """Validate ``fields`` into a ``ClusterSpec`` and check it against the platform policy.

    Raises:
        UsageProblem: one line per problem, named by the flag (``--workers: must be <= 256 (got 300)``).
    """
    from pydantic import ValidationError

    from discord_ml_platform.spec import ClusterSpec, PolicyViolation, UnknownGpuTypeError, check_policy

    try:
        config.catalog.get(fields["gpu_type"])
    except UnknownGpuTypeError as err:
        raise UsageProblem(f"--gpu-type: {err}", hint="list the GPU types with: dmp gpus") from None
    try:
        spec = ClusterSpec.model_validate(
            {k: v for k, v in fields.items() if v is not None}, context={"catalog": config.catalog}
        )
    except ValidationError as err:
        raise UsageProblem("\n".join(validation_lines(err, SPEC_FLAGS))) from None
    try:
        check_policy(spec, config.policy, config.catalog)
    except PolicyViolation as err:
        raise UsageProblem(
            "\n".join(policy_lines(err, SPEC_FLAGS, typed)),
            hint="the platform policy sets these limits ($DMP_PLATFORM_CONFIG)",
        ) from None
    return spec


def _ttl(value: str) -> Any:
    from discord_ml_platform.spec.policy import parse_duration

    try:
        return parse_duration(value)
    except ValueError as err:
        raise UsageProblem(f"--ttl: {err}") from None


# Waiting ----------------------------------------------------------------------------------------


def wait_with_progress(
    backend: ClusterBackend, handle: ClusterHandle, timeout_s: float
) -> tuple[ClusterEndpoints, list[PhaseEvent]]:
    """``wait_ready`` with a live status on a terminal, or one plain line per phase otherwise."""
    from rich.markup import escape

    phases: list[PhaseEvent] = []
    started = time.monotonic()
    console = stderr()

    def line(event: PhaseEvent) -> str:
        return f"[{time.monotonic() - started:6.1f}s] {event.phase}: {event.message}"

    if is_terminal(sys.stderr):
        with console.status(f"waiting for cluster {escape(handle.name)} ...") as status:

            def on_phase(event: PhaseEvent) -> None:
                phases.append(event)
                console.print(f"[green]✓[/] {escape(line(event))}")
                status.update(f"{escape(event.phase)}: {escape(event.message)}")

            endpoints = backend.wait_ready(handle, timeout_s, on_phase=on_phase)
    else:

        def on_phase(event: PhaseEvent) -> None:
            phases.append(event)
            print(line(event), file=sys.stderr, flush=True)

        endpoints = backend.wait_ready(handle, timeout_s, on_phase=on_phase)
    return endpoints, phases


# Commands ---------------------------------------------------------------------------------------


@app.command(
    "create",
    epilog=(
        "Examples:\n\n"
        "  dmp cluster create --gpu-type h100-80gb --workers 4 --wait\n\n"
        "  dmp cluster create my-exp --gpu-type a10g --workers 2 --gpus-per-worker 4 --memory 128Gi --ttl 4h\n\n"
        "  dmp cluster create --gpu-type h100-80gb --workers 4 --dry-run -o yaml   (print the RayCluster, contact nothing)"
    ),
)
def create(
    name: Annotated[
        str | None, typer.Argument(help="Cluster name (DNS-1123 label); default <owner>-<gpu>-<random4>.")
    ] = None,
    gpu_type: Annotated[
        str,
        typer.Option(
            "--gpu-type", "-g", autocompletion=complete_gpu_type, help="GPU pool from the catalog (see `dmp gpus`)."
        ),
    ] = "cpu",
    workers: Annotated[int, typer.Option("--workers", "-w", help="Worker nodes besides the head.")] = 1,
    gpus_per_worker: Annotated[
        int | None, typer.Option("--gpus-per-worker", help="GPUs per worker (default 1 on GPU pools, 0 on cpu).")
    ] = None,
    memory: Annotated[
        str | None,
        typer.Option(
            "--memory", "-m", help="Memory per worker, a Kubernetes quantity such as 64Gi (default from the catalog)."
        ),
    ] = None,
    cpus: Annotated[float | None, typer.Option("--cpus", help="CPUs per worker (default from the catalog).")] = None,
    image: Annotated[
        str | None, typer.Option("--image", help="Container image (default: the Ray image for the pool).")
    ] = None,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Lifetime before the sweeper deletes it: 8h, 1d12h, 90m, 3600.")
    ] = "8h",
    owner: Annotated[
        str | None, typer.Option("--owner", help="Owner label (default: $DMP_OWNER or your login).")
    ] = None,
    team: Annotated[str | None, typer.Option("--team", help="Team billed for the cluster.")] = None,
    namespace: NamespaceOpt = None,
    min_workers: Annotated[int | None, typer.Option("--min-workers", help="Autoscaling lower bound.")] = None,
    max_workers: Annotated[int | None, typer.Option("--max-workers", help="Autoscaling upper bound.")] = None,
    head_cpus: Annotated[float | None, typer.Option("--head-cpus", help="CPUs of the head node.")] = None,
    head_memory: Annotated[
        str | None, typer.Option("--head-memory", help="Memory of the head node (default 4Gi).")
    ] = None,
    label: Annotated[
        list[str] | None, typer.Option("--label", "-l", help="Extra label KEY=VALUE (repeatable).")
    ] = None,
    env: Annotated[
        list[str] | None,
        typer.Option("--env", "-e", help="Environment variable KEY=VALUE for every Ray container (repeatable)."),
    ] = None,
    wait: Annotated[
        bool, typer.Option("--wait/--no-wait", help="Wait until head and workers are ready, showing each phase.")
    ] = False,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds --wait waits before failing.")] = 900,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the manifests (-o yaml|json) and contact nothing.")
    ] = False,
    output: OutputOpt = OutputFormat.table,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Create a locked-down Ray cluster from a GPU type, a worker count and a memory size.

    The spec is checked against the GPU catalog and the platform policy before anything is created; an invalid value exits with code 2 and one line per problem.
    """
    config = platform_config()
    owner = owner or default_owner()
    fields: dict[str, Any] = {
        "name": name or generate_name(owner, gpu_type),
        "namespace": namespace or default_namespace(),
        "gpu_type": gpu_type,
        "workers": workers,
        "min_workers": min_workers,
        "max_workers": max_workers,
        "gpus_per_worker": gpus_per_worker,
        "cpus_per_worker": cpus,
        "memory_per_worker": memory,
        "head_cpus": head_cpus,
        "head_memory": head_memory,
        "image": image,
        "owner": owner,
        "team": team,
        "ttl": _ttl(ttl),
        "labels": _pairs(label or [], "--label") or None,
        "env": _pairs(env or [], "--env") or None,
    }
    spec = build_spec(fields, config, typed={"ttl": ttl})
    if dry_run:
        _print_manifests(spec, config, output)
        return

    from discord_ml_platform.backends import ClusterError

    cluster_backend = backend_for(backend, kubeconfig, context)
    _refuse_existing(cluster_backend, spec)
    handle = cluster_backend.create(spec)
    result: dict[str, Any] = {
        "name": handle.name,
        "namespace": handle.namespace,
        "backend": handle.backend,
        "status": "requested",
        "gpu_type": spec.gpu_type,
        "workers": spec.workers,
        "gpus_per_worker": spec.gpus_per_worker,
        "hourly_price_usd": round(spec.hourly_price(config.catalog), 4),
        "ttl_seconds": spec.ttl.total_seconds(),
        "endpoints": None,
        "phases": [],
    }
    if wait:
        try:
            endpoints, phases = wait_with_progress(cluster_backend, handle, timeout)
        except ClusterError as err:
            raise CliError(
                str(err),
                hint=f"the cluster still exists: inspect it with `dmp cluster get {handle.name}`, "
                f"remove it with `dmp cluster delete {handle.name} -y`",
            ) from None
        except KeyboardInterrupt:
            raise CliError(
                f"stopped waiting; cluster {handle.name!r} still exists",
                hint=f"check it with `dmp cluster get {handle.name}` or remove it with `dmp cluster delete {handle.name} -y`",
                exit_code=EXIT_INTERRUPTED,
            ) from None
        result.update(status="ready", endpoints=endpoints, phases=phases)
    if output in (OutputFormat.json, OutputFormat.yaml):
        print_data(result, output)
        return
    _print_created(result)


def _print_manifests(spec: ClusterSpec, config: PlatformConfig, output: OutputFormat) -> None:
    from discord_ml_platform.spec import manifests_to_yaml, render_manifests

    manifests = render_manifests(
        spec, catalog=config.catalog, policy=config.policy, created_at=datetime.now(UTC)
    )
    if output is OutputFormat.json:
        document = manifests[0] if len(manifests) == 1 else {"apiVersion": "v1", "kind": "List", "items": manifests}
        sys.stdout.write(dump_json(document) + "\n")
    else:
        sys.stdout.write(manifests_to_yaml(manifests))
    sys.stdout.flush()


def _refuse_existing(backend: ClusterBackend, spec: ClusterSpec) -> None:
    from discord_ml_platform.spec.labels import CLUSTER, label_value

    for info in backend.list({CLUSTER: label_value(spec.name)}):
        if info.handle.name == spec.name and info.handle.namespace == spec.namespace:
            raise CliError(
                f"cluster {spec.name!r} already exists in namespace {spec.namespace!r} (status {info.status})",
                hint=f"pick another name, or remove it first with `dmp cluster delete {spec.name} -y`",
            )


def _print_created(result: dict[str, Any]) -> None:
    from rich.markup import escape

    console = stdout()
    name = result["name"]
    console.print(
        f"cluster [bold]{escape(name)}[/] {result['status']} on backend {result['backend']} "
        f"(namespace {escape(result['namespace'])}, {result['workers']} x {escape(result['gpu_type'])} workers, "
        f"${result['hourly_price_usd']:,.2f}/h, expires in {human_duration(result['ttl_seconds'])})"
    )
    endpoints = result["endpoints"]
    if endpoints is not None:
        console.print(f"  dashboard: {escape(endpoints.dashboard_url)}")
        console.print(f"  gcs:       {escape(endpoints.gcs_address)}")
    else:
        console.print(f"  watch it come up with: dmp cluster get {escape(name)}")
    console.print(
        f'  run a job: dmp job submit --cluster {escape(name)} -- python -c "import ray; print(ray.cluster_resources())"'
    )


@app.command(
    "list",
    epilog="Examples:\n\n  dmp cluster list\n\n  dmp cluster list -A --owner ada --gpu-type h100-80gb\n\n  dmp cluster list -o json | jq '.[].name'",
)
def list_clusters(
    all_namespaces: Annotated[
        bool, typer.Option("--all-namespaces", "-A", help="Clusters of every namespace.")
    ] = False,
    namespace: NamespaceOpt = None,
    owner: Annotated[str | None, typer.Option("--owner", help="Only clusters of this owner.")] = None,
    gpu_type: Annotated[
        str | None,
        typer.Option("--gpu-type", "-g", autocompletion=complete_gpu_type, help="Only clusters of this GPU pool."),
    ] = None,
    output: OutputOpt = OutputFormat.table,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """List clusters with owner, hardware, readiness, age, expiry and price per hour."""
    from discord_ml_platform.cli.views import LIST_COLUMNS, cluster_row, display_cells
    from discord_ml_platform.spec.labels import GPU_TYPE, OWNER, label_value

    selector = {}
    if owner:
        selector[OWNER] = label_value(owner)
    if gpu_type:
        selector[GPU_TYPE] = label_value(gpu_type)
    config = platform_config()
    infos = backend_for(backend, kubeconfig, context).list(selector or None)
    wanted = None if all_namespaces else (namespace or default_namespace())
    now = datetime.now(UTC)
    rows = sorted(
        (cluster_row(i, config.catalog, now) for i in infos if wanted is None or i.handle.namespace == wanted),
        key=lambda r: (r["namespace"], r["name"]),
    )
    columns = LIST_COLUMNS if all_namespaces else tuple(c for c in LIST_COLUMNS if c[0] != "namespace")
    where = "any namespace" if wanted is None else f"namespace {wanted!r} (-A for all)"
    print_rows(rows, columns, output, cells=[display_cells(r, now) for r in rows], empty=f"no clusters in {where}")


@app.command("get", epilog="Examples:\n\n  dmp cluster get my-exp\n\n  dmp cluster get my-exp -o yaml")
def get(
    name: Annotated[str, typer.Argument(help="Cluster name.")],
    namespace: NamespaceOpt = None,
    output: OutputOpt = OutputFormat.table,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Show one cluster: status, hardware, endpoints, conditions and recent events."""
    from discord_ml_platform.cli.views import cluster_row, display_cells, find_cluster

    info = find_cluster(backend_for(backend, kubeconfig, context), name, namespace)
    row = cluster_row(info, platform_config().catalog)
    document = {**row, "endpoints": info.endpoints, "details": dict(info.details)}
    if output is not OutputFormat.table:
        print_data(document, OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml)
        return
    _print_details(display_cells(row), document)


_HEADERS = {"lastTransitionTime": "SINCE", "last_seen": "LAST SEEN", "lastTimestamp": "LAST SEEN"}


def _print_details(cells: dict[str, Any], document: dict[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    console = stdout()
    facts = [
        ("Name", cells["name"]),
        ("Namespace", cells["namespace"]),
        ("Backend", cells["backend"]),
        ("Status", cells["status"]),
        ("Owner", cells["owner"]),
        ("Team", cells["team"]),
        ("Run id", cells["run_id"]),
        ("GPUs", cells["gpus"]),
        ("Workers", f"{cells['workers']} ready"),
        ("Age", cells["age"]),
        ("Expires", cells["expires"]),
        ("Price", f"{cells['price']}/hour"),
    ]
    endpoints = document["endpoints"]
    if endpoints is not None:
        facts += [
            ("Dashboard", endpoints.dashboard_url),
            ("GCS", endpoints.gcs_address),
            ("Client", endpoints.client_address),
        ]
    for key, value in facts:
        if value not in (None, ""):
            console.print(f"[bold]{key + ':':<11}[/] {escape(str(value))}")
    details = document["details"]
    for title, key, columns in (
        ("Conditions", "conditions", ("type", "status", "reason", "message", "lastTransitionTime")),
        ("Events", "events", ("last_seen", "lastTimestamp", "type", "reason", "object", "message", "count")),
    ):
        items = details.get(key)
        if not items:
            continue
        table = Table(title=title, title_justify="left", box=None, header_style="bold", pad_edge=False)
        shown = [c for c in columns if any(isinstance(i, dict) and i.get(c) not in (None, "") for i in items)]
        for column in shown:
            table.add_column(_HEADERS.get(column, column.upper()), overflow="fold")
        for item in items[-20:]:
            item = item if isinstance(item, dict) else {"message": str(item)}
            table.add_row(*(escape(str(item.get(c, ""))) for c in shown))
        console.print()
        console.print(table)
    for key, value in details.items():
        if key in ("conditions", "events", "spec") or value in (None, "", [], {}):
            continue
        if isinstance(value, dict) and len(value) <= 8:
            value = ", ".join(f"{k}={v}" for k, v in value.items())
        elif isinstance(value, (dict, list)):
            continue
        console.print(f"[bold]{escape(str(key))}:[/] {escape(str(value))}")
    console.print("[dim](-o yaml shows everything the backend reports)[/]")


@app.command("delete", epilog="Examples:\n\n  dmp cluster delete my-exp\n\n  dmp cluster delete my-exp other-exp -y")
def delete(
    names: Annotated[list[str], typer.Argument(help="Cluster name(s).")],
    yes: Annotated[bool, typer.Option("--yes", "-y", help="Do not ask for confirmation.")] = False,
    namespace: NamespaceOpt = None,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for the deletion.")] = 60,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Delete clusters and everything they started (asks first unless -y)."""
    from discord_ml_platform.cli.views import find_cluster

    cluster_backend = backend_for(backend, kubeconfig, context)
    infos = [find_cluster(cluster_backend, name, namespace) for name in names]  # all or nothing
    if not yes:
        if not sys.stdin.isatty():
            raise UsageProblem("refusing to delete without confirmation on a non-interactive input", hint="pass -y")
        listing = ", ".join(f"{i.handle.namespace}/{i.handle.name}" for i in infos)
        if not typer.confirm(f"Delete {listing}?", default=False):
            raise CliError("nothing deleted", exit_code=1)
    for info in infos:
        cluster_backend.delete(info.handle, timeout)
        stdout().print(f"deleted cluster {info.handle.name} (namespace {info.handle.namespace})", markup=False)


@app.command(
    "sweep",
    epilog="Examples:\n\n  dmp cluster sweep --dry-run\n\n  dmp cluster sweep -o json   (from cron: deletes and reports)",
)
def sweep(
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only print what would be deleted.")] = False,
    output: OutputOpt = OutputFormat.table,
    timeout: Annotated[float, typer.Option("--timeout", help="Seconds to wait for each deletion.")] = 60,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Delete platform clusters (all namespaces) whose expiry has passed or whose status is dead."""
    from discord_ml_platform.cli.views import cluster_row, sweep_reason
    from discord_ml_platform.spec.labels import MANAGED_BY, MANAGED_BY_VALUE

    cluster_backend = backend_for(backend, kubeconfig, context)
    config = platform_config()
    now = datetime.now(UTC)
    doomed = []
    for info in cluster_backend.list({MANAGED_BY: MANAGED_BY_VALUE}):
        row = cluster_row(info, config.catalog, now)
        reason = sweep_reason(row)
        if reason:
            doomed.append(
                (
                    info,
                    {
                        "name": row["name"],
                        "namespace": row["namespace"],
                        "owner": row["owner"],
                        "reason": reason,
                        "action": "would delete" if dry_run else "deleted",
                    },
                )
            )
    failures = []
    for info, row in doomed:
        if dry_run:
            continue
        try:
            cluster_backend.delete(info.handle, timeout)
        except Exception as err:  # one stuck cluster must not stop the sweep
            row["action"] = f"failed: {err}"
            failures.append(row["name"])
    rows = [row for _, row in doomed]
    columns = (
        ("action", "ACTION"),
        ("name", "NAME"),
        ("namespace", "NAMESPACE"),
        ("owner", "OWNER"),
        ("reason", "REASON"),
    )
    print_rows(rows, columns, output, empty="nothing to sweep")
    if failures:
        raise CliError(f"could not delete {', '.join(failures)}")
