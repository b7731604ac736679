"""Bad run config fails with the field's name before any Ray cluster is requested."""

import dagster as dg
import pytest

from discord_ml_platform.backends.local import LocalBackend
from pipelines.definitions import defs

pytestmark = pytest.mark.timeout(120)


@pytest.mark.parametrize(
    ("bad", "field", "allowed"),
    [
        ({"workers": 0}, "workers", "greater than or equal to 1"),
        ({"workers": 65}, "workers", "less than or equal to 64"),
        ({"learning_rate": 5.0}, "learning_rate", "less than or equal to 1"),
        ({"epochs": 0}, "epochs", "greater than or equal to 1"),
        ({"memory_per_worker": "lots"}, "memory_per_worker", "not a Kubernetes quantity"),
        ({"model_name": "Bad Name!"}, "model_name", "pattern"),
        ({"embedding_dim": 1024}, "embedding_dim", "less than or equal to 256"),
        ({"interaction": "mlp"}, "interaction", "pattern"),
    ],
)
def test_out_of_range_training_config_names_the_field_and_starts_no_cluster(bad, field, allowed):
    job = defs.resolve_job_def("ad_relevance_training")
    run_config = {"ops": {"quests_window": {"config": {"rows": 1000}}, "ad_relevance_model": {"config": bad}}}
    with dg.instance_for_test() as instance:
        result = job.execute_in_process(partition_key="2026-03-01", run_config=run_config,
                                        instance=instance, raise_on_error=False)
        assert not result.success
        [failure] = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
        assert failure.step_key == "ad_relevance_model"
        message = failure.step_failure_data.error.cause.message if failure.step_failure_data.error.cause else ""
        message += failure.step_failure_data.error.message
        assert field in message and allowed in message
        logs = " ".join(r.user_message for r in instance.all_logs(result.run_id))
        assert "requesting" not in logs  # the cluster resource was never asked for a cluster
    assert LocalBackend().list() == []


def test_unknown_gpu_pool_is_rejected_by_the_config_schema_before_the_run_starts():
    job = defs.resolve_job_def("ad_relevance_training")
    with pytest.raises(dg.DagsterInvalidConfigError, match="gpu_pool"):
        job.execute_in_process(partition_key="2026-03-01",
                               run_config={"ops": {"ad_relevance_model": {"config": {"gpu_pool": "h100"}}}})


def test_every_launchpad_field_is_described():
    from pipelines.config import QuestsWindowConfig, ScoringConfig, SmokeConfig, TrainingConfig

    for config in (TrainingConfig, ScoringConfig, QuestsWindowConfig, SmokeConfig):
        for name, field in config.model_fields.items():
            assert field.description, f"{config.__name__}.{name} has no description"
