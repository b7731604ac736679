"""The service layer without HTTP: view values, phases, safe links, caching (stale while revalidate)."""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from drivers import wait_for
from drivers.local_records import YEAR_10000

from discord_ml_platform.backends import ClusterEndpoints, ClusterHandle, ClusterInfo
from discord_ml_platform.spec.labels import GPU_TYPE, OWNER, RUN_ID
from discord_ml_platform.xray.service import ClusterFilters, ClusterService, phase_of, safe_http_url
from discord_ml_platform.xray.settings import XRaySettings

pytestmark = pytest.mark.timeout(30)


def info(name: str = "c", *, status: str = "ready", ready: int = 2, desired: int = 2, age_h: float = 3.0,
         labels: dict[str, str] | None = None, details: dict | None = None, dashboard: str = "http://10.0.0.1:8265"):
    return ClusterInfo(handle=ClusterHandle(name, "ray", "kuberay"), labels=labels or {}, status=status,
                       created_at=datetime.now(UTC) - timedelta(hours=age_h), desired_workers=desired,
                       ready_workers=ready, endpoints=ClusterEndpoints(dashboard, "10.0.0.1:6379"),
                       details=details or {})


class CountingBackend:
    name = "kuberay"

    def __init__(self, infos, delay_s: float = 0.0):
        self.infos, self.delay_s, self.calls = infos, delay_s, 0

    def list(self, label_selector=None):
        self.calls += 1
        time.sleep(self.delay_s)
        return list(self.infos)


def test_view_prices_cost_so_far_and_links(tmp_path: Path):
    labels = {OWNER: "ada", GPU_TYPE: "h100-80gb", RUN_ID: "r/1 x"}
    svc = ClusterService({"kuberay": CountingBackend([])}, XRaySettings(state_dir=tmp_path, dagster_url="https://dg.example/"))
    view = svc.view(info(labels=labels, details={"gpus_per_worker": 4}))
    assert view.machine == "h100-80gb x 4, workers 2/2" and view.total_gpus == 8
    assert view.hourly_price_usd == pytest.approx(6.98 * 8)
    assert view.cost_so_far_usd == pytest.approx(6.98 * 8 * 3, rel=1e-3)
    assert view.dagster_run_url == "https://dg.example/runs/r%2F1%20x"  # the run id is quoted
    assert view.detail_url == "/clusters/kuberay/ray/c" and view.phase == "running"


def test_phase_and_unsafe_dashboard_links():
    assert phase_of(info(ready=1, desired=3)) == "workers 1/3"
    assert phase_of(info(status="pending", details={"reason": "Unschedulable"})) == "Unschedulable"
    assert phase_of(info(status="pending", details={"head_pod_ready": "True"}, ready=0)) == "head ready, workers 0/2"
    assert phase_of(info(status="pending")) == "pending"
    assert safe_http_url("javascript:alert(1)") is None and safe_http_url("http://") is None
    assert safe_http_url("https://ray.example/x") == "https://ray.example/x"


def test_filters_and_totals(tmp_path: Path):
    infos = [info("a", labels={OWNER: "ada", GPU_TYPE: "t4"}), info("b", labels={OWNER: "bob", GPU_TYPE: "t4"}),
             info("c", labels={OWNER: "ada", GPU_TYPE: "cpu"}, status="pending")]
    svc = ClusterService({"kuberay": CountingBackend(infos)}, XRaySettings(state_dir=tmp_path, cache_ttl_s=0))
    listing = svc.list_clusters(ClusterFilters(owner="ada"))
    assert [c.name for c in listing.clusters] == ["a", "c"]
    assert listing.totals.gpus == 2 and listing.totals.cost_per_hour_usd == pytest.approx(0.53 * 2 + 0.10 * 3)
    assert listing.choices["owner"] == ["ada", "bob"]
    assert [c.name for c in svc.list_clusters(ClusterFilters(owner="ada", status="ready")).clusters] == ["a"]


def test_listing_is_reused_then_revalidated_in_the_background(tmp_path: Path):
    backend = CountingBackend([info("a")], delay_s=0.3)
    svc = ClusterService({"kuberay": backend}, XRaySettings(state_dir=tmp_path, cache_ttl_s=0.5, max_stale_s=30))
    svc.list_clusters()
    assert backend.calls == 1
    svc.list_clusters()
    assert backend.calls == 1  # within the TTL
    time.sleep(0.6)
    started = time.perf_counter()
    svc.list_clusters()  # stale: answered at once, listed in the background
    assert time.perf_counter() - started < 0.2
    assert svc.wait_idle() and backend.calls == 2
    svc.invalidate()
    svc.list_clusters()
    assert backend.calls == 3


