"""A local, stateful Kubernetes API server for tests and demos (like moto for AWS).

The real ``kubernetes`` client talks to it over plain HTTP through a generated kubeconfig::

    from discord_ml_platform.sandbox.apiserver import ApiServer

    with ApiServer() as server:                       # 127.0.0.1, a free port, background thread
        server.write_kubeconfig("kubeconfig.yaml")     # context "dmp-sandbox", bearer-token user
        api = server.api_client()                      # or load_kube_config(config_file=...)
        server.faults.fail("create", "rayclusters", status_code=503, times=2)

Or in the foreground, from a shell::

    python -m discord_ml_platform.sandbox.apiserver --port 8001 --kubeconfig ./sandbox.kubeconfig

It serves discovery, core/v1, apps/v1, rbac, coordination, apiextensions (CRDs register new
types) and ``ray.io/v1`` with create/get/list/update/patch/delete/deletecollection/watch, status
subresources, finalizers, ownerReference garbage collection and namespaces. It does not run any
controller: pods never start on their own (that is the local KubeRay operator's job).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import signal
import socket
import threading
from collections.abc import Iterable
from http.server import ThreadingHTTPServer
from pathlib import Path
from typing import Any, Self

from .auth import Authorizer, allow_all
from .faults import FaultInjector
from .handler import SandboxRequestHandler
from .kubeconfig import CONTEXT, kubeconfig_dict, write_kubeconfig
from .objects import random_token
from .pod_logs import PodLogs
from .store import DEFAULT_NAMESPACES, Store

log = logging.getLogger(__name__)


class _HTTPServer(ThreadingHTTPServer):
    daemon_threads = True  # a hung client must never keep the process alive
    request_queue_size = 64
    allow_reuse_address = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that resets an idle keep-alive connection (a stopped watch) is not an error.
        import sys

        if isinstance(sys.exc_info()[1], (ConnectionResetError, BrokenPipeError)):
            return
        super().handle_error(request, client_address)


class ApiServer:
    """The sandbox API server.

    Args:
        host: Interface to bind; loopback by default.
        port: TCP port; ``0`` picks a free one at :meth:`start`.
        namespaces: Namespaces that exist from the start.
        token: Bearer token written into kubeconfigs; random when ``None``.
        require_token: Reject (401) requests without a known token (``token`` or ``extra_tokens``).
        extra_tokens: More accepted tokens (e.g. service-account tokens for RBAC tests).
        authorizer: ``(token, verb, group, resource, namespace, name) -> bool``; allow-all by default.
        state_file: JSON file loaded at start (when present) and written at stop.
        history_size: Watch events kept for resuming watches (older versions get 410).
        bookmark_interval_s: Seconds between watch bookmarks when a client allows them.
        pod_log_dir: The "kubelet's" container logs (see :mod:`.pod_logs`), served as ``pods/log``;
            without it ``pods/log`` is 404.

    Attributes:
        store: The object store (usable directly from Python, bypassing HTTP).
        faults: Runtime fault switches, see :mod:`discord_ml_platform.sandbox.faults`.
        authorizer: The authorization hook; may be replaced while running.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        token: str | None = None,
        require_token: bool = False,
        extra_tokens: Iterable[str] = (),
        authorizer: Authorizer | None = None,
        state_file: str | os.PathLike[str] | None = None,
        history_size: int = 1000,
        bookmark_interval_s: float = 10.0,
        pod_log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.host = host
        self.port = port
        self.token = token or random_token()
        self.tokens: set[str] | None = {self.token, *extra_tokens} if require_token else None
        self.authorizer: Authorizer = authorizer or allow_all
        self.state_file = Path(state_file) if state_file else None
        self.bookmark_interval_s = bookmark_interval_s
        self.store = Store(namespaces=namespaces, history_size=history_size)
        if self.state_file and self.state_file.exists():
            self.store.load(json.loads(self.state_file.read_text()))
        self.faults = FaultInjector()
        # Where the sandbox's "kubelet" (the operator) keeps container logs; pods/log reads them.
        self.pod_logs: PodLogs | None = PodLogs(pod_log_dir) if pod_log_dir else None
        self.stopping = threading.Event()
        self._connections: set[socket.socket] = set()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL, e.g. ``http://127.0.0.1:40123`` (valid after :meth:`start`)."""
        return f"http://{self.host}:{self.port}"

    def start(self) -> Self:
        """Bind and serve in a background thread; returns ``self``."""
        if self._httpd is not None:
            return self
        handler = type("Handler", (SandboxRequestHandler,), {"app": self})
        self.stopping.clear()
        self._httpd = _HTTPServer((self.host, self.port), handler)
        self.port = self._httpd.server_address[1]
        self._thread = threading.Thread(
            target=self._httpd.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"dmp-sandbox-{self.port}",
            daemon=True,
        )
        self._thread.start()
        log.info("sandbox API server listening on %s", self.url)
        return self

    def stop(self) -> None:
        """End watches, close connections, stop serving and save state (if configured)."""
        if self._httpd is None:
            return
        self.stopping.set()
        self.store.close()
        self._httpd.shutdown()
        for conn in list(self._connections):
            with contextlib.suppress(OSError):  # wake handler threads idling on keep-alive reads
                conn.shutdown(socket.SHUT_RDWR)
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._httpd = self._thread = None
        self.save_state()
        # A stopped store keeps its objects; reopen it so a later start() serves watches again.
        self.store.closed = False

    def save_state(self) -> None:
        """Write all objects to ``state_file`` (no-op without one)."""
        if self.state_file is None:
            return
        self.state_file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.state_file.with_name(self.state_file.name + ".tmp")
        tmp.write_text(json.dumps(self.store.dump()))
        tmp.replace(self.state_file)

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def kubeconfig(
        self, token: str | None = None, namespace: str = "default", context: str = CONTEXT
    ) -> dict[str, Any]:
        """A kubeconfig dict for this server (``token`` defaults to the server's own)."""
        return kubeconfig_dict(self.url, token or self.token, namespace=namespace, context=context)

    def write_kubeconfig(
        self,
        path: str | os.PathLike[str],
        token: str | None = None,
        namespace: str = "default",
        context: str = CONTEXT,
    ) -> Path:
        """Write a kubeconfig whose context ``dmp-sandbox`` points at this server.

        Args:
            path: Destination file.
            token: Bearer token of the user; the server's token by default.
            namespace: The context's default namespace.
            context: Context name.

        Returns:
            The path written.
        """
        return write_kubeconfig(path, self.kubeconfig(token, namespace, context))

    def api_client(self, token: str | None = None) -> Any:
        """A ``kubernetes.client.ApiClient`` for this server, without touching global config.

        Args:
            token: Bearer token; the server's token by default.

        Returns:
            A new ``ApiClient`` (close it when done).
        """
        from kubernetes import client, config  # heavy: only imported when asked for

        cfg = client.Configuration()
        config.load_kube_config_from_dict(self.kubeconfig(token), client_configuration=cfg, persist_config=False)
        return client.ApiClient(cfg)


