"""Reading a RayCluster's way to ready from its status, its pods and their events. Pure, no I/O.

:class:`ReadinessView` holds the latest RayCluster, pods and events seen by the watches and
answers one question, :meth:`ReadinessView.assess`: which phase the cluster is in and why, or
that it can never become ready (an image that cannot be pulled). Endpoints are read from the
status the way KubeRay writes it: ``status.head.serviceIP`` / ``podIP`` / ``serviceName`` and the
``status.endpoints`` port map (names vary between KubeRay versions and manifests, so ports are
also found by their well-known numbers).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from discord_ml_platform.backends.base import ClusterEndpoints, ClusterError, ClusterNotReadyError, HeadFailedError

CLUSTER_LABEL = "ray.io/cluster"
NODE_TYPE_LABEL = "ray.io/node-type"
IMAGE_PULL_REASONS = ("ErrImagePull", "ImagePullBackOff", "InvalidImageName", "ErrImageNeverPull")
# A terminated Ray container with one of these reasons will not become ready by waiting.
TERMINATED_FAILURES = ("OOMKilled", "Error", "ContainerCannotRun", "StartError")
# Kubernetes' default failureThreshold, for a readiness probe that sets none. KubeRay v1 injects a
# readiness probe into the Ray container with its own threshold (10), which the pod spec carries.
DEFAULT_READINESS_FAILURE_THRESHOLD = 3
# Port names KubeRay and common manifests use, first match wins; then the well-known numbers.
DASHBOARD_PORTS = (("dashboard",), "8265")
GCS_PORTS = (("gcs-server", "gcs", "redis"), "6379")
CLIENT_PORTS = (("client", "ray-client"), "10001")
_IMAGE_IN_MESSAGE = re.compile(r'image "([^"]+)"')

EndpointResolver = Callable[[Mapping[str, Any]], ClusterEndpoints]


def condition(obj: Mapping[str, Any], kind: str) -> Mapping[str, Any] | None:
    """The status condition of type ``kind``, if present."""
    for cond in (obj.get("status") or {}).get("conditions") or []:
        if cond.get("type") == kind:
            return cond
    return None


def condition_true(obj: Mapping[str, Any], kind: str) -> bool:
    """Whether condition ``kind`` is ``True``."""
    cond = condition(obj, kind)
    return bool(cond and str(cond.get("status")) == "True")


def head_host(raycluster: Mapping[str, Any]) -> str | None:
    """Where the head is reachable: service IP, pod IP, or the service's cluster DNS name."""
    status = raycluster.get("status") or {}
    head = status.get("head") or {}
    for key in ("serviceIP", "podIP"):
        if head.get(key):
            return str(head[key])
    if head.get("serviceName"):
        namespace = (raycluster.get("metadata") or {}).get("namespace", "default")
        return f"{head['serviceName']}.{namespace}.svc"
    return None


def _port(ports: Mapping[str, Any], wanted: tuple[tuple[str, ...], str]) -> str:
    names, number = wanted
    for name in names:
        if ports.get(name):
            return str(ports[name])
    return number


def default_endpoint_resolver(raycluster: Mapping[str, Any], host_override: str | None = None) -> ClusterEndpoints:
    """Endpoints from the RayCluster status (``host_override`` replaces the head address).

    Raises:
        ClusterError: when the status names no head address yet.
    """
    host = host_override or head_host(raycluster)
    name = (raycluster.get("metadata") or {}).get("name", "?")
    if not host:
        raise ClusterError(f"RayCluster {name!r} has no head address in its status yet")
    ports = (raycluster.get("status") or {}).get("endpoints") or {}
    return ClusterEndpoints(
        dashboard_url=f"http://{host}:{_port(ports, DASHBOARD_PORTS)}",
        gcs_address=f"{host}:{_port(ports, GCS_PORTS)}",
        client_address=f"ray://{host}:{_port(ports, CLIENT_PORTS)}",
    )


def parse_time(value: str | None) -> datetime:
    """An RFC 3339 time from the API, always with a zone (``None`` or garbage: now)."""
    if value:
        try:
            parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            pass
        else:
            return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)  # comparable with aware times
    return datetime.now(UTC)


def event_time(event: Mapping[str, Any]) -> str:
    """The most recent time an event carries (for sorting)."""
    return str(
        event.get("lastTimestamp")
        or event.get("eventTime")
        or event.get("firstTimestamp")
        or (event.get("metadata") or {}).get("creationTimestamp")
        or ""
    )


