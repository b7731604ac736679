"""The HTTP request handler: discovery, resource verbs, watch streams, the fault admin endpoint.

Order of a resource request, as in kube-apiserver where it matters: route, injected faults,
authentication (bearer token), authorization hook, then the store. Every error goes out as a
``Status`` body with the matching HTTP code.
"""

from __future__ import annotations

import contextlib
import json
import logging
import select
import socket
import time
from http.server import BaseHTTPRequestHandler
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlsplit

from .errors import ApiError
from .faults import FaultRule, SandboxFaults
from .routing import Target, resolve
from .watch import WatchRequest, stream_events

if TYPE_CHECKING:
    from .apiserver import ApiServer

log = logging.getLogger(__name__)

_ERROR_REASONS = {
    429: "TooManyRequests",
    500: "InternalError",
    503: "ServiceUnavailable",
    504: "Timeout",
    409: "Conflict",
    404: "NotFound",
    403: "Forbidden",
    401: "Unauthorized",
    400: "BadRequest",
}
KUBE_VERSION = {
    "major": "1",
    "minor": "31",
    "gitVersion": "v1.31.0-dmp-sandbox",
    "gitCommit": "sandbox",
    "gitTreeState": "clean",
    "buildDate": "2024-08-13T00:00:00Z",
    "goVersion": "go1.22.5",
    "compiler": "gc",
    "platform": "linux/amd64",
}


def _truthy(value: str | None) -> bool:
    return (value or "").lower() in ("1", "true", "yes")


