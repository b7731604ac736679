"""X-Ray in a real browser: Debian's headless Chromium driven by Playwright, against the app on
localhost with the sandbox holding several clusters. Screenshots go to ``tests/xray/screenshots/``
(git-ignored) or ``$DMP_XRAY_SCREENSHOT_DIR``."""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from drivers import wait_for
from xray_support import TOKEN, FakeLocalClusters, add_raycluster, make_settings, standin_launchers

from discord_ml_platform.backends.processes import free_ports

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (scripts/install_browser.sh)"),
]
pytest.importorskip("playwright")
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
SHOTS = Path(os.environ.get("DMP_XRAY_SCREENSHOT_DIR") or Path(__file__).with_name("screenshots"))


@pytest.fixture(scope="module")
def backends(kuberay: Any, fake_local: FakeLocalClusters) -> dict[str, Any]:
    from discord_ml_platform.backends.local import LocalBackend

    add_raycluster(kuberay, "train-h100", owner="ada", team="ads", gpu_type="h100-80gb", gpus_per_worker=1,
                   workers=4, run_id="run-7f3a")
    add_raycluster(kuberay, "eval-a10g", namespace="ml-research", owner="bob", team="ranking", gpu_type="a10g",
                   gpus_per_worker=1, workers=2, ready_workers=1)
    add_raycluster(kuberay, "warmup-cpu", owner="ada", team="ads", workers=0, ready=False)
    add_raycluster(kuberay, "doomed", owner="carol", team="growth", gpu_type="t4", gpus_per_worker=1, workers=1)
    fake_local.add("nb-local", owner="grace", team="ranking", gpu_type="l4", gpus_per_worker=2, workers=1)
    fake_local.add("xss-local", owner="x", gpu_type="cpu", gpus_per_worker=0, workers=0,
                   raw_labels={"mlplatform.discord.com/owner": "<script>alert(1)</script>"})
    return {"kuberay": kuberay, "local": LocalBackend(state_dir=fake_local.state_dir)}


