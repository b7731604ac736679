"""One odd cluster never blinds the fleet, and each deployment's sweeper touches only its own clusters.

On the local backend, with records naming stand-in ``sleep`` processes (all the backend looks at
when it lists and deletes): no Ray is started. The same on the sandbox's API server is in
``tests/kuberay/test_cleanup_ownership.py``.
"""

from __future__ import annotations

import subprocess
import tempfile
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import SimpleNamespace

import dagster as dg
import pytest
from dagster._core.storage.dagster_run import DagsterRun
from drivers.local_records import YEAR_10000, Sleepers, add_sleeping_cluster

from discord_ml_platform.backends import ClusterHandle, ClusterInfo
from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.fleet import cluster_row, display_cells, safe_cluster_row, sweep_reason
from discord_ml_platform.platform import Platform
from discord_ml_platform.settings import PlatformSettings
from discord_ml_platform.spec import DEFAULT_CATALOG, ClusterSpec, ConfigError, render_raycluster
from discord_ml_platform.spec.labels import DEPLOYMENT, EXPIRES_AT, parse_expiry
from resources.cleanup import build_cluster_cleanup_sensor, decide

pytestmark = pytest.mark.timeout(60)


# Parsing is total -----------------------------------------------------------------------------------


@pytest.mark.parametrize("value", [YEAR_10000, "9" * 5000, "²", "-1", "1e9", "", None, 5, ["1"]])
def test_parse_expiry_never_raises(value):
    assert parse_expiry(value) is None


def test_parse_expiry_reads_what_the_platform_writes():
    assert parse_expiry("1773529766") == datetime(2026, 3, 14, 23, 9, 26, tzinfo=UTC)


def info(name: str, labels: dict[str, str], **fields) -> ClusterInfo:
    values = {"status": "ready", "created_at": datetime.now(UTC) - timedelta(hours=1), "desired_workers": 1,
              "ready_workers": 1, **fields}
    return ClusterInfo(handle=ClusterHandle(name, "ray", "kuberay"), labels=labels, **values)


def test_a_row_with_an_unreadable_label_is_built_and_flagged():
    row = cluster_row(info("bad", {EXPIRES_AT: YEAR_10000}, details={"spec": {"gpus_per_worker": "lots"}}),
                      DEFAULT_CATALOG)
    assert row["expires_at"] is None and not row["expired"] and row["gpus_per_worker"] == 0
    assert any(YEAR_10000 in p for p in row["problems"]) and any("lots" in p for p in row["problems"])
    assert display_cells(row)["expires"] == "invalid label"
    assert sweep_reason(row) is None


def test_a_cluster_whose_row_cannot_be_built_still_shows_flagged(caplog):
    class Exploding:
        handle = ClusterHandle("weird", "ray", "kuberay")
        status = "ready"

        @property
        def labels(self):
            raise RuntimeError("boom")

    row = safe_cluster_row(Exploding(), DEFAULT_CATALOG)  # type: ignore[arg-type]
    assert (row["name"], row["status"]) == ("weird", "ready")
    assert row["problems"] == ["could not read this cluster: RuntimeError: boom"]
    assert "could not read cluster ray/weird" in caplog.text
    assert display_cells(row)["expires"] == "-"


# Deployments ----------------------------------------------------------------------------------------


def test_the_platform_puts_its_deployment_on_every_cluster():
    platform = Platform(PlatformSettings.from_env({"DMP_DEPLOYMENT": "team-a"}))
    spec = platform.cluster_spec({"name": "c", "deployment": "someone-else"})
    assert spec.deployment == "team-a"  # the settings decide which sweeper owns the cluster
    manifest = render_raycluster(spec, created_at=datetime(2026, 1, 1, tzinfo=UTC))
    assert manifest["metadata"]["labels"][DEPLOYMENT] == "team-a"
    assert ClusterSpec(name="c").deployment == "default"


@pytest.mark.parametrize("bad", ["Team_A", "-a", "a" * 64])
def test_a_bad_deployment_name_names_its_variable(bad):
    with pytest.raises(ConfigError, match="DMP_DEPLOYMENT"):
        PlatformSettings.from_env({"DMP_DEPLOYMENT": bad})


# The sensor on the local backend -------------------------------------------------------------------


class LocalFleet:
    """Records of local clusters whose heads are ``sleep`` processes of ours (start times recorded)."""

    def __init__(self, root: Path, temp_root: Path, sleepers: Sleepers) -> None:
        self.backend = LocalBackend(state_dir=root / "state", temp_root=temp_root)
        self.sleepers = sleepers
        self.heads: dict[str, subprocess.Popen[bytes]] = {}

    def add(self, name: str, *, deployment: str | None, run_id: str | None = None, expired: bool = False,
            raw_labels: dict[str, str] | None = None) -> None:
        self.heads[name] = add_sleeping_cluster(self.backend, self.sleepers, name, expired=expired,
                                                raw_labels=raw_labels, deployment=deployment, run_id=run_id)

    def running(self) -> list[str]:
        return sorted(name for name, head in self.heads.items() if head.poll() is None)

    def listed(self) -> list[str]:
        return sorted(i.handle.name for i in self.backend.list())


