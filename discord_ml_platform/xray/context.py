"""What every route needs: settings, the cluster service and the notebook manager."""

from __future__ import annotations

from dataclasses import dataclass

from discord_ml_platform.xray.notebooks import NotebookManager
from discord_ml_platform.xray.service import ClusterService
from discord_ml_platform.xray.settings import XRaySettings


@dataclass(frozen=True)
class XRayContext:
    """The dashboard's parts, shared by the API and the pages."""

    settings: XRaySettings
    service: ClusterService
    notebooks: NotebookManager