@pytest.fixture(scope="module")
def base_url(backends: dict[str, Any], xray_root: Path) -> Iterator[str]:
    """The app served by uvicorn on a free loopback port, in a thread."""
    import uvicorn

    from discord_ml_platform.xray.app import create_app

    app = create_app(make_settings(xray_root, refresh_s=2.0), backends, standin_launchers(xray_root),
                     run_reaper=False)
    [port] = free_ports(1)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    assert wait_for(lambda: server.started, 20, 0.05), "uvicorn did not start"
    yield f"http://127.0.0.1:{port}"
    for record in app.state.xray.notebooks.records():
        app.state.xray.notebooks.stop(record.cluster)
    server.should_exit = True
    thread.join(timeout=10)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        chromium = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        yield chromium
        chromium.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    context = browser.new_context(viewport={"width": 1400, "height": 900})
    pg = context.new_page()
    pg.set_default_timeout(15_000)
    pg.problems = []  # console errors, CSP violations, uncaught exceptions, unexpected dialogs
    # A 404 of the notebook API ("no notebook yet") is an answer, not a problem; Chromium logs it anyway.
    pg.on("console", lambda msg: msg.type == "error" and "status of 404" not in msg.text
          and pg.problems.append(msg.text))
    pg.on("pageerror", lambda err: pg.problems.append(str(err)))
    pg.on("dialog", lambda dialog: (pg.problems.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    yield pg
    context.close()


def shot(page: Any, name: str) -> Path:
    SHOTS.mkdir(parents=True, exist_ok=True)
    path = SHOTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=True)
    return path


def row(page: Any, name: str) -> Any:
    return page.locator(f"#cluster-rows tr[data-name='{name}']")


def unlock(page: Any) -> None:
    page.fill("#token-input", TOKEN)
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#auth-state:has-text('actions unlocked')")


def test_list_renders_every_cluster_with_the_right_values(page, base_url):
    page.goto(base_url + "/")
    assert page.locator("#cluster-rows tr").count() == 6
    train = row(page, "train-h100")
    assert train.locator("td.owner").inner_text().splitlines() == ["ada", "ads"]
    assert train.locator("td.machine").inner_text() == "h100-80gb x 1, workers 4/4"
    assert train.locator("td.status .badge").inner_text() == "ready"
    assert "$27.92/h" in train.locator("td.cost").inner_text()  # 4 x h100 at $6.98
    assert train.locator("a.run-link").get_attribute("href") == "http://dagster.example:3000/runs/run-7f3a"
    assert train.locator("a.dashboard-link").get_attribute("href") == "http://127.0.0.1:8265"
    assert row(page, "eval-a10g").locator("td.status").inner_text().splitlines() == ["ready", "workers 1/2"]
    assert row(page, "warmup-cpu").locator("td.status .badge").inner_text() == "pending"
    local = row(page, "nb-local")
    assert local.locator("td.machine").inner_text() == "l4 x 2, workers 1/1"
    assert local.locator("td.age").inner_text() == "2h"
    assert local.locator("td.cost").inner_text().splitlines()[0] == "$3.20"  # 2 GPUs x $0.80 x 2h
    assert page.inner_text("#total-clusters") == "6"
    assert page.inner_text("#total-gpus") == str(4 + 2 + 1 + 2)
    # An owner called <script> is text, never markup.
    assert row(page, "xss-local").locator("td.owner").inner_text().splitlines()[0] == "<script>alert(1)</script>"
    assert page.evaluate("document.querySelectorAll('#clusters script').length") == 0
    assert page.locator(".delete-button:visible").count() == 0  # read-only until unlocked
    shot(page, "clusters")
    assert page.problems == []


def test_filters_narrow_the_list(page, base_url):
    page.goto(base_url + "/")
    with page.expect_navigation():
        page.select_option("#filter-owner", "ada")
    assert "owner=ada" in page.url
    assert sorted(page.locator("#cluster-rows tr").evaluate_all("rows => rows.map(r => r.dataset.name)")) == [
        "train-h100", "warmup-cpu"]
    with page.expect_navigation():
        page.select_option("#filter-status", "ready")
    assert page.locator("#cluster-rows tr").evaluate_all("rows => rows.map(r => r.dataset.name)") == ["train-h100"]
    assert page.inner_text("#total-clusters") == "1"
    shot(page, "clusters-filtered")
    page.goto(base_url + "/?gpu_type=a10g")
    assert page.locator("#cluster-rows tr").evaluate_all("rows => rows.map(r => r.dataset.name)") == ["eval-a10g"]
    assert page.locator("#filter-gpu_type").input_value() == "a10g"
    assert page.problems == []


def test_list_refreshes_itself(page, base_url, kuberay):
    page.goto(base_url + "/?owner=dave")
    assert page.locator("#cluster-rows tr").count() == 0 and page.is_visible("#empty")
    add_raycluster(kuberay, "late-arrival", owner="dave", team="ads", workers=0)
    try:
        page.wait_for_selector("#cluster-rows tr[data-name='late-arrival']", timeout=10_000)
        assert page.inner_text("#total-clusters") == "1" and not page.is_visible("#empty")
    finally:
        kuberay.delete(next(i.handle for i in kuberay.list() if i.handle.name == "late-arrival"), timeout_s=20)
    assert page.problems == []


def test_delete_asks_for_confirmation_then_removes_the_cluster(page, base_url, kuberay):
    page.goto(base_url + "/")
    page.fill("#token-input", "not-the-token")
    page.click("#token-form button[type=submit]")
    page.wait_for_selector("#flash:has-text('not accepted')")
    page.problems.clear()
    unlock(page)
    doomed = row(page, "doomed")
    doomed.locator(".delete-button").click()
    page.wait_for_selector("#confirm-dialog[open]")
    assert page.inner_text("#confirm-name") == "doomed"
    page.click("#confirm-cancel")  # cancel: nothing happens
    assert row(page, "doomed").count() == 1 and any(i.handle.name == "doomed" for i in kuberay.list())
    row(page, "doomed").locator(".delete-button").click()
    page.wait_for_selector("#confirm-dialog[open]")
    shot(page, "delete-confirmation")
    page.click("#confirm-delete")
    page.wait_for_selector("#cluster-rows tr[data-name='doomed']", state="detached")
    page.wait_for_selector("#flash:has-text('Deleted doomed')")
    assert not any(i.handle.name == "doomed" for i in kuberay.list())
    assert page.problems == []


def test_notebook_link_appears_and_answers(page, base_url):
    page.goto(base_url + "/clusters/kuberay/ray/train-h100")
    assert page.inner_text("h1").startswith("train-h100")
    assert page.locator("#conditions tbody tr").count() == 2
    assert not page.is_visible("#notebook-launch")
    unlock(page)
    page.click("#notebook-launch")
    link = page.wait_for_selector("#notebook-link:visible", timeout=20_000)
    href = link.get_attribute("href")
    assert href.startswith("http://127.0.0.1:") and "token=" in href
    assert page.inner_text("#notebook-state") == "running"
    shot(page, "cluster-with-notebook")
    answer = page.request.get(href)
    assert answer.status == 200 and "RAY_ADDRESS=127.0.0.1:6379" in answer.text()
    page.reload()  # the link is shown again to a token holder
    page.wait_for_selector("#notebook-link:visible")
    page.click("#notebook-stop")
    page.wait_for_selector("#notebook", state="hidden")
    notebook_api = base_url + "/api/clusters/kuberay/ray/train-h100/notebook"
    assert page.request.get(notebook_api, headers={"Authorization": f"Bearer {TOKEN}"}).status == 404
    assert page.request.get(notebook_api).status == 401  # notebook details are for token holders
    assert page.problems == []


def test_cluster_page_of_a_local_cluster_shows_spec_and_logs(page, base_url):
    page.goto(base_url + "/clusters/local/local/nb-local")
    assert "l4" in page.inner_text("#spec") and "API_KEY" not in page.content()
    # Jobs and logs are for token holders: the page shows neither until it is unlocked.
    assert page.is_visible("#logs-locked") and page.is_visible("#jobs-locked")
    assert not page.is_visible("#logs") and "GCS up" not in page.content()
    unlock(page)
    page.wait_for_selector("#logs:has-text('GCS up')")
    assert "GCS up" in page.inner_text("#logs") and page.inner_text("#logs-source") == "(head.log)"
    page.wait_for_selector("#jobs-empty:visible")
    assert "did not answer" in page.inner_text("#jobs-empty") and not page.is_visible("#logs-locked")
    shot(page, "cluster-local")
    page.click("#sign-out")  # locking again hides them
    assert page.is_visible("#logs-locked") and page.inner_text("#logs") == ""
    assert page.problems == []


def test_api_docs_load_everything_from_xray_itself(page, base_url):
    requested: list[str] = []
    page.on("request", lambda request: requested.append(request.url))
    page.goto(base_url + "/api/docs")
    assert page.inner_text("h1").startswith("X-Ray API")
    assert page.locator("section.operation").count() >= 8
    assert "/api/clusters/{backend}/{namespace}/{name}/logs" in page.inner_text("#operations-toc")
    page.wait_for_load_state("networkidle")
    assert requested and all(url.startswith(base_url + "/") or url.startswith("data:") for url in requested), requested
    assert {base_url + "/static/xray.css", base_url + "/static/xray.js"} <= set(requested)
    sheets = page.evaluate("Array.from(document.styleSheets).map(s => s.href)")
    assert sheets == [base_url + "/static/xray.css"]  # the stylesheet loaded (and nothing else)
    shot(page, "api-docs")
    assert page.click("#openapi-link") is None and page.url == base_url + "/api/openapi.json"
    assert page.problems == []  # no CSP violation, no script error
