"""The ``kuberay`` backend: ``ray.io/v1`` RayClusters through the official ``kubernetes`` client.

Create renders the very manifest ``dmp cluster create --dry-run`` prints and POSTs it; waiting
watches the RayCluster, its pods (label ``ray.io/cluster``) and the namespace's events, and reports
each phase as it happens (pending and why, image pull, head ready, workers N/M, ready). A pod that
cannot pull its image fails the wait at once, naming the image. Endpoints come from the RayCluster
status, never from hard-coded service names. Every API call is retried with backoff on 429, 5xx
and dropped connections (:mod:`~discord_ml_platform.backends.kuberay_retry`).

The backend owns its ``ApiClient`` and ``Configuration``; the client's global default
configuration is never touched, so several backends (and the sandbox operator) coexist in one
process.
"""

from __future__ import annotations

import builtins
import json
import logging
import os
import queue
import time
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Self

from discord_ml_platform.backends.base import (
    ClusterEndpoints,
    ClusterError,
    ClusterHandle,
    ClusterInfo,
    ClusterNotReadyError,
    HeadFailedError,
    PhaseCallback,
    PhaseEvent,
)
from discord_ml_platform.backends.kuberay_retry import (
    RetryPolicy,
    api_error_message,
    call_with_retries,
    status_code,
)
from discord_ml_platform.backends.kuberay_status import (
    CLUSTER_LABEL,
    Assessment,
    EndpointResolver,
    ReadinessView,
    belongs_to,
    condition,
    condition_true,
    default_endpoint_resolver,
    event_sort_key,
    event_summary,
    parse_time,
)
from discord_ml_platform.backends.kuberay_watch import ResourceWatch
from discord_ml_platform.spec import DEFAULT_PLATFORM_CONFIG, ClusterSpec, PlatformConfig, QuantityError, parse_quantity
from discord_ml_platform.spec.labels import CLUSTER, MANAGED_BY, MANAGED_BY_VALUE, RUN_ID, label_value
from discord_ml_platform.spec.render import HEAD_CONTAINER, render_raycluster

if TYPE_CHECKING:
    from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs

log = logging.getLogger(__name__)

BACKEND_NAME = "kuberay"
GROUP, VERSION, PLURAL = "ray.io", "v1", "rayclusters"
RECENT_EVENTS = 10
HEAD_LOG_LINES = 20  # of a failed head container, quoted in the failure


def make_api_client(kubeconfig: str | os.PathLike[str] | None = None, context: str | None = None) -> Any:
    """A new ``ApiClient`` with its own ``Configuration`` (the global default stays untouched).

    In a pod (``KUBERNETES_SERVICE_HOST`` set) without an explicit kubeconfig or context, the
    in-cluster service account is used; otherwise the kubeconfig file (``$KUBECONFIG`` or
    ``~/.kube/config`` when ``kubeconfig`` is ``None``).
    """
    from kubernetes import client, config

    cfg = client.Configuration()
    if kubeconfig is None and context is None and os.environ.get("KUBERNETES_SERVICE_HOST"):
        config.load_incluster_config(client_configuration=cfg)
    else:
        config.load_kube_config(
            config_file=str(kubeconfig) if kubeconfig else None,
            context=context,
            client_configuration=cfg,
            persist_config=False,
        )
    # urllib3 would retry some verbs silently and not others; we retry every call ourselves.
    cfg.retries = False
    return client.ApiClient(cfg)