def event_sort_key(event: Mapping[str, Any]) -> tuple[str, int]:
    """Events in the order they happened: time (seconds), then resourceVersion within a second."""
    version = str((event.get("metadata") or {}).get("resourceVersion") or "0")
    return event_time(event), int(version) if version.isdigit() else 0


def event_summary(event: Mapping[str, Any]) -> dict[str, Any]:
    """The fields of an event that ``dmp cluster get`` shows."""
    involved = event.get("involvedObject") or {}
    return {
        "type": event.get("type"),
        "reason": event.get("reason"),
        "object": f"{involved.get('kind', '')}/{involved.get('name', '')}",
        "message": event.get("message"),
        "count": event.get("count") or 1,
        "last_seen": event_time(event),
    }


def belongs_to(event: Mapping[str, Any], cluster: str) -> bool:
    """Whether an event is about the cluster or one of its pods/services (by name)."""
    name = str((event.get("involvedObject") or {}).get("name") or "")
    return name == cluster or name.startswith(f"{cluster}-")


@dataclass(frozen=True)
class Assessment:
    """Where a cluster stands.

    Attributes:
        phase: ``pending``, ``image-pull``, ``head-ready``, ``workers`` or ``ready``.
        message: Why, for people.
        ready_workers: Workers ready now.
        desired_workers: Workers asked for.
        ready: Head and every worker ready, endpoints known.
    """

    phase: str
    message: str
    ready_workers: int
    desired_workers: int
    ready: bool = False


