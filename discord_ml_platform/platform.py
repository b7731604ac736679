"""The platform core: the configuration in effect, and what is built from it.

:class:`Platform` loads the platform configuration once (built-in defaults, the ``DMP_PLATFORM_CONFIG``
YAML, then the ``DMP_*`` variables of :class:`~discord_ml_platform.settings.PlatformSettings`, the Ray
images among them) and is the only place that

* builds a :class:`~discord_ml_platform.spec.ClusterSpec` (catalog + images + policy, for every
  backend, local included): :meth:`Platform.cluster_spec`;
* hands out backends, as context managers that close their clients: :meth:`Platform.backend`;
* prices a cluster from the catalog in effect: :meth:`Platform.hourly_price`;
* builds job runners with the platform's auth mode: :meth:`Platform.runner`.

The Dagster resources, the cleanup sensor, ``dmp`` and X-Ray all ask it, so a pool, price, image or
limit set by the platform team means the same thing everywhere. Heavy modules (kubernetes, ray) are
imported only by the backends and runners it builds.
"""

from __future__ import annotations

import functools
import getpass
import os
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from discord_ml_platform.settings import PlatformSettings, settings_error
from discord_ml_platform.spec import (
    DEFAULT_PLATFORM_CONFIG,
    PLATFORM_CONFIG_ENV,
    ClusterSpec,
    ConfigError,
    GpuCatalog,
    PlatformConfig,
    PolicyViolation,
    SecurityPolicy,
    check_policy,
    platform_config_from_yaml,
)
from discord_ml_platform.spec.errors import SpecError, policy_problems, validation_problems
from discord_ml_platform.spec.images import RayImages

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend
    from discord_ml_platform.jobs.runner import JobRunner

POLICY_HINT = "the platform policy sets these limits (see DMP_PLATFORM_CONFIG)"


