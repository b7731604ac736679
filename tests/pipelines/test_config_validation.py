"""A bad value anywhere in a run's config fails the run when it starts, naming op (or resource) and field,
before any Ray process or cluster exists; the Launchpad's choices and defaults come from one place."""

import dagster as dg
import pytest

from discord_ml_platform.backends.local import LocalBackend
from pipelines.definitions import ASSETS, CHECKS, build_definitions
from resources.preflight import op_config_models

pytestmark = pytest.mark.timeout(120)
PARTITION = "2026-03-01"


@pytest.fixture(scope="module")
def defs() -> dg.Definitions:
    return build_definitions()


def run_start_failure(job: dg.JobDefinition, run_config: dict) -> tuple[str, list[str], list[str]]:
    """Run ``job``; return the resource-init failure message, the steps that started, and the log."""
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key=PARTITION, run_config=run_config, instance=instance,
                                        raise_on_error=False)
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
        started = [e.step_key for e in result.all_events if e.event_type_value == "STEP_START"]
        logs = [r.user_message for r in instance.all_logs(result.run_id)]
    return failure.event_specific_data.error.message, started, logs


@pytest.mark.parametrize(
    ("run_config", "expected"),
    [
        # The case: a bad value in one step's config, found before the first step.
        ({"resources": {"ray_cluster": {"config": {"cpus_per_worker": -7}}}},
         "resources.ray_cluster.config.cpus_per_worker: must be > 0 (got -7.0)"),
        ({"ops": {"ad_relevance_scores": {"config": {"batch_size": 3}}}},
         "ops.ad_relevance_scores.config.batch_size: must be >= 64 (got 3)"),
        ({"ops": {"ad_relevance_model": {"config": {"learning_rate": 5.0}}}},
         "ops.ad_relevance_model.config.learning_rate: must be <= 1 (got 5.0)"),
        ({"ops": {"ad_relevance_model": {"config": {"model_name": "Bad Name!"}}}},
         "ops.ad_relevance_model.config.model_name: must match"),
        ({"ops": {"quests_window": {"config": {"rows": 10}}}},
         "ops.quests_window.config.rows: must be >= 1000 (got 10)"),
        ({"resources": {"ray_cluster": {"config": {"memory_per_worker": "lots"}}}},
         "resources.ray_cluster.config.memory_per_worker: 'lots' is not a Kubernetes quantity"),
        ({"resources": {"ray_cluster": {"config": {"gpus_per_worker": 1}}}},
         "resources.ray_cluster.config.gpus_per_worker: must be 0 on the 'cpu' pool"),
        ({"resources": {"ray_cluster": {"config": {"workers": 65}}}},
         "resources.ray_cluster.config.workers: 65 is not allowed: 0..64 (policy.max_workers_per_cluster)"),
        ({"resources": {"ray_cluster": {"config": {"mode": "rayjob"}}}},
         "resources.ray_cluster.config.mode: 'rayjob' needs a backend that runs RayJobs (kuberay)"),
        # Issue 16: these passed the Launchpad and failed inside the step with a generic message. The
        # resource checks its shape through Platform.cluster_spec, the one validator the CLI uses too.
        ({"resources": {"ray_cluster": {"config": {"memory_per_worker": "-1Gi"}}}},
         "resources.ray_cluster.config.memory_per_worker: memory '-1Gi' is below the 64Mi minimum a Ray node needs"),
        ({"resources": {"ray_cluster": {"config": {"memory_per_worker": "1e999999"}}}},
         "resources.ray_cluster.config.memory_per_worker: '1e999999' is out of range: the exponent must be between "
         "e-9 and e18"),
        ({"resources": {"ray_cluster": {"config": {"memory_per_worker": "99999999Ei"}}}},
         "resources.ray_cluster.config.memory_per_worker: '99999999Ei' is out of range: a Kubernetes quantity is at "
         "most 2^63-1"),
        ({"resources": {"ray_cluster": {"config": {"memory_per_worker": "5Ti"}}}},
         "resources.ray_cluster.config.memory_per_worker: '5Ti' is not allowed: at most 4Ti per pod "
         "(policy.max_memory_per_pod)"),
        ({"resources": {"ray_cluster": {"config": {"head_memory": "٣Gi"}}}},
         "resources.ray_cluster.config.head_memory: '٣Gi' is not a Kubernetes quantity"),
        ({"resources": {"ray_cluster": {"config": {"gpu_pool": "l4", "gpus_per_worker": 9}}}},
         "resources.ray_cluster.config.gpus_per_worker: 9 does not fit a l4 node"),
        ({"resources": {"ray_cluster": {"config": {"image": "not an image"}}}},
         "resources.ray_cluster.config.image: 'not an image' is not allowed: an image reference"),
    ],
)
def test_a_bad_value_anywhere_fails_the_run_before_any_step_or_cluster(defs, run_config, expected):
    message, started, logs = run_start_failure(defs.resolve_job_def("ad_relevance_training"), run_config)
    assert "invalid run config, nothing was provisioned" in message
    assert expected in message, message
    assert started == []  # not even the data window was generated
    assert not any("requesting" in line for line in logs)  # the cluster resource asked for nothing
    assert LocalBackend().list() == []


