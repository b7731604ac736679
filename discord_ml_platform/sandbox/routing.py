"""Map a request path and method to a resource, a namespace, a name and an RBAC verb."""

from __future__ import annotations

from dataclasses import dataclass

from .errors import ApiError
from .resources import Registry, ResourceType

# Namespace subresources that share the ``namespaces/{name}/{x}`` shape with namespaced collections.
_NAMESPACE_SUBRESOURCES = {"status", "finalize"}


@dataclass(frozen=True)
class Target:
    """What one resource request addresses.

    Attributes:
        rt: The resource type.
        namespace: Namespace from the path, ``None`` for cluster-scoped or all-namespaces requests.
        name: Object name, ``None`` for collection requests.
        subresource: ``status``, ``log`` (pods) or ``None``.
        verb: RBAC verb: get, list, watch, create, update, patch, delete, deletecollection.
    """

    rt: ResourceType
    namespace: str | None
    name: str | None
    subresource: str | None
    verb: str

    @property
    def rbac_resource(self) -> str:
        """``plural`` or ``plural/subresource``."""
        return f"{self.rt.plural}/{self.subresource}" if self.subresource else self.rt.plural


def _not_found() -> ApiError:
    return ApiError("NotFound", "the server could not find the requested resource", details={})


def resolve(registry: Registry, method: str, path: str, watch_param: bool) -> Target:
    """Resolve a resource request.

    Args:
        registry: Served resource types.
        method: HTTP method.
        path: URL path without query, e.g. ``/apis/ray.io/v1/namespaces/ray/rayclusters/x/status``.
        watch_param: Whether ``watch=true`` was in the query.

    Returns:
        The request's :class:`Target`.

    Raises:
        ApiError: 404 for an unknown path or resource, 405 for an unsupported method.
    """
    parts = [p for p in path.split("/") if p]
    if parts[:2] == ["api", "v1"]:
        group, version, rest = "", "v1", parts[2:]
    elif len(parts) >= 3 and parts[0] == "apis":
        group, version, rest = parts[1], parts[2], parts[3:]
    else:
        raise _not_found()
    watch_path = bool(rest) and rest[0] == "watch"
    if watch_path:
        rest = rest[1:]
    namespace: str | None = None
    if len(rest) >= 3 and rest[0] == "namespaces" and rest[2] not in _NAMESPACE_SUBRESOURCES:
        namespace, rest = rest[1], rest[2:]
    if not rest or len(rest) > 3:
        raise _not_found()
    plural, name = rest[0], (rest[1] if len(rest) > 1 else None)
    sub = rest[2] if len(rest) > 2 else None
    rt = registry.get(group, version, plural)
    if rt is None:
        raise _not_found()
    if sub is not None and not ((sub == "status" and rt.has_status) or (sub == "log" and _is_pods(rt))):
        raise _not_found()
    if sub == "log" and method != "GET":
        raise ApiError("MethodNotAllowed", "the server does not allow this method on the requested resource", code=405)
    if rt.namespaced is False and namespace is not None:
        raise _not_found()
    verb = _verb(method, name, watch_path or watch_param)
    return Target(rt, namespace, name, sub, verb)


def _is_pods(rt: ResourceType) -> bool:
    return rt.group == "" and rt.plural == "pods"


def _verb(method: str, name: str | None, watch: bool) -> str:
    if method == "GET":
        if watch:
            return "watch"
        return "get" if name else "list"
    if method == "POST" and name is None:
        return "create"
    if method == "PUT" and name:
        return "update"
    if method == "PATCH" and name:
        return "patch"
    if method == "DELETE":
        return "delete" if name else "deletecollection"
    raise ApiError("MethodNotAllowed", "the server does not allow this method on the requested resource", code=405)
