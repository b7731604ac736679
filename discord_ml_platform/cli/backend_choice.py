"""Which backend a command talks to: ``--backend``, else ``$DMP_BACKEND``, else the kubeconfig, else local.

A kubeconfig (``--kubeconfig``, ``$DMP_KUBECONFIG``, ``$KUBECONFIG`` or ``~/.kube/config``) whose
current context's API server answers a TCP connect selects ``kuberay``; without one, or when it
does not answer, the embedded ``local`` backend is used. A backend asked for by name that cannot
be reached is an error with a hint, never a silent fallback.

The ``DMP_*`` values (backend, kubeconfig, context) come from the platform core's settings; only
the standard ``$KUBECONFIG`` is read here, for the auto-detection. The backend itself is built by
the core (:meth:`~discord_ml_platform.platform.Platform.open_backend`, with the chosen backend,
kubeconfig and context) and closed after the command (:func:`using_backend`).
"""

from __future__ import annotations

import importlib.util
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated
from urllib.parse import urlsplit

import typer

from discord_ml_platform.cli.errors import CliError, UsageProblem, config_problem
from discord_ml_platform.cli.settings import cli_platform

if TYPE_CHECKING:
    from discord_ml_platform.backends import ClusterBackend
    from discord_ml_platform.platform import Platform

BACKEND_ENV = "DMP_BACKEND"
BACKENDS = ("local", "kuberay")
_KUBERAY_MODULE = "discord_ml_platform.backends.kuberay"


def _complete_backend(incomplete: str) -> list[str]:
    return [name for name in BACKENDS if name.startswith(incomplete)]


BackendOpt = Annotated[
    str | None,
    typer.Option(
        "--backend",
        "-b",
        metavar="local|kuberay",
        autocompletion=_complete_backend,
        help="Where clusters live. Default: $DMP_BACKEND, else kuberay when a kubeconfig's API server answers, else local.",
    ),
]
KubeconfigOpt = Annotated[
    str | None,
    typer.Option(
        "--kubeconfig",
        help="Kubeconfig file for the kuberay backend (default: $DMP_KUBECONFIG, $KUBECONFIG, ~/.kube/config).",
    ),
]
ContextOpt = Annotated[
    str | None,
    typer.Option("--context", help="Kubeconfig context (default: $DMP_KUBE_CONTEXT or the current context)."),
]


@dataclass(frozen=True)
class BackendChoice:
    """The backend picked, why, and how to reach it.

    Attributes:
        name: ``local`` or ``kuberay``.
        reason: Where the choice came from, for messages (e.g. ``--backend``, ``$DMP_BACKEND``).
        kubeconfig: Kubeconfig file to pass to the kuberay backend (``None``: the client's default).
        context: Kubeconfig context (``None``: the current one).
        server: API server URL of the context, when known.
    """

    name: str
    reason: str
    kubeconfig: str | None = None
    context: str | None = None
    server: str | None = None


@dataclass(frozen=True)
class KubeTarget:
    """The API server a kubeconfig points at."""

    path: Path
    context: str
    server: str


def kubeconfig_candidates(explicit: str | None) -> tuple[list[Path], bool]:
    """Kubeconfig files to consider, and whether they were named explicitly.

    Args:
        explicit: ``--kubeconfig``, else the platform's ``DMP_KUBECONFIG``; ``None``: ``$KUBECONFIG``
            (the standard variable, paths joined by ``os.pathsep``), else ``~/.kube/config``.
    """
    if explicit:
        return [Path(explicit).expanduser()], True
    env = os.environ.get("KUBECONFIG")
    if env:
        return [Path(p).expanduser() for p in env.split(os.pathsep) if p], False
    return [Path.home() / ".kube" / "config"], False


def kube_target(paths: list[Path], context: str | None) -> KubeTarget | None:
    """The server of ``context`` (default: the current context) in the first readable kubeconfig."""
    import yaml

    for path in paths:
        try:
            config = yaml.safe_load(path.read_text()) or {}
        except (OSError, yaml.YAMLError):
            continue
        if not isinstance(config, dict):
            continue
        wanted = context or config.get("current-context")
        contexts = {c.get("name"): c.get("context") or {} for c in config.get("contexts") or [] if isinstance(c, dict)}
        clusters = {c.get("name"): c.get("cluster") or {} for c in config.get("clusters") or [] if isinstance(c, dict)}
        if wanted not in contexts:
            continue
        server = clusters.get(contexts[wanted].get("cluster"), {}).get("server")
        if server:
            return KubeTarget(path, str(wanted), str(server))
    return None


def unreachable_reason(server: str, timeout_s: float = 1.0) -> str | None:
    """Why ``server`` does not accept a TCP connection within ``timeout_s``, or ``None`` if it does."""
    parts = urlsplit(server)
    host = parts.hostname
    if not host:
        return f"{server!r} is not a URL"
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError:
        return f"{server!r} has an invalid port"
    try:
        with socket.create_connection((host, port), timeout=timeout_s):
            return None
    except OSError as err:
        return err.strerror or str(err) or type(err).__name__


def kuberay_installed() -> bool:
    """Whether the kuberay backend module exists in this installation."""
    try:
        return importlib.util.find_spec(_KUBERAY_MODULE) is not None
    except (ImportError, ValueError):
        return False