class Platform:
    """The platform configuration in effect and the factories that use it.

    Build it with :meth:`from_env` (or :func:`current_platform`, cached per environment); the
    constructor takes already-loaded parts, which tests and embedders may pass directly.

    Args:
        settings: The deployment settings (``DMP_*``).
        config: Catalog, policy and images, with the settings' image overrides already applied.
    """

    def __init__(self, settings: PlatformSettings | None = None, config: PlatformConfig | None = None) -> None:
        self.settings = settings or PlatformSettings()
        self.config = config or DEFAULT_PLATFORM_CONFIG

    # --- loading -------------------------------------------------------------------------------

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Platform:
        """The platform of an environment (default: this process's).

        Raises:
            ConfigError: an invalid ``DMP_*`` value, or a platform config file that cannot be read
                or is invalid; the message names the variable or the key.
        """
        settings = PlatformSettings.from_env(environ)
        return cls(settings, load_platform_config(settings))

    def with_settings(self, **changes: Any) -> Platform:
        """This platform with some settings changed (e.g. the CLI's ``--backend`` and ``--kubeconfig``).

        Raises:
            ConfigError: a changed value is invalid.
        """
        values = {**self.settings.model_dump(), **{k: v for k, v in changes.items() if v is not None}}
        try:
            settings = PlatformSettings.model_validate(values)
        except ValidationError as err:
            raise settings_error(err) from None
        images_changed = (settings.ray_image, settings.ray_gpu_image) != (
            self.settings.ray_image,
            self.settings.ray_gpu_image,
        )
        config = _with_image_overrides(self.config, settings) if images_changed else self.config
        return Platform(settings, config)

    # --- what is in effect ---------------------------------------------------------------------

    @property
    def catalog(self) -> GpuCatalog:
        """The GPU catalog in effect."""
        return self.config.catalog

    @property
    def policy(self) -> SecurityPolicy:
        """The security policy and limits in effect."""
        return self.config.policy

    @property
    def images(self) -> RayImages:
        """The Ray images of CPU and GPU pools."""
        return self.config.images

    @property
    def backend_name(self) -> str:
        """``DMP_BACKEND``, else ``local`` (the embedded default)."""
        return self.settings.backend or "local"

    @property
    def auth_mode(self) -> str:
        """``RAY_AUTH_MODE`` for clusters and clients: ``DMP_RAY_AUTH_MODE``, else the policy's."""
        return self.settings.ray_auth_mode or self.policy.ray_auth_mode

    @property
    def data_root(self) -> str:
        """Where windows, models, scores and checkpoints live (a path; ``~`` expanded)."""
        return str(Path(self.settings.data_root).expanduser())

    def default_owner(self) -> str:
        """``DMP_OWNER``, else the login name, else ``unknown``."""
        if self.settings.owner:
            return self.settings.owner
        try:
            return getpass.getuser() or "unknown"
        except (KeyError, OSError):
            return "unknown"

    # --- cluster specs -------------------------------------------------------------------------

    def cluster_spec(self, fields: Mapping[str, Any], *, typed: Mapping[str, str] | None = None) -> ClusterSpec:
        """Validate ``fields`` into a ``ClusterSpec`` and check it against the catalog and the policy.

        Unset fields take the platform's defaults: namespace, owner and team from the settings, the
        image from the pool or the platform's images, CPUs and memory from the catalog. The
        deployment is always the settings' (``DMP_DEPLOYMENT``): it decides which sweeper owns the cluster.

        Args:
            fields: ``ClusterSpec`` fields; ``None`` values count as unset.
            typed: Field -> what the user typed, quoted in policy messages instead of the parsed value.

        Raises:
            SpecError: every problem at once, each naming its ``ClusterSpec`` field and what is allowed.
        """
        values = {
            "namespace": self.settings.namespace,
            "owner": self.default_owner(),
            "team": self.settings.team,
            **{key: value for key, value in fields.items() if value is not None},
            "deployment": self.settings.deployment,
        }
        try:
            spec = ClusterSpec.model_validate(values, context={"catalog": self.catalog, "images": self.images})
        except ValidationError as err:
            raise SpecError(validation_problems(err, ClusterSpec.model_fields)) from None
        try:
            check_policy(spec, self.policy, self.catalog)
        except PolicyViolation as err:
            raise SpecError(policy_problems(err, typed), hint=POLICY_HINT) from None
        return spec

    def hourly_price(self, spec: ClusterSpec) -> float:
        """The cluster's price per hour, from the catalog in effect."""
        return spec.hourly_price(self.catalog)

    # --- backends and runners ------------------------------------------------------------------

    def open_backend(
        self,
        name: str | None = None,
        *,
        namespace: str | None = None,
        all_namespaces: bool = False,
        **options: Any,
    ) -> ClusterBackend:
        """A backend (the caller closes it; :meth:`backend` does that for you).

        Args:
            name: ``local`` or ``kuberay``; default :attr:`backend_name`.
            namespace: Namespace the kuberay backend lists (default ``DMP_NAMESPACE``).
            all_namespaces: List every namespace instead (the CLI's ``-A``, X-Ray).
            options: More backend options (e.g. ``retry``, ``host_override``).

        Raises:
            ConfigError: an unknown backend name.
        """
        from discord_ml_platform.backends import BACKEND_NAMES, get_backend

        chosen = name or self.backend_name
        if chosen not in BACKEND_NAMES:
            raise ConfigError(f"unknown backend {chosen!r}; allowed: {', '.join(BACKEND_NAMES)}")
        if chosen == "local":
            return get_backend(
                "local",
                state_dir=self.settings.local_state_path,
                auth_mode=self.auth_mode,
                temp_root=self.settings.ray_temp_path,
                **options,
            )
        return get_backend(
            "kuberay",
            kubeconfig=self.settings.kubeconfig,
            context=self.settings.kube_context,
            namespace=None if all_namespaces else (namespace or self.settings.namespace),
            platform_config=self.config,
            **options,
        )

    @contextmanager
    def backend(
        self, name: str | None = None, *, namespace: str | None = None, all_namespaces: bool = False, **options: Any
    ) -> Iterator[ClusterBackend]:
        """:meth:`open_backend` as a context manager that closes the backend's clients on exit."""
        backend = self.open_backend(name, namespace=namespace, all_namespaces=all_namespaces, **options)
        try:
            yield backend
        finally:
            backend.close()

    def runner(self, **options: Any) -> JobRunner:
        """A job runner whose Jobs API clients use the platform's auth mode (``options`` as in ``JobRunner``)."""
        from discord_ml_platform.jobs.runner import JobRunner

        return JobRunner(auth_mode=self.auth_mode, **options)

    def backend_class(self, name: str | None = None) -> type[ClusterBackend]:
        """The class of backend ``name`` (default :attr:`backend_name`), without opening one.

        For questions about what a backend can do (``issubclass(cls, RayJobCapable)``) that need no
        client: opening a kuberay backend builds a Kubernetes API client.

        Raises:
            ConfigError: an unknown backend name.
        """
        chosen = name or self.backend_name
        if chosen == "local":
            from discord_ml_platform.backends.local import LocalBackend

            return LocalBackend
        if chosen == "kuberay":
            from discord_ml_platform.backends.kuberay import KubeRayBackend

            return KubeRayBackend
        from discord_ml_platform.backends import BACKEND_NAMES

        raise ConfigError(f"unknown backend {chosen!r}; allowed: {', '.join(BACKEND_NAMES)}")