class SandboxRequestHandler(BaseHTTPRequestHandler):
    """Serves one connection; HTTP/1.1 keep-alive so the client's connection pool is reused."""

    protocol_version = "HTTP/1.1"
    server_version = "dmp-sandbox"
    app: ApiServer  # set on the subclass the server creates

    # --- plumbing ----------------------------------------------------------------------------

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)

    def setup(self) -> None:
        super().setup()
        # Headers and body go out in separate writes; without NODELAY each answer waits ~40 ms
        # for the client's delayed ACK.
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.app._connections.add(self.connection)

    def finish(self) -> None:
        self.app._connections.discard(self.connection)
        with contextlib.suppress(OSError):
            super().finish()

    def do_GET(self) -> None:
        self._handle("GET")

    def do_POST(self) -> None:
        self._handle("POST")

    def do_PUT(self) -> None:
        self._handle("PUT")

    def do_PATCH(self) -> None:
        self._handle("PATCH")

    def do_DELETE(self) -> None:
        self._handle("DELETE")

    def _send_json(self, code: int, body: Any, headers: dict[str, str] | None = None) -> None:
        data = json.dumps(body, separators=(",", ":")).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(data)

    def _send_error(self, err: ApiError, headers: dict[str, str] | None = None) -> None:
        self._send_json(err.code, err.status(), headers)

    def _read_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length > 0 else b""

    @staticmethod
    def _decode(raw: bytes, content_type: str) -> Any:
        if not raw:
            return None
        try:
            if "yaml" in content_type:
                import yaml  # only server-side apply sends YAML

                return yaml.safe_load(raw)
            return json.loads(raw)
        except ValueError as exc:
            raise ApiError("BadRequest", f"unable to decode request body: {exc}") from None

    # --- dispatch ----------------------------------------------------------------------------

    def _handle(self, method: str) -> None:
        url = urlsplit(self.path)
        query = {k: v[-1] for k, v in parse_qs(url.query, keep_blank_values=True).items()}
        path = url.path.rstrip("/") or "/"
        raw = self._read_body()  # always drain the body so the keep-alive connection stays in sync
        try:
            if path.startswith("/sandbox/v1/"):
                return self._admin(method, path, raw)
            if method == "GET" and self._discovery(path):
                return
            target = resolve(self.app.store.registry, method, path, _truthy(query.get("watch")))
            if self._inject_faults(target):
                return
            token = self._token()
            if self.app.tokens is not None and token not in self.app.tokens:
                raise ApiError("Unauthorized", "Unauthorized", code=401)
            if not self.app.authorizer(
                token, target.verb, target.rt.group, target.rbac_resource, target.namespace, target.name
            ):
                raise _forbidden(target, token)
            self._resource(method, target, query, raw)
        except ApiError as err:
            self._send_error(err)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True
        except Exception as exc:  # a bug in the sandbox must still answer like a server would
            log.exception("sandbox internal error")
            self._send_error(ApiError("InternalError", f"sandbox internal error: {exc!r}", code=500))

    def _token(self) -> str | None:
        auth = self.headers.get("Authorization") or ""
        return auth[7:].strip() if auth.lower().startswith("bearer ") else None

    def _inject_faults(self, target: Target) -> bool:
        out = self.app.faults.decide(target.verb, target.rt.group, target.rbac_resource, target.namespace, target.name)
        if out.latency_s:
            time.sleep(out.latency_s)
        if out.drop_connection:
            self.close_connection = True
            with contextlib.suppress(OSError):
                self.connection.shutdown(socket.SHUT_RDWR)
            return True
        if out.status_code:
            reason = _ERROR_REASONS.get(out.status_code, "InternalError")
            headers = {"Retry-After": str(out.retry_after_s)} if out.retry_after_s is not None else None
            self._send_error(ApiError(reason, out.message, code=out.status_code), headers)
            return True
        return False

    def _discovery(self, path: str) -> bool:
        reg = self.app.store.registry
        doc: Any = None
        if path == "/version":
            doc = KUBE_VERSION
        elif path in ("/healthz", "/readyz", "/livez"):
            data = b"ok"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            return True
        elif path == "/api":
            doc = reg.api_versions(f"{self.app.host}:{self.app.port}")
        elif path == "/api/v1":
            doc = reg.resource_list("", "v1")
        elif path == "/apis":
            doc = reg.api_group_list()
        elif path.startswith("/apis/") and path.count("/") == 2:
            doc = reg.api_group(path.split("/")[2])
        elif path.startswith("/apis/") and path.count("/") == 3:
            _, _, group, version = path.split("/")
            doc = reg.resource_list(group, version)
        else:
            return False
        if doc is None:
            raise ApiError("NotFound", "the server could not find the requested resource")
        self._send_json(200, doc)
        return True

    # --- resources ---------------------------------------------------------------------------

    def _resource(self, method: str, t: Target, query: dict[str, str], raw: bytes) -> None:
        store = self.app.store
        dry_run = query.get("dryRun") == "All"
        ctype = self.headers.get("Content-Type") or "application/json"
        if t.verb == "watch":
            return self._watch(t, query)
        if t.verb == "get" and t.subresource == "log":
            return self._pod_log(t, query)
        if t.verb == "get":
            return self._send_json(200, store.get(t.rt, t.namespace, t.name or ""))
        if t.verb == "list":
            limit = int(query["limit"]) if query.get("limit", "").isdigit() else None
            return self._send_json(
                200,
                store.list(
                    t.rt,
                    t.namespace,
                    query.get("labelSelector"),
                    query.get("fieldSelector"),
                    limit,
                    query.get("continue"),
                ),
            )
        body = self._decode(raw, ctype)
        if t.verb == "create":
            return self._send_json(201, store.create(t.rt, t.namespace, body or {}, dry_run))
        if t.verb == "update":
            return self._send_json(
                200, store.update(t.rt, t.namespace, t.name or "", body or {}, t.subresource, dry_run)
            )
        if t.verb == "patch":
            obj, created = store.patch(t.rt, t.namespace, t.name or "", ctype, body, t.subresource, dry_run)
            return self._send_json(201 if created else 200, obj)
        options = dict(body or {}) if isinstance(body, dict) else {}
        for key in ("propagationPolicy", "gracePeriodSeconds"):
            if key in query:
                options[key] = query[key]
        if "orphanDependents" in query:
            options["orphanDependents"] = _truthy(query["orphanDependents"])
        if t.verb == "delete":
            obj, gone_now = store.delete(t.rt, t.namespace, t.name or "", options, dry_run)
            # 202 Accepted while finalizers keep the object, like kube-apiserver.
            return self._send_json(200 if gone_now else 202, obj)
        return self._send_json(
            200,
            store.delete_collection(t.rt, t.namespace, query.get("labelSelector"), query.get("fieldSelector"), options),
        )

    def _pod_log(self, t: Target, query: dict[str, str]) -> None:
        """``GET .../pods/{name}/log``: a container's log from the kubelet's log directory, as text."""
        pod = self.app.store.get(t.rt, t.namespace, t.name or "")  # 404 for an unknown pod, as a server does
        containers = [c.get("name") for c in (pod.get("spec") or {}).get("containers") or []]
        container = query.get("container") or (containers[0] if len(containers) == 1 else None)
        if container is None:
            raise ApiError(
                "BadRequest",
                f"a container name must be specified for pod {t.name}, choose one of: {containers}",
                code=400,
            )
        if container not in containers:
            raise ApiError("BadRequest", f"container {container} is not valid for pod {t.name}", code=400)
        logs = self.app.pod_logs
        if logs is None:
            raise ApiError("NotFound", "the server could not find the requested resource", details={})
        tail = query.get("tailLines")
        text = logs.read(
            t.namespace or "default",
            t.name or "",
            container,
            previous=_truthy(query.get("previous")),
            tail_lines=int(tail) if tail and tail.isdigit() else None,
        )
        body = text.encode()
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _watch(self, t: Target, query: dict[str, str]) -> None:
        timeout = query.get("timeoutSeconds")
        req = WatchRequest(
            rt=t.rt,
            namespace=t.namespace,
            name=t.name,
            resource_version=query.get("resourceVersion"),
            label_selector=query.get("labelSelector"),
            field_selector=query.get("fieldSelector"),
            timeout_s=float(timeout) if timeout else None,
            bookmarks=_truthy(query.get("allowWatchBookmarks")),
            send_initial_events=_truthy(query.get("sendInitialEvents")),
        )
        events = stream_events(self.app.store, req, self._client_gone, self.app.bookmark_interval_s)
        # Headers go out at once, as from kube-apiserver: the client's call returns when the
        # watch is established, not at the first event.
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        self.wfile.flush()
        try:
            for event in events:
                self._chunk(event)
            self.wfile.write(b"0\r\n\r\n")
            self.wfile.flush()
        except (BrokenPipeError, ConnectionResetError, OSError):
            self.close_connection = True

    def _chunk(self, event: dict[str, Any]) -> None:
        data = json.dumps(event, separators=(",", ":")).encode() + b"\n"
        self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
        self.wfile.flush()

    def _client_gone(self) -> bool:
        if self.app.stopping.is_set():
            return True
        try:
            readable, _, _ = select.select([self.connection], [], [], 0)
            # Readable with nothing to read means the client closed its end (Watch.stop(), timeouts).
            return bool(readable) and self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    # --- sandbox admin -----------------------------------------------------------------------

    def _admin(self, method: str, path: str, raw: bytes) -> None:
        from pydantic import ValidationError

        try:
            self._admin_faults(method, path, self._decode(raw, "application/json"))
        except ValidationError as exc:
            raise ApiError("BadRequest", f"invalid fault specification: {exc}") from None

    def _admin_faults(self, method: str, path: str, body: Any) -> None:
        faults = self.app.faults
        if path == "/sandbox/v1/faults":
            if method == "PUT":
                faults.replace(SandboxFaults.model_validate(body or {}))
            elif method == "DELETE":
                faults.clear()
            elif method != "GET":
                raise ApiError("MethodNotAllowed", "use GET, PUT or DELETE", code=405)
            return self._send_json(200, faults.snapshot().model_dump())
        if path == "/sandbox/v1/faults/rules" and method == "POST":
            rule = faults.add(FaultRule.model_validate(body or {}))
            return self._send_json(201, rule.model_dump())
        if path == "/sandbox/v1/state" and method == "GET":
            return self._send_json(200, self.app.store.dump())
        raise ApiError("NotFound", f"unknown sandbox admin path {path}")


def _forbidden(t: Target, token: str | None) -> ApiError:
    where = f' in the namespace "{t.namespace}"' if t.namespace else " at the cluster scope"
    name = f'"{t.name}"' if t.name else ""
    group = t.rt.group
    return ApiError(
        "Forbidden",
        f"{t.rbac_resource}{'.' + group if group else ''} {name} is forbidden: the bearer token "
        f'cannot {t.verb} resource "{t.rbac_resource}" in API group "{group}"{where}'.replace("  ", " "),
        details={"name": t.name or "", "group": group, "kind": t.rt.plural},
    )
