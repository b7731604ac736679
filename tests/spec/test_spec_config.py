"""Catalog, policy and platform config YAML: replace, extend, override, and clear errors."""

from __future__ import annotations

from datetime import timedelta

import pytest
from spec_cases import CREATED_AT

from discord_ml_platform.spec import (
    DEFAULT_CATALOG,
    DEFAULT_PLATFORM_CONFIG,
    DEFAULT_POLICY,
    PLATFORM_CONFIG_ENV,
    ClusterSpec,
    ConfigError,
    catalog_from_yaml,
    platform_config_from_yaml,
    policy_from_yaml,
    render_raycluster,
)

B200 = """
types:
  b200-180gb:
    node_selector: {nvidia.com/gpu.product: NVIDIA-B200}
    tolerations: [{key: nvidia.com/gpu}, {key: dedicated, operator: Equal, value: ml, effect: NoExecute}]
    cpus_per_gpu: 28
    memory_per_gpu: 250Gi
    gpu_memory_gib: 180
    hourly_price_usd: 12.5
  h100-80gb:
    hourly_price_usd: 4.1
"""


def test_extend_adds_types_and_overrides_only_given_fields() -> None:
    catalog = catalog_from_yaml(B200)
    assert catalog.names()[: len(DEFAULT_CATALOG.names())] == DEFAULT_CATALOG.names()
    h100, default_h100 = catalog.get("h100-80gb"), DEFAULT_CATALOG.get("h100-80gb")
    assert h100.hourly_price_usd == 4.1
    assert h100.model_copy(update={"hourly_price_usd": default_h100.hourly_price_usd}) == default_h100
    b200 = catalog.get("b200-180gb")
    assert b200.has_gpus and b200.resource_name == "nvidia.com/gpu" and b200.max_gpus_per_node == 8
    assert DEFAULT_CATALOG.get("h100-80gb").hourly_price_usd == default_h100.hourly_price_usd  # base untouched


def test_new_type_renders_with_its_placement() -> None:
    catalog = catalog_from_yaml(B200)
    spec = ClusterSpec.model_validate({"name": "b", "gpu_type": "b200-180gb", "workers": 1, "gpus_per_worker": 2},
                                      context={"catalog": catalog})
    pod = render_raycluster(spec, catalog=catalog, created_at=CREATED_AT)["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    assert pod["nodeSelector"] == {"nvidia.com/gpu.product": "NVIDIA-B200"}
    assert pod["tolerations"][1] == {"key": "dedicated", "operator": "Equal", "value": "ml", "effect": "NoExecute"}
    assert pod["containers"][0]["resources"]["limits"] == {"cpu": "56", "memory": "500Gi", "nvidia.com/gpu": "2"}


def test_replace_keeps_only_the_given_types_and_requires_complete_entries() -> None:
    catalog = catalog_from_yaml("replace: true\n" + B200.replace("  h100-80gb:\n    hourly_price_usd: 4.1\n", ""))
    assert catalog.names() == ["b200-180gb"]
    with pytest.raises(ConfigError) as info:
        catalog_from_yaml("replace: true\n" + B200)
    assert "catalog.types.h100-80gb.cpus_per_gpu: Field required" in str(info.value)
    assert "catalog.types.h100-80gb.memory_per_gpu: Field required" in str(info.value)


def test_remove_types() -> None:
    assert "t4" not in catalog_from_yaml("remove: [t4]").names()
    with pytest.raises(ConfigError, match="no GPU type 'v100' to remove"):
        catalog_from_yaml("remove: [v100]")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("types: [a, b", "catalog config is not valid YAML at line 1"),
        ("- just\n- a list\n", "catalog must be a mapping, got list"),
        ("typse: {}", "catalog: unknown key 'typse'; did you mean 'types'?"),
        ("replace: yes please", "catalog.replace must be true or false"),
        ("types: {l4: {cpus_per_gpu: -1}}", "catalog.types.l4.cpus_per_gpu: Input should be greater than 0 (got -1)"),
        ("types: {l4: {memory_per_gpu: 32 GB}}", "catalog.types.l4.memory_per_gpu: '32 GB' is not a Kubernetes quantity"),
        ("types: {l4: {colour: green}}", "catalog.types.l4.colour: Extra inputs are not permitted"),
        ("types: {L4_Big: {cpus_per_gpu: 1, memory_per_gpu: 1Gi, hourly_price_usd: 1}}",
         "must be lowercase letters, digits and '-'"),
        ("types: {l4: {name: t4}}", "catalog.types.l4.name is 't4'; it must match its key"),
        ("types: {l4: 3}", "catalog.types.l4 must be a mapping, got int"),
        ("replace: true", "catalog leaves no GPU types"),
    ],
)
def test_bad_catalog_documents_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        catalog_from_yaml(text)
    assert message in str(info.value)


