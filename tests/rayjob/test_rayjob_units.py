"""RayJob mode without Ray: rendering from the resource's config, CRD validity, status reading, names."""

from __future__ import annotations

from datetime import UTC

import pytest
import yaml
from pydantic import ValidationError

from discord_ml_platform.backends.rayjobs import RayJobOptions, RayJobState, rayjob_name, rayjob_submission_id
from discord_ml_platform.sandbox.operator_rayjob import build_raycluster, deadline_message, generated_name
from discord_ml_platform.spec.render import render_rayjob
from resources import RayClusterResource, RayJobConfig


def rendered(options: RayJobOptions | None = None, **spec_fields: object) -> dict:
    config = RayJobConfig(**(options or RayJobOptions()).model_dump())
    resource = RayClusterResource(backend="kuberay", mode="rayjob", owner="tests", rayjob=config)
    spec = resource.spec_for_run("0f1e2d3c-aaaa-bbbb-cccc-000000000000", head_memory="1Gi", **spec_fields)
    o = resource.rayjob
    from datetime import datetime

    return render_rayjob(spec, entrypoint="python -m discord_ml_platform.jobs.smoke",
                         runtime_env={"env_vars": {"DAGSTER_PIPES_CONTEXT": "abc"}}, submission_id="job-1",
                         shutdown_after_job_finishes=o.shutdown_after_job_finishes,
                         ttl_seconds_after_finished=o.ttl_seconds_after_finished,
                         active_deadline_seconds=o.active_deadline_seconds, backoff_limit=o.backoff_limit,
                         created_at=datetime(2026, 3, 1, tzinfo=UTC))


def test_the_default_mode_is_raycluster_and_rayjob_defaults_are_safe(monkeypatch) -> None:
    resource = RayClusterResource()
    assert resource.mode is None and resource.effective_mode == "raycluster"
    monkeypatch.setenv("DMP_CLUSTER_MODE", "rayjob")  # the code location's mode, from the platform
    assert RayClusterResource().effective_mode == "rayjob"
    assert RayClusterResource(mode="raycluster").effective_mode == "raycluster"  # the field wins
    options = resource.rayjob
    assert options.shutdown_after_job_finishes and options.ttl_seconds_after_finished > 0
    assert options.active_deadline_seconds is not None and options.backoff_limit == 0
    assert options.on_terminate == "delete"


def test_rayjob_options_are_validated_with_the_field_name() -> None:
    with pytest.raises(ValidationError, match="ttl_seconds_after_finished"):
        RayJobOptions(ttl_seconds_after_finished=-1)
    with pytest.raises(ValidationError, match="active_deadline_seconds"):
        RayJobOptions(active_deadline_seconds=0)
    with pytest.raises(ValidationError, match="mode"):
        RayClusterResource(mode="kubejob")  # type: ignore[arg-type]
    with pytest.raises(ValidationError, match="ttl_seconds_after_finished"):
        RayJobConfig(ttl_seconds_after_finished=-1)  # the Launchpad form has the same rules


@pytest.mark.parametrize("options", [RayJobOptions(), RayJobOptions(ttl_seconds_after_finished=0,
                                                                     active_deadline_seconds=None, backoff_limit=3,
                                                                     shutdown_after_job_finishes=False)])
def test_rendered_rayjobs_validate_against_the_kuberay_crd(options: RayJobOptions) -> None:
    from kuberay_crd_schema import manifest_problems

    manifest = rendered(options)
    assert manifest_problems(manifest) == []
    body = manifest["spec"]
    assert body["shutdownAfterJobFinishes"] is options.shutdown_after_job_finishes
    assert body["ttlSecondsAfterFinished"] == options.ttl_seconds_after_finished
    assert body.get("activeDeadlineSeconds") == options.active_deadline_seconds
    assert body["backoffLimit"] == options.backoff_limit
    assert body["jobId"] == "job-1"
    assert yaml.safe_load(body["runtimeEnvYAML"]) == {"env_vars": {"DAGSTER_PIPES_CONTEXT": "abc"}}


def test_the_rayjob_carries_our_labels_and_the_policy() -> None:
    manifest = rendered()
    labels = manifest["metadata"]["labels"]
    assert labels["app.kubernetes.io/managed-by"] == "discord-ml-platform"
    assert labels["mlplatform.discord.com/owner"] == "tests"
    assert labels["mlplatform.discord.com/dagster-run-id"].startswith("0f1e2d3c")
    head = manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["template"]["spec"]
    context = head["containers"][0]["securityContext"]
    assert context["allowPrivilegeEscalation"] is False and context["runAsNonRoot"] is True


def test_rayjob_names_are_per_step_and_short_enough_for_kuberay_cluster_names() -> None:
    cluster = "x" * 47
    a, b = rayjob_name(cluster, "run/step_a"), rayjob_name(cluster, "run/step_b")
    assert a != b and len(a) <= 41 and len(generated_name(a)) <= 47
    assert rayjob_name(cluster, "run/step_a") == a  # stable for the same step
    assert rayjob_submission_id("dmp-1").startswith("dmp-1-")


