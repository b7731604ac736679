"""Authentication and authorization hooks of the sandbox API server.

Every resource request passes through an *authorizer*: a callable
``(token, verb, group, resource, namespace, name) -> bool`` where ``resource`` includes the
subresource as RBAC writes it (``pods/status``). The default allows everything.
:class:`RbacAuthorizer` enforces the Role/ClusterRole rules stored in the sandbox itself, for a
token-to-user map, so a test can check that a service account's Role really is enough.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .store import Store

Authorizer = Callable[[str | None, str, str, str, str | None, str | None], bool]
RBAC_GROUP = "rbac.authorization.k8s.io"


def allow_all(token: str | None, verb: str, group: str, resource: str, namespace: str | None, name: str | None) -> bool:
    """The default authorizer: every request is allowed."""
    return True


def service_account_user(namespace: str, name: str) -> str:
    """The username Kubernetes gives a service account token."""
    return f"system:serviceaccount:{namespace}:{name}"


class RbacAuthorizer:
    """Authorize requests with the RBAC objects stored in the sandbox.

    Args:
        store: The sandbox store holding Roles, ClusterRoles and their bindings.
        users: Bearer token to username; a service account's username is
            ``system:serviceaccount:<ns>:<name>`` (see :func:`service_account_user`).
        admin_tokens: Tokens allowed everything (like ``system:masters``).

    Unknown tokens are denied. Aggregated ClusterRoles and non-resource URLs are not modelled.
    """

    def __init__(self, store: Store, users: Mapping[str, str], admin_tokens: Iterable[str] = ()) -> None:
        self.store = store
        self.users = dict(users)
        self.admin_tokens = set(admin_tokens)

    def __call__(
        self, token: str | None, verb: str, group: str, resource: str, namespace: str | None, name: str | None
    ) -> bool:
        if token in self.admin_tokens:
            return True
        user = self.users.get(token or "")
        if user is None:
            return False
        groups = {"system:authenticated"}
        if user.startswith("system:serviceaccount:"):
            sa_ns = user.split(":")[2]
            groups |= {"system:serviceaccounts", f"system:serviceaccounts:{sa_ns}"}
        for rules in self._rules_for(user, groups, namespace):
            if any(_rule_allows(rule, verb, group, resource, name) for rule in rules):
                return True
        return False

    def _rules_for(self, user: str, groups: set[str], namespace: str | None) -> Iterable[list[dict[str, Any]]]:
        reg = self.store.registry
        crb_t = reg.get(RBAC_GROUP, "v1", "clusterrolebindings")
        rb_t = reg.get(RBAC_GROUP, "v1", "rolebindings")
        cr_t = reg.get(RBAC_GROUP, "v1", "clusterroles")
        role_t = reg.get(RBAC_GROUP, "v1", "roles")
        assert crb_t and rb_t and cr_t and role_t
        bindings: list[tuple[dict[str, Any], str | None]] = [(b, None) for b in self.store.select(crb_t, None)]
        if namespace:
            bindings += [(b, namespace) for b in self.store.select(rb_t, namespace)]
        for binding, ns in bindings:
            if not any(_subject_matches(s, user, groups) for s in binding.get("subjects") or []):
                continue
            ref = binding.get("roleRef") or {}
            role_type, role_ns = (cr_t, None) if ref.get("kind") == "ClusterRole" else (role_t, ns)
            if role_type is role_t and ns is None:
                continue  # a ClusterRoleBinding can only reference a ClusterRole
            roles = [r for r in self.store.select(role_type, role_ns) if r["metadata"]["name"] == ref.get("name")]
            for role in roles:
                yield role.get("rules") or []


def _subject_matches(subject: Mapping[str, Any], user: str, groups: set[str]) -> bool:
    kind = subject.get("kind")
    if kind == "ServiceAccount":
        return user == service_account_user(subject.get("namespace", ""), subject.get("name", ""))
    if kind == "User":
        return user == subject.get("name")
    if kind == "Group":
        return subject.get("name") in groups
    return False


def _rule_allows(rule: Mapping[str, Any], verb: str, group: str, resource: str, name: str | None) -> bool:
    verbs, api_groups, resources = rule.get("verbs") or [], rule.get("apiGroups") or [], rule.get("resources") or []
    if "*" not in verbs and verb not in verbs:
        return False
    if "*" not in api_groups and group not in api_groups:
        return False
    base = resource.split("/")[0]
    if "*" not in resources and resource not in resources and f"{base}/*" not in resources:
        return False
    names = rule.get("resourceNames") or []
    return not names or (name is not None and name in names)
