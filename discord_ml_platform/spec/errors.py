"""Errors of the spec layer, and a formatter that turns pydantic errors into one readable message."""

from __future__ import annotations

import re
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import timedelta
from typing import Any, NamedTuple

from pydantic import ValidationError

# Longest quoted input in a message: a 10,000-character value is shown by its start and its length.
SHOWN_LIMIT = 60


def shown(value: object, limit: int = SHOWN_LIMIT) -> str:
    """``repr(value)`` for a message, cut to about ``limit`` characters.

    A long string keeps its start and says how long it was: ``'aaaa...' (10000 characters)``.
    """
    try:
        text = repr(value)
    except ValueError:  # an int of more than 4300 digits has no repr
        return f"a number of {int(value.bit_length() * 0.30103) + 1} digits" if isinstance(value, int) else "?"
    if len(text) <= limit:
        return text
    size = f" ({len(value)} characters)" if isinstance(value, str) else ""
    return f"{text[: limit - 4]}...{text[-1]}{size}"


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
        return f"{self.field}={shown(self.value)} is not allowed: {self.allowed}"


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


class FieldProblem(NamedTuple):
    """One thing wrong with one field of an input, in words a user can act on.

    Attributes:
        field: Dotted path of the field in the validated object, e.g. ``"workers"`` or ``"env.RAY_X"``;
            ``""`` when the problem belongs to no single field.
        message: What is wrong and what is allowed, e.g. ``"must be <= 64 (got 65)"``.
    """

    field: str
    message: str

    def named(self, name: str) -> str:
        """``<name>: <message>``, where ``name`` is how the caller's user knows the field."""
        return f"{name}: {self.message}" if name else self.message


class SpecError(ValueError):
    """An input (a cluster spec, a run config) is invalid; every problem is reported at once.

    Raised before anything is created, so a user fixes the input in one round.
    """

    def __init__(self, problems: Sequence[FieldProblem], what: str = "cluster spec", hint: str | None = None) -> None:
        if not problems:
            raise ValueError("SpecError needs at least one problem")
        self.problems: tuple[FieldProblem, ...] = tuple(problems)
        self.what = what
        self.hint = hint
        super().__init__(f"{what} is invalid: " + "; ".join(p.named(p.field) for p in self.problems))


# pydantic's wording -> the short form people read in a terminal or an event log.
_REWRITES = (
    (re.compile(r"^Input should be less than or equal to (.+)$"), r"must be <= \1"),
    (re.compile(r"^Input should be greater than or equal to (.+)$"), r"must be >= \1"),
    (re.compile(r"^Input should be less than (.+)$"), r"must be < \1"),
    (re.compile(r"^Input should be greater than (.+)$"), r"must be > \1"),
    (re.compile(r"^Input should be a valid integer.*$"), "must be a whole number"),
    (re.compile(r"^Input should be a valid number.*$"), "must be a number"),
    (re.compile(r"^String should match pattern '(.+)'$"), r"must match \1"),
)
# Model validators name their field at the start: ``gpus_per_worker=9 does not fit a h100-80gb node``.
_LEADING_FIELD = re.compile(r"^(?P<field>[a-z_]+)(=| )(?P<rest>.*)$")


def short_message(message: str) -> str:
    """pydantic's message in the short form (``must be <= 64``)."""
    message = message.removeprefix("Value error, ")
    for pattern, replacement in _REWRITES:
        if pattern.match(message):
            return pattern.sub(replacement, message)
    return message


def _mentions(message: str, value: object) -> bool:
    """Whether ``message`` already quotes ``value`` (``name 'My_Cluster' must be ...``), in full or cut."""
    cut, full = shown(value), shown(value, sys.maxsize)
    if cut != full:
        return cut in message
    return bool(re.search(rf"(?<![\w.]){re.escape(full)}(?![\w.])", message))


def validation_problems(err: ValidationError, fields: Iterable[str] = ()) -> list[FieldProblem]:
    """One :class:`FieldProblem` per problem of a pydantic error.

    Args:
        err: The validation error.
        fields: Field names a model-validator message may start with (``gpus_per_worker=9 ...``):
            such a message is put under that field.
    """
    known = set(fields)
    problems = []
    for item in err.errors():
        loc = [str(part) for part in item.get("loc", ()) if part != ""]
        message = short_message(item["msg"])
        got = item.get("input")
        if isinstance(got, str) and len(repr(got)) > SHOWN_LIMIT:
            message = message.replace(repr(got), shown(got))  # a 10,000-character name, quoted by a validator
        if loc:
            quoted = item["type"] == "missing" or isinstance(got, dict) or _mentions(message, got)
            # A duration reads as 8 days, 0:00:00, not datetime.timedelta(days=8).
            got_text = str(got) if isinstance(got, timedelta) else shown(got)
            problems.append(FieldProblem(".".join(loc), message if quoted else f"{message} (got {got_text})"))
            continue
        match = _LEADING_FIELD.match(message)
        if match and match["field"] in known:
            problems.append(FieldProblem(match["field"], match["rest"]))
        else:
            problems.append(FieldProblem("", message))
    return problems


def policy_problems(err: PolicyViolation, typed: Mapping[str, str] | None = None) -> list[FieldProblem]:
    """One :class:`FieldProblem` per broken policy rule.

    Args:
        err: The violation.
        typed: Field -> what the user typed, shown instead of the parsed value (``--ttl 2d``).
    """
    problems = []
    for violation in err.violations:
        field, _, key = violation.field.partition(".")
        value = (typed or {}).get(field, violation.value)
        # env.RAY_AUTH_MODE: name the key, not only its value ('token' alone says nothing).
        quoted = f"{key}={shown(value)}" if key else shown(value)
        problems.append(FieldProblem(field, f"{quoted} is not allowed: {violation.allowed}"))
    return problems
