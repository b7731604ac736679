"""Inputs are bounded before any arithmetic, and the policy refuses what no caller may set (issue 16).

Quantities (``1e999999`` once took 52 s of CPU and ended in an OverflowError), durations
(``99999999999999999999d``), memory per pod, reserved labels, label values and image references.
"""

from __future__ import annotations

import time
from datetime import timedelta
from decimal import Decimal

import pytest
from spec_cases import CREATED_AT

from discord_ml_platform.spec import (
    ClusterSpec,
    PolicyViolation,
    QuantityError,
    SecurityPolicy,
    check_policy,
    parse_quantity,
    policy_from_yaml,
    render_rayjob,
)
from discord_ml_platform.spec.errors import ConfigError, policy_problems, shown
from discord_ml_platform.spec.policy import is_reserved_label, parse_duration

pytestmark = pytest.mark.timeout(60)


def _id(value: object) -> str:
    """A short test id for a value that may be 10,000 characters (or digits) long."""
    if isinstance(value, int) and value.bit_length() > 64:
        return "huge-int"
    text = str(value)
    return text if len(text) <= 24 else f"{text[:8]}...{len(text)}-chars"


ABSURD_QUANTITIES = {
    "1e999999": "the exponent must be between e-9 and e18 (got e999999)",
    "1e999999999": "the exponent must be between e-9 and e18 (got e999999999)",
    "1e-99999": "the exponent must be between e-9 and e18",
    "99999999Ei": "a Kubernetes quantity is at most 2^63-1 (about 8Ei)",
    "9" * 30: "a Kubernetes quantity is at most 2^63-1",
    "1" * 10_000: "at most 64 characters are allowed",
    "٣Gi": "is not a Kubernetes quantity",  # Arabic-Indic three: Python's \d takes it, Kubernetes does not
    "1_000": "is not a Kubernetes quantity",
    "nan": "is not a Kubernetes quantity",
    "Infinity": "is not a Kubernetes quantity",
}


@pytest.mark.parametrize("text", ABSURD_QUANTITIES, ids=_id)
def test_absurd_quantities_are_refused_with_the_allowed_range(text: str) -> None:
    with pytest.raises(QuantityError) as info:
        parse_quantity(text)
    assert ABSURD_QUANTITIES[text] in str(info.value)
    assert len(str(info.value)) < 200  # a 10,000-character input is quoted by its start, not in full


def test_absurd_quantities_cost_no_cpu() -> None:
    """The issue: ``--memory 1e999999`` burnt 52 s before failing. Bounds come before arithmetic."""
    started = time.perf_counter()
    for text in ABSURD_QUANTITIES:
        with pytest.raises(QuantityError):
            parse_quantity(text)
    assert time.perf_counter() - started < 2  # microseconds in practice; the bound only guards a regression


@pytest.mark.parametrize("value", [float("inf"), float("nan"), 10**5000, 2**63], ids=_id)
def test_numbers_out_of_range_are_refused(value: float) -> None:
    with pytest.raises(QuantityError, match=r"out of range|finite"):
        parse_quantity(value)


@pytest.mark.parametrize(
    ("text", "expected"),
    [("7Ei", 7 * 2**60), ("1e18", 10**18), ("4Ti", 4 * 2**40), ("500m", "0.5"), ("-1Gi", -(2**30)), ("1e-9", "1e-9")],
)
def test_quantities_inside_the_range_still_parse(text: str, expected: int | str) -> None:
    assert parse_quantity(text) == Decimal(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8h", timedelta(hours=8)),
        ("1d12h", timedelta(days=1, hours=12)),
        ("3600", timedelta(hours=1)),  # the CLI's help promised seconds; pydantic alone refused "3600"
        ("PT12H", timedelta(hours=12)),
        ("01:30:00", timedelta(hours=1, minutes=30)),
        ("365d", timedelta(days=365)),
    ],
)
def test_durations_inside_the_range_parse(text: str, expected: timedelta) -> None:
    assert parse_duration(text) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("99999999999999999999d", "out of range: durations from 0s to 365d are allowed"),
        ("366d", "out of range"),
        ("P9999999D", "out of range"),
        ("P99999999999D", "out of range"),
        ("9999999999999999999999", "out of range"),
        ("-3600", "out of range"),
        ("x" * 10_000, "at most 32 characters"),
        ("٣h", "is not a duration"),
        ("8 hours", "is not a duration; use e.g. 12h"),
        (float("inf"), "out of range"),
        (-1, "out of range"),
    ],
    ids=_id,
)
def test_durations_are_bounded_before_arithmetic(value: object, expected: str) -> None:
    with pytest.raises(ValueError, match=expected) as info:
        parse_duration(value)
    assert len(str(info.value)) < 200


def test_policy_max_ttl_is_bounded_too() -> None:
    with pytest.raises(ConfigError, match=r"policy.max_ttl: '99999999999999999999d' is out of range"):
        policy_from_yaml("max_ttl: 99999999999999999999d")


