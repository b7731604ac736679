"""Response models of the X-Ray JSON API (they are also its OpenAPI schema)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class ClusterView(BaseModel):
    """One cluster as the list shows it."""

    key: str = Field(description="'<backend>/<namespace>/<name>': the cluster's id in every URL.")
    backend: str = Field(description="Backend holding the cluster: local or kuberay.")
    name: str
    namespace: str
    owner: str | None = None
    team: str | None = None
    run_id: str | None = Field(default=None, description="Dagster run id (label).")
    gpu_type: str | None = None
    gpus_per_worker: int = 0
    total_gpus: int = 0
    ready_workers: int = 0
    desired_workers: int = 0
    machine: str = Field(description="e.g. 'h100-80gb x 4, workers 2/2'.")
    status: str
    phase: str = Field(description="Finer-grained state, e.g. 'workers 1/2' or a condition reason.")
    created_at: str
    age_seconds: float
    age: str
    expires_at: str | None = None
    expires: str = "-"
    expired: bool = False
    hourly_price_usd: float | None = Field(default=None, description="Catalog price x GPUs (or nodes on CPU).")
    cost_so_far_usd: float | None = Field(default=None, description="Hourly price x hours since creation.")
    dashboard_url: str | None = Field(default=None, description="Ray dashboard (http/https only).")
    dagster_run_url: str | None = None
    detail_url: str
    labels: dict[str, str] = Field(default_factory=dict)


class Totals(BaseModel):
    """Sums over the listed clusters."""

    clusters: int
    gpus: int
    cost_per_hour_usd: float
    cost_so_far_usd: float


class BackendError(BaseModel):
    """A backend that could not be listed (the others still are)."""

    backend: str
    message: str


class ClusterList(BaseModel):
    """``GET /api/clusters``."""

    clusters: list[ClusterView]
    totals: Totals
    errors: list[BackendError] = Field(default_factory=list)
    filters: dict[str, str | None] = Field(default_factory=dict)
    choices: dict[str, list[str]] = Field(
        default_factory=dict, description="Values present before filtering, for the filter menus."
    )
    generated_at: str


class EventView(BaseModel):
    """A Kubernetes event about the cluster or its pods."""

    type: str | None = None
    reason: str | None = None
    object: str | None = None
    message: str | None = None
    count: int = 1
    last_seen: str | None = None


class ConditionView(BaseModel):
    """A status condition of the RayCluster."""

    type: str
    status: str
    reason: str | None = None
    message: str | None = None
    last_transition: str | None = None


class ClusterDetail(BaseModel):
    """``GET /api/clusters/{backend}/{namespace}/{name}``: the list's view plus spec and status."""

    cluster: ClusterView
    spec: dict[str, Any] = Field(default_factory=dict, description="Spec summary (what the backend kept).")
    conditions: list[ConditionView] = Field(default_factory=list)
    events: list[EventView] = Field(default_factory=list)
    gcs_address: str | None = None


class JobView(BaseModel):
    """A Ray job on the cluster (Jobs API)."""

    submission_id: str | None = None
    job_id: str | None = None
    status: str
    entrypoint: str | None = None
    message: str | None = None
    start_time: str | None = None
    end_time: str | None = None


class JobList(BaseModel):
    """``GET .../jobs``; ``error`` says why the list is empty when the Jobs API did not answer."""

    jobs: list[JobView] = Field(default_factory=list)
    error: str | None = None


class LogTail(BaseModel):
    """``GET .../logs``: the last lines of the cluster's head log (or its latest job's)."""

    source: str | None = Field(default=None, description="Where the lines come from.")
    lines: list[str] = Field(default_factory=list)
    error: str | None = None


class NotebookView(BaseModel):
    """A notebook attached to a cluster. ``url`` carries the notebook's own token and is only
    returned to callers that presented the dashboard's token."""

    cluster: str
    kind: str = Field(description="'process' (local) or 'pod' (KubeRay).")
    state: str = Field(description="starting, running, pending (no address yet) or stopped.")
    started_at: str
    idle_timeout_s: int
    url: str | None = None


class DeleteResult(BaseModel):
    """``DELETE /api/clusters/...``."""

    deleted: str
    notebook_stopped: bool = False


class Problem(BaseModel):
    """An error response."""

    detail: str
