"""X-Ray's reads are closed where they must be (issue 16, item 5): the Host header is checked (DNS
rebinding), job output and notebooks need the token, the token never reaches a log whatever way a
client sends it, and the API reference loads nothing from elsewhere."""

from __future__ import annotations

import http.client
import logging
import threading
from collections.abc import Iterator
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from drivers import wait_for
from xray_support import TOKEN, FakeLocalClusters, auth, make_settings

from discord_ml_platform.backends.processes import free_ports

pytestmark = pytest.mark.timeout(60)
PLANTED = "WANDB_API_KEY=planted-4e1b9c"


@pytest.fixture(scope="module")
def backends(fake_local: FakeLocalClusters) -> dict[str, Any]:
    from discord_ml_platform.backends.local import LocalBackend

    fake_local.add("leaky", owner="ada", log_lines=("head started", PLANTED, "GCS up"))
    return {"local": LocalBackend(state_dir=fake_local.state_dir)}


def make_client(backends: dict[str, Any], root: Path, **settings: Any) -> Any:
    from fastapi.testclient import TestClient

    from discord_ml_platform.xray.app import create_app

    app = create_app(make_settings(root, **settings), backends, {}, run_reaper=False)
    return TestClient(app, base_url="http://127.0.0.1:8080")


@pytest.fixture(scope="module")
def client(backends: dict[str, Any], xray_root: Path) -> Iterator[Any]:
    with make_client(backends, xray_root, allowed_hosts=None) as test_client:  # the loopback default
        yield test_client


# --- Host header -----------------------------------------------------------------------------------

PAGES_AND_API = ["/", "/clusters/local/local/leaky", "/api/clusters", "/api/clusters/local/local/leaky",
                 "/api/healthz", "/api/openapi.json", "/api/docs", "/static/xray.js"]


@pytest.mark.parametrize("path", PAGES_AND_API)
@pytest.mark.parametrize("host", ["evil.example", "evil.example:8080", "127.0.0.1.evil.example", "[::2]:8080"])
def test_a_foreign_host_header_gets_400_from_pages_and_api_alike(client, path, host):
    response = client.get(path, headers={"Host": host})
    assert response.status_code == 400, (path, host)
    assert "leaky" not in response.text and "ada" not in response.text


@pytest.mark.parametrize("host", ["127.0.0.1:8080", "localhost:8080", "localhost", "[::1]:8080"])
def test_loopback_names_are_the_default_allowed_hosts(client, host):
    for path in PAGES_AND_API:
        assert client.get(path, headers={"Host": host}).status_code == 200, (path, host)


def test_configured_hosts_are_admitted_and_nothing_else(backends, xray_root):
    with make_client(backends, xray_root, allowed_hosts=("xray.example.com", "*.xray.internal")) as client:
        for host in ("xray.example.com", "XRAY.example.com:443", "eu.xray.internal"):
            assert client.get("/api/clusters", headers={"Host": host}).status_code == 200, host
            assert client.get("/", headers={"Host": host}).status_code == 200, host
        for host in ("evil.example", "localhost", "127.0.0.1", "xray.example.com.evil.example", "xray.internal"):
            assert client.get("/api/clusters", headers={"Host": host}).status_code == 400, host


@pytest.mark.parametrize("value", ["*", "xray.*.com", "x*.example.com", "http://xray.example.com", "xray:8080"])
def test_allowed_hosts_that_would_defeat_the_check_are_refused(value, monkeypatch):
    from discord_ml_platform.xray.settings import XRaySettings, parse_allowed_hosts

    with pytest.raises(ValueError, match="DMP_XRAY_ALLOWED_HOSTS"):
        parse_allowed_hosts(value)
    monkeypatch.setenv("DMP_XRAY_ALLOWED_HOSTS", f"xray.example.com,{value}")
    with pytest.raises(ValueError, match="DMP_XRAY_ALLOWED_HOSTS"):
        XRaySettings.from_env()


def test_allowed_hosts_from_the_environment(monkeypatch):
    from discord_ml_platform.xray.settings import LOOPBACK_HOSTS, XRaySettings

    assert XRaySettings().trusted_hosts == LOOPBACK_HOSTS
    monkeypatch.setenv("DMP_XRAY_ALLOWED_HOSTS", " xray.example.com, dmp-xray.dmp-system.svc  ::1 ")
    assert XRaySettings.from_env().trusted_hosts == ("xray.example.com", "dmp-xray.dmp-system.svc", "[::1]")


# --- job output and notebooks need the token -------------------------------------------------------

TOKEN_ROUTES = ["/api/clusters/local/local/leaky/logs", "/api/clusters/local/local/leaky/jobs",
                "/api/clusters/local/local/leaky/notebook"]


