"""The sandbox's state: one generic, thread-safe object store for every resource type.

Objects are plain JSON dicts. Every write bumps one global ``resourceVersion`` and appends exactly
one watch event to a bounded history, so a watch can resume from any recent version and gets a
``410 Expired`` when its version was dropped, like an etcd-backed server after compaction.

Stored dicts are never mutated in place: a write replaces the dict, so watch events can share
them safely. Public methods return deep copies.
"""

from __future__ import annotations

import builtins
import copy
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from .deletion import DeletionMixin
from .errors import ApiError, already_exists, bad_request, conflict, gone, not_found
from .objects import (
    check_identity,
    continue_token,
    merge_for_update,
    meta,
    now_rfc3339,
    parse_continue,
    prepare_create,
    validate_object,
)
from .patching import APPLY, apply_patch
from .resources import Registry, ResourceType, types_from_crd
from .selectors import labels_match, parse_field_selector, parse_label_selector

DEFAULT_NAMESPACES = ("default", "kube-system", "ray")
_NS = ("", "namespaces")
_CRD = ("apiextensions.k8s.io", "customresourcedefinitions")


@dataclass(frozen=True)
class WatchEvent:
    """One change, as kept in the watch history.

    Attributes:
        rv: The resourceVersion the change produced.
        type: ``ADDED``, ``MODIFIED`` or ``DELETED``.
        group: API group of the object.
        plural: Resource of the object.
        namespace: Namespace (``""`` for cluster-scoped).
        obj: The object after the change (for ``DELETED``: its last state).
        prev: The object before the change (``None`` for ``ADDED``).
    """

    rv: int
    type: str
    group: str
    plural: str
    namespace: str
    obj: dict[str, Any]
    prev: dict[str, Any] | None


