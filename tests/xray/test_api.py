"""Every API route of X-Ray over the sandbox (kuberay, no operator) and fake local clusters:
values, filters, bad input, missing or wrong token, cross-site requests, escaping, no secrets."""

from __future__ import annotations

import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from xray_support import TOKEN, FakeLocalClusters, add_event, add_raycluster, auth, make_settings, standin_launchers

pytestmark = pytest.mark.timeout(60)


@pytest.fixture(scope="module")
def backends(kuberay: Any, fake_local: FakeLocalClusters) -> dict[str, Any]:
    from discord_ml_platform.backends.local import LocalBackend

    add_raycluster(kuberay, "train-h100", owner="ada", team="ads", gpu_type="h100-80gb", gpus_per_worker=1,
                   workers=2, run_id="run-1234")
    add_raycluster(kuberay, "eval-a10g", namespace="ml-research", owner="bob", team="ranking", gpu_type="a10g",
                   gpus_per_worker=1, workers=1, ready_workers=0)
    add_raycluster(kuberay, "pending-cpu", owner="ada", team="ads", workers=0, ready=False)
    fake_local.add("nb-local", owner="grace", gpu_type="a10g", gpus_per_worker=2, workers=2,
                   log_lines=tuple(f"line {i}" for i in range(300)))
    fake_local.add("xss-local", owner="x", raw_labels={"mlplatform.discord.com/owner": "<script>alert(1)</script>",
                                                       "mlplatform.discord.com/team": "<b>bold</b>"})
    return {"kuberay": kuberay, "local": LocalBackend(state_dir=fake_local.state_dir)}


