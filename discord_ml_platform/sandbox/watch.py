"""Watch streams: the events one ``?watch=true`` request receives, in order.

Semantics follow kube-apiserver:

* ``resourceVersion`` unset or ``"0"``: synthetic ``ADDED`` events for every matching object,
  then changes from now on. A version ``N``: every change after ``N`` (from the bounded history),
  then live changes; a version older than the history gives one ``ERROR`` event carrying a
  ``410 Expired`` Status (the client's ``Watch`` turns it into ``ApiException(410)``).
* With selectors, an object that starts matching appears as ``ADDED`` and one that stops
  matching as ``DELETED``, as the real watch cache does.
* ``timeoutSeconds`` ends the stream cleanly; ``allowWatchBookmarks`` adds ``BOOKMARK`` events
  periodically and just before the timeout; ``sendInitialEvents`` ends the initial ``ADDED``
  events with the ``k8s.io/initial-events-end`` bookmark.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from .errors import ApiError
from .resources import ResourceType
from .selectors import Requirement, labels_match, parse_field_selector, parse_label_selector
from .store import Store, WatchEvent


@dataclass
class WatchRequest:
    """Parameters of one watch request.

    Attributes:
        rt: Watched resource type.
        namespace: Namespace, or ``None`` for all namespaces / cluster-scoped.
        resource_version: Starting version (see module docstring).
        label_selector: Label selector string.
        field_selector: Field selector string.
        timeout_s: Stream length in seconds; ``None`` streams until the client or server stops.
        bookmarks: Whether ``BOOKMARK`` events are wanted.
        send_initial_events: Whether to end initial events with the initial-events-end bookmark.
        name: Object name when the watch targets one object (``/watch/.../name`` paths).
    """

    rt: ResourceType
    namespace: str | None
    resource_version: str | None = None
    label_selector: str | None = None
    field_selector: str | None = None
    timeout_s: float | None = None
    bookmarks: bool = False
    send_initial_events: bool = False
    name: str | None = None


def stream_events(
    store: Store,
    req: WatchRequest,
    should_stop: Callable[[], bool],
    bookmark_interval_s: float = 10.0,
    poll_s: float = 0.5,
) -> Iterator[dict[str, Any]]:
    """Yield the watch events (``{"type": ..., "object": ...}``) for one request.

    Args:
        store: The store to watch.
        req: What to watch.
        should_stop: Polled between waits; ``True`` ends the stream (client gone, server stopping).
        bookmark_interval_s: Seconds between ``BOOKMARK`` events when bookmarks are allowed.
        poll_s: Longest single wait, which bounds how late ``should_stop`` is noticed.

    Raises:
        ApiError: 400 for bad selectors, raised by this call itself (not by the iterator), so the
            server can still answer with an error status before it starts streaming.
    """
    rt = req.rt
    reqs = parse_label_selector(req.label_selector)
    allowed = {"metadata.name", "metadata.namespace", *rt.field_labels}
    fields = parse_field_selector(req.field_selector, allowed, rt.plural)
    return _events(store, req, reqs, fields, should_stop, bookmark_interval_s, poll_s)


def _events(
    store: Store,
    req: WatchRequest,
    reqs: list[Requirement],
    fields: Callable[[dict[str, Any]], bool],
    should_stop: Callable[[], bool],
    bookmark_interval_s: float,
    poll_s: float,
) -> Iterator[dict[str, Any]]:
    rt = req.rt

    def matches(obj: dict[str, Any] | None) -> bool:
        if obj is None:
            return False
        m = obj["metadata"]
        if req.namespace is not None and rt.namespaced and m.get("namespace") != req.namespace:
            return False
        if req.name is not None and m.get("name") != req.name:
            return False
        return labels_match(reqs, m.get("labels")) and fields(obj)

    deadline = time.monotonic() + req.timeout_s if req.timeout_s else None
    try:
        cursor = store.watch_from(req.resource_version)
    except ApiError as err:
        yield {"type": "ERROR", "object": err.status()}
        return
    if req.resource_version in (None, "", "0"):
        with store.cond:
            initial = store.select(rt, req.namespace if rt.namespaced else None)
            cursor = store.resource_version
        for obj in initial:
            if matches(obj):
                yield {"type": "ADDED", "object": obj}
    if req.send_initial_events and req.bookmarks:
        yield _bookmark(rt, cursor, initial_end=True)

    last_bookmark = time.monotonic()
    while not should_stop():
        now = time.monotonic()
        if deadline is not None and now >= deadline:
            break
        wait = poll_s if deadline is None else min(poll_s, deadline - now)
        try:
            events, cursor = store.wait_events(cursor, wait)
        except ApiError as err:
            yield {"type": "ERROR", "object": err.status()}
            return
        for ev in events:
            if ev.group != rt.group or ev.plural != rt.plural:
                continue
            out = _translate(ev, matches)
            if out is not None:
                yield out
        if store.closed:
            break
        if req.bookmarks and time.monotonic() - last_bookmark >= bookmark_interval_s:
            last_bookmark = time.monotonic()
            yield _bookmark(rt, cursor)
    if req.bookmarks and deadline is not None and not store.closed:
        yield _bookmark(rt, cursor)


def _translate(ev: WatchEvent, matches: Callable[[dict[str, Any] | None], bool]) -> dict[str, Any] | None:
    now_match = matches(ev.obj)
    if ev.type == "DELETED":
        return {"type": "DELETED", "object": ev.obj} if (now_match or matches(ev.prev)) else None
    was_match = matches(ev.prev)
    if now_match and was_match:
        return {"type": "MODIFIED", "object": ev.obj}
    if now_match:
        return {"type": "ADDED", "object": ev.obj}
    if was_match:
        # The object left the selector: watchers see it go, carrying its new state.
        return {"type": "DELETED", "object": ev.obj}
    return None


def _bookmark(rt: ResourceType, rv: int, initial_end: bool = False) -> dict[str, Any]:
    metadata: dict[str, Any] = {"resourceVersion": str(rv)}
    if initial_end:
        metadata["annotations"] = {"k8s.io/initial-events-end": "true"}
    return {"type": "BOOKMARK", "object": {"kind": rt.kind, "apiVersion": rt.api_version, "metadata": metadata}}
