"""The resource types the sandbox serves, and the discovery documents built from them.

One generic store serves every type; a :class:`ResourceType` only says how a type is addressed
(group, version, plural), whether it is namespaced, and whether ``status`` is a separate
subresource. Creating a ``CustomResourceDefinition`` registers a new type at runtime, as on a real
cluster, so tests can install CRDs the same way against both.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import Any

ALL_VERBS = ["create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"]


@dataclass(frozen=True)
class ResourceType:
    """How one resource type is addressed and behaves.

    Attributes:
        group: API group, ``""`` for core.
        version: API version, e.g. ``v1``.
        plural: URL name, e.g. ``rayclusters``.
        kind: Object kind, e.g. ``RayCluster``.
        namespaced: Whether objects live in a namespace.
        has_status: Whether ``status`` is a subresource (main-resource writes ignore it).
        short_names: ``kubectl`` short names, for discovery.
        singular: Singular name, for discovery.
        custom: Whether the type comes from a CRD (changes list item shape and patch types).
        field_labels: Extra field-selector labels besides ``metadata.name``/``metadata.namespace``.
    """

    group: str
    version: str
    plural: str
    kind: str
    namespaced: bool = True
    has_status: bool = False
    short_names: tuple[str, ...] = ()
    singular: str = ""
    custom: bool = False
    field_labels: tuple[str, ...] = ()

    @property
    def api_version(self) -> str:
        """``v1`` for core, ``group/version`` otherwise."""
        return f"{self.group}/{self.version}" if self.group else self.version

    @property
    def group_version(self) -> tuple[str, str]:
        """``(group, version)`` key."""
        return (self.group, self.version)


_POD_FIELDS = (
    "status.phase",
    "spec.nodeName",
    "spec.restartPolicy",
    "spec.schedulerName",
    "spec.serviceAccountName",
    "status.podIP",
    "status.nominatedNodeName",
    "spec.hostNetwork",
)
_EVENT_FIELDS = (
    "involvedObject.kind",
    "involvedObject.namespace",
    "involvedObject.name",
    "involvedObject.uid",
    "involvedObject.apiVersion",
    "involvedObject.resourceVersion",
    "involvedObject.fieldPath",
    "reason",
    "reportingComponent",
    "source",
    "type",
)


def default_types() -> list[ResourceType]:
    """The built-in types: core/v1, apps/v1, rbac, coordination, apiextensions and ``ray.io/v1``."""
    core = [
        ResourceType(
            "",
            "v1",
            "namespaces",
            "Namespace",
            namespaced=False,
            has_status=True,
            short_names=("ns",),
            field_labels=("status.phase",),
        ),
        ResourceType("", "v1", "pods", "Pod", has_status=True, short_names=("po",), field_labels=_POD_FIELDS),
        ResourceType("", "v1", "services", "Service", has_status=True, short_names=("svc",)),
        ResourceType("", "v1", "events", "Event", short_names=("ev",), field_labels=_EVENT_FIELDS),
        ResourceType("", "v1", "configmaps", "ConfigMap", short_names=("cm",)),
        ResourceType("", "v1", "secrets", "Secret", field_labels=("type",)),
        ResourceType("", "v1", "serviceaccounts", "ServiceAccount", short_names=("sa",)),
        ResourceType("", "v1", "endpoints", "Endpoints", short_names=("ep",)),
        ResourceType(
            "", "v1", "persistentvolumeclaims", "PersistentVolumeClaim", has_status=True, short_names=("pvc",)
        ),
        ResourceType(
            "",
            "v1",
            "nodes",
            "Node",
            namespaced=False,
            has_status=True,
            short_names=("no",),
            field_labels=("spec.unschedulable",),
        ),
    ]
    apps = [
        ResourceType("apps", "v1", "deployments", "Deployment", has_status=True, short_names=("deploy",)),
        ResourceType("apps", "v1", "replicasets", "ReplicaSet", has_status=True, short_names=("rs",)),
        ResourceType("apps", "v1", "statefulsets", "StatefulSet", has_status=True, short_names=("sts",)),
    ]
    rbac = [
        ResourceType("rbac.authorization.k8s.io", "v1", "roles", "Role"),
        ResourceType("rbac.authorization.k8s.io", "v1", "rolebindings", "RoleBinding"),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterroles", "ClusterRole", namespaced=False),
        ResourceType("rbac.authorization.k8s.io", "v1", "clusterrolebindings", "ClusterRoleBinding", namespaced=False),
    ]
    other = [
        ResourceType("coordination.k8s.io", "v1", "leases", "Lease"),
        ResourceType(
            "apiextensions.k8s.io",
            "v1",
            "customresourcedefinitions",
            "CustomResourceDefinition",
            namespaced=False,
            has_status=True,
            short_names=("crd", "crds"),
        ),
    ]
    ray = [
        ResourceType("ray.io", "v1", "rayclusters", "RayCluster", has_status=True, custom=True),
        ResourceType("ray.io", "v1", "rayjobs", "RayJob", has_status=True, custom=True),
        ResourceType("ray.io", "v1", "rayservices", "RayService", has_status=True, custom=True),
    ]
    return core + apps + rbac + other + ray


def types_from_crd(crd: dict[str, Any]) -> list[ResourceType]:
    """The resource types a ``CustomResourceDefinition`` object declares (one per served version).

    Args:
        crd: An ``apiextensions.k8s.io/v1`` CustomResourceDefinition.

    Returns:
        One :class:`ResourceType` per served version.
    """
    spec = crd.get("spec") or {}
    names = spec.get("names") or {}
    out = []
    for ver in spec.get("versions") or []:
        if not ver.get("served", True):
            continue
        sub = ver.get("subresources") or {}
        selectable = tuple(f.get("jsonPath", "").lstrip(".") for f in ver.get("selectableFields") or [])
        out.append(
            ResourceType(
                group=spec.get("group", ""),
                version=ver["name"],
                plural=names.get("plural", ""),
                kind=names.get("kind", ""),
                namespaced=spec.get("scope", "Namespaced") == "Namespaced",
                has_status="status" in sub,
                short_names=tuple(names.get("shortNames") or ()),
                singular=names.get("singular", ""),
                custom=True,
                field_labels=selectable,
            )
        )
    return out


@dataclass
class Registry:
    """Thread-safe map of served resource types, looked up by ``(group, version, plural)``."""

    types: dict[tuple[str, str, str], ResourceType] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def default(cls) -> Registry:
        """A registry holding :func:`default_types`."""
        reg = cls()
        for rt in default_types():
            reg.add(rt)
        return reg

    def add(self, rt: ResourceType) -> None:
        """Serve ``rt`` (replaces a type with the same address)."""
        with self._lock:
            self.types[(rt.group, rt.version, rt.plural)] = rt

    def remove(self, group: str, plural: str) -> None:
        """Stop serving every version of ``plural.group`` (a CRD was deleted)."""
        with self._lock:
            for key in [k for k in self.types if k[0] == group and k[2] == plural]:
                del self.types[key]

    def get(self, group: str, version: str, plural: str) -> ResourceType | None:
        """The type at this address, if served."""
        with self._lock:
            return self.types.get((group, version, plural))

    def by_kind(self, api_version: str, kind: str) -> ResourceType | None:
        """The type for an ``apiVersion``/``kind`` pair (used to resolve ownerReferences)."""
        group, _, version = api_version.rpartition("/")
        with self._lock:
            for rt in self.types.values():
                if rt.group == group and rt.version == version and rt.kind == kind:
                    return rt
        return None

    def all(self) -> list[ResourceType]:
        """Every served type."""
        with self._lock:
            return list(self.types.values())

    def group_versions(self) -> dict[str, list[str]]:
        """Served versions per non-core group."""
        out: dict[str, list[str]] = {}
        for rt in self.all():
            if rt.group and rt.version not in out.setdefault(rt.group, []):
                out[rt.group].append(rt.version)
        return out

    # --- discovery documents -----------------------------------------------------------------

    def api_versions(self, server_address: str) -> dict[str, Any]:
        """``GET /api``: the core group's versions."""
        return {
            "kind": "APIVersions",
            "versions": ["v1"],
            "serverAddressByClientCIDRs": [{"clientCIDR": "0.0.0.0/0", "serverAddress": server_address}],
        }

    def api_group_list(self) -> dict[str, Any]:
        """``GET /apis``: every named group."""
        groups = []
        for group, versions in sorted(self.group_versions().items()):
            vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
            groups.append({"name": group, "versions": vs, "preferredVersion": vs[0]})
        return {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups}

    def api_group(self, group: str) -> dict[str, Any] | None:
        """``GET /apis/<group>``, or ``None`` when the group is not served."""
        versions = self.group_versions().get(group)
        if not versions:
            return None
        vs = [{"groupVersion": f"{group}/{v}", "version": v} for v in versions]
        return {"kind": "APIGroup", "apiVersion": "v1", "name": group, "versions": vs, "preferredVersion": vs[0]}

    def resource_list(self, group: str, version: str) -> dict[str, Any] | None:
        """``GET /api/v1`` or ``/apis/<group>/<version>``, or ``None`` when not served."""
        types = [rt for rt in self.all() if rt.group == group and rt.version == version]
        if not types:
            return None
        resources: list[dict[str, Any]] = []
        for rt in sorted(types, key=lambda t: t.plural):
            resources.append(
                {
                    "name": rt.plural,
                    "singularName": rt.singular or rt.kind.lower(),
                    "namespaced": rt.namespaced,
                    "kind": rt.kind,
                    "verbs": ALL_VERBS,
                    **({"shortNames": list(rt.short_names)} if rt.short_names else {}),
                }
            )
            if rt.has_status:
                resources.append(
                    {
                        "name": f"{rt.plural}/status",
                        "singularName": "",
                        "namespaced": rt.namespaced,
                        "kind": rt.kind,
                        "verbs": ["get", "patch", "update"],
                    }
                )
        gv = f"{group}/{version}" if group else version
        return {"kind": "APIResourceList", "apiVersion": "v1", "groupVersion": gv, "resources": resources}
