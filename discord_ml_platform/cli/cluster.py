"""``dmp cluster``: create, list, inspect, delete and sweep Ray clusters."""

from __future__ import annotations

import secrets
import sys
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Annotated, Any

import typer

from discord_ml_platform.cli.backend_choice import BackendOpt, ContextOpt, KubeconfigOpt, using_backend
from discord_ml_platform.cli.cluster_output import (
    print_created,
    print_details,
    print_manifests,
    wait_with_progress,
)
from discord_ml_platform.cli.errors import EXIT_INTERRUPTED, CliError, UsageProblem
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
    build_spec,
    hardware_fields,
    parse_pairs,
    parse_ttl,
)
from discord_ml_platform.cli.output import OutputFormat, OutputOpt, print_data, print_rows, stdout
from discord_ml_platform.cli.settings import cli_platform, complete_gpu_type, dns_label

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend
    from discord_ml_platform.platform import Platform
    from discord_ml_platform.spec import ClusterSpec

app = typer.Typer(
    help="Create, list, inspect, delete and sweep Ray clusters.",
    no_args_is_help=True,
    context_settings={"help_option_names": ["-h", "--help"]},
)

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
    gpu_type: GpuTypeOpt = "cpu",
    workers: WorkersOpt = 1,
    gpus_per_worker: GpusPerWorkerOpt = None,
    memory: MemoryOpt = None,
    cpus: CpusOpt = None,
    image: ImageOpt = None,
    ttl: Annotated[
        str, typer.Option("--ttl", help="Lifetime before the sweeper deletes it: 8h, 1d12h, 90m, 3600.")
    ] = "8h",
    owner: Annotated[
        str | None, typer.Option("--owner", help="Owner label (default: $DMP_OWNER or your login).")
    ] = None,
    team: Annotated[str | None, typer.Option("--team", help="Team billed for the cluster.")] = None,
    namespace: NamespaceOpt = None,
    min_workers: MinWorkersOpt = None,
    max_workers: MaxWorkersOpt = None,
    head_cpus: HeadCpusOpt = None,
    head_memory: HeadMemoryOpt = None,
    label: LabelOpt = None,
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
    platform = cli_platform()
    owner = owner or platform.default_owner()
    pool = "cpu" if gpu_type is None else gpu_type  # an empty --gpu-type is an error, not the cpu pool
    fields: dict[str, Any] = {
        **hardware_fields(
            gpu_type=pool,
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
        ),
        "name": generate_name(owner, pool) if name is None else name,  # "" is an error, not "generate one"
        "namespace": namespace,
        "owner": owner,
        "team": team,
        "ttl": parse_ttl(ttl),
        "env": parse_pairs(env or [], "--env") or None,
    }
    spec = build_spec(platform, fields, typed={"ttl": ttl})
    if dry_run:
        print_manifests(spec, platform, output)
        return
    with using_backend(backend, kubeconfig, context, platform) as cluster_backend:
        result = _create(cluster_backend, spec, platform, wait=wait, timeout=timeout)
    if output in (OutputFormat.json, OutputFormat.yaml):
        print_data(result, output)
        return
    print_created(result)


def _create(
    cluster_backend: ClusterBackend, spec: ClusterSpec, platform: Platform, *, wait: bool, timeout: float
) -> dict[str, Any]:
    """Create the cluster (refusing an existing name), wait for it if asked; what ``create`` reports."""
    from discord_ml_platform.backends import ClusterError

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
        "hourly_price_usd": round(platform.hourly_price(spec), 4),
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
    return result