def load_platform_config(settings: PlatformSettings) -> PlatformConfig:
    """The built-in config, extended by the ``DMP_PLATFORM_CONFIG`` file and the image variables.

    Raises:
        ConfigError: the file cannot be read or is invalid (naming the variable, the path and the key).
    """
    config = DEFAULT_PLATFORM_CONFIG
    if settings.platform_config:
        path = Path(settings.platform_config).expanduser()
        try:
            text = path.read_text()
        except OSError as err:
            raise ConfigError(
                f"{PLATFORM_CONFIG_ENV}={settings.platform_config}: cannot read the platform config: "
                f"{err.strerror or err}"
            ) from None
        try:
            config = platform_config_from_yaml(text)
        except ConfigError as err:
            raise ConfigError(f"{PLATFORM_CONFIG_ENV}={settings.platform_config}: {err}") from None
    return _with_image_overrides(config, settings)


def _with_image_overrides(config: PlatformConfig, settings: PlatformSettings) -> PlatformConfig:
    overrides = {"cpu": settings.ray_image, "gpu": settings.ray_gpu_image}
    changes = {key: value for key, value in overrides.items() if value}
    if not changes:
        return config
    # PlatformSettings checked both images with RayImages' grammar, naming the variable: valid here.
    images = RayImages.model_validate({**config.images.model_dump(), **changes})
    return config.model_copy(update={"images": images})


def _environment_key(environ: Mapping[str, str]) -> tuple[tuple[str, str], ...]:
    """What a platform depends on: the ``DMP_*`` variables and the config file's identity."""
    items = sorted((k, v) for k, v in environ.items() if k.startswith("DMP_"))
    path = environ.get(PLATFORM_CONFIG_ENV)
    if path:
        try:
            stat = Path(path).expanduser().stat()
            items.append(("\0config", f"{stat.st_mtime_ns}:{stat.st_size}"))
        except OSError:
            items.append(("\0config", "missing"))
    return tuple(items)


@functools.lru_cache(maxsize=8)
def _cached(key: tuple[tuple[str, str], ...]) -> Platform:
    return Platform.from_env(dict(key))


def current_platform() -> Platform:
    """The platform of this process's environment, loaded once per distinct environment.

    A changed ``DMP_*`` variable or config file (modification time) loads it again, so a long-lived
    process (the code server, X-Ray) and tests that change the environment see the change.

    Raises:
        ConfigError: as :meth:`Platform.from_env`.
    """
    return _cached(_environment_key(os.environ))


__all__ = ["POLICY_HINT", "Platform", "current_platform", "load_platform_config"]
