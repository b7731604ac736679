"""Turn exceptions into messages a person can act on, and exit codes scripts can rely on.

Exit codes: ``0`` success, ``1`` a runtime failure (cluster not ready, job failed, backend
unreachable), ``2`` a usage or validation error (nothing was created), ``130`` interrupted.

Heavy modules (pydantic, the spec layer, kubernetes) are imported only on the error path.
"""

from __future__ import annotations

import functools
import os
import re
import sys
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from pydantic import ValidationError

    from discord_ml_platform.spec import FieldProblem, PolicyViolation, SpecError

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_INTERRUPTED = 130
DEBUG_ENV = "DMP_DEBUG"


class CliError(Exception):
    """A failure with a message for the user, an optional hint, and an exit code.

    Args:
        message: What went wrong, in one or more lines.
        hint: What to do about it (printed after the message).
        exit_code: Process exit code; ``1`` unless a subclass says otherwise.
    """

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, hint: str | None = None, exit_code: int | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint
        if exit_code is not None:
            self.exit_code = exit_code


class UsageProblem(CliError):
    """Bad input: a value out of range, an unknown name, a policy violation. Exit code 2."""

    exit_code = EXIT_USAGE


def flag_for(field: str, flags: Mapping[str, str]) -> str:
    """The command-line flag for a model field (``memory_per_worker`` -> ``--memory``)."""
    return flags.get(field) or "--" + field.replace("_", "-")


def problem_line(problem: FieldProblem, flags: Mapping[str, str]) -> str:
    """``--flag: problem`` for one :class:`~discord_ml_platform.spec.FieldProblem`.

    A nested field keeps its path after the flag (``labels.team`` -> ``--label.team``); a problem
    of no single field is its message alone.
    """
    if not problem.field:
        return problem.message
    head, _, rest = problem.field.partition(".")
    return problem.named(flag_for(head, flags) + (f".{rest}" if rest else ""))


def problem_lines(problems: Iterable[FieldProblem], flags: Mapping[str, str]) -> list[str]:
    """One ``--flag: problem`` line per problem, named by the command's flag table."""
    return [problem_line(problem, flags) for problem in problems]


def validation_lines(err: ValidationError, flags: Mapping[str, str]) -> list[str]:
    """One ``--flag: problem (got value)`` line per problem of a pydantic ``ValidationError``.

    The wording is the core's (:func:`~discord_ml_platform.spec.errors.validation_problems`); only
    the names are the CLI's. Errors of model validators that start with ``field=value`` are put under
    that field's flag too, e.g. ``gpus_per_worker=9 does not fit a h100-80gb node``.
    """
    from discord_ml_platform.spec.errors import validation_problems

    return problem_lines(validation_problems(err, flags), flags)


def policy_lines(err: PolicyViolation, flags: Mapping[str, str], typed: Mapping[str, str] | None = None) -> list[str]:
    """One line per broken policy rule of a ``PolicyViolation``, named by its flag.

    Args:
        err: A ``PolicyViolation``.
        flags: Field name -> flag.
        typed: Field name -> what the user typed, shown instead of the parsed value (``--ttl 2d``).
    """
    from discord_ml_platform.spec.errors import policy_problems

    return problem_lines(policy_problems(err, typed), flags)


def spec_problem(err: SpecError, flags: Mapping[str, str]) -> UsageProblem:
    """A ``SpecError`` of the platform core as a usage error: one ``--flag: problem`` line per problem.

    The hint is the core's (the policy's limits) when it gives one, else a pointer to ``dmp gpus``
    for an unknown GPU type.
    """
    hint = err.hint
    if hint is None and any(p.field == "gpu_type" and "unknown gpu_type" in p.message for p in err.problems):
        hint = "list the GPU types with: dmp gpus"
    return UsageProblem("\n".join(problem_lines(err.problems, flags)), hint=hint)


def config_problem(err: BaseException) -> UsageProblem:
    """A ``ConfigError`` of the platform core (a ``DMP_*`` variable or the platform config file) as a
    usage error; the core's message names the variable or the file and key at fault."""
    from discord_ml_platform.spec import PLATFORM_CONFIG_ENV

    message = str(err)
    if message.startswith(PLATFORM_CONFIG_ENV):
        hint = f"fix the file named by ${PLATFORM_CONFIG_ENV}, or unset it for the built-in defaults"
    else:
        hint = "fix the variable named above, or unset it for the default"
    return UsageProblem(message, hint=hint)


