"""dagster.prod.yaml is a valid instance config and agrees with dagster.yaml and the Helm values."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
import yaml

from .deploy_files import ROOT, helm_values, k8s_run_launcher_values

PROD = ROOT / "dagster.prod.yaml"
PG_ENV = {"DAGSTER_PG_HOST": "db.example", "DAGSTER_PG_PORT": "5432", "DAGSTER_PG_USERNAME": "dagster",
          "DAGSTER_PG_PASSWORD": "secret", "DAGSTER_PG_DB": "dagster"}
# Top-level keys of the Dagster chart's values (its pydantic schema, chart 1.13).
CHART_KEYS = {"global", "rbacEnabled", "serviceAccount", "dagsterWebserver", "dagster-user-deployments", "postgresql",
              "generatePostgresqlPasswordSecret", "generateCeleryConfigSecret", "rabbitmq", "redis", "flower",
              "ingress", "imagePullSecrets", "computeLogManager", "scheduler", "runLauncher", "pythonLogs",
              "dagsterDaemon", "busybox", "migrate", "telemetry", "retention", "concurrency",
              "additionalInstanceConfig", "nameOverride", "fullnameOverride"}


def prod() -> dict[str, Any]:
    return yaml.safe_load(PROD.read_text())


def test_prod_instance_config_validates(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dagster._config import process_config
    from dagster._core.instance.config import dagster_instance_config
    from dagster_k8s import K8sRunLauncher

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    shutil.copy(PROD, tmp_path / "dagster.yaml")
    config, _ = dagster_instance_config(str(tmp_path))
    launcher = config["run_launcher"]
    assert (launcher["module"], launcher["class"]) == ("dagster_k8s", "K8sRunLauncher")
    result = process_config(K8sRunLauncher.config_type(), launcher["config"])
    assert result.success, result.errors


def test_prod_storage_is_postgres_with_every_credential_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("dagster_postgres")
    from dagster._config import process_config
    from dagster_postgres import DagsterPostgresStorage

    for key, value in PG_ENV.items():
        monkeypatch.setenv(key, value)
    storage = prod()["storage"]
    assert list(storage) == ["postgres"]
    db = storage["postgres"]["postgres_db"]
    assert dict(db.items()) == {k: {"env": f"DAGSTER_PG_{e}"} for k, e in
                                             [("hostname", "HOST"), ("port", "PORT"), ("username", "USERNAME"),
                                              ("password", "PASSWORD"), ("db_name", "DB")]} | {
        "scheme": "postgresql+psycopg2"}
    # SQLAlchemy >= 2.1 reads a bare postgresql:// as psycopg 3; the image has psycopg2 only.
    assert helm_values()["postgresql"]["postgresqlScheme"] == db["scheme"]
    assert process_config(DagsterPostgresStorage.config_type(), storage["postgres"]).success


def helm_coordinator() -> dict[str, Any]:
    coordinator = helm_values()["dagsterDaemon"]["runCoordinator"]
    assert coordinator["enabled"] and coordinator["type"] == "CustomRunCoordinator"
    return coordinator["config"]["customRunCoordinator"]


def test_gpu_pool_limits_and_coordinator_are_the_same_locally_in_prod_and_in_the_chart() -> None:
    local = yaml.safe_load((ROOT / "dagster.yaml").read_text())["run_coordinator"]
    production = prod()["run_coordinator"]
    chart = helm_coordinator()
    for coordinator in (local, production, chart):
        assert (coordinator["module"], coordinator["class"]) == ("resources.run_coordinator", "GpuPoolRunCoordinator")
    assert production["config"] == local["config"] == chart["config"]
    assert {limit["key"] for limit in local["config"]["tag_concurrency_limits"]} == {"dmp/gpu-pool"}


def test_the_processes_that_submit_runs_can_load_the_run_coordinator() -> None:
    """The webserver (Launchpad) and the daemon (schedules, sensors) submit runs through the coordinator,
    so they run the code-location image, which holds ``resources.run_coordinator``."""
    values = helm_values()
    code_location = values["dagster-user-deployments"]["deployments"][0]["image"]
    for component in ("dagsterWebserver", "dagsterDaemon"):
        image = values[component]["image"]
        assert (image["repository"], image["tag"]) == (code_location["repository"], code_location["tag"]), component


def test_the_gpu_pool_run_coordinator_is_a_valid_instance_run_coordinator(tmp_path: Path) -> None:
    import dagster as dg

    from resources.run_coordinator import GpuPoolRunCoordinator

    shutil.copy(ROOT / "dagster.yaml", tmp_path / "dagster.yaml")
    with dg.DagsterInstance.from_config(str(tmp_path)) as instance:
        coordinator = instance.run_coordinator
        assert isinstance(coordinator, GpuPoolRunCoordinator)
        limits = coordinator.get_run_queue_config().tag_concurrency_limits
        assert {"key": "dmp/gpu-pool", "value": "cpu", "limit": 2} in limits


def test_run_monitoring_and_retries_agree_with_the_chart() -> None:
    daemon = helm_values()["dagsterDaemon"]
    monitoring, retries = prod()["run_monitoring"], prod()["run_retries"]
    assert monitoring["enabled"] and daemon["runMonitoring"]["enabled"]
    assert monitoring["start_timeout_seconds"] == daemon["runMonitoring"]["startTimeoutSeconds"]
    assert monitoring["max_resume_run_attempts"] == daemon["runMonitoring"]["maxResumeRunAttempts"]
    assert retries == {"enabled": True, "max_retries": daemon["runRetries"]["maxRetries"]}


def test_run_launcher_agrees_with_the_chart() -> None:
    config = prod()["run_launcher"]["config"]
    chart = k8s_run_launcher_values()
    assert helm_values()["runLauncher"]["type"] == "K8sRunLauncher"
    assert config["job_namespace"] == chart["jobNamespace"] == "dagster"
    assert config["service_account_name"] == chart["runK8sConfig"]["podSpecConfig"]["serviceAccountName"]
    assert config["labels"] == chart["runK8sConfig"]["podTemplateSpecMetadata"]["labels"]
    assert config["postgres_password_secret"] == helm_values()["global"]["postgresqlSecretName"]
    assert config["dagster_home"] == helm_values()["global"]["dagsterHome"]


def test_helm_values_use_only_chart_keys_and_external_postgres() -> None:
    values = helm_values()
    assert set(values) <= CHART_KEYS, set(values) - CHART_KEYS
    assert values["postgresql"]["enabled"] is False and values["generatePostgresqlPasswordSecret"] is False
    assert "postgresqlPassword" not in values["postgresql"]  # from the Secret, never in values
    assert values["dagster-user-deployments"]["deployments"][0]["includeConfigInLaunchedRuns"] == {"enabled": True}