def test_rayjob_state_reads_kuberay_status() -> None:
    obj = {"metadata": {"name": "j", "namespace": "ray"}, "spec": {"jobId": "j-1"},
           "status": {"jobDeploymentStatus": "Failed", "jobStatus": "STOPPED", "reason": "DeadlineExceeded",
                      "message": "passed", "rayClusterName": "j-abcde", "dashboardURL": "127.0.0.1:8265"}}
    state = RayJobState.from_object(obj)
    assert state.finished and not state.succeeded and state.submitted
    assert state.dashboard_url == "http://127.0.0.1:8265" and state.job_id == "j-1"
    assert "DeadlineExceeded" in state.describe() and "j-abcde" in state.describe()
    assert not RayJobState.from_object({"metadata": {"name": "j"}}).finished
    assert RayJobState("j", "ray", exists=False).finished
    running = RayJobState.from_object({"metadata": {"name": "j"}, "status": {"jobDeploymentStatus": "Initializing",
                                                                             "jobId": "j-1"}})
    assert not running.submitted and running.phase() == ("Initializing", "-")


def test_the_operator_builds_a_raycluster_owned_by_the_rayjob() -> None:
    manifest = rendered()
    manifest["metadata"]["uid"] = "uid-1"
    rc = build_raycluster(manifest, "dmp-0f1e2d3caaaa-xyz12")
    assert rc["spec"] == manifest["spec"]["rayClusterSpec"]
    [owner] = rc["metadata"]["ownerReferences"]
    assert owner["kind"] == "RayJob" and owner["uid"] == "uid-1" and owner["controller"] is True
    assert rc["metadata"]["labels"]["ray.io/originated-from-crd"] == "RayJob"
    assert rc["metadata"]["labels"]["mlplatform.discord.com/owner"] == "tests"
    assert "ActiveDeadlineSeconds: 30" in deadline_message("2026-03-01T00:00:00Z", 30)


def test_a_retrying_rayjob_is_not_finished_and_counts_its_attempts() -> None:
    status = {"jobDeploymentStatus": "Retrying", "jobStatus": "FAILED", "reason": "AppFailed", "failed": 1,
              "rayClusterName": "j-abcde", "dashboardURL": "127.0.0.1:8265", "jobId": "j-1"}
    retrying = RayJobState.from_object({"metadata": {"name": "j"}, "status": status})
    assert retrying.retrying and not retrying.finished and retrying.failed_attempts == 1
    assert "1 failed attempt(s)" in retrying.describe()
    renewed = RayJobState.from_object({"metadata": {"name": "j"},
                                       "status": {"jobDeploymentStatus": "New", "failed": 1}})
    assert renewed.retrying and not renewed.finished
    fresh = RayJobState.from_object({"metadata": {"name": "j"}, "status": {"jobDeploymentStatus": "New"}})
    assert not fresh.retrying
    done = RayJobState.from_object({"metadata": {"name": "j"}, "status": {
        "jobDeploymentStatus": "Complete", "jobStatus": "SUCCEEDED", "failed": 1, "succeeded": 1}})
    assert done.succeeded and (done.failed_attempts, done.succeeded_attempts) == (1, 1)


def pipes_line(method: str, params: dict) -> str:
    """A Pipes message as the driver prints it (after Ray's prefix)."""
    import json

    from discord_ml_platform.jobs.pipes_protocol import PIPES_VERSION_FIELD

    return "(driver) " + json.dumps({PIPES_VERSION_FIELD: "0.1", "method": method, "params": params})


def test_the_runner_holds_back_each_attempts_closed_message_until_the_rayjob_ends() -> None:
    """A retried attempt's Pipes ``closed`` never reaches the consumer's session (it would end it early);
    the last attempt's does, once the RayJob ended."""
    from discord_ml_platform.jobs.events import LogLine, Notice
    from discord_ml_platform.jobs.runner import _AttemptFollower, _Lines

    lines = _Lines(tail=10, hold_closed=True)
    attempts = _AttemptFollower(lines, "disabled")
    failed_close = pipes_line("closed", {"exception": {"name": "RuntimeError", "message": "first attempt fails"}})
    lines.put("attempt 1 line")
    lines.put(failed_close)
    notices = list(attempts.update(RayJobState("j", "ray", deployment_status="Retrying", failed_attempts=1)))
    assert [e.text for e in lines.drain() if isinstance(e, LogLine)] == ["attempt 1 line"]
    [notice] = notices
    assert isinstance(notice, Notice) and "RuntimeError: first attempt fails" in notice.message
    final_close = pipes_line("closed", {})
    lines.put("attempt 2 line")
    lines.put(final_close)
    assert [e.text for e in lines.drain()] == ["attempt 2 line"]
    lines.release_closed()
    [closed] = list(lines.drain())
    assert closed.text == final_close and closed.pipes["method"] == "closed"
    assert lines.tail() == ("attempt 1 line", "attempt 2 line") and lines.count == 4


def test_the_runner_turns_epoch_metrics_messages_into_metric_events() -> None:
    from discord_ml_platform.jobs.events import LogLine, Metric
    from discord_ml_platform.jobs.runner import _Lines

    lines = _Lines(tail=5)
    lines.put(pipes_line("report_custom_message", {"payload": {"kind": "epoch_metrics", "epoch": 0, "auc": 0.9}}))
    lines.put(pipes_line("report_custom_message", {"payload": {"kind": "other", "x": 1}}))
    lines.put("plain")
    events = list(lines.drain())
    assert [type(e) for e in events] == [LogLine, Metric, LogLine, LogLine]
    assert events[1].values == {"epoch": 0, "auc": 0.9}
    assert lines.tail() == ("plain",)  # Pipes messages are not the job's own output