def test_every_problem_of_every_op_and_resource_is_reported_at_once(defs):
    run_config = {
        "ops": {"ad_relevance_model": {"config": {"epochs": 0}}, "ad_relevance_scores": {"config": {"concurrency": 0}}},
        "resources": {"ray_cluster": {"config": {"workers": 500, "head_memory": "1Ki"}}},
    }
    message, _, _ = run_start_failure(defs.resolve_job_def("ad_relevance_training"), run_config)
    expected = [
        ("ops.ad_relevance_model.config.epochs", "must be >= 1 (got 0)"),
        ("ops.ad_relevance_scores.config.concurrency", "must be >= 1 (got 0)"),
        ("resources.ray_cluster.config.workers", "must be <= 256 (got 500)"),
        ("resources.ray_cluster.config.head_memory", "memory '1Ki' is below the 64Mi minimum a Ray node needs"),
    ]
    for path, problem in expected:
        assert f"{path}: {problem}" in message, message
    # A launcher checks the same before launching (dmp run does), other resources' configs included.
    checked = defs.resources["ray_cluster"].check_run_config(
        {**run_config, "resources": {**run_config["resources"], "pipes_ray": {"config": {"poll_interval_s": 0}}}})
    assert checked == [*expected[:2], ("resources.pipes_ray.config.poll_interval_s", "must be > 0"),
                       *expected[2:]]


def test_a_bad_value_in_another_resource_also_fails_the_run_before_any_step(defs):
    """Dagster builds each resource from its config when the run starts: pydantic names the field."""
    job = defs.resolve_job_def("ad_relevance_training")
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key=PARTITION, instance=instance, raise_on_error=False,
                                        run_config={"resources": {"pipes_ray": {"config": {"poll_interval_s": 0}}}})
        [failure] = [e for e in result.all_events if e.event_type_value == "RESOURCE_INIT_FAILURE"]
        assert not [e for e in result.all_events if e.event_type_value == "STEP_START"]
    message = failure.event_specific_data.error.message
    assert "PipesRayJobClient" in message and "poll_interval_s" in message and "greater than 0" in message
    assert LocalBackend().list() == []


def test_the_platform_policy_in_effect_applies_to_the_runs_cluster(tmp_path, monkeypatch):
    config = tmp_path / "platform.yaml"
    config.write_text("policy:\n  max_workers_per_cluster: 1\n")
    monkeypatch.setenv("DMP_PLATFORM_CONFIG", str(config))
    message, started, _ = run_start_failure(build_definitions().resolve_job_def("ad_relevance_training"), {})
    assert "resources.ray_cluster.config.workers: 2 is not allowed: 0..1 (policy.max_workers_per_cluster)" in message
    assert started == []


def test_unknown_gpu_pool_is_rejected_by_the_config_schema_before_the_run_starts(defs):
    job = defs.resolve_job_def("ad_relevance_training")
    with pytest.raises(dg.DagsterInvalidConfigError, match="gpu_pool"):
        job.execute_in_process(partition_key=PARTITION,
                               run_config={"resources": {"ray_cluster": {"config": {"gpu_pool": "h100"}}}})


def test_the_launchpad_gpu_pools_are_the_catalog_in_effect(tmp_path, monkeypatch):
    def pools(defs: dg.Definitions) -> list[str]:
        schema = defs.resolve_job_def("ad_relevance_training").run_config_schema.config_type
        cluster = schema.fields["resources"].config_type.fields["ray_cluster"].config_type.fields["config"]
        return [v.config_value for v in cluster.config_type.fields["gpu_pool"].config_type.enum_values]

    assert "b200-180gb" not in pools(build_definitions())
    config = tmp_path / "platform.yaml"
    config.write_text(
        "catalog:\n  remove: [t4]\n  types:\n    b200-180gb:\n      node_selector: {nvidia.com/gpu.product: NVIDIA-B200}\n"
        "      cpus_per_gpu: 28\n      memory_per_gpu: 250Gi\n      gpu_memory_gib: 180\n      hourly_price_usd: 12.5\n"
    )
    monkeypatch.setenv("DMP_PLATFORM_CONFIG", str(config))
    shown = pools(build_definitions())
    assert "b200-180gb" in shown and "t4" not in shown and "cpu" in shown


