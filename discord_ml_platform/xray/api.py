"""The JSON API under ``/api`` (its OpenAPI document is at ``/api/openapi.json``).

The cluster list and a cluster's summary are open; job output and metadata (``/logs``, ``/jobs``)
and notebooks need the dashboard token, as every change does (see ``security.py``).
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, HTTPException, Path, Query, Request, Response, status

from discord_ml_platform.backends import ClusterError, ClusterInfo
from discord_ml_platform.xray.context import XRayContext
from discord_ml_platform.xray.details import list_jobs, tail_logs
from discord_ml_platform.xray.models import (
    ClusterDetail,
    ClusterList,
    DeleteResult,
    JobList,
    LogTail,
    NotebookView,
    Problem,
)
from discord_ml_platform.xray.notebooks import NotebookError
from discord_ml_platform.xray.security import is_writer, reader_dependency, writer_dependency
from discord_ml_platform.xray.service import ClusterFilters, ClusterNotFoundError

# DNS-1123 names (subdomain form) and backend names: anything else is rejected with 422.
NAME_PATTERN = r"^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$"
BACKEND_PATTERN = r"^[a-z][a-z0-9-]{0,30}$"
BackendParam = Annotated[str, Path(pattern=BACKEND_PATTERN, description="local or kuberay")]
NamespaceParam = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253)]
NameParam = Annotated[str, Path(pattern=NAME_PATTERN, max_length=253)]
FilterParam = Annotated[str | None, Query(max_length=253)]
ERRORS: dict[int | str, dict[str, Any]] = {
    404: {"model": Problem},
    422: {"description": "Invalid name, namespace or query value"},
}
WRITE_ERRORS: dict[int | str, dict[str, Any]] = {**ERRORS, 401: {"model": Problem}, 403: {"model": Problem}}
# Routes that need the token to read answer 401/403 the same way.
READ_ERRORS = WRITE_ERRORS


def cluster_filters(
    owner: FilterParam = None,
    status: FilterParam = None,
    gpu_type: FilterParam = None,
    team: FilterParam = None,
    backend: Annotated[str | None, Query(pattern=BACKEND_PATTERN)] = None,
) -> ClusterFilters:
    """Filters from the query string (empty values match everything)."""
    return ClusterFilters(
        owner=owner or None,
        status=status or None,
        gpu_type=gpu_type or None,
        team=team or None,
        backend=backend or None,
    )


def build_api(ctx: XRayContext) -> APIRouter:
    """The API router bound to ``ctx`` (service, notebooks, settings)."""
    router = APIRouter(prefix="/api", tags=["clusters"])
    writer = Depends(writer_dependency(ctx.settings))
    # Job logs and metadata can hold secrets (a workload that prints its environment): token only.
    reader = Depends(reader_dependency(ctx.settings))

    def lookup(backend: str, namespace: str, name: str) -> ClusterInfo:
        try:
            return ctx.service.find(backend, namespace, name)
        except ClusterNotFoundError as err:
            raise HTTPException(status.HTTP_404_NOT_FOUND, str(err)) from None
        except ClusterError as err:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(err)) from None

    @router.get("/healthz", tags=["meta"], summary="Liveness")
    def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/session", tags=["meta"], summary="Whether writes are enabled and the presented token is valid")
    def session(request: Request) -> dict[str, bool]:
        return {"writes_enabled": ctx.settings.writes_enabled, "authorized": is_writer(request, ctx.settings)}

    @router.get(
        "/clusters", response_model=ClusterList, summary="Every cluster of every backend, filtered, with totals"
    )
    def clusters(filters: Annotated[ClusterFilters, Depends(cluster_filters)]) -> Response:
        # Serialized once by pydantic-core; letting FastAPI validate the model again costs ~2x on big lists.
        return Response(ctx.service.list_clusters(filters).model_dump_json(), media_type="application/json")

    @router.get(
        "/clusters/{backend}/{namespace}/{name}",
        responses=ERRORS,
        summary="Spec summary, conditions and events of one cluster",
    )
    def cluster(backend: BackendParam, namespace: NamespaceParam, name: NameParam) -> ClusterDetail:
        return ctx.service.detail(lookup(backend, namespace, name))

    @router.get(
        "/clusters/{backend}/{namespace}/{name}/jobs",
        responses=READ_ERRORS,
        dependencies=[reader],
        summary="Ray jobs on the cluster (token)",
    )
    def jobs(backend: BackendParam, namespace: NamespaceParam, name: NameParam) -> JobList:
        return list_jobs(lookup(backend, namespace, name), ctx.settings.ray_auth_mode)

    @router.get(
        "/clusters/{backend}/{namespace}/{name}/logs",
        responses=READ_ERRORS,
        dependencies=[reader],
        summary="Tail of the head's log, or of the newest Ray job's (token)",
    )
    def logs(
        backend: BackendParam,
        namespace: NamespaceParam,
        name: NameParam,
        lines: Annotated[int, Query(ge=1, le=5000)] = 200,
    ) -> LogTail:
        info = lookup(backend, namespace, name)
        return tail_logs(ctx.service.backends[backend], info, lines, auth_mode=ctx.settings.ray_auth_mode)

    @router.delete(
        "/clusters/{backend}/{namespace}/{name}",
        responses=WRITE_ERRORS,
        dependencies=[writer],
        summary="Delete the cluster (backend.delete) and stop its notebook",
    )
    def delete_cluster(backend: BackendParam, namespace: NamespaceParam, name: NameParam) -> DeleteResult:
        info = lookup(backend, namespace, name)
        key = f"{backend}/{namespace}/{name}"
        stopped = ctx.notebooks.stop(key)
        try:
            ctx.service.delete(info)
        except ClusterError as err:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(err)) from None
        return DeleteResult(deleted=key, notebook_stopped=stopped)

    @router.get(
        "/clusters/{backend}/{namespace}/{name}/notebook",
        responses=READ_ERRORS,
        dependencies=[reader],
        summary="The cluster's notebook and its link (token)",
    )
    def notebook(backend: BackendParam, namespace: NamespaceParam, name: NameParam) -> NotebookView:
        record = ctx.notebooks.get(f"{backend}/{namespace}/{name}")
        if record is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, "no notebook for this cluster")
        return ctx.notebooks.view(record, with_url=True)

    @router.post(
        "/clusters/{backend}/{namespace}/{name}/notebook",
        responses={**WRITE_ERRORS, 409: {"model": Problem}},
        dependencies=[writer],
        status_code=status.HTTP_201_CREATED,
        summary="Launch JupyterLab attached to the cluster (RAY_ADDRESS set)",
    )
    def launch_notebook(backend: BackendParam, namespace: NamespaceParam, name: NameParam) -> NotebookView:
        info = lookup(backend, namespace, name)
        try:
            record = ctx.notebooks.launch(f"{backend}/{namespace}/{name}", info)
        except NotebookError as err:
            raise HTTPException(status.HTTP_409_CONFLICT, str(err)) from None
        return ctx.notebooks.view(record, with_url=True)

    @router.delete(
        "/clusters/{backend}/{namespace}/{name}/notebook",
        responses=WRITE_ERRORS,
        dependencies=[writer],
        summary="Stop the cluster's notebook",
    )
    def stop_notebook(backend: BackendParam, namespace: NamespaceParam, name: NameParam) -> dict[str, bool]:
        if backend not in ctx.service.backends:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"unknown backend {backend!r}")
        return {"stopped": ctx.notebooks.stop(f"{backend}/{namespace}/{name}")}

    return router
