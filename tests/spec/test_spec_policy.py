"""The policy check: violations are caught before rendering, with the field, value and allowed range."""

from __future__ import annotations

from datetime import timedelta

import pytest
from spec_cases import CREATED_AT

from discord_ml_platform.spec import (
    ClusterSpec,
    PolicyViolation,
    SecurityPolicy,
    UnknownGpuTypeError,
    catalog_from_yaml,
    check_policy,
    render_raycluster,
    render_rayjob,
)


def violation(spec: ClusterSpec, policy: SecurityPolicy | None = None) -> PolicyViolation:
    with pytest.raises(PolicyViolation) as info:
        render_raycluster(spec, policy=policy or SecurityPolicy(), created_at=CREATED_AT)
    return info.value


def test_too_many_workers_names_field_and_range() -> None:
    err = violation(ClusterSpec(name="big", workers=80))
    assert (err.field, err.value) == ("workers", 80)
    assert str(err) == "workers=80 is not allowed: 0..64 (policy.max_workers_per_cluster)"


def test_autoscaling_bound_counts_for_workers_and_gpus() -> None:
    err = violation(ClusterSpec(name="big", gpu_type="h100-80gb", gpus_per_worker=8, workers=2, max_workers=10))
    fields = [v.field for v in err.violations]
    assert fields == ["gpus_per_worker"]
    assert "at most 64 GPUs per cluster" in str(err) and "10 workers x 8 GPUs = 80" in str(err)
    err = violation(ClusterSpec(name="big", max_workers=100), SecurityPolicy(max_workers_per_cluster=10))
    assert err.field == "max_workers" and "0..10" in err.allowed


def test_ttl_namespace_image_and_service_account() -> None:
    policy = SecurityPolicy(
        max_ttl="12h", allowed_namespaces=("ray", "ml-jobs"), allowed_image_prefixes=("registry.example.com/",),
    )
    spec = ClusterSpec(name="x", ttl=timedelta(days=2), namespace="default", image="evil.io/ray:latest",
                       service_account="cluster-admin")
    err = violation(spec, policy)
    by_field = {v.field: v for v in err.violations}
    assert set(by_field) == {"ttl", "namespace", "image", "service_account"}
    assert by_field["ttl"].allowed == "at most 12:00:00 (policy.max_ttl)"
    assert by_field["namespace"].allowed == "one of ray, ml-jobs"
    assert "registry.example.com/" in by_field["image"].allowed
    assert by_field["service_account"].allowed == "one of ray-workload"
    # All problems in one message, so a user fixes the config in one round.
    assert str(err).count("is not allowed") == 4


def test_allowed_images_and_extra_service_accounts_pass() -> None:
    policy = SecurityPolicy(allowed_image_prefixes=("rayproject/ray:",), allowed_service_accounts=("ml-runner",))
    spec = ClusterSpec(name="ok", service_account="ml-runner")
    manifest = render_raycluster(spec, policy=policy, created_at=CREATED_AT)
    assert manifest["spec"]["headGroupSpec"]["template"]["spec"]["serviceAccountName"] == "ml-runner"


def test_reserved_and_invalid_env_and_label_keys() -> None:
    spec = ClusterSpec(name="env", env={"RAY_AUTH_MODE": "token", "1BAD": "x", "OK_NAME": "y"},
                       labels={"bad key!": "v", "example.com/fine": "v"})
    err = violation(spec)
    assert [v.field for v in err.violations] == ["env.RAY_AUTH_MODE", "env", "labels"]
    assert "the platform sets it" in str(err)


def test_object_store_larger_than_the_node_allows() -> None:
    err = violation(ClusterSpec(name="store", object_store_memory="4Gi"))
    assert err.field == "object_store_memory" and "at most 80% of head_memory=4Gi" in err.allowed


def test_gpu_count_checked_against_the_rendering_catalog() -> None:
    catalog = catalog_from_yaml("types:\n  a10g: {max_gpus_per_node: 4}\n")
    spec = ClusterSpec(name="g", gpu_type="a10g", workers=1, gpus_per_worker=8)  # valid for the default catalog
    with pytest.raises(PolicyViolation, match=r"gpus_per_worker=8 is not allowed: 1\.\.4 on a a10g node"):
        render_raycluster(spec, catalog=catalog, created_at=CREATED_AT)


def test_unknown_gpu_type_in_rendering_catalog() -> None:
    catalog = catalog_from_yaml("replace: true\ntypes:\n  cpu: {resource_name: null, cpus_per_gpu: 2, "
                                "memory_per_gpu: 8Gi, max_gpus_per_node: 0, hourly_price_usd: 0.1}\n")
    with pytest.raises(UnknownGpuTypeError, match="unknown gpu_type 'l4'"):
        check_policy(ClusterSpec(name="g", gpu_type="l4"), catalog=catalog)


def test_rayjob_arguments_are_checked() -> None:
    spec = ClusterSpec(name="job")
    with pytest.raises(PolicyViolation) as info:
        render_rayjob(spec, entrypoint=" ", ttl_seconds_after_finished=-1, active_deadline_seconds=0,
                      backoff_limit=-2, created_at=CREATED_AT)
    assert [v.field for v in info.value.violations] == [
        "entrypoint", "ttl_seconds_after_finished", "active_deadline_seconds", "backoff_limit"]


def test_policy_violation_is_a_value_error() -> None:
    assert issubclass(PolicyViolation, ValueError)
    with pytest.raises(ValueError):
        PolicyViolation([])