Sandbox = ApiServer


def main(argv: list[str] | None = None) -> int:
    """Serve in the foreground until SIGINT/SIGTERM (``python -m ...sandbox.apiserver``)."""
    parser = argparse.ArgumentParser(
        prog="python -m discord_ml_platform.sandbox.apiserver",
        description="Local Kubernetes API sandbox for tests and demos.",
    )
    parser.add_argument("--host", default="127.0.0.1", help="interface to bind (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="TCP port (default: a free one)")
    parser.add_argument("--kubeconfig", help="write a kubeconfig for this server to this path")
    parser.add_argument(
        "--namespaces", default=",".join(DEFAULT_NAMESPACES), help="comma-separated namespaces created at start"
    )
    parser.add_argument("--token", help="bearer token for the kubeconfig (default: random)")
    parser.add_argument("--require-token", action="store_true", help="answer 401 to requests without the token")
    parser.add_argument("--state-file", help="load objects from / save them to this JSON file")
    parser.add_argument("-v", "--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(message)s")
    server = ApiServer(
        host=args.host,
        port=args.port,
        token=args.token,
        require_token=args.require_token,
        namespaces=[n for n in args.namespaces.split(",") if n],
        state_file=args.state_file,
    )
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    server.start()
    if args.kubeconfig:
        path = server.write_kubeconfig(args.kubeconfig)
        log.info("kubeconfig written to %s (context %s)", path, CONTEXT)
    print(f"sandbox API server ready at {server.url}", flush=True)
    try:
        done.wait()
    finally:
        server.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
