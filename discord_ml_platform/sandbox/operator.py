"""A local KubeRay operator: turns ``ray.io/v1`` RayClusters into real local Ray clusters.

Like KubeRay it is only a client of the API server (the official ``kubernetes`` client, its own
``ApiClient``): it lists and watches RayClusters in all namespaces and reconciles each one in a
thread (:mod:`~discord_ml_platform.sandbox.operator_cluster`): head and worker Pods, the head
Service, Events, and the status KubeRay writes (``state``, ``head``, ``endpoints``, ``conditions``,
replica counts). The Ray processes are started with ``LocalBackend``, so the status's endpoints
are ``127.0.0.1`` and the local ports: a client outside "the cluster" reaches them directly.

Deletion: the operator puts a finalizer on every RayCluster it reconciles and removes it only after
the local Ray processes are stopped, so a client that waits until the RayCluster is gone knows
nothing of it still runs. :meth:`SandboxOperator.stop` stops every local cluster it started.

Faults (:class:`~discord_ml_platform.sandbox.faults.OperatorFaults`) come from the API server
(in process: ``server.faults.operator``; out of process: ``GET /sandbox/v1/faults``), overridden
per object by annotations.

RayJobs: a second watch, on ``rayjobs``, feeds :class:`~discord_ml_platform.sandbox.operator_rayjob.RayJobController`,
which creates a RayCluster from ``spec.rayClusterSpec`` (owned by the RayJob, so this operator brings
it up), submits ``spec.entrypoint`` through the Jobs API once it is ready, mirrors the job into
``status.jobStatus``/``jobDeploymentStatus``, enforces ``activeDeadlineSeconds``, deletes the
cluster ``ttlSecondsAfterFinished`` after the end, and honours ``OperatorFaults.job_fails``.

Run it as a process against any kubeconfig::

    python -m discord_ml_platform.sandbox.operator --kubeconfig ./sandbox.kubeconfig
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import queue
import signal
import threading
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any, Self

from discord_ml_platform.backends.base import ClusterHandle
from discord_ml_platform.backends.kuberay import make_api_client
from discord_ml_platform.backends.kuberay_retry import status_code
from discord_ml_platform.backends.kuberay_watch import ResourceWatch
from discord_ml_platform.backends.local import LocalBackend

from . import operator_objects as objs
from .faults import OperatorFaults, operator_faults_for
from .operator_cluster import GROUP, PLURAL, VERSION, ClusterReconciler, OperatorApi
from .operator_rayjob import RayJobController
from .pod_logs import PodLogs

log = logging.getLogger(__name__)
FaultsSource = Callable[[], OperatorFaults]


def http_faults_source(server_url: str, ttl_s: float = 0.5) -> FaultsSource:
    """Operator faults read from a sandbox's ``/sandbox/v1/faults`` (none where there is no sandbox)."""
    import time

    cache: dict[str, Any] = {"at": 0.0, "value": OperatorFaults()}

    def read() -> OperatorFaults:
        if time.monotonic() - cache["at"] < ttl_s:
            return cache["value"]
        try:
            with urllib.request.urlopen(f"{server_url.rstrip('/')}/sandbox/v1/faults", timeout=2) as response:
                cache["value"] = OperatorFaults.model_validate(json.load(response).get("operator") or {})
        except (OSError, ValueError):
            cache["value"] = OperatorFaults()
        cache["at"] = time.monotonic()
        return cache["value"]

    return read


