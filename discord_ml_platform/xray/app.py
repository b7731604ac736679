"""The X-Ray FastAPI application: ``create_app(settings, backends)``.

Serve it with ``dmp xray`` (uvicorn), or in tests with any ASGI client::

    app = create_app(XRaySettings(token="...", allowed_hosts=("testserver",)), {"local": get_backend("local")})

Every request must name an allowed host (``settings.trusted_hosts``) in its ``Host`` header, or it
gets 400: a page on another site that rebinds its DNS name to X-Ray's address still sends its own
name, so it cannot read the dashboard through the victim's browser.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles
from starlette.middleware.trustedhost import TrustedHostMiddleware

from discord_ml_platform.backends import ClusterBackend
from discord_ml_platform.xray.api import build_api
from discord_ml_platform.xray.context import XRayContext
from discord_ml_platform.xray.logredact import install_redaction
from discord_ml_platform.xray.notebooks import NotebookLauncher, NotebookManager
from discord_ml_platform.xray.pages import build_pages
from discord_ml_platform.xray.security import SecurityHeaders
from discord_ml_platform.xray.service import ClusterService
from discord_ml_platform.xray.settings import XRaySettings

log = logging.getLogger(__name__)
STATIC_DIR = Path(__file__).parent / "static"


def default_launchers(backends: Mapping[str, ClusterBackend], settings: XRaySettings) -> dict[str, NotebookLauncher]:
    """JupyterLab as a local process for ``local``, as a pod beside the cluster for ``kuberay``.

    A notebook pod runs ``settings.notebook_image`` when set, else the cluster's own image, else
    the image of the ``cpu`` pool it runs on (the pool's own, else the platform's CPU image).
    """
    from discord_ml_platform.xray.notebook_local import LocalProcessLauncher

    launchers: dict[str, NotebookLauncher] = {}
    for name, backend in backends.items():
        if name == "kuberay":
            from discord_ml_platform.xray.notebook_pod import PodNotebookLauncher

            launchers[name] = PodNotebookLauncher(
                backend, settings.notebook_image, settings.platform_config, auth_mode=settings.ray_auth_mode
            )
        else:
            launchers[name] = LocalProcessLauncher(
                settings.state_dir / "notebook-work", auth_mode=settings.ray_auth_mode
            )
    return launchers


def create_app(
    settings: XRaySettings,
    backends: Mapping[str, ClusterBackend],
    launchers: Mapping[str, NotebookLauncher] | None = None,
    *,
    run_reaper: bool = True,
) -> FastAPI:
    """Build the dashboard.

    Args:
        settings: Token, allowed hosts, Dagster URL, refresh and notebook settings.
        backends: Backends by name; each key must be the backend's ``name`` (``local``, ``kuberay``).
            The caller owns them and closes them after the app stops (its shutdown waits for
            listings in flight).
        launchers: Notebook launcher per backend name; default :func:`default_launchers`.
        run_reaper: Run the notebook reaper while the app is up (lifespan).

    Returns:
        The FastAPI app: pages at ``/``, the API under ``/api`` (OpenAPI at ``/api/openapi.json``,
        its reference page at ``/api/docs``, served by X-Ray itself), assets under ``/static``.
    """
    service = ClusterService(backends, settings)
    notebooks = NotebookManager(
        settings.state_dir,
        launchers if launchers is not None else default_launchers(backends, settings),
        settings.notebook_idle_timeout_s,
    )
    ctx = XRayContext(settings=settings, service=service, notebooks=notebooks)

    def live_clusters() -> set[str] | None:
        infos, errors = service.infos()
        return None if errors else {f"{i.handle.backend}/{i.handle.namespace}/{i.handle.name}" for i in infos}

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        # The server configured its logging before this runs: redact on the handlers it set up.
        uninstall_redaction = install_redaction([settings.token])
        if run_reaper:
            notebooks.start_reaper(live_clusters, settings.reaper_interval_s)
        try:
            yield
        finally:
            notebooks.stop_reaper()
            # A listing still in flight uses the backends' clients: whoever closes them (``dmp xray``,
            # after the server stops) must find none running.
            service.wait_idle()
            uninstall_redaction()

    app = FastAPI(
        title="X-Ray",
        summary="Every Ray cluster of the ML platform: owner, hardware, health, cost; notebooks on them.",
        version="1.0",
        docs_url=None,  # our own page (pages.py): Swagger UI would load its bundle from a CDN
        redoc_url=None,
        openapi_url="/api/openapi.json",
        lifespan=lifespan,
    )
    app.state.xray = ctx
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts), www_redirect=False)
    app.add_middleware(SecurityHeaders)  # added last: outermost, so a refused host's 400 has the headers too
    app.include_router(build_api(ctx))
    app.include_router(build_pages(ctx))
    app.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")
    return app