@pytest.fixture
def fleet(tmp_path: Path, session_root: Path, sleepers: Sleepers) -> LocalFleet:
    return LocalFleet(tmp_path, Path(tempfile.mkdtemp(prefix="fr-", dir=session_root / "r")), sleepers)


def tick(fleet: LocalFleet, instance: dg.DagsterInstance, deployment: str = "a") -> str:
    sensor = build_cluster_cleanup_sensor(backend_factory=lambda: fleet.backend, deployment=deployment)
    data = sensor.evaluate_tick(dg.build_sensor_context(instance=instance))
    assert not data.run_requests
    return str(data.skip_message)


def test_one_unreadable_expiry_does_not_stop_the_sweep_of_the_clusters_after_it(fleet):
    fleet.add("a-bad-expiry", deployment="a", raw_labels={EXPIRES_AT: YEAR_10000})  # listed first
    fleet.add("b-condemned", deployment="a", run_id=str(uuid.uuid4()))  # a run this instance never saw
    summary = tick(fleet, dg.DagsterInstance.ephemeral())
    assert "checked 2 local cluster(s): deleted 1" in summary and "b-condemned" in summary, summary
    assert fleet.listed() == ["a-bad-expiry"] and fleet.running() == ["a-bad-expiry"]


def test_the_sensor_sweeps_only_its_own_deployment_and_unlabelled_clusters_only_when_expired(fleet):
    instance = dg.DagsterInstance.ephemeral()
    finished = str(uuid.uuid4())
    instance.add_run(DagsterRun(job_name="train", run_id=finished, status=dg.DagsterRunStatus.SUCCESS))
    fleet.add("mine", deployment="a", run_id=str(uuid.uuid4()))
    fleet.add("mine-finished", deployment="a", run_id=finished)
    fleet.add("theirs", deployment="b", run_id=str(uuid.uuid4()))  # a run of B's instance, unknown to A's
    fleet.add("theirs-expired", deployment="b", run_id=str(uuid.uuid4()), expired=True)  # B's sensor's job
    fleet.add("legacy", deployment=None, run_id=str(uuid.uuid4()))  # from before the label
    fleet.add("legacy-expired", deployment=None, run_id=str(uuid.uuid4()), expired=True)

    summary = tick(fleet, instance, deployment="a")
    assert "deleted 3" in summary and "kept 3" in summary, summary
    assert fleet.listed() == fleet.running() == ["legacy", "theirs", "theirs-expired"]

    now = datetime.now(UTC)
    reasons = {i.handle.name: decide(i, instance, now, deployment="a").reason for i in fleet.backend.list()}
    assert reasons["theirs"] == reasons["theirs-expired"] == "belongs to deployment b"
    assert "deleted only when expired" in reasons["legacy"]

    assert "deleted 2" in tick(fleet, instance, deployment="b")  # B's sensor sweeps B's
    assert fleet.listed() == fleet.running() == ["legacy"]


def test_the_sensor_takes_its_deployment_from_dmp_deployment(fleet, monkeypatch):
    monkeypatch.setenv("DMP_DEPLOYMENT", "b")
    fleet.add("theirs", deployment="a", run_id=str(uuid.uuid4()))
    fleet.add("mine", deployment="b", run_id=str(uuid.uuid4()))
    sensor = build_cluster_cleanup_sensor(backend_factory=lambda: fleet.backend)
    summary = str(sensor.evaluate_tick(dg.build_sensor_context(instance=dg.DagsterInstance.ephemeral())).skip_message)
    assert "deleted 1 [local/mine" in summary, summary
    assert fleet.running() == ["theirs"]


def test_a_failure_on_one_cluster_is_counted_and_the_others_are_still_swept(fleet, monkeypatch):
    import resources.cleanup as cleanup

    fleet.add("a-odd", deployment="a", run_id=str(uuid.uuid4()))
    fleet.add("b-condemned", deployment="a", run_id=str(uuid.uuid4()))
    real_decide = cleanup.decide

    def decide_or_fail(info, *args, **kwargs):
        if info.handle.name == "a-odd":
            raise RuntimeError("cannot decide")
        return real_decide(info, *args, **kwargs)

    monkeypatch.setattr(cleanup, "decide", decide_or_fail)
    summary = tick(fleet, dg.DagsterInstance.ephemeral())
    assert "deleted 1" in summary and "failed 1 [local/a-odd]" in summary, summary
    assert fleet.running() == ["a-odd"]


def test_rows_of_unknown_objects_are_readable():
    # What a backend may hand over for an object someone else created: no labels, no spec.
    odd = SimpleNamespace(handle=ClusterHandle("odd", "ray", "kuberay"), labels=None, status=None,
                          created_at="yesterday", desired_workers=-1, ready_workers="2", endpoints=None, details=None)
    row = safe_cluster_row(odd, DEFAULT_CATALOG)  # type: ignore[arg-type]
    assert (row["name"], row["desired_workers"], row["ready_workers"]) == ("odd", 0, 2)
    assert "creation time unknown" in row["problems"] and row["run_id"] is None and row["labels"] == {}