@pytest.fixture(scope="module")
def client(backends: dict[str, Any], xray_root: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from discord_ml_platform.xray.app import create_app

    app = create_app(make_settings(xray_root), backends, standin_launchers(xray_root), run_reaper=False)
    with TestClient(app) as test_client:
        yield test_client
        for record in app.state.xray.notebooks.records():
            app.state.xray.notebooks.stop(record.cluster)


@pytest.fixture(scope="module")
def readonly_client(backends: dict[str, Any], xray_root: Path) -> Iterator[Any]:
    from fastapi.testclient import TestClient

    from discord_ml_platform.xray.app import create_app

    app = create_app(make_settings(xray_root, token=None), backends, standin_launchers(xray_root), run_reaper=False)
    with TestClient(app) as test_client:
        yield test_client


def by_name(listing: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in listing["clusters"]}


def test_list_reports_every_cluster_with_its_facts(client):
    listing = client.get("/api/clusters").json()
    rows = by_name(listing)
    assert {"train-h100", "eval-a10g", "pending-cpu", "nb-local", "xss-local"} <= set(rows)
    train = rows["train-h100"]
    assert (train["backend"], train["namespace"], train["owner"], train["team"]) == ("kuberay", "ray", "ada", "ads")
    assert train["machine"] == "h100-80gb x 1, workers 2/2" and train["status"] == "ready"
    assert train["hourly_price_usd"] == pytest.approx(6.98 * 2)
    assert train["dagster_run_url"] == "http://dagster.example:3000/runs/run-1234"
    assert train["dashboard_url"] == "http://127.0.0.1:8265"
    assert train["detail_url"] == "/clusters/kuberay/ray/train-h100"
    assert rows["eval-a10g"]["phase"] == "workers 0/1"
    assert rows["pending-cpu"]["status"] == "pending" and rows["pending-cpu"]["dashboard_url"] is None
    local = rows["nb-local"]
    assert local["machine"] == "a10g x 2, workers 2/2" and local["total_gpus"] == 4
    assert local["hourly_price_usd"] == pytest.approx(1.01 * 4)
    # two hours old: cost so far is the hourly price times the hours since creation
    assert local["cost_so_far_usd"] == pytest.approx(1.01 * 4 * 2, rel=0.01)
    totals = listing["totals"]
    assert totals["clusters"] == len(listing["clusters"])
    assert totals["gpus"] == sum(c["total_gpus"] for c in listing["clusters"])
    assert totals["cost_per_hour_usd"] == pytest.approx(sum(c["hourly_price_usd"] or 0 for c in listing["clusters"]), abs=0.01)
    assert listing["errors"] == []


def test_filters_by_owner_status_gpu_type_team_and_backend(client):
    def names(**query: str) -> set[str]:
        return set(by_name(client.get("/api/clusters", params=query).json()))

    assert names(owner="ada") == {"train-h100", "pending-cpu"}
    assert names(status="pending") == {"pending-cpu"}
    assert names(gpu_type="a10g") == {"eval-a10g", "nb-local", "xss-local"}
    assert names(gpu_type="a10g", backend="kuberay") == {"eval-a10g"}
    assert names(team="ranking", owner="grace") == {"nb-local"}
    assert names(owner="nobody") == set()
    filtered = client.get("/api/clusters", params={"owner": "ada"}).json()
    assert filtered["totals"]["clusters"] == 2 and filtered["filters"]["owner"] == "ada"
    assert "bob" in filtered["choices"]["owner"]  # menus offer every value, not only the shown ones


@pytest.mark.parametrize("query", [{"owner": "x" * 300}, {"backend": "Bad Backend!"}, {"gpu_type": "g" * 254}])
def test_bad_filter_values_are_rejected(client, query):
    assert client.get("/api/clusters", params=query).status_code == 422


def test_detail_shows_spec_conditions_and_events(client, api_server):
    add_event(api_server, "train-h100", "ray", "Created", "Created head pod train-h100-head-x")
    detail = client.get("/api/clusters/kuberay/ray/train-h100").json()
    assert detail["cluster"]["owner"] == "ada"
    assert {c["type"] for c in detail["conditions"]} == {"HeadPodReady", "RayClusterProvisioned"}
    assert any(e["reason"] == "Created" and "head pod" in e["message"] for e in detail["events"])
    assert detail["spec"]["gpu_type"] == "h100-80gb" and detail["spec"]["workers"] == 2
    assert detail["gcs_address"] == "127.0.0.1:6379"


def test_detail_of_a_local_cluster_leaves_out_its_environment(client):
    detail = client.get("/api/clusters/local/local/nb-local").json()
    assert detail["spec"]["image"] == "rayproject/ray:2.60.0" and detail["spec"]["gpus_per_worker"] == 2
    assert "env" not in detail["spec"] and "do-not-show" not in str(detail)


@pytest.mark.parametrize("path", ["/api/clusters/nope/ray/train-h100", "/api/clusters/kuberay/ray/missing",
                                  "/api/clusters/kuberay/default/train-h100", "/api/clusters/kuberay/ray/missing/jobs",
                                  "/api/clusters/kuberay/ray/missing/logs"])
def test_unknown_backend_or_cluster_is_404(client, path):
    response = client.get(path, headers=auth())
    assert response.status_code == 404 and response.json()["detail"]


@pytest.mark.parametrize("path", ["/api/clusters/kuberay/ray/Bad_Name", "/api/clusters/kuberay/RAY/x",
                                  "/api/clusters/KubeRay/ray/x", "/api/clusters/kuberay/ray/-x-/jobs",
                                  "/api/clusters/kuberay/ray/x/logs?lines=0", "/api/clusters/local/local/nb-local/logs?lines=99999",
                                  "/api/clusters/local/local/nb-local/logs?lines=many"])
def test_bad_names_and_parameters_are_422(client, path):
    assert client.get(path, headers=auth()).status_code == 422


def test_jobs_say_why_they_are_missing(client):
    pending = client.get("/api/clusters/kuberay/ray/pending-cpu/jobs", headers=auth()).json()
    assert pending["jobs"] == [] and "no dashboard" in pending["error"]
    unreachable = client.get("/api/clusters/local/local/nb-local/jobs", headers=auth()).json()
    assert unreachable["jobs"] == [] and "did not answer" in unreachable["error"]


def test_logs_tail_the_head_log(client):
    tail = client.get("/api/clusters/local/local/nb-local/logs", params={"lines": 5}, headers=auth()).json()
    assert tail["source"] == "head.log" and tail["lines"] == [f"line {i}" for i in range(295, 300)]
    kuberay = client.get("/api/clusters/kuberay/ray/pending-cpu/logs", headers=auth()).json()
    assert kuberay["lines"] == [] and kuberay["error"]


def test_meta_routes_and_openapi(client):
    assert client.get("/api/healthz").json() == {"status": "ok"}
    assert client.get("/api/session").json() == {"writes_enabled": True, "authorized": False}
    assert client.get("/api/session", headers=auth()).json()["authorized"] is True
    assert client.get("/api/session", headers={"X-XRay-Token": TOKEN}).json()["authorized"] is True
    spec = client.get("/api/openapi.json").json()
    paths = spec["paths"]
    assert {"/api/clusters", "/api/clusters/{backend}/{namespace}/{name}",
            "/api/clusters/{backend}/{namespace}/{name}/jobs", "/api/clusters/{backend}/{namespace}/{name}/logs",
            "/api/clusters/{backend}/{namespace}/{name}/notebook"} <= set(paths)
    assert {"get", "delete"} <= set(paths["/api/clusters/{backend}/{namespace}/{name}"])
    assert "ClusterView" in spec["components"]["schemas"]


@pytest.mark.parametrize("method,path", [
    ("DELETE", "/api/clusters/kuberay/ray/train-h100"),
    ("POST", "/api/clusters/kuberay/ray/train-h100/notebook"),
    ("DELETE", "/api/clusters/kuberay/ray/train-h100/notebook"),
])
def test_mutations_need_the_token(client, readonly_client, method, path):
    missing = client.request(method, path)
    assert missing.status_code == 401 and missing.headers["www-authenticate"] == "Bearer"
    assert client.request(method, path, headers=auth("wrong-token")).status_code == 401
    assert client.request(method, path, headers={"Authorization": "Basic " + TOKEN}).status_code == 401
    cross = client.request(method, path, headers={**auth(), "Origin": "http://evil.example"})
    assert cross.status_code == 403 and "cross-site" in cross.json()["detail"]
    assert client.request(method, path, headers={**auth(), "Sec-Fetch-Site": "cross-site"}).status_code == 403
    readonly = readonly_client.request(method, path, headers=auth())
    assert readonly.status_code == 403 and "read-only" in readonly.json()["detail"]
    assert client.get("/api/clusters/kuberay/ray/train-h100").status_code == 200  # nothing happened


def test_delete_removes_a_kuberay_cluster(client, kuberay):
    add_raycluster(kuberay, "doomed", owner="carol", workers=0)
    response = client.delete("/api/clusters/kuberay/ray/doomed",
                             headers={**auth(), "Origin": str(client.base_url)})
    assert response.status_code == 200, response.text
    assert response.json() == {"deleted": "kuberay/ray/doomed", "notebook_stopped": False}
    assert "doomed" not in by_name(client.get("/api/clusters").json())
    assert client.delete("/api/clusters/kuberay/ray/doomed", headers=auth()).status_code == 404


def test_delete_stops_a_local_cluster_and_its_notebook(client, fake_local):
    fake_local.add("short-lived", workers=1)
    head = fake_local.procs[-2]
    launched = client.post("/api/clusters/local/local/short-lived/notebook", headers=auth())
    assert launched.status_code == 201, launched.text
    response = client.delete("/api/clusters/local/local/short-lived", headers=auth())
    assert response.json() == {"deleted": "local/local/short-lived", "notebook_stopped": True}
    assert head.wait(timeout=10) is not None  # the head process was stopped
    assert client.get("/api/clusters/local/local/short-lived/notebook", headers=auth()).status_code == 404


def wait_for(fn, timeout_s: float = 15.0):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(0.1)
    raise AssertionError("condition not met in time")


def test_notebook_lifecycle_and_its_link_only_for_token_holders(client):
    path = "/api/clusters/kuberay/ray/train-h100/notebook"
    assert client.get(path, headers=auth()).status_code == 404
    launched = client.post(path, headers=auth())
    assert launched.status_code == 201 and launched.json()["kind"] == "process"
    running = wait_for(lambda: (v := client.get(path, headers=auth()).json())["state"] == "running" and v)
    url = running["url"]
    assert url.startswith("http://127.0.0.1:") and "token=" in url
    anonymous = client.get(path)  # the notebook's details and link (it holds the notebook's token): token only
    assert anonymous.status_code == 401 and "token=" not in anonymous.text and "running" not in anonymous.text
    with urllib.request.urlopen(url, timeout=5) as answer:
        page = answer.read().decode()
    assert answer.status == 200 and "RAY_ADDRESS=127.0.0.1:6379" in page
    again = client.post(path, headers=auth()).json()  # idempotent: the same notebook
    assert again["started_at"] == launched.json()["started_at"]
    assert client.delete(path, headers=auth()).json() == {"stopped": True}
    assert client.get(path, headers=auth()).status_code == 404
    assert client.delete(path, headers=auth()).json() == {"stopped": False}


def test_notebook_on_a_cluster_without_address_is_409(client):
    response = client.post("/api/clusters/kuberay/ray/pending-cpu/notebook", headers=auth())
    assert response.status_code == 409 and "no Ray address" in response.json()["detail"]


def test_pages_escape_labels_and_hold_no_secrets(client):
    page = client.get("/")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "<script>alert(1)</script>" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert "<b>bold</b>" not in page.text
    detail = client.get("/clusters/local/local/xss-local")
    assert detail.status_code == 200 and "<script>alert(1)" not in detail.text
    for text in (page.text, detail.text, client.get("/clusters/local/local/nb-local").text):
        assert TOKEN not in text and "do-not-show" not in text and "API_KEY" not in text
    assert page.text.count("<script") == 1  # only our own script tag


def test_pages_render_filters_and_details(client):
    page = client.get("/", params={"owner": "ada"}).text
    assert "train-h100" in page and "pending-cpu" in page and "eval-a10g" not in page
    detail = client.get("/clusters/local/local/nb-local").text
    assert "a10g x 2, workers 2/2" in detail and 'id="logs-locked"' in detail
    assert "line 299" not in detail  # the log is fetched by the page's script, with the token
    missing = client.get("/clusters/kuberay/ray/missing")
    assert missing.status_code == 404 and "Cluster not found" in missing.text
    assert client.get("/clusters/kuberay/ray/Bad_Name").status_code == 422


def test_security_headers(client):
    response = client.get("/")
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "no-referrer"
    assert response.headers["x-frame-options"] == "DENY"
    assert client.get("/static/xray.js").status_code == 200


def test_a_failing_backend_does_not_hide_the_others(backends, xray_root):
    from fastapi.testclient import TestClient

    from discord_ml_platform.backends import ClusterError
    from discord_ml_platform.xray.app import create_app

    class Broken:
        name = "kuberay"

        def list(self, label_selector=None):
            raise ClusterError("API server unreachable")

    app = create_app(make_settings(xray_root), {"kuberay": Broken(), "local": backends["local"]}, {}, run_reaper=False)
    with TestClient(app) as test_client:
        listing = test_client.get("/api/clusters").json()
        assert listing["errors"] == [{"backend": "kuberay", "message": "API server unreachable"}]
        assert "nb-local" in by_name(listing)
        assert "could not be listed" in test_client.get("/").text