def explain(exc: BaseException) -> CliError:
    """Map any exception to a ``CliError`` with a message, a hint and an exit code."""
    if isinstance(exc, CliError):
        return exc
    name = type(exc).__name__
    module = type(exc).__module__
    if module.startswith("pydantic") and name == "ValidationError":
        return UsageProblem("\n".join(validation_lines(exc, {})))  # type: ignore[arg-type]

    from discord_ml_platform.spec import (
        ConfigError,
        PolicyViolation,
        QuantityError,
        SpecError,
        UnknownGpuTypeError,
    )

    if isinstance(exc, UnknownGpuTypeError):
        return UsageProblem(f"--gpu-type: {exc}", hint="list the GPU types with: dmp gpus")
    if isinstance(exc, SpecError):
        return spec_problem(exc, {})
    if isinstance(exc, PolicyViolation):
        return UsageProblem("\n".join(policy_lines(exc, {})), hint="the platform policy is shown by: dmp gpus")
    if isinstance(exc, QuantityError):
        return UsageProblem(str(exc))
    if isinstance(exc, ConfigError):
        return config_problem(exc)

    from discord_ml_platform.backends.base import ClusterError, ClusterNotReadyError

    if isinstance(exc, ClusterNotReadyError):
        return CliError(
            str(exc), hint="inspect it with `dmp cluster get NAME`, remove it with `dmp cluster delete NAME`"
        )
    if isinstance(exc, ClusterError):
        return CliError(str(exc))
    if module.startswith("kubernetes") and name == "ApiException":
        return _kubernetes_error(exc)
    if name == "RayJobError" or isinstance(exc, TimeoutError):
        return CliError(str(exc))
    if isinstance(exc, (ConnectionError, OSError)) and not isinstance(exc, FileNotFoundError):
        return CliError(f"connection failed: {exc}", hint="is the cluster or the Kubernetes API reachable?")
    if isinstance(exc, FileNotFoundError):
        return CliError(str(exc))
    return CliError(f"unexpected error: {name}: {exc}", hint=f"set {DEBUG_ENV}=1 for the full traceback")


def _kubernetes_error(exc: BaseException) -> CliError:
    status = getattr(exc, "status", None)
    reason = getattr(exc, "reason", "") or ""
    body = getattr(exc, "body", "") or ""
    message = f"Kubernetes API answered {status} {reason}".strip()
    try:
        import json

        detail = json.loads(body).get("message")
    except (ValueError, AttributeError, TypeError):
        detail = None
    if detail:
        message += f": {detail}"
    hints = {
        401: "your credentials were rejected: refresh the kubeconfig's token",
        403: "you lack RBAC permission for RayClusters in this namespace: ask the platform team",
        404: "the object or the ray.io/v1 CRDs are missing: is the KubeRay operator installed?",
        409: "an object of that name exists already: pick another name or delete it first",
        422: "the API server rejected the manifest: check it with --dry-run -o yaml",
    }
    return CliError(message, hint=hints.get(status or 0))


@functools.cache
def _long_quote() -> tuple[re.Pattern[str], int]:
    """The pattern of a quoted value over the core's limit, and the limit
    (:data:`~discord_ml_platform.spec.errors.SHOWN_LIMIT`; imported on the error path only).

    A quoted value this long is a pasted file or a runaway variable: shown by its start and its length.
    A quote opens after a space, '(' or '=' and closes before a space, punctuation or the end: the
    text between a closing and an opening quote ("'x' must be ... digits and '-'") is no value.
    """
    from discord_ml_platform.spec.errors import SHOWN_LIMIT

    return re.compile(rf"(?:(?<=^)|(?<=[\s(=\[]))'([^'\n]{{{SHOWN_LIMIT + 1},}})'(?=$|[\s,;:.)\]])"), SHOWN_LIMIT


def cut_long_quotes(line: str) -> str:
    """``line`` with every quoted value over the core's limit cut to its start and its length, as
    :func:`~discord_ml_platform.spec.errors.shown` cuts the values the core quotes.

    Messages quote what the user typed; a 10,000-character value must not fill the terminal, whichever
    layer wrote the message without ``shown`` (the catalog's ``unknown gpu_type``, a validator).
    """
    pattern, limit = _long_quote()
    return pattern.sub(lambda m: f"'{m[1][: limit - 3]}...' ({len(m[1])} characters)", line)


def report(error: CliError) -> None:
    """Print ``error`` (and its hint) to stderr, in colour on a terminal."""
    from rich.console import Console
    from rich.markup import escape

    console = Console(stderr=True, highlight=False, soft_wrap=True)
    lines = [cut_long_quotes(line) for line in error.message.splitlines()] or [""]
    console.print(f"[bold red]error:[/] {escape(lines[0])}")
    for line in lines[1:]:
        console.print(f"  {escape(line)}")
    if error.hint:
        console.print(f"[yellow]hint:[/] {escape(error.hint)}")


def handle(exc: BaseException) -> int:
    """Report ``exc`` and return the exit code; re-raise with ``DMP_DEBUG=1`` for a traceback."""
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    error = explain(exc)
    if os.environ.get(DEBUG_ENV) and not isinstance(exc, CliError):
        raise exc
    report(error)
    return error.exit_code
