"""The Ad Relevance training asset in RayJob mode on the sandbox: a tiny window, one epoch, one worker.

``ad_relevance_model`` calls ``pipes_ray.run_workload``, which in RayJob mode hands KubeRay (the local
operator) one RayJob: the trained model's metrics come back through Pipes, the job's log lines reach
the event log, and after the TTL the operator (not the step) deletes the RayJob and its RayCluster.
"""

from pathlib import Path

import dagster as dg
import pytest

from pipelines.assets import ad_relevance_model, quests_window
from resources import DataRootResource, PipesRayJobClient, RayClusterResource, RayJobConfig

from .conftest import wait_until_clean
from .helpers import events_about, stored

PARTITION = "2026-11-25"
RUN_CONFIG = {
    "ops": {
        "quests_window": {"config": {"rows": 2000}},
        "ad_relevance_model": {"config": {"epochs": 1, "batch_size": 256}},
    },
}


@pytest.mark.ray
@pytest.mark.timeout(480)
def test_ad_relevance_training_runs_as_a_rayjob_reports_its_metrics_and_kuberay_cleans_up(
        kubeconfig: str, sandbox, tmp_path: Path) -> None:
    resources = {
        "ray_cluster": RayClusterResource(backend="kuberay", mode="rayjob", kubeconfig=kubeconfig, owner="tests", workers=1,
                                          rayjob=RayJobConfig(ttl_seconds_after_finished=3)),
        "pipes_ray": PipesRayJobClient(),
        "data_root": DataRootResource(path=str(tmp_path / "data")),
    }
    with dg.instance_for_test() as instance:
        result = dg.materialize([quests_window, ad_relevance_model], partition_key=PARTITION, resources=resources,
                                run_config=RUN_CONFIG, instance=instance, raise_on_error=False)
        logs = [r.user_message for r in instance.all_logs(result.run_id)]
    assert result.success, logs[-30:]
    [mat] = result.asset_materializations_for_node("ad_relevance_model")
    meta = {k: getattr(v, "value", v) for k, v in mat.metadata.items()}
    assert 0 < meta["val_auc"] <= 1 and meta["train_rows"] > 0  # from the Ray job, through Pipes
    assert Path(meta["model_path"]).joinpath("model.pt").exists()
    assert meta["cluster_mode"] == "rayjob" and meta["rayjob_attempts"] == 1
    assert meta["cluster_name"].startswith(meta["rayjob"])  # KubeRay's <rayjob>-<random>
    assert any(m.startswith("training on ") for m in logs)  # a Pipes log message of the driver
    assert meta["log_lines"] > 0 and any("[Complete] job SUCCEEDED" in m for m in logs)
    assert len([e for e in result.all_events if e.event_type_value == "ASSET_OBSERVATION"]) == 1  # the epoch
    assert wait_until_clean(sandbox, 60), (stored(sandbox, "rayjobs"), stored(sandbox, "rayclusters"))
    events = events_about(sandbox, meta["rayjob"])
    assert any(reason == "Deleted" and "TTL passed" in message for reason, message in events)
    assert not any("deleted RayJob" in m for m in logs)  # the operator cleaned up, not the step
