"""``dmp xray``: serve the X-Ray dashboard (pages and JSON API) over the same backends as the CLI.

The platform config (prices, pod policy, Ray images) and the auth mode are the core's; the backends
are built by the core and closed when the server stops.

A listener beyond loopback (``--host 0.0.0.0``) needs the host names clients use
(``--allowed-host`` or ``$DMP_XRAY_ALLOWED_HOSTS``): X-Ray answers 400 to any other ``Host``
header, which stops DNS rebinding, and starting it without them is refused.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from discord_ml_platform.cli.backend_choice import (
    BACKENDS,
    BackendChoice,
    ContextOpt,
    KubeconfigOpt,
    choose_backend,
    open_backend,
)
from discord_ml_platform.cli.errors import UsageProblem
from discord_ml_platform.cli.output import stderr
from discord_ml_platform.cli.settings import cli_platform

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend

EPILOG = (
    "Mutating actions (delete, notebooks) and reading job logs, Ray jobs and notebooks need $DMP_XRAY_TOKEN "
    "set where the dashboard runs; without it the dashboard is read-only and shows no job output. "
    "The token is never taken as a flag (flags show in `ps`), and clients send it in a header only.\n\n"
    "Listening beyond loopback (--host 0.0.0.0) needs the names clients reach X-Ray by, "
    "--allowed-host or $DMP_XRAY_ALLOWED_HOSTS (comma-separated; *.example.com for subdomains).\n\n"
    "Examples:\n\n"
    "  dmp xray\n\n"
    "  DMP_XRAY_TOKEN=$(openssl rand -hex 24) dmp xray --backend kuberay --backend local --port 8080\n\n"
    "  DMP_XRAY_ALLOWED_HOSTS=xray.example.com dmp xray --host 0.0.0.0 --backend kuberay --namespace ray"
)


def xray(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8080,
    backend: Annotated[
        list[str] | None,
        typer.Option(
            "--backend",
            "-b",
            metavar="local|kuberay",
            help="Backend to show (repeatable). Default: local, plus kuberay when a kubeconfig's API server answers.",
        ),
    ] = None,
    kubeconfig: KubeconfigOpt = None,
    context: ContextOpt = None,
    namespace: Annotated[
        str | None,
        typer.Option(
            "--namespace",
            "-n",
            help="Show only this namespace's clusters on kuberay (default: every namespace). "
            "With a Role in one namespace instead of a ClusterRole, name that namespace.",
        ),
    ] = None,
    allowed_host: Annotated[
        list[str] | None,
        typer.Option(
            "--allowed-host",
            metavar="HOST",
            help="A name clients reach X-Ray by (repeatable; *.example.com for subdomains). Other Host "
            "headers get 400. Default: $DMP_XRAY_ALLOWED_HOSTS, else the loopback names (loopback only).",
        ),
    ] = None,
    dagster_url: Annotated[
        str | None,
        typer.Option(help="Dagster webserver URL for run links (default: $DMP_DAGSTER_URL or http://localhost:3000)."),
    ] = None,
    refresh: Annotated[float, typer.Option(min=2, help="Seconds between list refreshes in the browser.")] = 10,
    notebook_idle_minutes: Annotated[
        float | None,
        typer.Option(min=1, help="Stop notebooks idle this long (default: $DMP_XRAY_NOTEBOOK_IDLE_MINUTES or 60)."),
    ] = None,
    log_level: Annotated[str, typer.Option(help="uvicorn log level.")] = "info",
) -> None:
    """Serve the X-Ray dashboard: every cluster, its owner, hardware, health and cost; notebooks on them."""
    import uvicorn

    from discord_ml_platform.xray.app import create_app
    from discord_ml_platform.xray.settings import XRaySettings, parse_allowed_hosts

    platform = cli_platform()
    names = list(dict.fromkeys(backend or []))
    for name in names:
        if name not in BACKENDS:
            raise UsageProblem(f"--backend: unknown backend {name!r}; allowed: {', '.join(BACKENDS)}")
    # Without --backend: kuberay when a kubeconfig's API server answers (checked once, here), and local.
    detected = None if names else choose_backend(None, kubeconfig, context, platform=platform)
    try:
        settings = XRaySettings.from_env(
            allowed_hosts=parse_allowed_hosts(allowed_host, "--allowed-host") if allowed_host else None,
            listen_host=host,
            dagster_url=dagster_url,
            refresh_s=refresh,
            platform_config=platform.config,
            ray_auth_mode=platform.auth_mode,
            notebook_idle_timeout_s=int(notebook_idle_minutes * 60) if notebook_idle_minutes else None,
        )
    except ValueError as bad:
        raise UsageProblem(str(bad)) from None
    if settings.allowed_hosts is None and settings.listens_beyond_loopback:
        raise UsageProblem(
            f"--host {host} listens beyond loopback, so X-Ray must know the names clients reach it by: "
            "set $DMP_XRAY_ALLOWED_HOSTS (comma-separated, e.g. xray.example.com,xray.dmp-system.svc) or pass "
            "--allowed-host; any other Host header is refused (a DNS-rebinding page could read the dashboard)"
        )
    if detected is None:
        choices = [choose_backend(name, kubeconfig, context, platform=platform) for name in names]
    else:
        choices = [detected, *([BackendChoice("local", "default")] if detected.name == "kuberay" else [])]
    backends: dict[str, ClusterBackend] = {}
    try:
        for choice in choices:
            # Kuberay limited to --namespace when one is given (a Role in one namespace), else every one.
            backends[choice.name] = open_backend(choice, platform, namespace=namespace)
        err = stderr()
        shown = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        mode = (
            "actions enabled (token from $DMP_XRAY_TOKEN)"
            if settings.writes_enabled
            else "read-only, no job output ($DMP_XRAY_TOKEN unset)"
        )
        err.print(f"X-Ray on {shown} ({', '.join(backends)}; {mode}); API docs at {shown}/api/docs")
        err.print(f"Allowed Host names: {', '.join(settings.trusted_hosts)}")
        if settings.writes_enabled and settings.listens_beyond_loopback:
            err.print("[yellow]warning: listening beyond loopback without TLS; put it behind an HTTPS proxy[/]")
        # The app's shutdown waits for listings in flight, so closing the clients afterwards is safe.
        uvicorn.run(create_app(settings, backends), host=host, port=port, log_level=log_level)
    finally:
        for opened in backends.values():
            opened.close()