def choose_backend(
    backend: str | None = None,
    kubeconfig: str | None = None,
    context: str | None = None,
    *,
    platform: Platform | None = None,
    default: tuple[str, str] | None = None,
) -> BackendChoice:
    """Pick the backend by the rules in this module's docstring.

    Args:
        backend: ``--backend``.
        kubeconfig: ``--kubeconfig`` (default: the platform's ``DMP_KUBECONFIG``).
        context: ``--context`` (default: the platform's ``DMP_KUBE_CONTEXT``).
        platform: The platform in effect (default: :func:`~discord_ml_platform.cli.settings.cli_platform`).
        default: ``(name, reason)`` to use instead of the auto-detection when neither ``--backend``
            nor ``$DMP_BACKEND`` names one (``--rayjob`` implies ``kuberay``).

    Raises:
        UsageProblem: for an unknown backend name.
        CliError: when ``kuberay`` was asked for by name and its API server does not answer.
    """
    settings = (platform or cli_platform()).settings
    context = context or settings.kube_context
    paths, explicit = kubeconfig_candidates(kubeconfig or settings.kubeconfig)
    if backend:
        named, reason = backend, "--backend"
    elif settings.backend:
        named, reason = settings.backend.value, f"${BACKEND_ENV}"
    elif default:
        named, reason = default
    else:
        named, reason = None, ""
    if named:
        if named not in BACKENDS:
            raise UsageProblem(f"{reason}: unknown backend {named!r}; allowed: {', '.join(BACKENDS)}")
        if named == "local":
            return BackendChoice("local", reason)
        return _checked_kuberay(reason, paths, explicit, context)
    target = kube_target(paths, context)
    if target and kuberay_installed() and unreachable_reason(target.server, timeout_s=0.5) is None:
        return BackendChoice(
            "kuberay",
            f"kubeconfig context {target.context!r}",
            str(target.path) if explicit else None,
            context,
            target.server,
        )
    return BackendChoice("local", "default")


def _checked_kuberay(reason: str, paths: list[Path], explicit: bool, context: str | None) -> BackendChoice:
    if not kuberay_installed():
        raise CliError(
            f"the kuberay backend ({_KUBERAY_MODULE}) is not part of this installation",
            hint="use --backend local, or install a build of discord-ml-platform that includes it",
        )
    target = kube_target(paths, context)
    if target is None:
        if os.environ.get("KUBERNETES_SERVICE_HOST") and not explicit:  # in-cluster config
            return BackendChoice("kuberay", f"{reason} (in-cluster)", None, context)
        where = ", ".join(str(p) for p in paths)
        what = f"context {context!r}" if context else "a current context"
        raise CliError(
            f"backend kuberay ({reason}) needs a kubeconfig with {what}; none found in {where}",
            hint="start a local sandbox with `dmp sandbox up` and export the KUBECONFIG it prints, or use --backend local",
        )
    problem = unreachable_reason(target.server)
    if problem:
        raise CliError(
            f"backend kuberay ({reason}): the Kubernetes API of context {target.context!r} at {target.server} "
            f"is not reachable: {problem}",
            hint="check your VPN / cluster, start a local sandbox with `dmp sandbox up`, or use --backend local",
        )
    return BackendChoice("kuberay", reason, str(target.path) if explicit else None, context, target.server)


def open_backend(
    choice: BackendChoice, platform: Platform | None = None, *, namespace: str | None = None
) -> ClusterBackend:
    """Build the chosen backend through the platform core (the caller closes it).

    Args:
        choice: The backend picked by :func:`choose_backend`.
        platform: The platform in effect (default: :func:`~discord_ml_platform.cli.settings.cli_platform`).
        namespace: The one namespace the kuberay backend lists (``dmp xray --namespace``, for a
            Role in one namespace); ``None``: every namespace (commands filter by ``--namespace``
            themselves).
    """
    from discord_ml_platform.spec import ConfigError

    platform = platform or cli_platform()
    try:
        chosen = platform.with_settings(backend=choice.name, kubeconfig=choice.kubeconfig, kube_context=choice.context)
        return chosen.open_backend(namespace=namespace, all_namespaces=namespace is None)
    except ConfigError as err:
        raise config_problem(err) from None
    except ImportError as err:
        raise CliError(f"the {choice.name} backend cannot be loaded: {err}", hint="use --backend local") from None


def backend_for(
    backend: str | None,
    kubeconfig: str | None,
    context: str | None,
    platform: Platform | None = None,
    *,
    default: tuple[str, str] | None = None,
) -> ClusterBackend:
    """Choose and build the backend for a command's ``--backend/--kubeconfig/--context`` options.

    The caller closes it; :func:`using_backend` does that for you.
    """
    platform = platform or cli_platform()
    choice = choose_backend(backend, kubeconfig, context, platform=platform, default=default)
    announce(choice)
    return open_backend(choice, platform)


def announce(choice: BackendChoice) -> None:
    """Say on stderr which backend the auto-detection picked (a named one needs no comment)."""
    if choice.name == "kuberay" and choice.reason.startswith("kubeconfig"):
        from discord_ml_platform.cli.output import stderr

        stderr().print(f"[dim]using backend kuberay ({choice.reason}, {choice.server})[/]")


@contextmanager
def using_backend(
    backend: str | None,
    kubeconfig: str | None,
    context: str | None,
    platform: Platform | None = None,
    *,
    default: tuple[str, str] | None = None,
) -> Iterator[ClusterBackend]:
    """:func:`backend_for` as a context manager that closes the backend's clients afterwards.

    Args:
        backend: ``--backend``.
        kubeconfig: ``--kubeconfig``.
        context: ``--context``.
        platform: The platform in effect (default: the environment's).
        default: ``(name, reason)`` instead of the auto-detection (see :func:`choose_backend`).
    """
    opened = backend_for(backend, kubeconfig, context, platform, default=default)
    try:
        yield opened
    finally:
        opened.close()
