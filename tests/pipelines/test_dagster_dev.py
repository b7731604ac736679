"""`dagster dev -w workspace.yaml` serves the code location, and a run launched the way the
Launchpad launches it (GraphQL, edited config, the GPU-pool run coordinator + daemon) succeeds,
tagged with the pool its edited config asks for."""

import time

import pytest
from dagster import DagsterInstance
from drivers.dagster_dev import dagster_dev as dagster_dev_server

from discord_ml_platform.backends.local import LocalBackend

pytestmark = [pytest.mark.ray, pytest.mark.timeout(420)]

LOCATION_QUERY = """
query {
  repositoriesOrError {
    ... on RepositoryConnection {
      nodes { name jobs { name } schedules { name cronSchedule } sensors { name } assetNodes { assetKey { path } } }
    }
  }
}
"""


@pytest.fixture
def dagster_dev(tmp_path):
    with dagster_dev_server(tmp_path, "-w", "workspace.yaml") as (port, home, _):
        yield port, home


def test_launchpad_run_with_edited_config_succeeds(dagster_dev):
    from dagster_graphql import DagsterGraphQLClient, DagsterGraphQLClientError

    port, home = dagster_dev
    client = DagsterGraphQLClient("127.0.0.1", port_number=port)
    deadline = time.monotonic() + 120
    while True:  # the code location loads in the background after the server answers
        try:
            result = client._execute(LOCATION_QUERY)
            [repo] = result["repositoriesOrError"]["nodes"]
            break
        except (DagsterGraphQLClientError, KeyError, ValueError, TypeError):
            assert time.monotonic() < deadline, "code location did not load"
            time.sleep(1)
    assert {"ad_relevance_training", "ad_relevance_batch_scoring", "platform_smoke_test"} <= {j["name"] for j in repo["jobs"]}
    assert [s["name"] for s in repo["schedules"]] == ["ad_relevance_daily_retrain"]
    assert "new_quests_window_sensor" in {s["name"] for s in repo["sensors"]}
    assets = {"/".join(a["assetKey"]["path"]) for a in repo["assetNodes"]}
    assert {"quests_window", "ad_relevance_model", "ad_relevance_evaluation", "ad_relevance_scores"} <= assets

    # The Launchpad sends the job's tags (dmp/gpu-pool: cpu) with the config the user edited: here a
    # head-only cluster on the l4 pool (the local backend gives Ray a nominal GPU; the smoke job uses none).
    run_id = client.submit_job_execution(
        "platform_smoke_test",
        run_config={"ops": {"platform_smoke": {"config": {"tasks": 6}}},
                    "resources": {"ray_cluster": {"config": {"gpu_pool": "l4", "workers": 0, "head_memory": "1Gi"}}}},
        tags={"dmp/gpu-pool": "cpu"},
    )
    deadline = time.monotonic() + 240
    status = None
    while time.monotonic() < deadline:
        status = client.get_run_status(run_id).value
        if status in ("SUCCESS", "FAILURE", "CANCELED"):
            break
        time.sleep(1)
    assert status == "SUCCESS"
    assert LocalBackend().list() == []
    with DagsterInstance.from_config(str(home)) as instance:
        run = instance.get_run_by_id(run_id)
        logs = [r.user_message for r in instance.all_logs(run_id)]
    # Queued under the pool it uses: the coordinator tagged it before the daemon dequeued it, so the
    # cluster resource found nothing to correct when the run started.
    assert run.tags["dmp/gpu-pool"] == "l4"
    assert not any("retagged" in line for line in logs)
    assert any("requesting local Ray cluster" in line and "l4" in line for line in logs)
