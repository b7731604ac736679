"""Rendering for every command: rich tables on a terminal, JSON/YAML/plain text for scripts.

Data goes to stdout, progress and messages to stderr, so ``-o json`` output always parses.
"""

from __future__ import annotations

import dataclasses
import json
import sys
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, date, datetime, timedelta
from enum import Enum, StrEnum
from typing import Annotated, Any

import typer
from rich.console import Console


class OutputFormat(StrEnum):
    """How a command prints its result."""

    table = "table"
    json = "json"
    yaml = "yaml"
    plain = "plain"


OutputOpt = Annotated[
    OutputFormat,
    typer.Option("--output", "-o", help="table for people; json, yaml or plain (tab-separated) for scripts."),
]

Column = tuple[str, str]  # (row key, header)


def is_terminal(stream: Any = None) -> bool:
    """Whether ``stream`` (stdout by default) is an interactive terminal."""
    stream = stream or sys.stdout
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def stdout() -> Console:
    """Console for results; wide when piped so tables are not wrapped at 80 columns."""
    return Console(highlight=False, soft_wrap=not is_terminal(), width=None if is_terminal() else 400)


def stderr() -> Console:
    """Console for progress and messages."""
    return Console(stderr=True, highlight=False, soft_wrap=True)


def to_jsonable(value: Any) -> Any:
    """Plain JSON types for datetimes, timedeltas, enums, dataclasses and mappings."""
    if isinstance(value, datetime):
        return value.isoformat()
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, timedelta):
        return value.total_seconds()
    if isinstance(value, Enum):
        return value.value
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: to_jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if hasattr(value, "model_dump"):
        return to_jsonable(value.model_dump(mode="json"))
    return str(value)


def dump_json(value: Any) -> str:
    """Indented JSON of ``value``."""
    return json.dumps(to_jsonable(value), indent=2, sort_keys=False)


def dump_yaml(value: Any) -> str:
    """Block-style YAML of ``value``."""
    import yaml

    return yaml.safe_dump(to_jsonable(value), sort_keys=False, default_flow_style=False, width=4096)


def print_data(value: Any, fmt: OutputFormat) -> None:
    """Print a document as JSON or YAML (table and plain fall back to YAML for nested data)."""
    text = dump_json(value) if fmt is OutputFormat.json else dump_yaml(value)
    sys.stdout.write(text if text.endswith("\n") else text + "\n")
    sys.stdout.flush()


def _cell(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, datetime):
        return value.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%SZ")
    return str(value)


def print_rows(
    rows: Sequence[Mapping[str, Any]],
    columns: Sequence[Column],
    fmt: OutputFormat,
    *,
    cells: Iterable[Mapping[str, Any]] | None = None,
    empty: str = "nothing found",
) -> None:
    """Print records as a table (or tab-separated text) of ``columns``, or in full as JSON/YAML.

    Args:
        rows: The records; JSON and YAML print them whole.
        columns: ``(key, header)`` pairs shown by ``table`` and ``plain``.
        fmt: The output format.
        cells: Display values per row for table/plain (default: ``rows``), e.g. formatted ages.
        empty: What a table says when there are no rows (printed to stderr).
    """
    if fmt in (OutputFormat.json, OutputFormat.yaml):
        print_data(list(rows), fmt)
        return
    shown = list(cells) if cells is not None else list(rows)
    if fmt is OutputFormat.plain:
        lines = ["\t".join(header for _, header in columns)]
        lines += ["\t".join(_cell(row.get(key)).replace("\t", " ") for key, _ in columns) for row in shown]
        sys.stdout.write("\n".join(lines) + "\n")
        sys.stdout.flush()
        return
    if not shown:
        stderr().print(empty)
        return
    from rich.table import Table

    table = Table(box=None, header_style="bold", pad_edge=False, show_edge=False)
    for _, header in columns:
        table.add_column(header, overflow="fold")
    for row in shown:
        table.add_row(*(_cell(row.get(key)) for key, _ in columns))
    stdout().print(table)


__all__ = [
    "Column",
    "OutputFormat",
    "OutputOpt",
    "dump_json",
    "dump_yaml",
    "is_terminal",
    "print_data",
    "print_rows",
    "stderr",
    "stdout",
    "to_jsonable",
]
