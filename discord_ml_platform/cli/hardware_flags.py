"""The flags that shape a cluster, defined once for ``dmp cluster create`` and ``dmp job submit --rayjob``.

Each flag is an ``Annotated`` type a command puts in its signature (the default stays the command's
own); :func:`hardware_fields` turns the values into ``ClusterSpec`` fields and :func:`build_spec` asks
the platform core for the spec, naming every problem by the flag that set it. Numbers are read
strictly (ASCII digits, no ``nan``, ``inf`` or ``1_000``), so what a user typed is what the spec gets.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Annotated, Any

import typer

from discord_ml_platform.cli.errors import UsageProblem, spec_problem
from discord_ml_platform.cli.settings import complete_gpu_type

if TYPE_CHECKING:
    from discord_ml_platform.platform import Platform
    from discord_ml_platform.spec import ClusterSpec

# The one table of the hardware flags: a command's parameter -> (ClusterSpec field, flag). The flag
# names of messages (SPEC_FLAGS), the flags a job on an existing cluster refuses (HARDWARE_FLAGS) and
# the fields the values set (hardware_fields) are all read off it.
HARDWARE: dict[str, tuple[str, str]] = {
    "gpu_type": ("gpu_type", "--gpu-type"),
    "workers": ("workers", "--workers"),
    "gpus_per_worker": ("gpus_per_worker", "--gpus-per-worker"),
    "memory": ("memory_per_worker", "--memory"),
    "cpus": ("cpus_per_worker", "--cpus"),
    "image": ("image", "--image"),
    "min_workers": ("min_workers", "--min-workers"),
    "max_workers": ("max_workers", "--max-workers"),
    "head_cpus": ("head_cpus", "--head-cpus"),
    "head_memory": ("head_memory", "--head-memory"),
    "label": ("labels", "--label"),
}
# ClusterSpec field -> the flag a user typed, for error messages: the hardware flags and the others.
SPEC_FLAGS = {
    "name": "NAME",
    "namespace": "--namespace",
    **dict(HARDWARE.values()),
    "object_store_memory": "--object-store-memory",
    "owner": "--owner",
    "team": "--team",
    "ttl": "--ttl",
    "env": "--env",
}
# Flag -> parameter name of the hardware flags a command without a cluster of its own refuses.
HARDWARE_FLAGS = {flag: param for param, (_, flag) in HARDWARE.items()}

_WHOLE = re.compile(r"^[+-]?[0-9]{1,12}$")
_DECIMAL = re.compile(r"^[+-]?(?:[0-9]{1,12}(?:\.[0-9]{0,6})?|\.[0-9]{1,6})$")


def whole_number(text: str | int) -> int:
    """A count as typed: ASCII digits only (Python's ``int`` also takes ``1_000`` and other scripts' digits).

    Raises:
        typer.BadParameter: in words click puts after the flag's name.
    """
    if isinstance(text, int):  # the command's default
        return text
    value = text.strip()
    if not _WHOLE.match(value):
        raise typer.BadParameter(f"{_quoted(text)} is not a whole number such as 0, 2 or 16")
    return int(value)


def decimal_number(text: str | float) -> float:
    """A CPU count as typed: ``2``, ``0.5``; not ``nan``, ``inf``, ``1e3`` or ``1_000``.

    Raises:
        typer.BadParameter: in words click puts after the flag's name.
    """
    if isinstance(text, (int, float)):  # the command's default
        return float(text)
    value = text.strip()
    if not _DECIMAL.match(value):
        raise typer.BadParameter(f"{_quoted(text)} is not a number such as 2 or 0.5 (at most 6 decimals)")
    return float(value)


def _quoted(text: str) -> str:
    from discord_ml_platform.spec.errors import shown

    return shown(text)


GpuTypeOpt = Annotated[
    str | None,
    typer.Option(
        "--gpu-type", "-g", autocompletion=complete_gpu_type, help="GPU pool from the catalog (see `dmp gpus`)."
    ),
]
WorkersOpt = Annotated[
    int,
    typer.Option("--workers", "-w", parser=whole_number, metavar="<int>", help="Worker nodes besides the head."),
]
GpusPerWorkerOpt = Annotated[
    int | None,
    typer.Option(
        "--gpus-per-worker",
        parser=whole_number,
        metavar="<int>",
        help="GPUs per worker (default 1 on GPU pools, 0 on cpu).",
    ),
]
MemoryOpt = Annotated[
    str | None,
    typer.Option(
        "--memory", "-m", help="Memory per worker, a Kubernetes quantity such as 64Gi (default from the catalog)."
    ),
]
CpusOpt = Annotated[
    float | None,
    typer.Option(
        "--cpus", parser=decimal_number, metavar="<float>", help="CPUs per worker (default from the catalog)."
    ),
]
ImageOpt = Annotated[str | None, typer.Option("--image", help="Container image (default: the Ray image for the pool).")]
MinWorkersOpt = Annotated[
    int | None,
    typer.Option("--min-workers", parser=whole_number, metavar="<int>", help="Autoscaling lower bound."),
]
MaxWorkersOpt = Annotated[
    int | None,
    typer.Option("--max-workers", parser=whole_number, metavar="<int>", help="Autoscaling upper bound."),
]
HeadCpusOpt = Annotated[
    float | None,
    typer.Option("--head-cpus", parser=decimal_number, metavar="<float>", help="CPUs of the head node."),
]
HeadMemoryOpt = Annotated[str | None, typer.Option("--head-memory", help="Memory of the head node (default 4Gi).")]
LabelOpt = Annotated[list[str] | None, typer.Option("--label", "-l", help="Extra label KEY=VALUE (repeatable).")]


def parse_pairs(values: list[str], flag: str) -> dict[str, str]:
    """``KEY=VALUE`` items of a repeatable flag as a mapping.

    Raises:
        UsageProblem: an item without ``=`` or without a key, named by ``flag``.
    """
    pairs = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise UsageProblem(f"{flag}: expected KEY=VALUE, got {_quoted(item)}")
        pairs[key] = value
    return pairs


def hardware_fields(**values: Any) -> dict[str, Any]:
    """The ``ClusterSpec`` fields the hardware flags set; ``None`` (or a flag not passed) leaves a
    field to the platform.

    Args:
        values: The hardware flags' values by parameter name (the keys of :data:`HARDWARE`:
            ``gpu_type``, ``memory``, ``label``...); ``label`` holds ``KEY=VALUE`` items.

    Raises:
        TypeError: a name that is no hardware flag's parameter (a caller's typo, not a user's).
        UsageProblem: a ``--label`` item that is not ``KEY=VALUE``.
    """
    unknown = sorted(set(values) - set(HARDWARE))
    if unknown:
        raise TypeError(f"hardware_fields: no hardware flag has the parameter {', '.join(unknown)}")
    fields = {field: values.get(param) for param, (field, _) in HARDWARE.items()}
    fields["labels"] = parse_pairs(values.get("label") or [], "--label") or None
    return fields


def build_spec(
    platform: Platform,
    fields: dict[str, Any],
    typed: dict[str, str] | None = None,
    flags: dict[str, str] | None = None,
) -> ClusterSpec:
    """The platform's ``ClusterSpec`` of ``fields`` (catalog, images and policy in effect).

    Args:
        platform: The platform in effect.
        fields: ``ClusterSpec`` fields from the flags; ``None`` takes the platform's default.
        typed: Field -> what the user typed, quoted in policy messages (``--ttl 2d``).
        flags: Field -> flag for messages (default :data:`SPEC_FLAGS`).

    Raises:
        UsageProblem: one line per problem, named by the flag (``--workers: must be <= 256 (got 300)``).
    """
    from discord_ml_platform.spec import SpecError

    try:
        return platform.cluster_spec(fields, typed=typed)
    except SpecError as err:
        raise spec_problem(err, flags or SPEC_FLAGS) from None


def parse_ttl(value: str, flag: str = "--ttl") -> Any:
    """``--ttl`` as a ``timedelta``, bounded before any arithmetic (at most 365 days).

    Raises:
        UsageProblem: not a duration or out of range, named by ``flag``.
    """
    from discord_ml_platform.spec.policy import parse_duration

    try:
        return parse_duration(value)
    except ValueError as err:
        raise UsageProblem(f"{flag}: {err}") from None