def _refuse_existing(backend: ClusterBackend, spec: ClusterSpec) -> None:
    from discord_ml_platform.spec.labels import CLUSTER, label_value

    for info in backend.list({CLUSTER: label_value(spec.name)}):
        if info.handle.name == spec.name and info.handle.namespace == spec.namespace:
            raise CliError(
                f"cluster {spec.name!r} already exists in namespace {spec.namespace!r} (status {info.status})",
                hint=f"pick another name, or remove it first with `dmp cluster delete {spec.name} -y`",
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
    """List clusters with owner, hardware, readiness, age, expiry and price per hour.

    A cluster with a label that cannot be read is still listed; a warning on stderr says what is wrong.
    """
    from discord_ml_platform.cli.output import stderr
    from discord_ml_platform.cli.views import LIST_COLUMNS
    from discord_ml_platform.fleet import display_cells, safe_cluster_row
    from discord_ml_platform.spec.labels import GPU_TYPE, OWNER, label_value

    selector = {}
    if owner:
        selector[OWNER] = label_value(owner)
    if gpu_type:
        selector[GPU_TYPE] = label_value(gpu_type)
    platform = cli_platform()
    with using_backend(backend, kubeconfig, context, platform) as cluster_backend:
        infos = cluster_backend.list(selector or None)
    wanted = None if all_namespaces else (namespace or platform.settings.namespace)
    now = datetime.now(UTC)
    rows = sorted(
        (safe_cluster_row(i, platform.catalog, now) for i in infos if wanted is None or i.handle.namespace == wanted),
        key=lambda r: (r["namespace"], r["name"]),
    )
    for row in rows:  # flagged, never fatal: one odd cluster must not hide the others
        for problem in row["problems"]:
            stderr().print(f"warning: cluster {row['namespace']}/{row['name']}: {problem}", markup=False)
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
    from discord_ml_platform.cli.views import find_cluster
    from discord_ml_platform.fleet import cluster_row, display_cells

    platform = cli_platform()
    with using_backend(backend, kubeconfig, context, platform) as cluster_backend:
        info = find_cluster(cluster_backend, name, namespace)
    row = cluster_row(info, platform.catalog)
    document = {**row, "endpoints": info.endpoints, "details": dict(info.details)}
    if output is not OutputFormat.table:
        print_data(document, OutputFormat.json if output is OutputFormat.json else OutputFormat.yaml)
        return
    print_details(display_cells(row), document)


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

    with using_backend(backend, kubeconfig, context) as cluster_backend:
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
    all_deployments: Annotated[
        bool,
        typer.Option(
            "--all-deployments", help="Also sweep clusters of other deployments (default: only $DMP_DEPLOYMENT's)."
        ),
    ] = False,
    backend: BackendOpt = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
) -> None:
    """Delete platform clusters (all namespaces) of this deployment whose expiry has passed or whose status is dead.

    A cluster whose labels cannot be read is kept (unless dead) with a warning; it never stops the sweep.
    Clusters of another deployment ($DMP_DEPLOYMENT) are left to their own sweeper unless --all-deployments;
    one without a deployment label goes only when expired. The cluster of a RayJob is never swept: its
    RayJob (swept by the cleanup sensor) deletes it.
    """
    from discord_ml_platform.cli.output import stderr
    from discord_ml_platform.fleet import safe_cluster_row, sweep_reason, sweep_right
    from discord_ml_platform.spec.labels import MANAGED_BY, MANAGED_BY_VALUE

    platform = cli_platform()
    deployment = None if all_deployments else platform.settings.deployment
    now = datetime.now(UTC)
    doomed = []
    failures = []
    with using_backend(backend, kubeconfig, context, platform) as cluster_backend:
        for info in cluster_backend.list({MANAGED_BY: MANAGED_BY_VALUE}):
            right = sweep_right(info.labels, deployment)
            if not right.may_delete:
                continue  # another deployment's or a RayJob's: its own sweeper decides
            row = safe_cluster_row(info, platform.catalog, now)
            for problem in row["problems"]:
                stderr().print(f"warning: cluster {row['namespace']}/{row['name']}: {problem}", markup=False)
            reason = sweep_reason(row)
            if reason and (row["expired"] or not right.expired_only):
                action = "would delete" if dry_run else "deleted"
                keep = ("name", "namespace", "owner")
                doomed.append((info, {**{k: row[k] for k in keep}, "reason": reason, "action": action}))
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
