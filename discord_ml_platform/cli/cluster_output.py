"""What ``dmp cluster`` prints: manifests of a dry run, a created cluster, one cluster's details, and
the progress of a wait."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from discord_ml_platform.cli.output import OutputFormat, dump_json, is_terminal, stderr, stdout
from discord_ml_platform.fleet import human_duration

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend, ClusterEndpoints, ClusterHandle, PhaseEvent
    from discord_ml_platform.platform import Platform
    from discord_ml_platform.spec import ClusterSpec


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


def print_manifests(spec: ClusterSpec, platform: Platform, output: OutputFormat) -> None:
    """``--dry-run``: the manifests of ``spec`` with the platform's catalog and policy, as YAML or JSON."""
    from discord_ml_platform.spec import render_manifests

    manifests = render_manifests(spec, catalog=platform.catalog, policy=platform.policy, created_at=datetime.now(UTC))
    write_manifests(manifests, output)


def write_manifests(manifests: list[dict[str, Any]], output: OutputFormat) -> None:
    """What every ``--dry-run`` prints: JSON with ``-o json`` (one object, or a ``List`` of several), else YAML."""
    from discord_ml_platform.spec import manifests_to_yaml

    if output is OutputFormat.json:
        document = manifests[0] if len(manifests) == 1 else {"apiVersion": "v1", "kind": "List", "items": manifests}
        sys.stdout.write(dump_json(document) + "\n")
    else:
        sys.stdout.write(manifests_to_yaml(manifests))
    sys.stdout.flush()


def print_created(result: dict[str, Any]) -> None:
    """What ``create`` says for people: the cluster, its price and expiry, and what to do next."""
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


_HEADERS = {"lastTransitionTime": "SINCE", "last_seen": "LAST SEEN", "lastTimestamp": "LAST SEEN"}


def print_details(cells: dict[str, Any], document: dict[str, Any]) -> None:
    """``cluster get`` for people: the facts, then conditions and events as tables."""
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