def test_memory_per_pod_is_capped_by_the_policy_for_head_and_workers() -> None:
    spec = ClusterSpec(name="huge", workers=1, memory_per_worker="5Ti", head_memory="8Ti")
    with pytest.raises(PolicyViolation) as info:
        check_policy(spec)
    by_field = {v.field: v for v in info.value.violations}
    assert by_field["memory_per_worker"].allowed == "at most 4Ti per pod (policy.max_memory_per_pod)"
    assert by_field["head_memory"].value == "8Ti"
    check_policy(ClusterSpec(name="big", workers=1, memory_per_worker="4Ti"))  # the limit itself is allowed


def test_the_memory_cap_is_the_platform_teams_to_set() -> None:
    policy = policy_from_yaml("max_memory_per_pod: 512Gi")
    with pytest.raises(PolicyViolation, match="at most 512Gi per pod"):
        check_policy(ClusterSpec(name="big", workers=1, memory_per_worker="1Ti"), policy)
    with pytest.raises(ConfigError, match=r"policy\.max_memory_per_pod: 'lots' is not a Kubernetes quantity"):
        policy_from_yaml("max_memory_per_pod: lots")
    with pytest.raises(ConfigError, match="max_memory_per_pod must be positive"):
        policy_from_yaml("max_memory_per_pod: '0'")


@pytest.mark.parametrize(
    "key",
    [
        "mlplatform.discord.com/dagster-run-id",  # the issue: made a CLI cluster sweepable as a run's
        "mlplatform.discord.com/owner",
        "mlplatform.discord.com/expires-at",
        "sub.mlplatform.discord.com/anything",
        "app.kubernetes.io/managed-by",
        "ray.io/node-type",
        "ray.io/cluster",
    ],
)
def test_reserved_labels_are_refused_by_the_policy_check(key: str) -> None:
    assert is_reserved_label(key)
    spec = ClusterSpec(name="sneaky", labels={key: "x", "cost-center": "ads"})
    with pytest.raises(PolicyViolation) as info:
        check_policy(spec)
    [violation] = info.value.violations
    assert (violation.field, violation.value) == ("labels", key)
    assert "reserved for the platform and KubeRay" in violation.allowed
    # Rendering checks the same policy: no manifest carries a user's reserved label.
    with pytest.raises(PolicyViolation):
        render_rayjob(spec, entrypoint="true", created_at=CREATED_AT)


@pytest.mark.parametrize("key", ["cost-center", "example.com/team", "app.kubernetes.io/name", "array.io/x", "x/ray.io"])
def test_other_labels_are_the_users(key: str) -> None:
    assert not is_reserved_label(key)
    check_policy(ClusterSpec(name="fine", labels={key: "v"}))


def test_a_label_value_longer_than_a_dns_name_is_refused_not_cut() -> None:
    with pytest.raises(PolicyViolation) as info:
        check_policy(ClusterSpec(name="long", labels={"note": "v" * 10_000}))
    [problem] = policy_problems(info.value)
    assert problem.field == "labels"
    assert "label 'note' takes at most 253 characters" in problem.message
    assert "(10000 characters)" in problem.message and len(problem.message) < 200
    check_policy(ClusterSpec(name="ok", labels={"note": "CC 1234 / ads"}))  # odd but short: made a valid value


@pytest.mark.parametrize(
    "image",
    ["", "not an image", "Ray:2", "ünïcode/ray:1", "ray:" + "x" * 200, "a/" * 300 + "b", "ray:tag with space"],
    ids=_id,
)
def test_an_image_that_is_no_image_reference_is_refused(image: str) -> None:
    with pytest.raises(PolicyViolation) as info:
        check_policy(ClusterSpec(name="img", image=image))
    [violation] = info.value.violations
    assert violation.field == "image" and "[registry/]repository[:tag][@digest]" in violation.allowed


@pytest.mark.parametrize(
    "image",
    [
        "rayproject/ray:2.60.0-py311-cpu",
        "registry.example.com/ml/ray:missing-tag",
        "localhost:5000/team/ray:1",
        "ray@sha256:" + "a" * 64,
        "ray",
    ],
    ids=_id,
)
def test_image_references_pass(image: str) -> None:
    check_policy(ClusterSpec(name="img", image=image))


def test_an_allowed_prefix_is_checked_on_a_valid_reference_only() -> None:
    policy = SecurityPolicy(allowed_image_prefixes=("registry.example.com/",))
    with pytest.raises(PolicyViolation) as info:
        check_policy(ClusterSpec(name="img", image="not an image"), policy)
    assert [v.field for v in info.value.violations] == ["image"]  # one problem, not two


def test_long_values_are_quoted_by_their_start_and_length() -> None:
    assert shown("short") == "'short'"
    text = shown("a" * 10_000)
    assert text.endswith("...' (10000 characters)") and len(text) < 90
    assert shown(10**5000) == "a number of 5001 digits"
