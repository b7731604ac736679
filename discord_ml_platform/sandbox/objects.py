"""Pure helpers on object dicts: validation, server-side defaults, system metadata.

These mirror what kube-apiserver's registry strategies do on create and update, limited to what
clients of this project observe (names, labels, generation, status handling, a few pod, service,
namespace and secret defaults).
"""

from __future__ import annotations

import base64
import copy
import ipaddress
import random
import re
import string
import uuid
from datetime import UTC, datetime
from typing import Any

from .errors import bad_request, invalid
from .resources import ResourceType

_DNS_SUBDOMAIN = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$")
_DNS_LABEL = re.compile(r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$")
_LABEL_NAME = re.compile(r"^[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_LABEL_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")
# Resources whose names must be DNS-1123 labels (63 chars, no dots) rather than subdomains.
_LABEL_NAMED = {"namespaces", "services"}
# The alphabet kube-apiserver uses for generateName suffixes (no vowels, no look-alikes).
_SUFFIX_ALPHABET = "bcdfghjklmnpqrstvwxz2456789"
# Top-level fields that are not "spec" for generation purposes.
_NON_SPEC = {"metadata", "status", "kind", "apiVersion"}


def now_rfc3339() -> str:
    """Current UTC time as kube-apiserver writes timestamps (second precision, ``Z``)."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def generate_name(prefix: str) -> str:
    """``prefix`` plus the 5-character random suffix the real server appends."""
    return prefix + "".join(random.choice(_SUFFIX_ALPHABET) for _ in range(5))


def meta(obj: dict[str, Any]) -> dict[str, Any]:
    """``obj["metadata"]``, created if missing."""
    m = obj.get("metadata")
    if not isinstance(m, dict):
        m = obj["metadata"] = {}
    return m


def spec_changed(old: dict[str, Any], new: dict[str, Any]) -> bool:
    """Whether anything besides metadata and status differs (what bumps ``metadata.generation``)."""
    keys = (set(old) | set(new)) - _NON_SPEC
    return any(old.get(k) != new.get(k) for k in keys)


def prune_empty_metadata(obj: dict[str, Any]) -> None:
    """Drop empty ``labels``/``annotations``/``finalizers``/``ownerReferences``.

    ObjectMeta is a typed Go struct with ``omitempty`` fields on every real server, so an empty
    map or list never comes back; a JSON patch adding ``/metadata/labels/x`` then fails there, and
    must fail here too.
    """
    m = meta(obj)
    for key in ("labels", "annotations", "finalizers", "ownerReferences"):
        if key in m and not m[key]:
            del m[key]


def validate_object(rt: ResourceType, obj: dict[str, Any]) -> None:
    """Check name, labels and a few per-kind required fields.

    Raises:
        ApiError: ``422 Invalid`` with one cause per problem.
    """
    m = meta(obj)
    name = m.get("name") or ""
    causes: list[tuple[str, str]] = []
    if not name:
        causes.append(("metadata.name", "Required value: name or generateName is required"))
    elif rt.plural in _LABEL_NAMED:
        if len(name) > 63 or not _DNS_LABEL.match(name):
            causes.append(
                (
                    "metadata.name",
                    f'Invalid value: "{name}": a lowercase RFC 1123 label must consist of '
                    "lower case alphanumeric characters or '-', and must start and end with an "
                    "alphanumeric character",
                )
            )
    elif len(name) > 253 or not _DNS_SUBDOMAIN.match(name):
        causes.append(
            (
                "metadata.name",
                f'Invalid value: "{name}": a lowercase RFC 1123 subdomain must consist of '
                "lower case alphanumeric characters, '-' or '.', and must start and end with an "
                "alphanumeric character",
            )
        )
    for key, value in (m.get("labels") or {}).items():
        prefix, _, label = key.rpartition("/")
        if not _LABEL_NAME.match(label) or len(label) > 63 or (prefix and not _DNS_SUBDOMAIN.match(prefix)):
            causes.append(
                (
                    "metadata.labels",
                    f'Invalid value: "{key}": name part must consist of alphanumeric '
                    "characters, '-', '_' or '.', and must start and end with an alphanumeric character",
                )
            )
        if not isinstance(value, str) or len(value) > 63 or not _LABEL_VALUE.match(value):
            causes.append(
                (
                    "metadata.labels",
                    f'Invalid value: "{value}": a valid label must be an empty string '
                    "or consist of alphanumeric characters, '-', '_' or '.', and must start and end with "
                    "an alphanumeric character",
                )
            )
    if rt.group == "" and rt.plural == "pods" and not ((obj.get("spec") or {}).get("containers")):
        causes.append(("spec.containers", "Required value"))
    if causes:
        raise invalid(rt.kind, rt.group, name, causes)


def check_identity(rt: ResourceType, obj: dict[str, Any], namespace: str | None, name: str | None) -> None:
    """Reject a body whose kind, apiVersion, namespace or name disagree with the request URL.

    Raises:
        ApiError: ``400 BadRequest`` as kube-apiserver answers these.
    """
    kind, api_version = obj.get("kind"), obj.get("apiVersion")
    if kind and kind != rt.kind:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API "
            f"version ({rt.api_version}) or kind {kind} is not {rt.kind}"
        )
    if api_version and api_version != rt.api_version:
        raise bad_request(
            f"the API version in the data ({api_version}) does not match the expected API version ({rt.api_version})"
        )
    m = meta(obj)
    body_ns = m.get("namespace")
    if rt.namespaced and body_ns and namespace and body_ns != namespace:
        raise bad_request("the namespace of the provided object does not match the namespace sent on the request")
    if name is not None and m.get("name") and m["name"] != name:
        raise bad_request(f"the name of the object ({m['name']}) does not match the name on the URL ({name})")


def prepare_create(rt: ResourceType, obj: dict[str, Any], namespace: str | None, next_ip: int) -> dict[str, Any]:
    """System metadata and per-kind defaults for a new object (``resourceVersion`` is set on commit).

    Args:
        rt: The resource type.
        obj: The request body (copied, not modified).
        namespace: The request's namespace (``None`` for cluster-scoped).
        next_ip: A counter used to assign Service cluster IPs.

    Returns:
        The object to store.
    """
    obj = copy.deepcopy(obj)
    obj["kind"], obj["apiVersion"] = rt.kind, rt.api_version
    m = meta(obj)
    if not m.get("name") and m.get("generateName"):
        m["name"] = generate_name(m["generateName"])
    if rt.namespaced:
        m["namespace"] = namespace
    else:
        m.pop("namespace", None)
    for system in ("deletionTimestamp", "deletionGracePeriodSeconds", "resourceVersion", "managedFields"):
        m.pop(system, None)
    m["uid"] = str(uuid.uuid4())
    m["creationTimestamp"] = now_rfc3339()
    m["generation"] = 1
    prune_empty_metadata(obj)
    if rt.has_status:
        # On create, a status subresource's content is reset by the server (CRDs and pods alike).
        obj.pop("status", None)
    _kind_defaults(rt, obj, next_ip)
    return obj


def _kind_defaults(rt: ResourceType, obj: dict[str, Any], next_ip: int) -> None:
    if rt.group != "":
        return
    m = meta(obj)
    spec = obj.setdefault("spec", {}) if rt.plural in ("pods", "services", "namespaces") else None
    if rt.plural == "namespaces" and spec is not None:
        spec.setdefault("finalizers", ["kubernetes"])
        obj["status"] = {"phase": "Active"}
        m.setdefault("labels", {})["kubernetes.io/metadata.name"] = m.get("name", "")
    elif rt.plural == "pods" and spec is not None:
        spec.setdefault("restartPolicy", "Always")
        spec.setdefault("terminationGracePeriodSeconds", 30)
        spec.setdefault("dnsPolicy", "ClusterFirst")
        spec.setdefault("schedulerName", "default-scheduler")
        spec.setdefault("serviceAccountName", "default")
        obj["status"] = {"phase": "Pending", "qosClass": "BestEffort"}
    elif rt.plural == "services" and spec is not None:
        spec.setdefault("type", "ClusterIP")
        if spec["type"] != "ExternalName" and not spec.get("clusterIP"):
            spec["clusterIP"] = str(ipaddress.IPv4Address("10.96.0.10") + next_ip)
        if spec.get("clusterIP"):
            spec.setdefault("clusterIPs", [spec["clusterIP"]])
        spec.setdefault("sessionAffinity", "None")
        obj["status"] = {"loadBalancer": {}}
    elif rt.plural == "secrets":
        obj.setdefault("type", "Opaque")
        fold_string_data(obj)


def fold_string_data(obj: dict[str, Any]) -> None:
    """Move a Secret's write-only ``stringData`` into base64 ``data``, as the real server does."""
    string_data = obj.pop("stringData", None) or {}
    if string_data:
        data = obj.setdefault("data", {})
        for key, value in string_data.items():
            data[key] = base64.b64encode(str(value).encode()).decode()


def merge_for_update(
    rt: ResourceType, old: dict[str, Any], new: dict[str, Any], subresource: str | None
) -> dict[str, Any]:
    """The object to store for an update or patch of ``old`` with the full new body ``new``.

    Keeps system metadata from ``old``; keeps ``status`` apart from the rest when the type has a
    status subresource; bumps ``generation`` on spec changes only.

    Raises:
        ApiError: ``422`` when finalizers are added to an object being deleted.
    """
    if subresource == "status":
        result = copy.deepcopy(old)
        if "status" in new:
            result["status"] = copy.deepcopy(new["status"])
        else:
            result.pop("status", None)
        return result
    result = copy.deepcopy(new)
    result["kind"], result["apiVersion"] = rt.kind, rt.api_version
    if rt.has_status:
        if "status" in old:
            result["status"] = copy.deepcopy(old["status"])
        else:
            result.pop("status", None)
    m, om = meta(result), old["metadata"]
    for key in (
        "uid",
        "creationTimestamp",
        "deletionTimestamp",
        "deletionGracePeriodSeconds",
        "generation",
        "name",
        "namespace",
        "generateName",
    ):
        if key in om:
            m[key] = om[key]
        else:
            m.pop(key, None)
    if rt.group == "" and rt.plural == "secrets":
        fold_string_data(result)
    if om.get("deletionTimestamp"):
        added = set(m.get("finalizers") or []) - set(om.get("finalizers") or [])
        if added:
            raise invalid(
                rt.kind,
                rt.group,
                om["name"],
                [
                    (
                        "metadata.finalizers",
                        f"Forbidden: no new finalizers can be added if the object is being deleted, "
                        f"found new finalizers {sorted(added)}",
                    )
                ],
            )
    prune_empty_metadata(result)
    if spec_changed(old, result):
        m["generation"] = int(om.get("generation") or 1) + 1
    return result


def continue_token(rv: int, last_key: str) -> str:
    """Opaque ``metadata.continue`` token for list pagination."""
    raw = f"{rv}|{last_key}".encode()
    return base64.urlsafe_b64encode(raw).decode()


def parse_continue(token: str) -> tuple[int, str]:
    """Decode :func:`continue_token`.

    Raises:
        ApiError: ``400`` for a token the server did not issue.
    """
    try:
        rv, _, key = base64.urlsafe_b64decode(token.encode()).decode().partition("|")
        return int(rv), key
    except (ValueError, UnicodeDecodeError) as exc:
        raise bad_request(f"invalid continue token: {exc}") from None


def random_token(length: int = 32) -> str:
    """A random bearer token for generated kubeconfigs."""
    return "".join(random.SystemRandom().choice(string.ascii_lowercase + string.digits) for _ in range(length))
