"""Settings of the X-Ray dashboard, from arguments or ``DMP_XRAY_*`` environment variables.

Only the dashboard's own variables are read here; the platform's (``DMP_PLATFORM_CONFIG``,
``DMP_RAY_AUTH_MODE``...) come from the platform core and are passed in (``dmp xray`` does).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from discord_ml_platform.spec import DEFAULT_PLATFORM_CONFIG, PlatformConfig

TOKEN_ENV = "DMP_XRAY_TOKEN"
DAGSTER_URL_ENV = "DMP_DAGSTER_URL"
STATE_DIR_ENV = "DMP_XRAY_STATE_DIR"
IDLE_MINUTES_ENV = "DMP_XRAY_NOTEBOOK_IDLE_MINUTES"
NOTEBOOK_IMAGE_ENV = "DMP_XRAY_NOTEBOOK_IMAGE"
DEFAULT_DAGSTER_URL = "http://localhost:3000"


def default_state_dir() -> Path:
    """Where notebook records live: ``$DMP_XRAY_STATE_DIR`` or ``~/.dmp/xray``."""
    return Path(os.environ.get(STATE_DIR_ENV) or Path.home() / ".dmp" / "xray")


@dataclass(frozen=True)
class XRaySettings:
    """How the dashboard behaves.

    Attributes:
        token: Bearer token that mutating calls must present; ``None`` makes the dashboard
            read-only. Never rendered into a page or a response.
        dagster_url: Base URL of the Dagster webserver; run links are ``<url>/runs/<run id>``.
        refresh_s: How often the list page refreshes itself (seconds).
        cache_ttl_s: How long one backend listing is reused as it is (0: list on every request).
        max_stale_s: Up to this age a listing is still served while a fresh one is fetched in
            the background (stale while revalidate); older ones are listed before answering.
        notebook_idle_timeout_s: A notebook idle this long is stopped (by JupyterLab itself and
            by the dashboard's reaper).
        reaper_interval_s: How often the reaper looks at notebooks.
        state_dir: Notebook records (and local notebooks' working dirs).
        notebook_image: Image of notebook pods on KubeRay; ``None``: the cluster's image, else
            the platform's CPU image (``platform_config.images.cpu``).
        log_lines: Lines of log tail shown on a cluster page.
        delete_timeout_s: How long a delete waits for the cluster to be gone.
        platform_config: Catalog (prices), policy (pod security) and Ray images in effect; ``dmp
            xray`` passes the platform core's.
        ray_auth_mode: ``RAY_AUTH_MODE`` for Jobs API clients and notebooks (``dmp xray``: the core's).
    """

    token: str | None = field(default=None, repr=False)
    dagster_url: str = DEFAULT_DAGSTER_URL
    refresh_s: float = 10.0
    cache_ttl_s: float = 2.0
    max_stale_s: float = 30.0
    notebook_idle_timeout_s: int = 3600
    reaper_interval_s: float = 30.0
    state_dir: Path = field(default_factory=default_state_dir)
    notebook_image: str | None = None
    log_lines: int = 200
    delete_timeout_s: float = 120.0
    platform_config: PlatformConfig = DEFAULT_PLATFORM_CONFIG
    ray_auth_mode: str = "disabled"

    @property
    def writes_enabled(self) -> bool:
        """Whether mutating actions are possible at all (a token is configured)."""
        return bool(self.token)

    @classmethod
    def from_env(cls, **overrides: object) -> XRaySettings:
        """Settings from ``DMP_XRAY_TOKEN``, ``DMP_DAGSTER_URL``, ``DMP_XRAY_STATE_DIR``,
        ``DMP_XRAY_NOTEBOOK_IDLE_MINUTES`` and ``DMP_XRAY_NOTEBOOK_IMAGE``; ``overrides`` win."""
        values: dict[str, object] = {}
        if os.environ.get(TOKEN_ENV):
            values["token"] = os.environ[TOKEN_ENV]
        if os.environ.get(DAGSTER_URL_ENV):
            values["dagster_url"] = os.environ[DAGSTER_URL_ENV]
        if os.environ.get(IDLE_MINUTES_ENV):
            values["notebook_idle_timeout_s"] = int(float(os.environ[IDLE_MINUTES_ENV]) * 60)
        if os.environ.get(NOTEBOOK_IMAGE_ENV):
            values["notebook_image"] = os.environ[NOTEBOOK_IMAGE_ENV]
        values.update({k: v for k, v in overrides.items() if v is not None})
        return cls(**values)  # type: ignore[arg-type]