def test_empty_documents_change_nothing() -> None:
    assert catalog_from_yaml("") == DEFAULT_CATALOG
    assert policy_from_yaml("# nothing\n") == DEFAULT_POLICY
    assert platform_config_from_yaml("") == DEFAULT_PLATFORM_CONFIG


def test_policy_overrides_and_durations() -> None:
    policy = policy_from_yaml(
        "max_gpus_per_cluster: 16\nmax_ttl: 1d12h\nallowed_namespaces: [ray]\n"
        "nccl_env: {NCCL_DEBUG: INFO, NCCL_IB_DISABLE: '0'}\nread_only_root_filesystem: true\n"
    )
    assert policy.max_gpus_per_cluster == 16 and policy.max_ttl == timedelta(days=1, hours=12)
    assert policy.allowed_namespaces == ("ray",) and policy.read_only_root_filesystem
    assert policy.nccl_env == {"NCCL_DEBUG": "INFO", "NCCL_IB_DISABLE": "0"}
    assert policy.run_as_user == DEFAULT_POLICY.run_as_user
    assert policy_from_yaml("max_ttl: 3600").max_ttl == timedelta(hours=1)
    assert policy_from_yaml("max_ttl: PT2H").max_ttl == timedelta(hours=2)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("max_worker: 3", "policy.max_worker: Extra inputs are not permitted"),
        ("run_as_user: 0", "policy.run_as_user: Input should be greater than or equal to 1 (got 0)"),
        ("max_gpus_per_cluster: -1", "policy.max_gpus_per_cluster: Input should be greater than or equal to 0"),
        ("max_ttl: forever", "policy.max_ttl: 'forever' is not a duration; use e.g. 12h"),
        ("max_ttl: 0s", "policy.max_ttl: max_ttl must be positive"),
        ("ray_auth_mode: oauth", "policy.ray_auth_mode: Input should be 'disabled' or 'token'"),
        ("nccl_env: {RAY_AUTH_MODE: token}", "invalid or reserved environment variable names: RAY_AUTH_MODE"),
        ("service_account: Not_Valid", "must be a DNS-1123 subdomain"),
        ("shm_fraction: 2", "policy.shm_fraction: Input should be less than or equal to 1"),
        ("max_ttl: [1", "policy config is not valid YAML"),
    ],
)
def test_bad_policy_documents_give_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        policy_from_yaml(text)
    assert message in str(info.value)


def test_platform_config_has_both_sections() -> None:
    config = platform_config_from_yaml(
        "catalog:\n  types:\n    h100-80gb: {hourly_price_usd: 4.1}\npolicy:\n  max_workers_per_cluster: 8\n"
    )
    assert config.catalog.get("h100-80gb").hourly_price_usd == 4.1
    assert config.policy.max_workers_per_cluster == 8
    assert platform_config_from_yaml("policy: {max_gpus_per_cluster: 8}").catalog == DEFAULT_CATALOG
    assert PLATFORM_CONFIG_ENV == "DMP_PLATFORM_CONFIG"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("catalogue: {}", "platform config: unknown key 'catalogue'; did you mean 'catalog'?"),
        ("policy: [1]", "policy must be a mapping"),
        ("policy: {max_ttl: -5}", "policy.max_ttl"),
        ("catalog: {types: {x: {}}}", "catalog.types.x.cpus_per_gpu: Field required"),
        ("{{", "platform config is not valid YAML"),
    ],
)
def test_bad_platform_config_gives_clear_errors(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        platform_config_from_yaml(text)
    assert message in str(info.value)
