"""``PlatformSettings``: the ``DMP_*`` environment of a deployment, read in this one place.

Every entry point (the Dagster code location, ``dmp``, X-Ray, the cleanup sensor) gets these
settings through :class:`~discord_ml_platform.platform.Platform`, so a variable means the same thing
everywhere. A bad value is reported with the variable's name, before anything is created.

=========================  ==========================================================================
variable                   meaning
=========================  ==========================================================================
``DMP_BACKEND``            ``local`` or ``kuberay`` (unset: local for the code location; the CLI
                           also looks for a reachable kubeconfig)
``DMP_CLUSTER_MODE``       ``raycluster`` (a cluster per run) or ``rayjob`` (a KubeRay RayJob per step)
``DMP_NAMESPACE``          Kubernetes namespace of the clusters
``DMP_KUBECONFIG``         kubeconfig file (unset: in-cluster, ``$KUBECONFIG`` or ``~/.kube/config``)
``DMP_KUBE_CONTEXT``       kubeconfig context
``DMP_RAY_AUTH_MODE``      ``RAY_AUTH_MODE`` of clusters and clients (unset: the policy's)
``DMP_PLATFORM_CONFIG``    YAML with the GPU catalog, security policy and Ray images
``DMP_RAY_IMAGE``          Ray image of CPU pools (over the YAML's ``images.cpu``)
``DMP_RAY_GPU_IMAGE``      Ray image of GPU pools (over the YAML's ``images.gpu``)
``DMP_DATA_ROOT``          where windows, models, scores and checkpoints live
``DMP_OWNER``              owner label of clusters (unset: the run's user or the login name)
``DMP_TEAM``               team label of clusters, for cost attribution
``DMP_DEPLOYMENT``         this Dagster deployment's name, put on every cluster; its cleanup sensor
                           sweeps only clusters of this deployment (namespaces shared by several)
``DMP_LOCAL_STATE_DIR``    local backend: cluster records and logs
``DMP_RAY_TEMP_ROOT``      local backend: parent of each cluster's Ray temp dir (keep it short)
=========================  ==========================================================================
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Mapping
from enum import StrEnum
from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from discord_ml_platform.spec.errors import ConfigError, validation_problems
from discord_ml_platform.spec.images import check_image_reference
from discord_ml_platform.spec.labels import DEFAULT_DEPLOYMENT

ENV_PREFIX = "DMP_"


# Members are named as their values: Dagster's config (the Launchpad) shows and takes enum names.
class BackendName(StrEnum):
    """Where Ray clusters live."""

    local = "local"
    kuberay = "kuberay"


class ClusterMode(StrEnum):
    """How a run uses Ray: a cluster per run, or a RayJob (with its own cluster) per step."""

    raycluster = "raycluster"
    rayjob = "rayjob"


class AuthMode(StrEnum):
    """``RAY_AUTH_MODE`` of clusters and clients."""

    disabled = "disabled"
    token = "token"


class PlatformSettings(BaseModel):
    """Deployment settings from ``DMP_*`` environment variables (see the module docstring)."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    backend: BackendName | None = Field(default=None, description="Where clusters live; unset: decided by the caller.")
    cluster_mode: ClusterMode = Field(
        default=ClusterMode.raycluster, description="raycluster: a cluster per run; rayjob: a KubeRay RayJob per step."
    )
    namespace: str = Field(default="ray", description="Kubernetes namespace of the clusters.")
    kubeconfig: str | None = Field(default=None, description="Kubeconfig file of the kuberay backend.")
    kube_context: str | None = Field(default=None, description="Kubeconfig context of the kuberay backend.")
    ray_auth_mode: AuthMode | None = Field(default=None, description="RAY_AUTH_MODE; unset: the policy's.")
    platform_config: str | None = Field(default=None, description="Path of the platform config YAML.")
    ray_image: str | None = Field(default=None, description="Ray image of CPU pools.")
    ray_gpu_image: str | None = Field(default=None, description="Ray image of GPU pools.")
    data_root: str = Field(default="~/.dmp/data", description="Root of windows, models, scores, checkpoints.")
    owner: str | None = Field(default=None, description="Owner label of clusters.")
    team: str = Field(default="ml-platform", min_length=1, description="Team label of clusters.")
    deployment: str = Field(
        default=DEFAULT_DEPLOYMENT,
        max_length=63,
        pattern=r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$",
        description="This deployment's name (a DNS label), put on every cluster; its sweeper owns only those.",
    )
    local_state_dir: str = Field(default="~/.dmp/local-clusters", description="Local backend: records and logs.")
    ray_temp_root: str | None = Field(default=None, description="Local backend: parent of Ray temp dirs.")

    @field_validator("ray_image", "ray_gpu_image")
    @classmethod
    def _image_reference(cls, image: str | None) -> str | None:
        # Checked when the settings load, so a bad image names its variable at once instead of
        # failing every cluster later (the same grammar as the policy's check of a spec's image).
        return None if image is None else check_image_reference(image)

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> PlatformSettings:
        """Settings from ``environ`` (default: this process's environment).

        Raises:
            ConfigError: naming each variable whose value is invalid and what it may be.
        """
        env = os.environ if environ is None else environ
        values = {key[len(ENV_PREFIX) :].lower(): value for key, value in env.items() if key.startswith(ENV_PREFIX)}
        known = {name: value for name, value in values.items() if name in cls.model_fields and value != ""}
        try:
            return cls.model_validate(known)
        except ValidationError as err:
            raise settings_error(err) from None

    @property
    def local_state_path(self) -> Path:
        """The local backend's state dir, ``~`` expanded."""
        return Path(self.local_state_dir).expanduser()

    @property
    def ray_temp_path(self) -> Path:
        """Parent of the local clusters' Ray temp dirs: short, because Ray puts Unix sockets below it."""
        if self.ray_temp_root:
            return Path(self.ray_temp_root).expanduser()
        return Path("/tmp") if os.path.isdir("/tmp") else Path(tempfile.gettempdir())


def env_variable(field: str) -> str:
    """The environment variable of a settings field (``cluster_mode`` -> ``DMP_CLUSTER_MODE``)."""
    return ENV_PREFIX + field.upper()


def settings_error(err: ValidationError) -> ConfigError:
    """Invalid settings as one ``ConfigError`` naming each variable at fault and what it may be.

    ``DMP_CLUSTER_MODE: Input should be 'raycluster' or 'rayjob' (got 'kubejob')``: the wording is
    :func:`~discord_ml_platform.spec.errors.validation_problems`', the name the variable's.
    """
    problems = validation_problems(err)
    return ConfigError("; ".join(p.named(env_variable(p.field) if p.field else "") for p in problems))