def test_a_broken_platform_config_stops_the_code_location_from_loading_and_says_why(tmp_path, monkeypatch):
    from discord_ml_platform.spec import ConfigError

    monkeypatch.setenv("DMP_CLUSTER_MODE", "kubejob")
    with pytest.raises(ConfigError, match=r"DMP_CLUSTER_MODE: Input should be 'raycluster' or 'rayjob' \(got 'kubejob'\)"):
        build_definitions()
    monkeypatch.delenv("DMP_CLUSTER_MODE")
    config = tmp_path / "platform.yaml"
    config.write_text("policy:\n  max_ttl: forever\n")
    monkeypatch.setenv("DMP_PLATFORM_CONFIG", str(config))
    with pytest.raises(ConfigError, match=r"DMP_PLATFORM_CONFIG=.*policy.max_ttl"):
        build_definitions()


def test_every_op_config_of_every_job_is_checked_when_the_run_starts(defs):
    """No op escapes the run-start check: each op of each job that takes config is in its map."""
    checked = defs.resources["ray_cluster"].preflight.models
    assert checked == op_config_models([*ASSETS, *CHECKS])
    for job in defs.resolve_all_job_defs():
        schema = job.run_config_schema.config_type.fields["ops"].config_type
        for op, field in schema.fields.items():
            config = field.config_type.fields.get("config")
            if config is not None and getattr(config.config_type, "fields", None):
                assert op in checked, f"{job.name}: op {op} takes config that the run-start check never sees"


def test_the_cluster_shape_is_set_once_per_run_and_training_settings_once():
    """Cluster fields live on the cluster resource only; hyper-parameters on the model op only."""
    job = build_definitions().resolve_job_def("ad_relevance_training")
    ops = job.run_config_schema.config_type.fields["ops"].config_type.fields
    shape = {"gpu_pool", "workers", "gpus_per_worker", "cpus_per_worker", "memory_per_worker"}
    for op, field in ops.items():
        config = field.config_type.fields.get("config")
        fields = set(getattr(config.config_type, "fields", None) or ()) if config is not None else set()
        assert not fields & shape, f"op {op} repeats cluster fields {fields & shape}"
        if op != "ad_relevance_model":
            training = {"epochs", "learning_rate", "embedding_dim", "model_name"}
            if op == "ad_relevance_scores":
                # Champion mode names the model whose champion scores (a window may have no model of its
                # own); ScoringConfig refuses it in partition mode, where the trained model's name applies.
                training.discard("model_name")
            assert not fields & training, op


def test_every_launchpad_field_is_described():
    from pipelines.ad_relevance_quality import PromotionGate
    from pipelines.config import BaselineConfig, QuestsWindowConfig, ScoringConfig, SmokeConfig, TrainingConfig
    from resources import PipesRayJobClient, RayClusterResource, RayJobConfig

    for config in (TrainingConfig, ScoringConfig, QuestsWindowConfig, SmokeConfig, BaselineConfig,
                   RayClusterResource, RayJobConfig, PipesRayJobClient, PromotionGate):
        for name, field in config.model_fields.items():
            assert field.description, f"{config.__name__}.{name} has no description"


def test_the_driver_and_the_launchpad_share_one_set_of_defaults():
    """What the Launchpad shows is what the Ray driver validates against (no second set of defaults)."""
    from discord_ml_platform.ads.params import TrainingHyperparameters, TrainParams
    from pipelines.config import TrainingConfig

    for name, field in TrainingHyperparameters.model_fields.items():
        assert TrainingConfig.model_fields[name].default == field.default == TrainParams.model_fields[name].default
    assert TrainingConfig().lr_schedule == "cosine" and TrainingConfig().embedding_weight_decay == 0.5


def test_the_rayjob_mode_check_opens_no_backend(monkeypatch):
    """Whether the backend runs RayJobs is known from its class: no Kubernetes client is built to ask."""
    from discord_ml_platform.platform import Platform
    from resources import RayClusterResource

    monkeypatch.setattr(Platform, "open_backend", lambda *args, **kwargs: pytest.fail("opened a backend"))
    assert RayClusterResource(mode="rayjob", backend="kuberay").shape_problems() == []
    [(field, message)] = RayClusterResource(mode="rayjob", backend="local").shape_problems()
    assert field == "mode" and "this run uses 'local'" in message