@pytest.mark.parametrize("path", TOKEN_ROUTES)
def test_job_output_and_notebooks_need_the_token(client, path):
    for headers in ({}, auth("wrong-token"), {"Authorization": f"Basic {TOKEN}"}, {"X-XRay-Token": "nope"}):
        response = client.get(path, headers=headers)
        assert response.status_code == 401 and response.headers["www-authenticate"] == "Bearer", headers
        assert "planted" not in response.text and "GCS up" not in response.text
    for params in ({"token": TOKEN}, {"access_token": TOKEN}, {"X-XRay-Token": TOKEN}):
        assert client.get(path, params=params).status_code == 401, params  # never from the query string
    assert client.get(path, cookies={"token": TOKEN}).status_code == 401


def test_with_the_token_the_logs_come_back(client):
    for headers in (auth(), {"X-XRay-Token": TOKEN}):
        tail = client.get("/api/clusters/local/local/leaky/logs", headers=headers)
        assert tail.status_code == 200 and PLANTED in tail.json()["lines"]
    jobs = client.get("/api/clusters/local/local/leaky/jobs", headers=auth())
    assert jobs.status_code == 200 and "did not answer" in jobs.json()["error"]
    assert client.get("/api/clusters/local/local/leaky/notebook", headers=auth()).status_code == 404


def test_the_cluster_page_holds_no_log_text(client):
    page = client.get("/clusters/local/local/leaky")
    assert page.status_code == 200 and "leaky" in page.text
    assert "planted" not in page.text and "GCS up" not in page.text


def test_without_a_configured_token_nobody_reads_job_output(backends, xray_root):
    with make_client(backends, xray_root, token=None) as client:
        for path in TOKEN_ROUTES:
            response = client.get(path, headers=auth())
            assert response.status_code == 403 and "DMP_XRAY_TOKEN" in response.json()["detail"]
            assert "planted" not in response.text
        assert client.get("/api/clusters").status_code == 200  # the listing stays open


def test_openapi_marks_the_token_routes(client):
    paths = client.get("/api/openapi.json").json()["paths"]
    for path in TOKEN_ROUTES:
        spec_path = path.replace("local/local/leaky", "{backend}/{namespace}/{name}")
        assert "401" in paths[spec_path]["get"]["responses"], path


# --- no token in any log ----------------------------------------------------------------------------


class Capture(logging.Handler):
    """Every record, formatted as a log file would have it (traceback included)."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.lines: list[str] = []
        self.setFormatter(logging.Formatter("%(name)s %(levelname)s %(message)s"))

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(self.format(record))


class ExplodingBackend:
    """Lists nothing, but a look-up by name fails with the name in the error: a 500 whose traceback
    (written by uvicorn) would carry whatever the client put into the URL."""

    name = "boom"

    def list(self, label_selector: Any = None) -> list[Any]:
        if label_selector:
            raise RuntimeError(f"cannot look up {label_selector}")
        return []


@pytest.fixture
def served(backends: dict[str, Any], xray_root: Path) -> Iterator[tuple[int, dict[str, Capture]]]:
    """The app under uvicorn with its default logging (access log on), and capture handlers on
    uvicorn's loggers and on the root logger (where the platform's loggers end up)."""
    import uvicorn

    from discord_ml_platform.xray.app import create_app

    app = create_app(make_settings(xray_root), {**backends, "boom": ExplodingBackend()}, {}, run_reaper=False)
    [port] = free_ports(1)
    config = uvicorn.Config(app, host="127.0.0.1", port=port, log_level="info")  # configures logging
    captures = {name: Capture() for name in ("uvicorn.access", "uvicorn.error", "")}
    for name, capture in captures.items():
        logging.getLogger(name).addHandler(capture)
    platform_logger = logging.getLogger("discord_ml_platform")
    old_level = platform_logger.level
    platform_logger.setLevel(logging.DEBUG)
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        assert wait_for(lambda: server.started, 20, 0.05), "uvicorn did not start"
        yield port, captures
    finally:
        server.should_exit = True
        thread.join(timeout=10)
        platform_logger.setLevel(old_level)
        for name, capture in captures.items():
            logging.getLogger(name).removeHandler(capture)


def request(port: int, target: str, headers: dict[str, str] | None = None) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        conn.request("GET", target, headers=headers or {})
        response = conn.getresponse()
        response.read()
        return response.status
    finally:
        conn.close()


def test_the_token_never_reaches_a_log_whatever_way_a_client_sends_it(served):
    port, captures = served
    encoded = "".join(f"%{ord(c):02x}" for c in TOKEN)  # every character percent-encoded, lower-case hex
    logs = "/api/clusters/local/local/leaky/logs"
    sent = [
        (logs, auth()),
        (logs, {"X-XRay-Token": TOKEN}),
        ("/api/session", {"Authorization": f"Bearer {TOKEN}", "Cookie": f"token={TOKEN}"}),
        (f"{logs}?token={TOKEN}", {}),
        (f"{logs}?lines=5&access_token={TOKEN}", {}),
        (f"/api/clusters?owner={TOKEN}", {}),  # a parameter whose name says nothing
        (f"/api/clusters?owner={encoded}", {}),
        (f"/?q={quote(TOKEN)}&gpu_type=a10g", {}),
        (f"/api/clusters/local/local/{TOKEN}/logs", auth()),  # in the path
        (f"/clusters/local/local/{TOKEN}", {}),
        (f"/api/clusters/boom/ray/{TOKEN}", {}),  # a 500: uvicorn logs the traceback, which names it
        (f"/api/{TOKEN}", {}),
        (logs, {"Host": f"{TOKEN}.evil.example"}),
    ]
    statuses = [request(port, target, headers) for target, headers in sent]
    assert statuses[:3] == [200, 200, 200] and statuses[3:5] == [401, 401] and statuses[10] == 500
    assert statuses[-1] == 400
    access = captures["uvicorn.access"].lines
    # Each line is written as its response starts: wait, never guess.
    wait_for(lambda: len([line for line in access if "GET /" in line]) >= len(sent), 5, 0.05)
    assert len([line for line in access if "GET /" in line]) == len(sent), access  # the 400 is logged too
    assert any("Exception in ASGI application" in line and "RuntimeError" in line
               for line in captures["uvicorn.error"].lines)
    for name, capture in captures.items():
        for line in capture.lines:
            assert TOKEN not in line and encoded not in line.lower(), (name or "root", line)
    assert any("?token=[redacted]" in line for line in access) and any("/api/session" in line for line in access)


# --- the API reference ------------------------------------------------------------------------------


class Resources(HTMLParser):
    """Every URL an HTML page references (src, href, action, srcset, style url()), and inline scripts."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[tuple[str, str, str]] = []
        self.inline_scripts = 0
        self.tags: set[str] = set()
        self._in_script = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.add(tag)
        values = dict(attrs)
        for attr in ("src", "href", "action", "srcset", "data", "poster", "formaction"):
            if values.get(attr):
                self.urls.append((tag, attr, str(values[attr])))
        if "url(" in str(values.get("style") or ""):
            self.urls.append((tag, "style", str(values["style"])))
        self._in_script = tag == "script" and not values.get("src")

    def handle_data(self, data: str) -> None:
        if self._in_script and data.strip():
            self.inline_scripts += 1

    def handle_endtag(self, tag: str) -> None:
        self._in_script = False


