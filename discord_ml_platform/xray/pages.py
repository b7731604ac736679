"""The HTML pages: cluster list, cluster page and API reference, rendered by Jinja2 with autoescaping on.

Pages never receive the dashboard token or any environment value: the browser keeps the token
the user typed (sessionStorage) and sends it in a header on actions. So a page holds nothing that
needs the token to read: a cluster page's Ray jobs and logs are fetched by the page's script from
the API, with the token, once the user has unlocked the page.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import jinja2
from fastapi import APIRouter, Depends, Request
from fastapi.responses import HTMLResponse
from fastapi.templating import Jinja2Templates

from discord_ml_platform.backends import ClusterError
from discord_ml_platform.xray.api import BackendParam, NameParam, NamespaceParam, cluster_filters
from discord_ml_platform.xray.apidocs import operations, schemas
from discord_ml_platform.xray.context import XRayContext
from discord_ml_platform.xray.service import ClusterFilters, ClusterNotFoundError

TEMPLATES_DIR = Path(__file__).parent / "templates"


def money(value: float | None) -> str:
    """``$1,234.56``, or ``-`` when unknown."""
    return "-" if value is None else f"${value:,.2f}"


def make_templates() -> Jinja2Templates:
    """Templates with autoescaping forced on for every file (not only ``.html``)."""
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(TEMPLATES_DIR)), autoescape=True, undefined=jinja2.StrictUndefined
    )
    env.filters["money"] = money
    return Jinja2Templates(env=env)


def build_pages(ctx: XRayContext) -> APIRouter:
    """The page router bound to ``ctx``."""
    router = APIRouter(include_in_schema=False)
    templates = make_templates()

    def page(request: Request, name: str, status_code: int = 200, **values: Any) -> HTMLResponse:
        values.update(writes_enabled=ctx.settings.writes_enabled, refresh_s=ctx.settings.refresh_s)
        return templates.TemplateResponse(request, name, values, status_code=status_code)

    @router.get("/", response_class=HTMLResponse)
    def clusters_page(request: Request, filters: Annotated[ClusterFilters, Depends(cluster_filters)]) -> HTMLResponse:
        return page(request, "clusters.html", listing=ctx.service.list_clusters(filters))

    @router.get("/clusters/{backend}/{namespace}/{name}", response_class=HTMLResponse)
    def cluster_page(
        request: Request, backend: BackendParam, namespace: NamespaceParam, name: NameParam
    ) -> HTMLResponse:
        try:
            info = ctx.service.find(backend, namespace, name)
        except (ClusterNotFoundError, ClusterError) as err:
            return page(request, "missing.html", status_code=404, message=str(err))
        return page(request, "cluster.html", detail=ctx.service.detail(info), log_lines=ctx.settings.log_lines)

    @router.get("/api/docs", response_class=HTMLResponse)
    def api_docs(request: Request) -> HTMLResponse:
        document = request.app.openapi()
        info = document.get("info") or {}
        return page(
            request,
            "apidocs.html",
            title=info.get("title", "X-Ray"),
            version=info.get("version", ""),
            summary=info.get("summary", ""),
            openapi_url=request.app.openapi_url,
            operations=operations(document),
            schemas=schemas(document),
        )

    return router
