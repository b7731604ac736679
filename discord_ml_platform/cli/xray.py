"""``dmp xray``: serve the X-Ray dashboard (pages and JSON API) over the same backends as the CLI.

The platform config (prices, pod policy, Ray images) and the auth mode are the core's; the backends
are built by the core and closed when the server stops.
"""

from __future__ import annotations

import ipaddress
from typing import Annotated

import typer

from discord_ml_platform.cli.backend_choice import ContextOpt, KubeconfigOpt, choose_backend, open_backend
from discord_ml_platform.cli.errors import UsageProblem
from discord_ml_platform.cli.output import stderr
from discord_ml_platform.cli.settings import cli_platform

EPILOG = (
    "Mutating actions (delete, notebooks) need $DMP_XRAY_TOKEN set where the dashboard runs; "
    "without it the dashboard is read-only. The token is never taken as a flag (flags show in `ps`).\n\n"
    "Examples:\n\n"
    "  dmp xray\n\n"
    "  DMP_XRAY_TOKEN=$(openssl rand -hex 24) dmp xray --backend kuberay --backend local --port 8080"
)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


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
    from discord_ml_platform.xray.settings import XRaySettings

    platform = cli_platform()
    names = list(dict.fromkeys(backend or []))
    for name in names:
        if name not in ("local", "kuberay"):
            raise UsageProblem(f"--backend: unknown backend {name!r}; allowed: local, kuberay")
    if not names:
        auto = choose_backend(None, kubeconfig, context, platform=platform)
        names = ["kuberay", "local"] if auto.name == "kuberay" else ["local"]
    choices = [choose_backend(name, kubeconfig, context, platform=platform) for name in names]
    settings = XRaySettings.from_env(
        dagster_url=dagster_url,
        refresh_s=refresh,
        platform_config=platform.config,
        ray_auth_mode=platform.auth_mode,
        notebook_idle_timeout_s=int(notebook_idle_minutes * 60) if notebook_idle_minutes else None,
    )
    backends = {}
    try:
        for choice in choices:
            backends[choice.name] = open_backend(choice, platform)
        err = stderr()
        shown = f"http://{host if ':' not in host else f'[{host}]'}:{port}"
        mode = (
            "actions enabled (token from $DMP_XRAY_TOKEN)"
            if settings.writes_enabled
            else "read-only ($DMP_XRAY_TOKEN unset)"
        )
        err.print(f"X-Ray on {shown} ({', '.join(backends)}; {mode}); API docs at {shown}/api/docs")
        if settings.writes_enabled and not _is_loopback(host):
            err.print("[yellow]warning: listening beyond loopback without TLS; put it behind an HTTPS proxy[/]")
        # The app's shutdown waits for listings in flight, so closing the clients afterwards is safe.
        uvicorn.run(create_app(settings, backends), host=host, port=port, log_level=log_level)
    finally:
        for opened in backends.values():
            opened.close()