class Store(DeletionMixin):
    """All objects of one sandbox, with Kubernetes write semantics.

    Args:
        registry: Served resource types; the defaults when ``None``.
        namespaces: Namespaces that exist from the start.
        history_size: Watch events kept for resuming watches.
    """

    def __init__(
        self,
        registry: Registry | None = None,
        namespaces: Iterable[str] = DEFAULT_NAMESPACES,
        history_size: int = 1000,
    ) -> None:
        self.registry = registry or Registry.default()
        self.cond = threading.Condition(threading.RLock())
        self._objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]] = {}
        self._uids: dict[str, tuple[str, str, str, str]] = {}
        self._history: deque[WatchEvent] = deque()
        self._history_size = history_size
        self._rv = 0
        self._compacted = 0  # watches from a version below this get 410 Expired
        self._ips = 0
        self.closed = False
        ns_type = self._type("", "namespaces")
        for ns in namespaces:
            self.create(ns_type, None, {"metadata": {"name": ns}})

    # --- small helpers -----------------------------------------------------------------------

    @property
    def resource_version(self) -> int:
        """The latest resourceVersion."""
        with self.cond:
            return self._rv

    def _type(self, group: str, plural: str) -> ResourceType:
        for rt in self.registry.all():
            if rt.group == group and rt.plural == plural:
                return rt
        raise KeyError(f"{plural}.{group} is not served")

    def _bucket(self, rt: ResourceType) -> dict[tuple[str, str], dict[str, Any]]:
        return self._objects.setdefault((rt.group, rt.plural), {})

    def _raw(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None:
        return self._bucket(rt).get((namespace or "" if rt.namespaced else "", name))

    def _require(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        obj = self._raw(rt, namespace, name)
        if obj is None:
            raise not_found(rt.plural, rt.group, name)
        return obj

    def _rt_of(self, obj: dict[str, Any]) -> ResourceType | None:
        return self.registry.by_kind(obj.get("apiVersion", ""), obj.get("kind", ""))

    def _by_uid(self, uid: str) -> dict[str, Any] | None:
        where = self._uids.get(uid)
        return None if where is None else self._objects[(where[0], where[1])][(where[2], where[3])]

    def _record(self, ev_type: str, rt: ResourceType, obj: dict[str, Any], prev: dict[str, Any] | None) -> None:
        # Every resourceVersion bump goes through here: one version, one event (watch cursors rely on it).
        if len(self._history) >= self._history_size:
            self._compacted = self._history.popleft().rv
        self._history.append(
            WatchEvent(self._rv, ev_type, rt.group, rt.plural, obj["metadata"].get("namespace", ""), obj, prev)
        )
        self.cond.notify_all()

    def _commit(self, rt: ResourceType, obj: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]:
        self._rv += 1
        obj["metadata"]["resourceVersion"] = str(self._rv)
        m = obj["metadata"]
        self._bucket(rt)[(m.get("namespace", ""), m["name"])] = obj
        self._uids[m["uid"]] = (rt.group, rt.plural, m.get("namespace", ""), m["name"])
        self._record("ADDED" if prev is None else "MODIFIED", rt, obj, prev)
        if (rt.group, rt.plural) == _CRD:
            self._register_crd(obj)
        return obj

    def _drop(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]:
        """Remove ``obj`` for good, then collect what depended on it."""
        m = obj["metadata"]
        key = (m.get("namespace", ""), m["name"])
        prev = self._bucket(rt).pop(key, None)
        if prev is None:
            return obj
        self._uids.pop(m["uid"], None)
        self._rv += 1
        final = copy.deepcopy(obj)
        final["metadata"]["resourceVersion"] = str(self._rv)
        self._record("DELETED", rt, final, prev)
        self._collect_dependents(m["uid"])
        for ref in m.get("ownerReferences") or []:
            self._finish_foreground(ref.get("uid", ""))
        if rt.namespaced:
            self._finish_namespace(m.get("namespace", ""))
        if (rt.group, rt.plural) == _CRD:
            self._unregister_crd(final)
        return copy.deepcopy(final)

    # --- CRDs --------------------------------------------------------------------------------

    def _register_crd(self, crd: dict[str, Any]) -> None:
        for rt in types_from_crd(crd):
            self.registry.add(rt)
        if not (crd.get("status") or {}).get("conditions"):
            names = (crd.get("spec") or {}).get("names") or {}
            crd["status"] = {
                "acceptedNames": names,
                "storedVersions": [v["name"] for v in crd["spec"].get("versions", []) if v.get("storage")],
                "conditions": [
                    {"type": t, "status": "True", "reason": r, "lastTransitionTime": now_rfc3339()}
                    for t, r in (("NamesAccepted", "NoConflicts"), ("Established", "InitialNamesAccepted"))
                ],
            }

    def _unregister_crd(self, crd: dict[str, Any]) -> None:
        spec = crd.get("spec") or {}
        group, plural = spec.get("group", ""), (spec.get("names") or {}).get("plural", "")
        for obj in list(self._objects.get((group, plural), {}).values()):
            rt = self._rt_of(obj)
            if rt is not None:
                self._drop(rt, obj)
        self.registry.remove(group, plural)

    # --- create / read -----------------------------------------------------------------------

    def create(
        self, rt: ResourceType, namespace: str | None, body: dict[str, Any], dry_run: bool = False
    ) -> dict[str, Any]:
        """Create an object (``POST``).

        Raises:
            ApiError: 404 for a missing namespace, 403 for a terminating one, 409 AlreadyExists,
                422 Invalid, 400 BadRequest for a body that disagrees with the URL.
        """
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        check_identity(rt, body, namespace, None)
        with self.cond:
            if rt.namespaced:
                ns = self._objects.get(_NS, {}).get(("", namespace or ""))
                if ns is None:
                    raise not_found("namespaces", "", namespace or "")
                if ns["metadata"].get("deletionTimestamp"):
                    raise ApiError(
                        "Forbidden",
                        f'{rt.plural} "{meta(body).get("name", "")}" is forbidden: '
                        f"unable to create new content in namespace {namespace} because it is "
                        "being terminated",
                        details={"name": meta(body).get("name", ""), "kind": rt.plural},
                    )
            self._ips += 1 if rt.plural == "services" else 0
            obj = prepare_create(rt, body, namespace, self._ips)
            validate_object(rt, obj)
            if self._raw(rt, namespace, obj["metadata"]["name"]) is not None:
                raise already_exists(rt.plural, rt.group, obj["metadata"]["name"])
            if dry_run:
                return obj
            return copy.deepcopy(self._commit(rt, obj, None))

    def get(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]:
        """Read one object (``GET``); 404 when absent."""
        with self.cond:
            return copy.deepcopy(self._require(rt, namespace, name))

    def select(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
    ) -> list[dict[str, Any]]:
        """Objects of ``rt`` in ``namespace`` (all when ``None``) matching both selectors, sorted."""
        reqs = parse_label_selector(label_selector)
        allowed = {"metadata.name", "metadata.namespace", *rt.field_labels}
        fields = parse_field_selector(field_selector, allowed, rt.plural)
        with self.cond:
            items = [
                o
                for (ns, _), o in sorted(self._bucket(rt).items())
                if (namespace is None or ns == namespace)
                and labels_match(reqs, o["metadata"].get("labels"))
                and fields(o)
            ]
            return items

    def list(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None = None,
        field_selector: str | None = None,
        limit: int | None = None,
        continue_: str | None = None,
    ) -> dict[str, Any]:
        """List objects (``GET`` on a collection) as a ``<Kind>List``, with ``limit``/``continue``."""
        with self.cond:
            items = self.select(rt, namespace, label_selector, field_selector)
            rv = self._rv
        if continue_:
            _, last = parse_continue(continue_)
            items = [o for o in items if _key(o) > last]
        list_meta: dict[str, Any] = {"resourceVersion": str(rv)}
        if limit and limit > 0 and len(items) > limit:
            list_meta["remainingItemCount"] = len(items) - limit
            items = items[:limit]
            list_meta["continue"] = continue_token(rv, _key(items[-1]))
        out = []
        for o in items:
            o = copy.deepcopy(o)
            if not rt.custom:  # built-in list items carry no kind/apiVersion on the wire
                o.pop("kind", None)
                o.pop("apiVersion", None)
            out.append(o)
        return {"kind": f"{rt.kind}List", "apiVersion": rt.api_version, "metadata": list_meta, "items": out}

    # --- update / patch ----------------------------------------------------------------------

    def update(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        body: dict[str, Any],
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> dict[str, Any]:
        """Replace an object or its status (``PUT``).

        Raises:
            ApiError: 404 when absent; 409 Conflict when ``metadata.resourceVersion`` is stale.
        """
        if not isinstance(body, dict):
            raise bad_request("the request body must be a JSON object")
        check_identity(rt, body, namespace, name)
        with self.cond:
            old = self._require(rt, namespace, name)
            rv = meta(body).get("resourceVersion")
            if rv and rv != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)
            return self._write(rt, old, body, subresource, dry_run)

    def patch(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        content_type: str,
        body: Any,
        subresource: str | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Patch an object or its status (``PATCH``); returns ``(object, created)``.

        An apply patch (``application/apply-patch+yaml``) creates a missing object.
        """
        with self.cond:
            old = self._raw(rt, namespace, name)
            if old is None:
                if content_type.startswith(APPLY) and subresource is None and isinstance(body, dict):
                    meta(body).setdefault("name", name)
                    return self.create(rt, namespace, body, dry_run), True
                raise not_found(rt.plural, rt.group, name)
            patched = apply_patch(content_type, old, body, rt.custom)
            if meta(patched).get("resourceVersion") != old["metadata"]["resourceVersion"]:
                raise conflict(rt.plural, rt.group, name)  # the patch carried a stale resourceVersion
            return self._write(rt, old, patched, subresource, dry_run), False

    def _write(
        self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None, dry_run: bool
    ) -> dict[str, Any]:
        result = merge_for_update(rt, old, new, subresource)
        validate_object(rt, result)
        result["metadata"]["resourceVersion"] = old["metadata"]["resourceVersion"]
        if result == old or dry_run:
            # Like kube-apiserver, a write that changes nothing bumps no version and sends no event.
            return copy.deepcopy(result)
        m = result["metadata"]
        if m.get("deletionTimestamp") and not m.get("finalizers"):
            return self._drop(rt, result)  # the last finalizer is gone: the deletion completes
        return copy.deepcopy(self._commit(rt, result, old))

    # --- watch support -----------------------------------------------------------------------

    def watch_from(self, resource_version: str | None) -> int:
        """Validate a watch's starting version; returns the cursor to stream events after.

        Raises:
            ApiError: 410 Expired when the version is older than the kept history.
        """
        with self.cond:
            if resource_version in (None, "", "0"):
                return self._rv
            try:
                rv = int(resource_version)
            except ValueError:
                raise bad_request(f"invalid resource version {resource_version!r}") from None
            if rv < self._compacted:
                raise gone(f"too old resource version: {rv} ({self._compacted + 1})")
            return rv

    def wait_events(self, after: int, timeout: float) -> tuple[builtins.list[WatchEvent], int]:
        """Events after version ``after``, waiting up to ``timeout`` seconds for one.

        Returns:
            The events and the new cursor.

        Raises:
            ApiError: 410 Expired when the watcher fell behind the kept history.
        """
        with self.cond:
            if self._rv <= after and not self.closed and timeout > 0:
                self.cond.wait(timeout)
            if after < self._compacted:
                raise gone(f"too old resource version: {after} ({self._compacted + 1})")
            events = []
            for ev in reversed(self._history):
                if ev.rv <= after:
                    break
                events.append(ev)
            events.reverse()
            return events, max(after, self._rv)

    def close(self) -> None:
        """Wake every watcher so streams end (server shutdown)."""
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    # --- persistence -------------------------------------------------------------------------

    def dump(self) -> dict[str, Any]:
        """All objects and the version counter, JSON-ready."""
        with self.cond:
            objs = [o for bucket in self._objects.values() for o in bucket.values()]
            return {"resourceVersion": self._rv, "objects": copy.deepcopy(objs)}

    def load(self, state: dict[str, Any]) -> None:
        """Replace all objects with a :meth:`dump`; watch history starts empty after it."""
        with self.cond:
            self._objects.clear()
            self._uids.clear()
            self._history.clear()
            objs = state.get("objects") or []
            for obj in sorted(objs, key=lambda o: o.get("kind") != "CustomResourceDefinition"):
                if obj.get("kind") == "CustomResourceDefinition":
                    self._register_crd(obj)
                rt = self._rt_of(obj)
                if rt is None:
                    continue
                m = obj["metadata"]
                self._bucket(rt)[(m.get("namespace", ""), m["name"])] = obj
                self._uids[m["uid"]] = (rt.group, rt.plural, m.get("namespace", ""), m["name"])
            self._rv = int(state.get("resourceVersion") or 0)
            self._compacted = self._rv


def _key(obj: dict[str, Any]) -> str:
    return f"{obj['metadata'].get('namespace', '')}/{obj['metadata']['name']}"