class KubeRayBackend:
    """Ray clusters as KubeRay ``RayCluster`` objects on a Kubernetes cluster.

    Args:
        kubeconfig: Kubeconfig file; ``None``: in-cluster config in a pod, else ``$KUBECONFIG`` or
            ``~/.kube/config``.
        context: Kubeconfig context (default: the file's current context).
        namespace: Namespace that :meth:`list` looks in; ``None`` lists across all namespaces.
            (Create uses the spec's namespace.)
        api_client: A ready ``kubernetes.client.ApiClient`` to use instead of loading a config.
        platform_config: Catalog, policy and images for rendering (the platform core passes the one in
            effect; the default is the built-in one).
        retry: Retry policy of every API call.
        request_timeout_s: Read timeout of a single (non-watch) request.
        endpoint_resolver: Maps a RayCluster (dict) to endpoints reachable from this process,
            e.g. through an ingress or port-forward; default: the status's head address and ports.
        host_override: Simpler alternative to a resolver: use this host with the status's ports.
        delete_propagation: ``Foreground`` (pods go first, then the RayCluster) or ``Background``.
        poll_interval_s: How often :meth:`delete` checks that the RayCluster is gone.
    """

    name = BACKEND_NAME

    def __init__(
        self,
        kubeconfig: str | os.PathLike[str] | None = None,
        context: str | None = None,
        *,
        namespace: str | None = None,
        api_client: Any = None,
        platform_config: PlatformConfig | None = None,
        retry: RetryPolicy | None = None,
        request_timeout_s: float = 30.0,
        endpoint_resolver: EndpointResolver | None = None,
        host_override: str | None = None,
        delete_propagation: str = "Foreground",
        poll_interval_s: float = 0.2,
    ) -> None:
        from kubernetes import client

        if delete_propagation not in ("Foreground", "Background"):
            raise ValueError("delete_propagation must be 'Foreground' or 'Background'")
        self.namespace = namespace
        self._owns_client = api_client is None
        self.api_client = api_client if api_client is not None else make_api_client(kubeconfig, context)
        self.custom = client.CustomObjectsApi(self.api_client)
        self.core = client.CoreV1Api(self.api_client)
        self.platform_config = platform_config or DEFAULT_PLATFORM_CONFIG
        self.retry = retry or RetryPolicy()
        self.request_timeout = (5.0, request_timeout_s)
        self.resolver: EndpointResolver = endpoint_resolver or (lambda rc: default_endpoint_resolver(rc, host_override))
        self.delete_propagation = delete_propagation
        self.poll_interval_s = poll_interval_s

    def close(self) -> None:
        """Close the connection pool (only if this backend created the client)."""
        if self._owns_client:
            self.api_client.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def rayjobs(self, namespace: str | None = None) -> KubeRayJobs:
        """RayJobs beside this backend's RayClusters: same API client, policy and images.

        Args:
            namespace: Namespace of the RayJobs; default the backend's (``default`` when the backend
                lists every namespace; ``list(all_namespaces=True)`` still sees them all).
        """
        from discord_ml_platform.backends.kuberay_rayjob import KubeRayJobs

        return KubeRayJobs(
            api_client=self.api_client,
            namespace=namespace or self.namespace or "default",
            all_namespaces=namespace is None and self.namespace is None,
            platform_config=self.platform_config,
            retry=self.retry,
        )

    # --- API helpers -----------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("_request_timeout", self.request_timeout)
        return call_with_retries(lambda: fn(*args, **kwargs), what, self.retry)

    def _get(self, handle: ClusterHandle) -> dict[str, Any] | None:
        try:
            return self._call(
                f"get RayCluster {handle.namespace}/{handle.name}",
                self.custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                handle.namespace,
                PLURAL,
                handle.name,
            )
        except ClusterError:
            raise
        except Exception as err:
            if status_code(err) == 404:
                return None
            raise _api_failure(f"get RayCluster {handle.namespace}/{handle.name}", err) from err

    # --- protocol --------------------------------------------------------------------------

    def render(self, spec: ClusterSpec, created_at: datetime | None = None) -> dict[str, Any]:
        """The RayCluster manifest :meth:`create` sends for ``spec``."""
        cfg = self.platform_config
        return render_raycluster(
            spec, catalog=cfg.catalog, policy=cfg.policy, created_at=created_at or datetime.now(UTC)
        )

    def create(self, spec: ClusterSpec) -> ClusterHandle:
        """Create the RayCluster for ``spec``; returns at once (see :meth:`wait_ready`).

        Idempotent: when a RayCluster of that name already exists and carries our labels (the
        same cluster name and, if the spec has one, the same run id) its handle is returned; this
        is also what makes a create retried after a dropped connection safe.

        Raises:
            PolicyViolation: the spec breaks the platform policy (nothing is sent).
            ClusterError: the name is taken by someone else's cluster, or the API refused or kept
                failing (the message says which, with the server's reason).
        """
        handle = ClusterHandle(spec.name, spec.namespace, self.name)
        manifest = self.render(spec)
        what = f"create RayCluster {spec.namespace}/{spec.name}"
        for _ in range(2):  # a second round only after a same-named, deleting leftover went away
            try:
                self._call(
                    what, self.custom.create_namespaced_custom_object, GROUP, VERSION, spec.namespace, PLURAL, manifest
                )
                log.info("created RayCluster %s/%s", spec.namespace, spec.name)
                return handle
            except ClusterError:
                raise
            except Exception as err:
                if status_code(err) != 409:
                    raise _api_failure(what, err) from err
            existing = self._get(handle)
            if existing is None:
                continue  # deleted between our POST and GET: try again
            if not _is_ours(existing, spec):
                labels = (existing.get("metadata") or {}).get("labels") or {}
                raise ClusterError(
                    f"a RayCluster named {spec.name!r} already exists in namespace {spec.namespace!r} and was not "
                    f"created for this cluster spec (run id label {labels.get(RUN_ID)!r}, managed by "
                    f"{labels.get(MANAGED_BY)!r}); pick another name or delete it"
                )
            if not existing["metadata"].get("deletionTimestamp"):
                return handle
            self._wait_gone(handle, timeout_s=60)  # a leftover of ours on its way out: let it go
        raise ClusterError(f"{what}: the name stayed taken")

    def wait_ready(
        self, handle: ClusterHandle, timeout_s: float = 600, on_phase: PhaseCallback | None = None
    ) -> ClusterEndpoints:
        """Watch the RayCluster, its pods and events until it is ready; report each new phase.

        Raises:
            ClusterNotReadyError: on timeout (naming the last phase, conditions and warnings), at
                once when a pod cannot pull its image (naming the image), or when the RayCluster
                is deleted meanwhile.
        """
        deadline = time.monotonic() + timeout_s
        view = ReadinessView(handle.name, handle.namespace)
        inbox: queue.Queue[tuple[str, str, dict[str, Any]]] = queue.Queue()
        ns = handle.namespace
        watches = [
            ResourceWatch(
                "raycluster",
                self.custom.list_namespaced_custom_object,
                lambda kind, obj: inbox.put(("raycluster", kind, obj)),
                args=(GROUP, VERSION, ns, PLURAL),
                kwargs={"field_selector": f"metadata.name={handle.name}"},
            ),
            ResourceWatch(
                "pods",
                self.core.list_namespaced_pod,
                lambda kind, obj: inbox.put(("pods", kind, obj)),
                args=(ns,),
                kwargs={"label_selector": f"{CLUSTER_LABEL}={handle.name}"},
            ),
            ResourceWatch(
                "events",
                self.core.list_namespaced_event,
                lambda kind, obj: inbox.put(("events", kind, obj)),
                args=(ns,),
            ),
        ]
        reported: set[tuple[str, str, int]] = set()
        last = Assessment("pending", "waiting for the RayCluster", 0, 0)

        def report(assessment: Assessment) -> None:
            key = (assessment.phase, assessment.message, assessment.ready_workers)
            if on_phase is not None and key not in reported:
                reported.add(key)
                on_phase(
                    PhaseEvent(
                        assessment.phase,
                        assessment.message,
                        assessment.ready_workers,
                        assessment.desired_workers,
                        datetime.now(UTC),
                    )
                )

        synced = False  # assess only once the RayCluster itself was listed
        for watch in watches:
            watch.start()
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise ClusterNotReadyError(
                        f"RayCluster {ns}/{handle.name} not ready after {timeout_s:.0f}s; stuck in phase "
                        f"{last.phase!r}: {last.message}; {view.describe()}"
                    )
                try:
                    source, kind, obj = inbox.get(timeout=min(remaining, 0.5))
                except queue.Empty:
                    continue
                batch = [(source, kind, obj)]
                while not inbox.empty():  # apply a burst at once, report the outcome once
                    batch.append(inbox.get_nowait())
                for item in batch:
                    view.apply(*item)
                    synced = synced or (item[0], item[1]) == ("raycluster", "LIST")
                if not synced:
                    continue
                try:
                    last, endpoints = view.assess(self.resolver)
                except HeadFailedError as err:
                    failed = self._with_log_tail(ns, err)
                    report(Assessment("head-failed", str(failed).splitlines()[0], *view.workers()))
                    raise failed from None
                except ClusterNotReadyError as err:
                    report(
                        Assessment("image-pull" if "pull image" in str(err) else "failed", str(err), *view.workers())
                    )
                    raise
                report(last)
                if endpoints is not None:
                    return endpoints
        finally:
            for watch in watches:
                watch.stop(join_timeout_s=0.5)

    def head_log(
        self, namespace: str, pod: str, container: str, *, previous: bool = False, tail_lines: int = HEAD_LOG_LINES
    ) -> str:
        """The last lines of a container's log (``previous``: of the container before its last restart).

        Raises:
            ClusterError: the API refused (no such pod or container, no previous container, RBAC).
        """
        what = f"read the log of {namespace}/{pod} ({container}{', previous' if previous else ''})"
        try:
            # Raw: the client would turn the text/plain body into the repr of its bytes ("b'...'").
            response = self._call(
                what,
                self.core.read_namespaced_pod_log,
                pod,
                namespace,
                container=container,
                previous=previous,
                tail_lines=tail_lines,
                _preload_content=False,
            )
            return bytes(response.data or b"").decode("utf-8", errors="replace")
        except ClusterError:
            raise
        except Exception as err:
            raise _api_failure(what, err) from err

    def _with_log_tail(self, namespace: str, failed: HeadFailedError) -> HeadFailedError:
        """``failed`` with the failed container's last log lines: the previous container's when it was
        restarted, else the current one's (``kubectl logs [--previous]``)."""
        tail, source, problem = "", "", "empty"
        for previous in dict.fromkeys((failed.previous, False)):
            try:
                text = self.head_log(namespace, failed.pod, failed.container, previous=previous)
            except ClusterError as err:  # no previous container, or the log is not ours to read
                problem = str(err)
                continue
            if text.strip():
                tail, source = text, "previous container" if previous else "container"
                break
        shown = (
            f"last log lines of {failed.pod} ({source} {failed.container}):\n{tail.rstrip()}"
            if tail
            else (f"no log lines of {failed.pod} ({failed.container}): {problem}")
        )
        return HeadFailedError(
            f"RayCluster head failed: {failed}\n{shown}",
            pod=failed.pod,
            container=failed.container,
            reason=failed.reason,
            previous=failed.previous,
            log_tail=tail,
        )

    def endpoints(self, handle: ClusterHandle) -> ClusterEndpoints:
        """Endpoints from the RayCluster's status.

        Raises:
            ClusterError: the cluster is missing or has no head address yet.
        """
        obj = self._get(handle)
        if obj is None:
            raise ClusterError(f"RayCluster {handle.namespace}/{handle.name} not found")
        return self.resolver(obj)

    def list(self, label_selector: Mapping[str, str] | None = None) -> list[ClusterInfo]:
        """RayClusters whose labels match, in :attr:`namespace` or across all namespaces.

        ``details`` holds ``conditions``, the ``head`` status, ``state`` and up to ten recent
        ``events`` about the cluster and its pods.
        """
        selector = ",".join(f"{k}={v}" for k, v in sorted((label_selector or {}).items())) or None
        kwargs: dict[str, Any] = {"label_selector": selector} if selector else {}
        where = self.namespace or "all namespaces"
        try:
            if self.namespace:
                body = self._call(
                    f"list RayClusters in {where}",
                    self.custom.list_namespaced_custom_object,
                    GROUP,
                    VERSION,
                    self.namespace,
                    PLURAL,
                    **kwargs,
                )
            else:
                body = self._call(
                    f"list RayClusters in {where}",
                    self.custom.list_cluster_custom_object,
                    GROUP,
                    VERSION,
                    PLURAL,
                    **kwargs,
                )
        except ClusterError:
            raise
        except Exception as err:
            raise _api_failure(f"list RayClusters in {where}", err) from err
        items = [i for i in body.get("items") or [] if isinstance(i, dict) and isinstance(i.get("metadata"), dict)]
        events = self._events_by_namespace({str(i["metadata"].get("namespace", "default")) for i in items})
        return [
            self._info_or_problem(item, events.get(str(item["metadata"].get("namespace", "default")), []))
            for item in items
        ]

    def _info_or_problem(self, item: dict[str, Any], events: builtins.list[dict[str, Any]]) -> ClusterInfo:
        # Anyone who may patch RayClusters can write a field we cannot read: that cluster shows as
        # `unknown` with the problem, and every other cluster still lists.
        try:
            return self._info(item, events)
        except Exception as err:
            meta = item["metadata"]
            name, ns = str(meta.get("name", "?")), str(meta.get("namespace", "default"))
            log.warning("RayCluster %s/%s cannot be read: %s", ns, name, err)
            labels = meta.get("labels")
            return ClusterInfo(
                handle=ClusterHandle(name, ns, self.name),
                labels={str(k): str(v) for k, v in labels.items()} if isinstance(labels, dict) else {},
                status="unknown",
                created_at=parse_time(meta.get("creationTimestamp")),
                desired_workers=0,
                ready_workers=0,
                details={"problem": f"cannot be read: {err}", "uid": meta.get("uid")},
            )

    def delete(self, handle: ClusterHandle, timeout_s: float = 60) -> None:
        """Delete the RayCluster (its pods and services follow) and wait until it is gone.

        A missing cluster is not an error.

        Raises:
            ClusterError: the API kept failing, or the RayCluster was still there after ``timeout_s``.
        """
        what = f"delete RayCluster {handle.namespace}/{handle.name}"
        try:
            self._call(
                what,
                self.custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                handle.namespace,
                PLURAL,
                handle.name,
                propagation_policy=self.delete_propagation,
            )
        except ClusterError:
            raise
        except Exception as err:
            if status_code(err) != 404:
                raise _api_failure(what, err) from err
            return
        self._wait_gone(handle, timeout_s)
        log.info("deleted RayCluster %s/%s", handle.namespace, handle.name)

    # --- helpers ---------------------------------------------------------------------------

    def _wait_gone(self, handle: ClusterHandle, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            obj = self._get(handle)
            if obj is None:
                return
            if time.monotonic() >= deadline:
                finalizers = obj["metadata"].get("finalizers") or []
                raise ClusterError(
                    f"RayCluster {handle.namespace}/{handle.name} still exists {timeout_s:.0f}s after its deletion "
                    f"(finalizers: {finalizers or 'none'}); is the KubeRay operator running?"
                )
            time.sleep(self.poll_interval_s)

    def _events_by_namespace(self, namespaces: set[str]) -> dict[str, builtins.list[dict[str, Any]]]:
        out: dict[str, builtins.list[dict[str, Any]]] = {}
        for ns in sorted(namespaces):
            try:
                body = self._call(f"list events in {ns}", self.core.list_namespaced_event, ns, _preload_content=False)
                out[ns] = json.loads(body.data or b"{}").get("items") or []
            except Exception as err:  # events are a nicety: a forbidden or failing list shows none
                log.debug("could not list events in %s: %s", ns, err)
                out[ns] = []
        return out

    def _info(self, item: dict[str, Any], events: builtins.list[dict[str, Any]]) -> ClusterInfo:
        meta = item.get("metadata") or {}
        status = item.get("status") or {}
        name, ns = meta["name"], meta.get("namespace", "default")
        view = ReadinessView(name, ns, raycluster=item)
        ready, desired = view.workers()
        state = "deleting" if meta.get("deletionTimestamp") else (status.get("state") or "pending")
        endpoints: ClusterEndpoints | None = None
        if status.get("state") == "ready" or condition_true(item, "HeadPodReady"):
            try:
                endpoints = self.resolver(item)
            except ClusterError:
                endpoints = None
        mine = sorted((e for e in events if belongs_to(e, name)), key=event_sort_key)[-RECENT_EVENTS:]
        return ClusterInfo(
            handle=ClusterHandle(name, ns, self.name),
            labels=dict(meta.get("labels") or {}),
            status=state,
            created_at=parse_time(meta.get("creationTimestamp")),
            desired_workers=desired,
            ready_workers=ready,
            endpoints=endpoints,
            details={
                "conditions": status.get("conditions") or [],
                "head": status.get("head") or {},
                "state": status.get("state"),
                "reason": status.get("reason"),
                "head_pod_ready": (condition(item, "HeadPodReady") or {}).get("status"),
                "events": [event_summary(e) for e in mine],
                "uid": meta.get("uid"),
                "gpus_per_worker": _gpus_per_worker(item),
                "image": _head_image(item),
            },
        )


def _gpus_per_worker(raycluster: Mapping[str, Any]) -> int:
    """GPUs each worker holds, from the first worker group's container limits (0 without GPUs)."""
    groups = (raycluster.get("spec") or {}).get("workerGroupSpecs") or []
    if not groups:
        return 0
    containers = ((groups[0].get("template") or {}).get("spec") or {}).get("containers") or []
    for container in containers:
        for resource, amount in ((container.get("resources") or {}).get("limits") or {}).items():
            if resource.endswith("/gpu"):
                try:  # a quantity such as "1" or "1500m"; GPUs are whole devices
                    return int(parse_quantity(str(amount)))
                except (QuantityError, ValueError, ArithmeticError):
                    return 0
    return 0


def _head_image(raycluster: Mapping[str, Any]) -> str | None:
    """The image of the head's Ray container (the cluster's image), if the manifest names one.

    The Ray container is the one named as the platform renders it (``ray-head``), else the first:
    a RayCluster made by other means may put a sidecar before it.
    """
    template = ((raycluster.get("spec") or {}).get("headGroupSpec") or {}).get("template") or {}
    containers = [c for c in (template.get("spec") or {}).get("containers") or [] if isinstance(c, Mapping)]
    named = [c for c in containers if c.get("name") == HEAD_CONTAINER]
    image = (named or containers or [{}])[0].get("image")
    return str(image) if image else None


def _is_ours(existing: Mapping[str, Any], spec: ClusterSpec) -> bool:
    labels = (existing.get("metadata") or {}).get("labels") or {}
    if labels.get(MANAGED_BY) != MANAGED_BY_VALUE or labels.get(CLUSTER) != label_value(spec.name):
        return False
    return not spec.run_id or labels.get(RUN_ID) == label_value(spec.run_id)


def _api_failure(what: str, err: BaseException) -> ClusterError:
    code = status_code(err)
    hint = {
        401: "the credentials were rejected; check the kubeconfig user",
        403: "the user may not do this; check its RBAC role",
        404: "the namespace or the ray.io/v1 CRDs are missing: is KubeRay installed?",
        422: "the server rejected the manifest",
    }.get(code or 0)
    return ClusterError(
        f"Kubernetes API call failed: {what}: {api_error_message(err)}" + (f" ({hint})" if hint else "")
    )
