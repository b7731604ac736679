"""Fault injection switches for the sandbox, settable at runtime by tests, the CLI and the operator.

Two kinds of faults live here:

* **API faults** (:class:`FaultRule`), applied by the API server to matching requests before they
  reach the store: answer an HTTP error (500, 503, 429 with ``Retry-After``...), add latency, or
  drop the connection without a reply. Each rule fires ``times`` times (``None``: until cleared).
* **Operator faults** (:class:`OperatorFaults`), which the server only *keeps*: the local KubeRay
  operator reads them and misbehaves accordingly (a head that never becomes ready, an image pull
  failure, slow reconciles...). They are set globally on ``server.faults.operator`` or per object
  with annotations, see :func:`operator_faults_for`.

Out of process, the same state is read and written as JSON at ``/sandbox/v1/faults`` on the
server (``GET``, ``PUT`` to replace, ``POST`` to append one rule, ``DELETE`` to clear). That path
is never itself subject to faults or authorization.

Annotation convention (per object, overrides the global operator switches)::

    metadata:
      annotations:
        sandbox.mlplatform.discord.com/fault-head-never-ready: "true"
        sandbox.mlplatform.discord.com/fault-image-pull-error: "true"
        sandbox.mlplatform.discord.com/fault-reconcile-delay-s: "5"
        sandbox.mlplatform.discord.com/fault-head-failure: "crash-loop"
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

FAULT_ANNOTATION_PREFIX = "sandbox.mlplatform.discord.com/fault-"


class FaultRule(BaseModel):
    """One API fault: which requests it matches and what happens to them.

    Matching fields left ``None`` match anything.
    """

    model_config = ConfigDict(extra="forbid")

    verb: str | None = Field(None, description="get, list, watch, create, update, patch, delete, deletecollection.")
    resource: str | None = Field(
        None, description="Plural resource, e.g. 'rayclusters'; 'pods/status' for a subresource."
    )
    group: str | None = Field(None, description="API group; '' is core.")
    namespace: str | None = Field(None, description="Namespace of the request.")
    name: str | None = Field(None, description="Object name of the request.")
    status_code: int | None = Field(None, ge=400, le=599, description="HTTP error code to answer with.")
    retry_after_s: int | None = Field(None, ge=0, description="Retry-After header (seconds), e.g. with 429.")
    latency_s: float = Field(0.0, ge=0, description="Seconds to wait before handling (or failing) the request.")
    drop_connection: bool = Field(False, description="Close the socket without sending any reply.")
    times: int | None = Field(1, ge=1, description="How many matching requests it affects; None: until cleared.")
    message: str = Field("injected fault", description="Message of the Status body sent with status_code.")
    hits: int = Field(0, ge=0, description="How many requests it has affected so far (read-only).")

    def matches(self, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> bool:
        """Whether a request is affected by this rule."""
        return (
            (self.verb is None or self.verb == verb)
            and (self.resource is None or self.resource == resource)
            and (self.group is None or self.group == group)
            and (self.namespace is None or self.namespace == namespace)
            and (self.name is None or self.name == name)
        )


class OperatorFaults(BaseModel):
    """Switches for the local KubeRay operator; the API server only stores them."""

    model_config = ConfigDict(extra="forbid")

    head_never_ready: bool = Field(False, description="The head pod stays Running but never Ready.")
    workers_never_ready: bool = Field(False, description="Worker pods never become Ready.")
    image_pull_error: bool = Field(False, description="Pods stay Pending with ErrImagePull / ImagePullBackOff.")
    unschedulable: bool = Field(False, description="Pods stay Pending with an Unschedulable condition.")
    reconcile_delay_s: float = Field(0.0, ge=0, description="Seconds the operator waits before each reconcile.")
    job_fails: bool = Field(False, description="RayJobs end in FAILED whatever their entrypoint does.")
    head_failure: Literal["", "crash-loop", "oom-killed", "error", "readiness-probe"] = Field(
        "",
        description="The head's container fails as a kubelet reports it: 'crash-loop' (CrashLoopBackOff after "
        "repeated exits), 'oom-killed' (terminated OOMKilled, exit 137), 'error' (terminated Error, exit 1) or "
        "'readiness-probe' (running, its readiness probe failing); its log says why.",
    )


class SandboxFaults(BaseModel):
    """All fault state of one sandbox: API rules in match order, plus operator switches."""

    model_config = ConfigDict(extra="forbid")

    rules: list[FaultRule] = Field(default_factory=list, description="API fault rules, first match first.")
    operator: OperatorFaults = Field(default_factory=OperatorFaults, description="Operator switches.")


@dataclass(frozen=True)
class FaultOutcome:
    """What the server must do to one request.

    Attributes:
        latency_s: Seconds to sleep first.
        status_code: Error to answer with instead of handling the request, if any.
        retry_after_s: ``Retry-After`` header value to send with the error.
        drop_connection: Close the socket without a reply.
        message: Status message for the error.
    """

    latency_s: float = 0.0
    status_code: int | None = None
    retry_after_s: int | None = None
    drop_connection: bool = False
    message: str = ""


class FaultInjector:
    """Thread-safe, mutable fault state of a running server (``server.faults``).

    Example:
        >>> faults = FaultInjector()
        >>> _ = faults.fail("create", "rayclusters", status_code=503, times=2)
        >>> faults.decide("create", "ray.io", "rayclusters", "default", "rc").status_code
        503
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._state = SandboxFaults()

    # --- convenience setters -----------------------------------------------------------------

    def add(self, rule: FaultRule) -> FaultRule:
        """Append a rule; returns it (its ``hits`` is updated as it fires)."""
        with self._lock:
            self._state.rules.append(rule)
        return rule

    def fail(
        self,
        verb: str | None = None,
        resource: str | None = None,
        *,
        status_code: int = 500,
        times: int | None = 1,
        retry_after_s: int | None = None,
        namespace: str | None = None,
        name: str | None = None,
        message: str = "injected fault",
    ) -> FaultRule:
        """Answer ``status_code`` to the next ``times`` matching requests."""
        return self.add(
            FaultRule(
                verb=verb,
                resource=resource,
                namespace=namespace,
                name=name,
                status_code=status_code,
                times=times,
                retry_after_s=retry_after_s,
                message=message,
            )
        )

    def delay(
        self, verb: str | None = None, resource: str | None = None, *, seconds: float, times: int | None = None
    ) -> FaultRule:
        """Add ``seconds`` of latency to matching requests (by default until cleared)."""
        return self.add(FaultRule(verb=verb, resource=resource, latency_s=seconds, times=times))

    def drop(self, verb: str | None = None, resource: str | None = None, *, times: int | None = 1) -> FaultRule:
        """Close the connection without a reply for the next ``times`` matching requests."""
        return self.add(FaultRule(verb=verb, resource=resource, drop_connection=True, times=times))

    def clear(self) -> None:
        """Remove every API rule and reset the operator switches."""
        with self._lock:
            self._state = SandboxFaults()

    @property
    def operator(self) -> OperatorFaults:
        """Global operator switches (mutate fields in place, or assign a new object)."""
        return self._state.operator

    @operator.setter
    def operator(self, value: OperatorFaults) -> None:
        with self._lock:
            self._state.operator = value

    def snapshot(self) -> SandboxFaults:
        """A deep copy of the current state."""
        with self._lock:
            return self._state.model_copy(deep=True)

    def replace(self, state: SandboxFaults) -> None:
        """Replace the whole state (the admin endpoint's ``PUT``)."""
        with self._lock:
            self._state = state.model_copy(deep=True)

    # --- used by the server ------------------------------------------------------------------

    def decide(self, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> FaultOutcome:
        """Consume matching rules and say what to do with one request.

        Latency adds up over every matching rule; the first matching error or drop wins.
        """
        with self._lock:
            latency, chosen = 0.0, None
            for rule in self._state.rules:
                if not rule.matches(verb, group, resource, namespace, name):
                    continue
                fires = rule.latency_s > 0 or (chosen is None and (rule.status_code or rule.drop_connection))
                if not fires:
                    continue
                latency += rule.latency_s
                if chosen is None and (rule.status_code or rule.drop_connection):
                    chosen = rule
                rule.hits += 1
                if rule.times is not None:
                    rule.times -= 1
            # Exhausted rules are removed: 'times' counts down to zero.
            self._state.rules = [r for r in self._state.rules if r.times is None or r.times > 0]
        if chosen is None:
            return FaultOutcome(latency_s=latency)
        return FaultOutcome(
            latency_s=latency,
            status_code=chosen.status_code,
            retry_after_s=chosen.retry_after_s,
            drop_connection=chosen.drop_connection,
            message=chosen.message,
        )


def operator_faults_for(obj: Mapping[str, Any], global_faults: OperatorFaults | None = None) -> OperatorFaults:
    """The operator switches for one object: global switches overridden by its annotations.

    Args:
        obj: A RayCluster / RayJob (or any object) as a dict.
        global_faults: The server-wide switches (``server.faults.operator``).

    Returns:
        The effective :class:`OperatorFaults`.
    """
    base = (global_faults or OperatorFaults()).model_dump()
    annotations = (obj.get("metadata") or {}).get("annotations") or {}
    for key, raw in annotations.items():
        if not key.startswith(FAULT_ANNOTATION_PREFIX):
            continue
        field = key[len(FAULT_ANNOTATION_PREFIX) :].replace("-", "_")
        if field in base:
            base[field] = raw.strip().lower() in ("1", "true", "yes") if isinstance(base[field], bool) else raw
    return OperatorFaults.model_validate(base)
