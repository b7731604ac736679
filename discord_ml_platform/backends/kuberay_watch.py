"""List-then-watch of one Kubernetes collection in a background thread, as plain dicts.

:class:`ResourceWatch` does what an informer does, small: list the collection, hand every item
to a sink, then watch from the list's ``resourceVersion``, reconnecting after the server ends a
stream (``timeoutSeconds``) or a connection drops, and relisting after ``410 Gone``. Objects stay
JSON dicts (``_preload_content=False``): RayClusters are dicts anyway, and pods and events need
no model classes to be read.

The sink receives ``("LIST", {"items": [...]})`` after every (re)list, which replaces what the
consumer knew, then ``("ADDED" | "MODIFIED" | "DELETED", obj)`` per change.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Sink = Callable[[str, dict[str, Any]], None]


class ResourceWatch:
    """Keeps one collection's changes flowing into ``sink`` until :meth:`stop`.

    Args:
        name: For logs and the thread name.
        list_fn: A ``kubernetes`` client list method (e.g. ``CoreV1Api.list_namespaced_pod``).
        sink: Receives ``(type, object)``; called from the watch thread.
        args: Positional arguments of ``list_fn`` (namespace, group...).
        kwargs: Keyword arguments of ``list_fn`` (``label_selector``, ``field_selector``...).
        timeout_seconds: Length of one watch stream, after which it is reopened.
        connect_timeout_s: Connect timeout of every request.
        on_error: Called with each error before the reconnect backoff (e.g. to count them).
    """

    def __init__(
        self,
        name: str,
        list_fn: Callable[..., Any],
        sink: Sink,
        *,
        args: tuple[Any, ...] = (),
        kwargs: dict[str, Any] | None = None,
        timeout_seconds: int = 30,
        connect_timeout_s: float = 5.0,
        on_error: Callable[[BaseException], None] | None = None,
    ) -> None:
        self.name = name
        self._list_fn = list_fn
        self._sink = sink
        self._args = args
        self._kwargs = dict(kwargs or {})
        self._timeout_seconds = timeout_seconds
        self._connect_timeout_s = connect_timeout_s
        self._on_error = on_error
        self._stopped = threading.Event()
        self._response: Any = None
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self.synced = threading.Event()  # set after the first successful list

    def start(self) -> ResourceWatch:
        """Start the background thread; returns ``self``."""
        self._thread = threading.Thread(target=self._run, name=f"watch-{self.name}", daemon=True)
        self._thread.start()
        return self

    def stop(self, join_timeout_s: float = 2.0) -> None:
        """Stop watching: wake the thread by shutting its socket down, then join it briefly."""
        self._stopped.set()
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.shutdown()
            with contextlib.suppress(Exception):
                response.release_conn()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(join_timeout_s)

    @property
    def stopped(self) -> bool:
        """Whether :meth:`stop` was called."""
        return self._stopped.is_set()

    # --- internals -------------------------------------------------------------------------

    def _request(self, **extra: Any) -> Any:
        response = self._list_fn(*self._args, **self._kwargs, **extra, _preload_content=False)
        with self._lock:
            self._response = response
        if self._stopped.is_set():  # stop() ran before we registered the response
            with contextlib.suppress(Exception):
                response.shutdown()
        return response

    def _list(self) -> str:
        response = self._request(_request_timeout=(self._connect_timeout_s, 30))
        try:
            body = json.loads(response.data or b"{}")
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        self._sink("LIST", {"items": body.get("items") or []})
        self.synced.set()
        return str((body.get("metadata") or {}).get("resourceVersion") or "")

    def _watch(self, resource_version: str) -> str | None:
        """One watch stream; returns the version to continue from, ``None`` to relist."""
        from kubernetes.watch.watch import iter_resp_lines

        response = self._request(
            watch=True,
            resource_version=resource_version,
            allow_watch_bookmarks=True,
            timeout_seconds=self._timeout_seconds,
            _request_timeout=(self._connect_timeout_s, self._timeout_seconds + 15),
        )
        try:
            for line in iter_resp_lines(response):
                if self._stopped.is_set():
                    return resource_version
                if not line.strip():
                    continue
                event = json.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise RuntimeError(f"watch error: {obj.get('message', obj)}")
                version = (obj.get("metadata") or {}).get("resourceVersion")
                if version:
                    resource_version = str(version)
                if kind != "BOOKMARK":
                    self._sink(str(kind), obj)
        finally:
            with contextlib.suppress(Exception):
                response.release_conn()
        return resource_version

    def _run(self) -> None:
        version: str | None = None
        failures = 0
        while not self._stopped.is_set():
            try:
                if version is None:
                    version = self._list()
                version = self._watch(version)
                failures = 0
            except Exception as err:  # the thread must survive anything; the consumer has a deadline
                if self._stopped.is_set():
                    return
                if getattr(err, "status", None) == 410:
                    version = None
                    continue
                failures += 1
                if self._on_error is not None:
                    with contextlib.suppress(Exception):
                        self._on_error(err)
                log.debug("watch %s failed (%s); reconnecting", self.name, err)
                self._stopped.wait(min(2.0, 0.1 * 2 ** min(failures, 5)))
