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

# ClusterSpec field -> the flag a user typed, for error messages.
SPEC_FLAGS = {
    "name": "NAME",
    "namespace": "--namespace",
    "gpu_type": "--gpu-type",
    "workers": "--workers",
    "min_workers": "--min-workers",
    "max_workers": "--max-workers",
    "gpus_per_worker": "--gpus-per-worker",
    "cpus_per_worker": "--cpus",
    "memory_per_worker": "--memory",
    "head_cpus": "--head-cpus",
    "head_memory": "--head-memory",
    "object_store_memory": "--object-store-memory",
    "image": "--image",
    "owner": "--owner",
    "team": "--team",
    "ttl": "--ttl",
    "labels": "--label",
    "env": "--env",
}

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

# Flag -> parameter name of the hardware flags a command without a cluster of its own refuses.
HARDWARE_FLAGS = {
    "--gpu-type": "gpu_type",
    "--workers": "workers",
    "--gpus-per-worker": "gpus_per_worker",
    "--memory": "memory",
    "--cpus": "cpus",
    "--image": "image",
    "--min-workers": "min_workers",
    "--max-workers": "max_workers",
    "--head-cpus": "head_cpus",
    "--head-memory": "head_memory",
    "--label": "label",
}


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


def hardware_fields(
    *,
    gpu_type: str | None,
    workers: int | None,
    gpus_per_worker: int | None,
    memory: str | None,
    cpus: float | None,
    image: str | None,
    min_workers: int | None = None,
    max_workers: int | None = None,
    head_cpus: float | None = None,
    head_memory: str | None = None,
    label: list[str] | None = None,
) -> dict[str, Any]:
    """The ``ClusterSpec`` fields the hardware flags set; ``None`` leaves a field to the platform."""
    return {
        "gpu_type": gpu_type,
        "workers": workers,
        "min_workers": min_workers,
        "max_workers": max_workers,
        "gpus_per_worker": gpus_per_worker,
        "cpus_per_worker": cpus,
        "memory_per_worker": memory,
        "head_cpus": head_cpus,
        "head_memory": head_memory,
        "image": image,
        "labels": parse_pairs(label or [], "--label") or None,
    }


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