@dataclass
class ReadinessView:
    """What the watches have seen of one RayCluster, and what it means."""

    name: str
    namespace: str
    raycluster: dict[str, Any] | None = None
    deleted: bool = False
    pods: dict[str, dict[str, Any]] = field(default_factory=dict)
    events: dict[str, dict[str, Any]] = field(default_factory=dict)

    # --- feeding ---------------------------------------------------------------------------

    def apply(self, source: str, kind: str, obj: dict[str, Any]) -> None:
        """Apply one watch delivery (``source`` is ``raycluster``, ``pods`` or ``events``)."""
        if source == "raycluster":
            if kind == "LIST":
                items = [o for o in obj["items"] if (o.get("metadata") or {}).get("name") == self.name]
                self.raycluster = items[0] if items else None
                self.deleted = self.deleted or (not items and self.raycluster is not None)
            elif kind == "DELETED":
                self.raycluster, self.deleted = None, True
            else:
                self.raycluster = obj
            return
        store = self.pods if source == "pods" else self.events
        if kind == "LIST":
            store.clear()
            for item in obj["items"]:
                self._put(store, source, item)
        elif kind == "DELETED":
            store.pop(str((obj.get("metadata") or {}).get("uid") or (obj.get("metadata") or {}).get("name")), None)
        else:
            self._put(store, source, obj)

    def _put(self, store: dict[str, dict[str, Any]], source: str, obj: dict[str, Any]) -> None:
        if source == "events" and not belongs_to(obj, self.name):
            return
        meta = obj.get("metadata") or {}
        store[str(meta.get("uid") or meta.get("name"))] = obj

    # --- reading ---------------------------------------------------------------------------

    def _uids(self) -> set[str]:
        uids = {str((p.get("metadata") or {}).get("uid")) for p in self.pods.values()}
        if self.raycluster:
            uids.add(str(self.raycluster["metadata"].get("uid")))
        return uids

    def relevant_events(self) -> list[dict[str, Any]]:
        """Events about this incarnation of the cluster (older ones of a same-named cluster are not)."""
        uids = self._uids()
        current = [e for e in self.events.values() if str((e.get("involvedObject") or {}).get("uid")) in uids]
        return sorted(current, key=event_sort_key)

    def workers(self) -> tuple[int, int]:
        """``(ready, desired)`` workers from the status."""
        status = (self.raycluster or {}).get("status") or {}
        desired = status.get("desiredWorkerReplicas")
        if desired is None:
            spec = (self.raycluster or {}).get("spec") or {}
            desired = sum(int(g.get("replicas") or 0) for g in spec.get("workerGroupSpecs") or [])
        return int(status.get("readyWorkerReplicas") or 0), int(desired or 0)

    def image_pull_failure(self) -> str | None:
        """A message naming the image when a pod cannot pull it, else ``None``."""
        for pod in self.pods.values():
            pod_name = pod["metadata"].get("name")
            statuses = (pod.get("status") or {}).get("containerStatuses") or []
            statuses += (pod.get("status") or {}).get("initContainerStatuses") or []
            for cs in statuses:
                waiting = (cs.get("state") or {}).get("waiting") or {}
                if waiting.get("reason") in IMAGE_PULL_REASONS:
                    image = cs.get("image") or _container_image(pod, cs.get("name"))
                    detail = waiting.get("message") or waiting["reason"]
                    return (
                        f"pod {pod_name} cannot pull image {image!r} ({waiting['reason']}: {detail}); "
                        f"check the image name and tag and the registry's pull credentials"
                    )
        for event in self.relevant_events():
            message = str(event.get("message") or "")
            if event.get("type") == "Warning" and (
                "pull image" in message or "pulling image" in message or event.get("reason") in IMAGE_PULL_REASONS
            ):
                match = _IMAGE_IN_MESSAGE.search(message)
                image = match.group(1) if match else "?"
                involved = (event.get("involvedObject") or {}).get("name")
                return (
                    f"pod {involved} cannot pull image {image!r} ({event.get('reason')}: {message}); "
                    f"check the image name and tag and the registry's pull credentials"
                )
        return None

    def head_failure(self) -> HeadFailedError | None:
        """The head's Ray container failed (crash loop, OOM kill, error exit, readiness probe), or ``None``."""
        for pod in self._head_pods():
            name = (pod.get("metadata") or {}).get("name", "")
            for cs in (pod.get("status") or {}).get("containerStatuses") or []:
                state, last = cs.get("state") or {}, cs.get("lastState") or {}
                waiting, terminated = state.get("waiting") or {}, state.get("terminated") or {}
                if waiting.get("reason") == "CrashLoopBackOff":
                    exit_ = last.get("terminated") or {}
                    return HeadFailedError(
                        f"head pod {name}: container {cs.get('name')} is in CrashLoopBackOff after "
                        f"{cs.get('restartCount', 0)} restart(s); last exit {exit_.get('reason', '?')} "
                        f"(exit code {exit_.get('exitCode', '?')})",
                        pod=name,
                        container=str(cs.get("name")),
                        reason="CrashLoopBackOff",
                        previous=True,
                    )
                if terminated.get("reason") in TERMINATED_FAILURES:
                    return HeadFailedError(
                        f"head pod {name}: container {cs.get('name')} terminated: {terminated['reason']} "
                        f"(exit code {terminated.get('exitCode', '?')})"
                        + (
                            " - the container ran out of memory: give the head more (head_memory)"
                            if terminated["reason"] == "OOMKilled"
                            else ""
                        ),
                        pod=name,
                        container=str(cs.get("name")),
                        reason=str(terminated["reason"]),
                        previous=False,
                    )
            if _pod_ready(pod):
                # Ready now: whatever the probe failed before (a slow start) is over. The kubelet counts
                # failures in a row, while an event's count adds up every failure the pod ever had.
                continue
            unhealthy = [
                e
                for e in self.relevant_events()
                if e.get("reason") == "Unhealthy"
                and (e.get("involvedObject") or {}).get("name") == name
                and "Readiness probe failed" in str(e.get("message") or "")
            ]
            failures = max((int(e.get("count") or 1) for e in unhealthy), default=0)
            if failures >= readiness_failure_threshold(pod):
                containers = (pod.get("spec") or {}).get("containers") or [{}]
                return HeadFailedError(
                    f"head pod {name}: readiness probe failed {failures} times: {unhealthy[-1].get('message')}",
                    pod=name,
                    container=str(containers[0].get("name")),
                    reason="Unhealthy",
                    previous=False,
                )
        return None

    def pending_reasons(self) -> list[str]:
        """Why pods are not running yet: unschedulable pods, quota and other warnings."""
        reasons: list[str] = []
        for pod in sorted(self.pods.values(), key=lambda p: p["metadata"].get("name", "")):
            cond = next(
                (c for c in (pod.get("status") or {}).get("conditions") or [] if c.get("type") == "PodScheduled"), None
            )
            if cond and str(cond.get("status")) == "False":
                reasons.append(
                    f"pod {pod['metadata']['name']} {cond.get('reason') or 'unscheduled'}: "
                    f"{cond.get('message') or ''}".rstrip(": ")
                )
        for event in self.relevant_events():
            message = str(event.get("message") or "")
            if event.get("type") != "Warning":
                continue
            if "exceeded quota" in message or event.get("reason") in (
                "FailedCreate",
                "FailedToCreateHeadPod",
                "FailedToCreateWorkerPod",
            ):
                reasons.append(f"quota/creation: {message}")
            elif event.get("reason") == "FailedScheduling" and not any(message in r for r in reasons):
                reasons.append(f"{(event.get('involvedObject') or {}).get('name')} FailedScheduling: {message}")
        return list(dict.fromkeys(reasons))  # each reason once, in order

    def pulling(self) -> str | None:
        """``pulling image X`` while a pod's image is being pulled (from ``Pulling`` events)."""
        pulling = [e for e in self.relevant_events() if e.get("reason") == "Pulling"]
        pulled = {
            (e.get("involvedObject") or {}).get("uid")
            for e in self.relevant_events()
            if e.get("reason") in ("Pulled", "Started")
        }
        active = [e for e in pulling if (e.get("involvedObject") or {}).get("uid") not in pulled]
        return str(active[-1].get("message")) if active else None

    def assess(self, resolver: EndpointResolver) -> tuple[Assessment, ClusterEndpoints | None]:
        """The cluster's phase now, and its endpoints once ready.

        Raises:
            ClusterNotReadyError: when it can never become ready (image pull failure, deleted).
        """
        if self.deleted:
            raise ClusterNotReadyError(f"RayCluster {self.namespace}/{self.name} was deleted while waiting for it")
        ready, desired = self.workers()
        failure = self.image_pull_failure()
        if failure:
            raise ClusterNotReadyError(f"RayCluster {self.namespace}/{self.name} cannot start: {failure}")
        head_failed = self.head_failure()
        if head_failed is not None:
            raise head_failed
        rc = self.raycluster
        if rc is None:
            return Assessment("pending", "waiting for the RayCluster to appear", ready, desired), None
        status = rc.get("status") or {}
        head_ready = condition_true(rc, "HeadPodReady") or (
            not status.get("conditions") and any(_pod_ready(p) for p in self._head_pods())
        )
        provisioned = condition_true(rc, "RayClusterProvisioned") or status.get("state") == "ready"
        if head_ready and provisioned and ready >= desired:
            try:
                endpoints = resolver(rc)
            except ClusterError:
                endpoints = None
            if endpoints is not None:
                return Assessment(
                    "ready", f"cluster ready, dashboard at {endpoints.dashboard_url}", ready, desired, ready=True
                ), endpoints
        if head_ready:
            if desired:
                return Assessment("workers", f"workers {ready}/{desired}", ready, desired), None
            return Assessment("head-ready", "head pod ready", ready, desired), None
        reasons = self.pending_reasons()
        if reasons:
            return Assessment("pending", "; ".join(reasons), ready, desired), None
        pulling = self.pulling()
        if pulling:
            return Assessment("image-pull", pulling, ready, desired), None
        if not self.pods:
            return Assessment(
                "pending", "waiting for the KubeRay operator to create the head pod", ready, desired
            ), None
        phases = sorted({str((p.get("status") or {}).get("phase") or "Pending") for p in self.pods.values()})
        return Assessment(
            "pending", f"{len(self.pods)} pod(s) {'/'.join(phases)}, head not ready yet", ready, desired
        ), None

    def _head_pods(self) -> list[dict[str, Any]]:
        return [
            p
            for p in self.pods.values()
            if ((p.get("metadata") or {}).get("labels") or {}).get(NODE_TYPE_LABEL) == "head"
        ]

    def describe(self) -> str:
        """Conditions and recent warnings, for a timeout message."""
        parts = []
        for cond in ((self.raycluster or {}).get("status") or {}).get("conditions") or []:
            parts.append(f"{cond.get('type')}={cond.get('status')} ({cond.get('reason') or ''})")
        warnings = [
            f"{e.get('reason')}: {e.get('message')}" for e in self.relevant_events() if e.get("type") == "Warning"
        ][-3:]
        text = "conditions: " + (", ".join(parts) or "none")
        if warnings:
            text += "; recent warnings: " + " | ".join(warnings)
        return text


def readiness_failure_threshold(pod: Mapping[str, Any]) -> int:
    """How many failed readiness probes in a row make the kubelet mark the pod's Ray container unready.

    The Ray container is the first one (KubeRay's convention). Its ``readinessProbe.failureThreshold``
    decides; a probe without one has Kubernetes' default, and so does a pod without a probe (it
    then has no readiness failures to count either).
    """
    containers = (pod.get("spec") or {}).get("containers") or [{}]
    probe = containers[0].get("readinessProbe") or {}
    threshold = probe.get("failureThreshold")
    if isinstance(threshold, int) and not isinstance(threshold, bool) and threshold > 0:
        return threshold
    return DEFAULT_READINESS_FAILURE_THRESHOLD


def _pod_ready(pod: Mapping[str, Any]) -> bool:
    return any(
        c.get("type") == "Ready" and str(c.get("status")) == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def _container_image(pod: Mapping[str, Any], container: str | None) -> str:
    for c in (pod.get("spec") or {}).get("containers") or []:
        if c.get("name") == container:
            return str(c.get("image"))
    return "?"