def test_api_docs_reference_nothing_outside_xray(client):
    response = client.get("/api/docs")
    assert response.status_code == 200 and response.headers["content-type"].startswith("text/html")
    page = Resources()
    page.feed(response.text)
    assert page.urls and page.inline_scripts == 0 and "iframe" not in page.tags
    for tag, attr, url in page.urls:
        parts = urlsplit(url)
        assert not parts.netloc and parts.scheme in ("", "data"), (tag, attr, url)
        assert not url.startswith("//"), url
    assets = [url for tag, attr, url in page.urls if (tag, attr) in {("script", "src"), ("link", "href")}
              and not url.startswith("data:")]
    assert set(assets) == {"/static/xray.css", "/static/xray.js"}
    for url in assets:
        assert client.get(url).status_code == 200, url
    # The strict CSP of every page, the docs included: scripts and styles from X-Ray only.
    assert "script-src 'self'" in response.headers["content-security-policy"]
    assert "default-src 'self'" in response.headers["content-security-policy"]
    assert "cdn" not in response.text.lower() and "swagger" not in response.text.lower()
    for path in ("/api/clusters", "/api/clusters/{backend}/{namespace}/{name}/logs"):
        assert path in response.text
    assert client.get("/api/openapi.json").json()["info"]["title"] == "X-Ray"


def test_the_default_allowed_hosts_follow_the_listen_host():
    """One rule for loopback: the names of a loopback listener are admitted by default, a listener
    beyond loopback needs the names configured (``dmp xray`` refuses to start without them)."""
    from discord_ml_platform.xray.settings import LOOPBACK_HOSTS, XRaySettings, is_loopback

    assert [is_loopback(h) for h in ("localhost", "127.9.9.9", "[::1]", "::1")] == [True] * 4
    assert [is_loopback(h) for h in ("0.0.0.0", "::", "10.1.2.3", "xray.example.com")] == [False] * 4
    assert XRaySettings(listen_host="127.0.0.2").trusted_hosts == (*LOOPBACK_HOSTS, "127.0.0.2")
    for host in ("127.0.0.1", "localhost", "::1", "[::1]"):
        assert XRaySettings(listen_host=host).trusted_hosts == LOOPBACK_HOSTS
        assert not XRaySettings(listen_host=host).listens_beyond_loopback
    beyond = XRaySettings(listen_host="0.0.0.0")
    assert beyond.listens_beyond_loopback and beyond.allowed_hosts is None
    configured = XRaySettings(listen_host="0.0.0.0", allowed_hosts=("XRay.example.com",))
    assert configured.trusted_hosts == ("xray.example.com",)
    assert XRaySettings(listen_host="0.0.0.0", allowed_hosts=()).allowed_hosts is None  # none given: not set
