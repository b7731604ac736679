"""Kubernetes resource quantities ("4Gi", "500m", "1.5") parsed and formatted without I/O."""

from __future__ import annotations

import re
from decimal import Decimal

from discord_ml_platform.spec.errors import shown

_BINARY = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "Ti": 2**40, "Pi": 2**50, "Ei": 2**60}
_DECIMAL = {
    "n": Decimal("1e-9"),
    "u": Decimal("1e-6"),
    "m": Decimal("1e-3"),
    "": Decimal(1),
    "k": Decimal(10**3),
    "M": Decimal(10**6),
    "G": Decimal(10**9),
    "T": Decimal(10**12),
    "P": Decimal(10**15),
    "E": Decimal(10**18),
}
# The grammar of k8s.io/apimachinery resource.Quantity (sign, number, optional suffix or exponent).
# ASCII digits only: Python's \d also matches other scripts' digits, which Kubernetes refuses.
_QUANTITY = re.compile(
    r"^(?P<num>[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+))(?P<suffix>Ki|Mi|Gi|Ti|Pi|Ei|[numkMGTPE]|[eE][+-]?[0-9]+)?$"
)
# Bounds checked before any arithmetic, so an absurd input costs nothing (``1e999999999`` once took
# a minute of CPU to become a Decimal with a billion digits). Kubernetes caps a quantity at 2^63-1;
# the longest sensible quantity is far shorter than 64 characters; the exponents are those of the
# suffixes (n = 1e-9 .. E = 1e18).
MAX_QUANTITY_CHARS = 64
MIN_EXPONENT = -9
MAX_EXPONENT = 18
MAX_QUANTITY = Decimal(2**63 - 1)
MAX_QUANTITY_WORDS = "2^63-1 (about 8Ei)"


class QuantityError(ValueError):
    """A string is not a Kubernetes resource quantity."""


def parse_quantity(value: str | float) -> Decimal:
    """Return the value of a Kubernetes quantity in base units (bytes, cores).

    Args:
        value: e.g. ``"4Gi"``, ``"512Mi"``, ``"500m"``, ``"2"``, or a plain number.

    Raises:
        QuantityError: when ``value`` is not a quantity Kubernetes would accept.
    """
    if isinstance(value, int):  # compared as an int: str() of a huge int is itself slow
        if abs(value) > MAX_QUANTITY:
            raise QuantityError(
                f"{shown(value)} is out of range: a Kubernetes quantity is at most {MAX_QUANTITY_WORDS}"
            )
        return Decimal(value)
    if isinstance(value, float):
        return _bounded(Decimal(str(value)), value)
    text = value.strip()
    if len(text) > MAX_QUANTITY_CHARS:
        raise QuantityError(
            f"{shown(value)} is not a Kubernetes quantity: at most {MAX_QUANTITY_CHARS} characters are allowed"
        )
    match = _QUANTITY.match(text)
    if not match:
        raise QuantityError(
            f"{value!r} is not a Kubernetes quantity; use a number with an optional suffix "
            "such as 512Mi, 4Gi, 500m or 2"
        )
    number = Decimal(match["num"])
    suffix = match["suffix"] or ""
    if suffix in _BINARY:
        return _bounded(number * _BINARY[suffix], value)
    if suffix in _DECIMAL:
        return _bounded(number * _DECIMAL[suffix], value)
    exponent = int(suffix[1:])  # at most 64 characters: cheap
    if not MIN_EXPONENT <= exponent <= MAX_EXPONENT:
        raise QuantityError(
            f"{value!r} is out of range: the exponent must be between e{MIN_EXPONENT} and e{MAX_EXPONENT} "
            f"(got e{exponent})"
        )
    return _bounded(number.scaleb(exponent), value)


def _bounded(amount: Decimal, value: str | float) -> Decimal:
    """``amount`` if Kubernetes can hold it (finite, magnitude at most 2^63-1), else ``QuantityError``."""
    if not amount.is_finite():
        raise QuantityError(f"{value!r} is not a Kubernetes quantity: it must be a finite number")
    if abs(amount) > MAX_QUANTITY:
        raise QuantityError(f"{value!r} is out of range: a Kubernetes quantity is at most {MAX_QUANTITY_WORDS}")
    return amount


def quantity_to_bytes(value: str | float) -> int:
    """Parse a memory quantity and return whole bytes."""
    return int(parse_quantity(value))


def bytes_to_quantity(num_bytes: int) -> str:
    """Format bytes as the largest exact binary quantity (``4Gi``, ``1536Mi``, ``1000``)."""
    for suffix in ("Ei", "Pi", "Ti", "Gi", "Mi", "Ki"):
        unit = _BINARY[suffix]
        if num_bytes and num_bytes % unit == 0:
            return f"{num_bytes // unit}{suffix}"
    return str(num_bytes)


def cpus_to_quantity(cpus: float | Decimal) -> str:
    """Format a CPU count as a Kubernetes quantity: whole cores as ``"2"``, else millicores (``"500m"``).

    Values are rounded to whole millicores, the finest unit Kubernetes keeps for CPU.
    """
    millis = int((Decimal(str(cpus)) * 1000).to_integral_value())
    if millis <= 0:
        raise QuantityError(f"CPU count must be positive, got {cpus!r}")
    return str(millis // 1000) if millis % 1000 == 0 else f"{millis}m"
