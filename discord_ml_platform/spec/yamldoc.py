"""Parse a small YAML configuration document into a mapping, with errors that say where it broke."""

from __future__ import annotations

import difflib
from collections.abc import Iterable, Mapping
from typing import Any

import yaml

from discord_ml_platform.spec.errors import ConfigError


def load_mapping(text: str, what: str) -> dict[str, Any]:
    """Parse ``text`` as YAML whose top level is a mapping; an empty document is ``{}``.

    Args:
        text: The YAML document (the caller reads the file).
        what: What the document is, for messages, e.g. ``"catalog"``.

    Raises:
        ConfigError: on a YAML syntax error (with line and column) or a non-mapping document.
    """
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""
        problem = getattr(err, "problem", None) or str(err)
        raise ConfigError(f"{what} config is not valid YAML{where}: {problem}") from None
    if data is None:
        return {}
    return require_mapping(data, what)


def require_mapping(data: object, where: str) -> dict[str, Any]:
    """Return ``data`` if it is a mapping with string keys, else raise ``ConfigError`` naming ``where``."""
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}: {data!r}")
    for key in data:
        if not isinstance(key, str):
            raise ConfigError(f"{where} has a non-string key {key!r}")
    return dict(data)


def reject_unknown_keys(data: Mapping[str, Any], allowed: Iterable[str], where: str) -> None:
    """Raise ``ConfigError`` for keys outside ``allowed``, suggesting the closest allowed key."""
    allowed = list(allowed)
    for key in data:
        if key not in allowed:
            close = difflib.get_close_matches(key, allowed, n=1)
            hint = f"; did you mean {close[0]!r}?" if close else ""
            raise ConfigError(f"{where}: unknown key {key!r}{hint} Allowed keys: {', '.join(allowed)}")