def test_concurrent_readers_share_one_listing(tmp_path: Path):
    backend = CountingBackend([info("a")], delay_s=0.3)
    svc = ClusterService({"kuberay": backend}, XRaySettings(state_dir=tmp_path, cache_ttl_s=5))
    threads = [threading.Thread(target=svc.list_clusters) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert backend.calls == 1


def test_prices_come_from_the_settings_catalog(tmp_path: Path):
    from discord_ml_platform.spec import platform_config_from_yaml

    config = platform_config_from_yaml("catalog:\n  types:\n    h100-80gb: {hourly_price_usd: 4.0}\n")
    labels = {OWNER: "ada", GPU_TYPE: "h100-80gb"}
    svc = ClusterService({"kuberay": CountingBackend([])}, XRaySettings(state_dir=tmp_path, platform_config=config))
    view = svc.view(info(labels=labels, details={"gpus_per_worker": 2}))
    assert view.hourly_price_usd == pytest.approx(4.0 * 4)
    assert view.cost_so_far_usd == pytest.approx(4.0 * 4 * 3, rel=1e-3)


def test_the_service_does_not_import_the_cli():
    code = ("import sys, discord_ml_platform.xray.service, discord_ml_platform.xray.app; "
            "print(sorted(m for m in sys.modules if m.startswith('discord_ml_platform.cli')))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "[]"


# One cluster never blinds the dashboard -------------------------------------------------------------


def fleet_with_a_bad_expiry() -> list[ClusterInfo]:
    from discord_ml_platform.spec.labels import EXPIRES_AT

    return [info("a-bad", labels={OWNER: "ada", EXPIRES_AT: YEAR_10000}), info("b-fine", labels={OWNER: "bob"}),
            info("c-fine", labels={OWNER: "cy"})]


def test_an_unreadable_expiry_label_is_shown_flagged_also_after_the_cache_expired(tmp_path: Path):
    backend = CountingBackend(fleet_with_a_bad_expiry())
    svc = ClusterService({"kuberay": backend}, XRaySettings(state_dir=tmp_path, cache_ttl_s=0.05, max_stale_s=30))
    for _ in range(2):  # the first listing, then one revalidated in the background after the TTL
        listing = svc.list_clusters()
        assert [c.name for c in listing.clusters] == ["a-bad", "b-fine", "c-fine"] and listing.errors == []
        bad = listing.clusters[0]
        assert bad.expires == "invalid label" and bad.expires_at is None and YEAR_10000 in bad.phase
        calls = backend.calls
        assert wait_for(lambda calls=calls: (svc.list_clusters(), backend.calls > calls)[1], 10, 0.02)  # past the TTL
        assert svc.wait_idle()
    assert backend.calls >= 3


def test_the_list_api_answers_200_with_every_cluster_after_the_cache_expired(tmp_path: Path):
    from fastapi.testclient import TestClient
    from xray_support import auth, make_settings

    from discord_ml_platform.xray.app import create_app

    backend = CountingBackend(fleet_with_a_bad_expiry())
    app = create_app(make_settings(tmp_path, cache_ttl_s=0.05, max_stale_s=0.1), {"kuberay": backend}, {},
                     run_reaper=False)
    with TestClient(app) as client:
        for _ in range(3):
            response = client.get("/api/clusters", headers=auth())
            assert response.status_code == 200, response.text
            assert [c["name"] for c in response.json()["clusters"]] == ["a-bad", "b-fine", "c-fine"]
            calls = backend.calls
            assert wait_for(lambda calls=calls: client.get("/api/clusters").status_code == 200
                            and backend.calls > calls, 10, 0.02)


def test_a_view_that_fails_is_logged_and_the_others_still_show(tmp_path: Path, monkeypatch, caplog):
    svc = ClusterService({"kuberay": CountingBackend(fleet_with_a_bad_expiry())},
                         XRaySettings(state_dir=tmp_path, cache_ttl_s=0))
    import discord_ml_platform.xray.service as service

    real_phase_of = service.phase_of

    def phase_of(cluster):  # a step of building the view that fails for one cluster
        if cluster.handle.name == "b-fine":
            raise RuntimeError("view exploded")
        return real_phase_of(cluster)

    monkeypatch.setattr(service, "phase_of", phase_of)
    listing = svc.list_clusters()
    assert [c.name for c in listing.clusters] == ["a-bad", "b-fine", "c-fine"]
    flagged = listing.clusters[1]
    assert flagged.status == "ready" and "view exploded" in flagged.phase and flagged.machine == "?"
    assert "building the view of cluster kuberay/ray/b-fine failed" in caplog.text
    assert svc.detail(CountingBackend(fleet_with_a_bad_expiry()).infos[1]).cluster.name == "b-fine"


def test_the_refresh_thread_survives_a_failure_and_reports_it_as_a_backend_error(tmp_path: Path, monkeypatch, caplog):
    backend = CountingBackend(fleet_with_a_bad_expiry())
    svc = ClusterService({"kuberay": backend}, XRaySettings(state_dir=tmp_path, cache_ttl_s=0.05, max_stale_s=30))
    assert len(svc.list_clusters().clusters) == 3
    failing = threading.Event()
    real_view = ClusterService.view

    def view(self, cluster, now=None):
        if failing.is_set():
            raise RuntimeError("listing bug")
        return real_view(self, cluster, now)

    monkeypatch.setattr(ClusterService, "view", view)
    failing.set()
    calls = backend.calls
    assert wait_for(lambda: (svc.list_clusters(), backend.calls > calls)[1], 10, 0.02)  # stale: refreshed in the background
    assert svc.wait_idle()
    listing = svc.list_clusters()
    assert [c.name for c in listing.clusters] == ["a-bad", "b-fine", "c-fine"]  # the last good views
    assert [(e.backend, e.message) for e in listing.errors] == [("xray", "listing failed: RuntimeError: listing bug")]
    assert "listing clusters failed" in caplog.text
    failing.clear()  # the next refresh (the listing is still stale) recovers
    assert wait_for(lambda: svc.wait_idle() and svc.list_clusters().errors == [], 10, 0.02)
