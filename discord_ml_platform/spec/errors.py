"""Errors of the spec layer, and a formatter that turns pydantic errors into one readable message."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, NamedTuple

from pydantic import ValidationError


class ConfigError(ValueError):
    """A platform configuration document (catalog, policy) is not valid YAML or not a valid config."""


class Violation(NamedTuple):
    """One rule of the platform policy that a spec breaks.

    Attributes:
        field: The ``ClusterSpec`` field (or derived quantity) at fault, e.g. ``"workers"``.
        value: The offending value.
        allowed: What the policy allows, in words, e.g. ``"0..64 (policy.max_workers_per_cluster)"``.
    """

    field: str
    value: Any
    allowed: str

    def __str__(self) -> str:
        return f"{self.field}={self.value!r} is not allowed: {self.allowed}"


class PolicyViolation(ValueError):
    """A ``ClusterSpec`` breaks the platform policy; raised before anything is rendered or created.

    Every broken rule is reported at once (``violations``), so a user fixes a config in one round.
    ``field``, ``value`` and ``allowed`` describe the first one for callers that show a single line.
    """

    def __init__(self, violations: Sequence[Violation]) -> None:
        if not violations:
            raise ValueError("PolicyViolation needs at least one violation")
        self.violations: tuple[Violation, ...] = tuple(violations)
        super().__init__("; ".join(str(v) for v in self.violations))

    @property
    def field(self) -> str:
        """Field of the first violation."""
        return self.violations[0].field

    @property
    def value(self) -> Any:
        """Value of the first violation."""
        return self.violations[0].value

    @property
    def allowed(self) -> str:
        """What the policy allows for the first violation."""
        return self.violations[0].allowed


def format_validation_error(err: ValidationError, prefix: str) -> str:
    """Render a pydantic error as ``prefix.a.b: message (got 'x')`` lines, one per problem.

    Args:
        err: The pydantic validation error.
        prefix: Dotted path of the validated object inside its document, e.g. ``"policy"``.
    """
    lines = []
    for item in err.errors():
        loc = ".".join(str(part) for part in (prefix, *item["loc"]) if part != "")
        message = item["msg"].removeprefix("Value error, ")
        got = item.get("input")
        suffix = "" if item["type"] == "missing" or isinstance(got, dict) else f" (got {got!r})"
        lines.append(f"{loc}: {message}{suffix}")
    return "\n".join(lines)
