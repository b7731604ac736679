"""Watch: replay from a resourceVersion, live events, selectors, timeouts, bookmarks, 410 Expired."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator

import pytest
from kubernetes import client, watch
from kubernetes.client import ApiException
from urllib3.exceptions import ProtocolError

from discord_ml_platform.sandbox.apiserver import ApiServer

from .conftest import Kube
from .helpers import configmap, raycluster


def _collect(stream: Iterator[dict], until: int) -> list[tuple[str, str]]:
    out = []
    for event in stream:
        obj = event["raw_object"]
        out.append((event["type"], obj["metadata"].get("name", "")))
        if len(out) >= until:
            break
    return out


def test_watch_replays_changes_after_resource_version(kube: Kube) -> None:
    rv = kube.core.list_namespaced_config_map(kube.namespace).metadata.resource_version
    kube.core.create_namespaced_config_map(kube.namespace, configmap("w"))
    kube.core.patch_namespaced_config_map("w", kube.namespace, {"data": {"k": "2"}})
    kube.core.delete_namespaced_config_map("w", kube.namespace)
    w = watch.Watch()
    events = _collect(w.stream(kube.core.list_namespaced_config_map, kube.namespace, resource_version=rv,
                               timeout_seconds=10), until=3)
    w.stop()
    assert events == [("ADDED", "w"), ("MODIFIED", "w"), ("DELETED", "w")]


def test_watch_without_resource_version_starts_with_current_objects(kube: Kube) -> None:
    kube.core.create_namespaced_config_map(kube.namespace, configmap("a"))
    kube.core.create_namespaced_config_map(kube.namespace, configmap("b"))
    w = watch.Watch()
    events = _collect(w.stream(kube.core.list_namespaced_config_map, kube.namespace, timeout_seconds=10), until=2)
    w.stop()
    assert sorted(events) == [("ADDED", "a"), ("ADDED", "b")]


def test_watch_sees_live_events_and_label_selector(kube: Kube) -> None:
    kube.require_ray()
    rv = kube.custom.list_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters")["metadata"][
        "resourceVersion"]

    def produce() -> None:
        # Whether this runs before or after the watch connects, the watch starts at rv and sees it.
        co = kube.custom
        co.create_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters", raycluster("other"))
        co.create_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters",
                                           raycluster("mine", {"owner": "ada"}))
        co.patch_namespaced_custom_object("ray.io", "v1", kube.namespace, "rayclusters", "mine",
                                          {"metadata": {"labels": {"owner": "bob"}}})

    thread = threading.Thread(target=produce)
    thread.start()
    w = watch.Watch()
    events = []
    for event in w.stream(kube.custom.list_namespaced_custom_object, "ray.io", "v1", kube.namespace,
                          "rayclusters", label_selector="owner=ada", resource_version=rv, timeout_seconds=20):
        events.append((event["type"], event["raw_object"]["metadata"]["name"]))
        if event["type"] == "DELETED":
            break
    w.stop()
    thread.join(timeout=10)
    # Only "mine" matches; leaving the selector is seen as DELETED, as the real watch cache reports it.
    # (On a real cluster a running operator may add MODIFIED events in between.)
    assert events[0] == ("ADDED", "mine") and events[-1] == ("DELETED", "mine")
    assert {name for _, name in events} == {"mine"}


def test_watch_field_selector_on_name(kube: Kube) -> None:
    rv = kube.core.list_namespaced_config_map(kube.namespace).metadata.resource_version
    for name in ("x", "y"):
        kube.core.create_namespaced_config_map(kube.namespace, configmap(name))
    w = watch.Watch()
    events = _collect(w.stream(kube.core.list_namespaced_config_map, kube.namespace, resource_version=rv,
                               field_selector="metadata.name=y", timeout_seconds=10), until=1)
    w.stop()
    assert events == [("ADDED", "y")]


def test_watch_timeout_ends_stream_cleanly(kube: Kube) -> None:
    rv = kube.core.list_namespaced_config_map(kube.namespace).metadata.resource_version
    start = time.monotonic()
    events = list(watch.Watch().stream(kube.core.list_namespaced_config_map, kube.namespace,
                                       resource_version=rv, timeout_seconds=1))
    elapsed = time.monotonic() - start
    assert [e for e in events if e["type"] != "BOOKMARK"] == []
    assert 0.9 <= elapsed < 10


def test_watch_single_object_by_name_path(sandbox: Kube) -> None:
    """The ``/watch/namespaces/{ns}/configmaps/{name}`` path form (older clients use it)."""
    rv = sandbox.core.list_namespaced_config_map(sandbox.namespace).metadata.resource_version
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("a"))
    sandbox.core.create_namespaced_config_map(sandbox.namespace, configmap("b"))
    resp = sandbox.api.call_api(
        f"/api/v1/watch/namespaces/{sandbox.namespace}/configmaps/b", "GET",
        query_params=[("resourceVersion", rv), ("timeoutSeconds", "1")], _preload_content=False)
    lines = [line for line in resp.data.decode().splitlines() if line]
    assert len(lines) == 1 and '"name":"b"' in lines[0]


def test_watch_bookmark_before_timeout(sandbox: Kube) -> None:
    events = list(watch.Watch().stream(sandbox.core.list_namespaced_config_map, sandbox.namespace,
                                       allow_watch_bookmarks=True, timeout_seconds=1))
    assert events and events[-1]["type"] == "BOOKMARK"
    assert int(events[-1]["raw_object"]["metadata"]["resourceVersion"]) > 0


def test_watch_too_old_resource_version_is_410() -> None:
    with ApiServer(history_size=5) as server:
        api = server.api_client()
        core = client.CoreV1Api(api)
        first = core.create_namespaced_config_map("default", configmap("c0")).metadata.resource_version
        for i in range(1, 10):
            core.create_namespaced_config_map("default", configmap(f"c{i}"))
        # With timeout_seconds the client does not retry: the ERROR event becomes ApiException(410).
        with pytest.raises(ApiException) as err:
            list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=first,
                                      timeout_seconds=5))
        assert err.value.status == 410
        # A recent version is still fine.
        latest = core.list_namespaced_config_map("default").metadata.resource_version
        assert list(watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=latest,
                                         timeout_seconds=1)) == []
        api.close()


def test_watch_ends_when_server_stops() -> None:
    server = ApiServer().start()
    api = server.api_client()
    core = client.CoreV1Api(api)
    rv = core.list_namespaced_config_map("default").metadata.resource_version
    seen: list[str] = []
    done = threading.Event()

    def consume() -> None:
        try:
            for event in watch.Watch().stream(core.list_namespaced_config_map, "default", resource_version=rv,
                                              timeout_seconds=60):
                seen.append(event["type"])
        except (ProtocolError, OSError):  # the connection closing under it is fine too
            pass
        finally:
            done.set()

    thread = threading.Thread(target=consume, daemon=True)
    thread.start()
    core.create_namespaced_config_map("default", configmap("x"))
    deadline = time.monotonic() + 10
    while not seen and time.monotonic() < deadline:
        time.sleep(0.01)
    server.stop()
    assert done.wait(10), "watch did not end when the server stopped"
    assert seen[0] == "ADDED"
    api.close()


def test_watch_with_bad_selector_is_400(kube: Kube) -> None:
    with pytest.raises(ApiException) as err:
        next(iter(watch.Watch().stream(kube.core.list_namespaced_config_map, kube.namespace,
                                       label_selector="a in (b", timeout_seconds=1)))
    assert err.value.status == 400


def test_server_ends_watch_when_client_stops_watching() -> None:
    from .helpers import wait_for

    with ApiServer() as server:
        api = server.api_client()
        core = client.CoreV1Api(api)
        rv = core.list_namespaced_config_map("default").metadata.resource_version
        core.create_namespaced_config_map("default", configmap("x"))
        baseline = len(server._connections)
        w = watch.Watch()
        for _event in w.stream(core.list_namespaced_config_map, "default", resource_version=rv):
            w.stop()  # no timeout: only the client going away ends this stream
        api.close()  # the client closes its pooled connections
        # The handler notices the closed socket and its thread ends (no leaked watch threads).
        wait_for(lambda: len(server._connections) <= max(baseline - 1, 0), timeout=10)