class SandboxOperator:
    """The local KubeRay operator.

    Args:
        api: An ``ApiClient``, or the path of a kubeconfig (``None``: the default kubeconfig).
        context: Kubeconfig context when ``api`` is a path.
        local_state_dir: State dir of the ``LocalBackend`` holding the local clusters' records.
        temp_root: Parent of the local clusters' Ray temp dirs (keep it short).
        faults_source: Returns the global operator faults; default: the sandbox's admin endpoint.
        memory: Memory of each local Ray node (small, so several clusters fit on one machine).
        ready_timeout_s: How long a local Ray cluster may take to become ready.
        pod_log_dir: Where the operator, as the sandbox's kubelet, keeps container logs (served by the
            API server as ``pods/log`` when it is given the same directory); none kept when ``None``.
    """

    def __init__(
        self,
        api: Any = None,
        *,
        context: str | None = None,
        local_state_dir: str | os.PathLike[str] | None = None,
        temp_root: str | os.PathLike[str] | None = None,
        faults_source: FaultsSource | None = None,
        memory: str = "1Gi",
        ready_timeout_s: float = 180,
        pod_log_dir: str | os.PathLike[str] | None = None,
    ) -> None:
        self.pod_logs = PodLogs(pod_log_dir) if pod_log_dir else None
        self._owns_client = api is None or isinstance(api, (str, os.PathLike))
        self.api_client = make_api_client(api, context) if self._owns_client else api
        self.api = OperatorApi(self.api_client)
        self.state_dir = Path(local_state_dir) if local_state_dir else None
        self.temp_root = Path(temp_root) if temp_root else None
        self.faults_source = faults_source or http_faults_source(self.api_client.configuration.host)
        self.memory = memory
        self.ready_timeout_s = ready_timeout_s
        self._locals: dict[str, LocalBackend] = {}
        self._reconcilers: dict[str, ClusterReconciler] = {}
        self._teardowns: dict[str, threading.Thread] = {}
        self._lock = threading.RLock()
        self._inbox: queue.Queue[tuple[str, dict[str, Any]] | None] = queue.Queue()
        self._watch = ResourceWatch(
            "operator-rayclusters",
            self.api.custom.list_cluster_custom_object,
            lambda kind, obj: self._inbox.put((kind, obj)),
            args=(GROUP, VERSION, PLURAL),
        )
        self._dispatcher = threading.Thread(target=self._dispatch, name="sandbox-operator", daemon=True)
        self.rayjobs = RayJobController(self.api, self.faults_source)
        self._started = False

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> Self:
        """Start watching and reconciling in background threads; returns ``self``."""
        if not self._started:
            self._started = True
            self._dispatcher.start()
            self._watch.start()
            self.rayjobs.start()
        return self

    def wait_synced(self, timeout_s: float = 10) -> bool:
        """Whether the first list of RayClusters arrived within ``timeout_s``."""
        return self._watch.synced.wait(timeout_s) and self.rayjobs.synced.wait(timeout_s)

    def stop(self, timeout_s: float = 30) -> None:
        """Stop watching and stop every local Ray cluster this operator started.

        RayClusters already being deleted get their finalizer removed (their Ray is stopped);
        others keep it, as with a real operator that is down, and are brought up again by the
        next operator that starts.
        """
        self.rayjobs.stop(timeout_s)  # first: a RayJob reconciler may still create RayClusters
        self._watch.stop()
        self._inbox.put(None)
        if self._dispatcher.is_alive():
            self._dispatcher.join(5)
        with self._lock:
            reconcilers = list(self._reconcilers.values())
            self._reconcilers.clear()
            teardowns = list(self._teardowns.values())
        for rec in reconcilers:
            rec.cancel()
        for rec in reconcilers:
            rec.stop_local()  # makes a reconciler blocked in create/wait_ready fail fast
        for rec in reconcilers:
            rec.join(timeout_s)
            rec.stop_local()  # anything it started after the first stop
            with contextlib.suppress(Exception):
                current = self._get(rec.rc)
                if current is not None and current["metadata"].get("deletionTimestamp"):
                    self._remove_finalizer(rec.rc)
        for thread in teardowns:
            thread.join(timeout_s)
        if self._owns_client:
            self.api_client.close()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def active(self) -> list[str]:
        """``namespace/name`` of every RayCluster being reconciled now."""
        with self._lock:
            return sorted(rec.key for rec in self._reconcilers.values())

    # --- dispatch --------------------------------------------------------------------------

    def _dispatch(self) -> None:
        while True:
            item = self._inbox.get()
            if item is None:
                return
            kind, obj = item
            try:
                self._handle(kind, obj)
            except Exception:  # one bad object must not stop the operator
                log.exception("sandbox operator: handling %s failed", kind)

    def _handle(self, kind: str, obj: dict[str, Any]) -> None:
        if kind == "LIST":
            seen = set()
            for item in obj["items"]:
                seen.add(item["metadata"]["uid"])
                self._observe(item)
            with self._lock:
                gone = [uid for uid in self._reconcilers if uid not in seen]
            for uid in gone:
                self._teardown(uid, None)
        elif kind == "DELETED":
            self._teardown(obj["metadata"]["uid"], None, fallback=obj)
        else:
            self._observe(obj)

    def _observe(self, rc: dict[str, Any]) -> None:
        meta = rc["metadata"]
        uid = meta["uid"]
        if meta.get("deletionTimestamp"):
            if objs.FINALIZER in (meta.get("finalizers") or []) or uid in self._reconcilers:
                self._teardown(uid, rc, fallback=rc)
            return
        with self._lock:
            if uid in self._reconcilers or uid in self._teardowns:
                return  # spec changes (scaling, suspend) are not reconciled by the sandbox yet
        if not self._add_finalizer(rc):
            return
        faults = operator_faults_for(rc, self.faults_source())
        rec = ClusterReconciler(
            self.api,
            rc,
            self._local(objs.auth_mode(rc)),
            faults,
            memory=self.memory,
            ready_timeout_s=self.ready_timeout_s,
            pod_logs=self.pod_logs,
        )
        with self._lock:
            self._reconcilers[uid] = rec
        log.info("sandbox operator: reconciling RayCluster %s", rec.key)
        rec.start()

    def _teardown(self, uid: str, rc: dict[str, Any] | None, fallback: dict[str, Any] | None = None) -> None:
        with self._lock:
            if uid in self._teardowns and self._teardowns[uid].is_alive():
                return
            rec = self._reconcilers.pop(uid, None)
            if rec is None and fallback is None:
                return
            thread = threading.Thread(
                target=self._finish, args=(rec, rc, fallback), daemon=True, name=f"teardown-{uid[:8]}"
            )
            self._teardowns[uid] = thread
        thread.start()

    def _finish(
        self, rec: ClusterReconciler | None, rc: dict[str, Any] | None, fallback: dict[str, Any] | None
    ) -> None:
        """Stop the local Ray of a deleted RayCluster, then let its deletion complete."""
        try:
            if rec is not None:
                rec.cancel()
                rec.stop_local()
                rec.join(30)
                rec.stop_local()
                rec.forget_logs()  # its pods go with the RayCluster: before it is gone, not after
            elif fallback is not None:  # e.g. deleted while this operator was down
                handle = ClusterHandle(objs.local_name(fallback), "local", "local")
                self._local(objs.auth_mode(fallback)).delete(handle)
            if rc is not None:
                self._remove_finalizer(rc)
            log.info(
                "sandbox operator: RayCluster %s/%s torn down",
                (rc or fallback or {}).get("metadata", {}).get("namespace"),
                (rc or fallback or {}).get("metadata", {}).get("name"),
            )
        except Exception:
            log.exception("sandbox operator: teardown failed")

    # --- helpers ---------------------------------------------------------------------------

    def _local(self, auth_mode: str) -> LocalBackend:
        with self._lock:
            if auth_mode not in self._locals:
                self._locals[auth_mode] = LocalBackend(
                    state_dir=self.state_dir, auth_mode=auth_mode, temp_root=self.temp_root
                )
            return self._locals[auth_mode]

    def _get(self, rc: dict[str, Any]) -> dict[str, Any] | None:
        m = rc["metadata"]
        try:
            return self.api.call(
                "get RayCluster",
                self.api.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                m["namespace"],
                PLURAL,
                m["name"],
            )
        except Exception as err:
            if status_code(err) == 404:
                return None
            raise

    def _set_finalizers(self, current: dict[str, Any], finalizers: list[str]) -> None:
        m = current["metadata"]
        self.api.call(
            "patch RayCluster finalizers",
            self.api.custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            m["namespace"],
            PLURAL,
            m["name"],
            {"metadata": {"finalizers": finalizers, "resourceVersion": m["resourceVersion"]}},
        )

    def _add_finalizer(self, rc: dict[str, Any]) -> bool:
        """Put our finalizer on ``rc``; ``False`` when it is gone or being deleted."""
        current = rc
        for _ in range(5):
            meta = current["metadata"]
            if meta.get("uid") != rc["metadata"]["uid"] or meta.get("deletionTimestamp"):
                return False
            finalizers = list(meta.get("finalizers") or [])
            if objs.FINALIZER in finalizers:
                return True
            try:
                self._set_finalizers(current, [*finalizers, objs.FINALIZER])
                return True
            except Exception as err:
                if status_code(err) not in (404, 409):
                    raise
            current = self._get(rc)  # type: ignore[assignment]
            if current is None:
                return False
        return False

    def _remove_finalizer(self, rc: dict[str, Any]) -> None:
        for _ in range(5):
            current = self._get(rc)
            if current is None or current["metadata"].get("uid") != rc["metadata"]["uid"]:
                return
            finalizers = list(current["metadata"].get("finalizers") or [])
            if objs.FINALIZER not in finalizers:
                return
            try:
                self._set_finalizers(current, [f for f in finalizers if f != objs.FINALIZER])
                return
            except Exception as err:
                if status_code(err) not in (404, 409):
                    raise


def main(argv: list[str] | None = None) -> int:
    """Run the operator in the foreground until SIGINT/SIGTERM."""
    parser = argparse.ArgumentParser(
        prog="python -m discord_ml_platform.sandbox.operator",
        description="Local KubeRay operator: RayClusters become local Ray clusters.",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig of the API server (default: $KUBECONFIG or ~/.kube/config)")
    parser.add_argument("--context", help="kubeconfig context")
    parser.add_argument("--state-dir", help="where local cluster records and logs go")
    parser.add_argument("--temp-root", help="parent of the Ray temp dirs (keep it short)")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.DEBUG if args.verbose else logging.INFO, format="%(asctime)s %(message)s")
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    operator = SandboxOperator(
        args.kubeconfig, context=args.context, local_state_dir=args.state_dir, temp_root=args.temp_root
    ).start()
    print("sandbox KubeRay operator running", flush=True)
    try:
        done.wait()
    finally:
        operator.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
