"""Deletion semantics: finalizers, propagation policies, garbage collection, namespace teardown.

What kube-apiserver plus the garbage collector and namespace controller do, done synchronously so
tests are deterministic:

* an object with ``metadata.finalizers`` only gets ``deletionTimestamp``; it goes away when an
  update removes its last finalizer (no new finalizers may be added meanwhile);
* ``propagationPolicy`` ``Background`` (default) deletes dependents (objects whose
  ``ownerReferences`` name the owner's uid) after the owner; ``Foreground`` marks the owner with
  the ``foregroundDeletion`` finalizer, deletes dependents first, then the owner; ``Orphan``
  removes the owner's reference from its dependents and leaves them;
* a dependent that still has another live owner only loses the dangling reference;
* deleting a namespace marks it ``Terminating``, deletes its content, and removes it once empty.
"""

from __future__ import annotations

import copy
import threading
from typing import TYPE_CHECKING, Any

from .errors import bad_request, conflict
from .objects import now_rfc3339

if TYPE_CHECKING:
    from .resources import ResourceType

_NS = ("", "namespaces")


class DeletionMixin:
    """The deletion half of :class:`~discord_ml_platform.sandbox.store.Store`."""

    if TYPE_CHECKING:  # provided by Store
        cond: threading.Condition
        _objects: dict[tuple[str, str], dict[tuple[str, str], dict[str, Any]]]
        _uids: dict[str, tuple[str, str, str, str]]
        _rv: int

        def _require(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any]: ...
        def _raw(self, rt: ResourceType, namespace: str | None, name: str) -> dict[str, Any] | None: ...
        def _rt_of(self, obj: dict[str, Any]) -> ResourceType | None: ...
        def _by_uid(self, uid: str) -> dict[str, Any] | None: ...
        def _type(self, group: str, plural: str) -> ResourceType: ...
        def _commit(self, rt: ResourceType, obj: dict[str, Any], prev: dict[str, Any] | None) -> dict[str, Any]: ...
        def _drop(self, rt: ResourceType, obj: dict[str, Any]) -> dict[str, Any]: ...
        def _write(
            self, rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None, dry_run: bool
        ) -> dict[str, Any]: ...
        def select(
            self,
            rt: ResourceType,
            namespace: str | None,
            label_selector: str | None = None,
            field_selector: str | None = None,
        ) -> list[dict[str, Any]]: ...

    def delete(
        self,
        rt: ResourceType,
        namespace: str | None,
        name: str,
        options: dict[str, Any] | None = None,
        dry_run: bool = False,
    ) -> tuple[dict[str, Any], bool]:
        """Delete an object (``DELETE``); returns ``(object, gone_now)``.

        ``gone_now`` is ``False`` when finalizers (or foreground deletion) keep the object, now
        carrying ``metadata.deletionTimestamp``.

        Raises:
            ApiError: 404 when absent; 409 Conflict when a precondition fails.
        """
        options = options or {}
        with self.cond:
            obj = self._require(rt, namespace, name)
            pre = options.get("preconditions") or {}
            if pre.get("uid") and pre["uid"] != obj["metadata"]["uid"]:
                raise conflict(
                    rt.plural,
                    rt.group,
                    name,
                    f"Precondition failed: UID in precondition: "
                    f"{pre['uid']}, UID in object meta: {obj['metadata']['uid']}",
                )
            if pre.get("resourceVersion") and pre["resourceVersion"] != obj["metadata"]["resourceVersion"]:
                raise conflict(
                    rt.plural,
                    rt.group,
                    name,
                    "Precondition failed: resourceVersion in precondition: "
                    f"{pre['resourceVersion']}, resourceVersion in object meta: "
                    f"{obj['metadata']['resourceVersion']}",
                )
            policy = options.get("propagationPolicy")
            if policy not in (None, "Orphan", "Background", "Foreground"):
                raise bad_request(f"unsupported propagationPolicy {policy!r}")
            if policy is None:
                policy = "Orphan" if options.get("orphanDependents") else "Background"
            if dry_run:
                return copy.deepcopy(obj), True
            if (rt.group, rt.plural) == _NS:
                return self._delete_namespace(rt, obj)
            result, done = self._delete(rt, obj, policy)
            return copy.deepcopy(result), done

    def _mark_deleting(
        self, rt: ResourceType, obj: dict[str, Any], extra_finalizer: str | None = None
    ) -> dict[str, Any]:
        new = copy.deepcopy(obj)
        m = new["metadata"]
        m.setdefault("deletionTimestamp", now_rfc3339())
        m.setdefault("deletionGracePeriodSeconds", 0)
        if extra_finalizer and extra_finalizer not in m.setdefault("finalizers", []):
            m["finalizers"].append(extra_finalizer)
        if new == obj:
            return obj
        m["generation"] = int(m.get("generation") or 1) + 1
        return self._commit(rt, new, obj)

    def _delete(self, rt: ResourceType, obj: dict[str, Any], policy: str) -> tuple[dict[str, Any], bool]:
        uid = obj["metadata"]["uid"]
        if obj["metadata"].get("deletionTimestamp"):
            return obj, False  # already being deleted: nothing more to do
        if policy == "Orphan":
            self._orphan_dependents(uid)
        dependents = self._dependents(uid)
        if policy == "Foreground" and dependents:
            obj = self._mark_deleting(rt, obj, "foregroundDeletion")
            for dep_rt, dep in dependents:
                current = self._by_uid(dep["metadata"]["uid"])  # recursion may have changed it
                if current is not None:
                    self._delete(dep_rt, current, "Foreground")
            self._finish_foreground(uid)
            return (obj, False) if self._uids.get(uid) else (obj, True)
        if obj["metadata"].get("finalizers"):
            return self._mark_deleting(rt, obj), False
        return self._drop(rt, obj), True

    def _dependents(self, owner_uid: str) -> list[tuple[ResourceType, dict[str, Any]]]:
        out = []
        for bucket in self._objects.values():
            for obj in bucket.values():
                if any(r.get("uid") == owner_uid for r in obj["metadata"].get("ownerReferences") or []):
                    rt = self._rt_of(obj)
                    if rt is not None:
                        out.append((rt, obj))
        return out

    def _orphan_dependents(self, owner_uid: str) -> None:
        for rt, dep in self._dependents(owner_uid):
            new = copy.deepcopy(dep)
            refs = [r for r in new["metadata"]["ownerReferences"] if r.get("uid") != owner_uid]
            if refs:
                new["metadata"]["ownerReferences"] = refs
            else:
                new["metadata"].pop("ownerReferences")
            self._commit(rt, new, dep)

    def _collect_dependents(self, owner_uid: str) -> None:
        """The garbage collector's part: a dependent whose owners are all gone is deleted."""
        for rt, dep in self._dependents(owner_uid):
            live = [
                r
                for r in dep["metadata"]["ownerReferences"]
                if r.get("uid") != owner_uid and r.get("uid") in self._uids
            ]
            if live:
                new = copy.deepcopy(dep)
                new["metadata"]["ownerReferences"] = live
                self._commit(rt, new, dep)
            else:
                self._delete(rt, dep, "Background")

    def _finish_foreground(self, owner_uid: str) -> None:
        obj = self._by_uid(owner_uid)
        if obj is None:
            return
        fins = obj["metadata"].get("finalizers") or []
        if "foregroundDeletion" not in fins or self._dependents(owner_uid):
            return
        rt = self._rt_of(obj)
        if rt is None:
            return
        new = copy.deepcopy(obj)
        new["metadata"]["finalizers"] = [f for f in fins if f != "foregroundDeletion"]
        self._write(rt, obj, new, None, False)

    def _delete_namespace(self, rt: ResourceType, ns: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = ns["metadata"]["name"]
        if not ns["metadata"].get("deletionTimestamp"):
            new = copy.deepcopy(ns)
            new["metadata"]["deletionTimestamp"] = now_rfc3339()
            new["metadata"]["deletionGracePeriodSeconds"] = 0
            new["status"] = {"phase": "Terminating"}
            ns = self._commit(rt, new, ns)
            # The namespace controller's job: delete everything inside, then the namespace.
            for bucket in list(self._objects.values()):
                for (obj_ns, _), obj in list(bucket.items()):
                    obj_rt = self._rt_of(obj)
                    if obj_ns == name and obj_rt is not None and obj_rt.namespaced:
                        self._delete(obj_rt, obj, "Background")
        result = copy.deepcopy(ns)
        gone_now = self._finish_namespace(name)
        return result, gone_now

    def _finish_namespace(self, name: str) -> bool:
        ns = self._objects.get(_NS, {}).get(("", name))
        if ns is None:
            return True
        if not ns["metadata"].get("deletionTimestamp") or ns["metadata"].get("finalizers"):
            return False
        if any(ns_key == name for (g, p), bucket in self._objects.items() if (g, p) != _NS for ns_key, _ in bucket):
            return False
        self._drop(self._type(*_NS), ns)
        return True

    def delete_collection(
        self,
        rt: ResourceType,
        namespace: str | None,
        label_selector: str | None,
        field_selector: str | None,
        options: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Delete every matching object (``DELETE`` on a collection); returns the list deleted."""
        with self.cond:
            items = self.select(rt, namespace, label_selector, field_selector)
            for obj in items:
                if self._raw(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"]) is not None:
                    self.delete(rt, obj["metadata"].get("namespace"), obj["metadata"]["name"], options)
            return {
                "kind": f"{rt.kind}List",
                "apiVersion": rt.api_version,
                "metadata": {"resourceVersion": str(self._rv)},
                "items": copy.deepcopy(items),
            }
