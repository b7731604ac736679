"""PATCH bodies: JSON merge patch (RFC 7386), a strategic merge patch subset, JSON patch (RFC 6902).

Strategic merge patch is what ``CoreV1Api.patch_*`` sends for a dict body. Upstream it merges
lists by a per-field key (``containers`` by ``name``, ``ports`` by ``containerPort``...); this module
implements that for the fields the platform's objects use, plus the ``$patch`` and
``$deleteFromPrimitiveList`` directives. Anything else falls back to merge-patch semantics.
"""

from __future__ import annotations

import copy
from typing import Any

from .errors import ApiError, bad_request

MERGE = "application/merge-patch+json"
STRATEGIC = "application/strategic-merge-patch+json"
JSON_PATCH = "application/json-patch+json"
APPLY = "application/apply-patch+yaml"
PATCH_TYPES = (MERGE, STRATEGIC, JSON_PATCH, APPLY)

# List fields merged by key in a strategic merge patch (field name -> merge key).
_MERGE_KEYS = {
    "containers": "name",
    "initContainers": "name",
    "ephemeralContainers": "name",
    "env": "name",
    "volumes": "name",
    "volumeMounts": "mountPath",
    "imagePullSecrets": "name",
    "conditions": "type",
    "ownerReferences": "uid",
    "hostAliases": "ip",
    "workerGroupSpecs": "groupName",
}
# Lists of scalars whose strategic patch strategy is "merge" (union) rather than replace.
_MERGE_PRIMITIVE_LISTS = {"finalizers"}


def merge_patch(target: Any, patch: Any) -> Any:
    """Apply an RFC 7386 JSON merge patch.

    Args:
        target: The current document.
        patch: The patch; ``null`` values delete keys, non-objects replace.

    Returns:
        A new document (inputs are not modified).
    """
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def strategic_merge_patch(target: Any, patch: Any, field: str = "") -> Any:
    """Apply a strategic merge patch (the subset described in the module docstring).

    Args:
        target: The current document.
        patch: The patch.
        field: Name of the field being merged (selects the list merge key).

    Returns:
        A new document.
    """
    if isinstance(patch, list):
        return _strategic_list(target, patch, field)
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    if patch.get("$patch") == "delete":
        return None
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            drop = set(value or [])
            result[name] = [v for v in result.get(name) or [] if v not in drop]
        elif key.startswith("$setElementOrder/") or key in ("$retainKeys", "$patch"):
            continue  # ordering hints and retainKeys do not change content we serve
        elif value is None:
            result.pop(key, None)
        else:
            merged = strategic_merge_patch(result.get(key), value, key)
            if merged is None and isinstance(value, dict) and value.get("$patch") == "delete":
                result.pop(key, None)
            else:
                result[key] = merged
    return result


def _strategic_list(target: Any, patch: list[Any], field: str) -> list[Any]:
    current = copy.deepcopy(target) if isinstance(target, list) else []
    if field in _MERGE_PRIMITIVE_LISTS:
        return current + [v for v in patch if v not in current]
    key = _MERGE_KEYS.get(field)
    if key is None or not all(isinstance(p, dict) for p in patch):
        return [copy.deepcopy(p) for p in patch if not (isinstance(p, dict) and "$patch" in p)]
    if any(p.get("$patch") == "replace" for p in patch):
        return [copy.deepcopy(p) for p in patch if "$patch" not in p]
    for item in patch:
        idx = next(
            (i for i, c in enumerate(current) if isinstance(c, dict) and key in item and c.get(key) == item.get(key)),
            None,
        )
        if item.get("$patch") == "delete":
            if idx is not None:
                current.pop(idx)
        elif idx is None:
            current.append(strategic_merge_patch({}, item))
        else:
            current[idx] = strategic_merge_patch(current[idx], item)
    return current


def _pointer(path: str) -> list[str]:
    if path == "":
        return []
    if not path.startswith("/"):
        raise bad_request(f"invalid JSON pointer: {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _unprocessable(message: str) -> ApiError:
    # kube-apiserver answers 422 when a well-formed JSON patch cannot be applied.
    return ApiError("Invalid", message, code=422)


def _parent(doc: Any, parts: list[str], path: str) -> tuple[Any, str]:
    cur = doc
    for part in parts[:-1]:
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise _unprocessable(f"jsonpatch: path {path!r} not found (missing {part!r})")
    return cur, parts[-1]


def _get(doc: Any, path: str) -> Any:
    cur = doc
    for part in _pointer(path):
        if isinstance(cur, dict) and part in cur:
            cur = cur[part]
        elif isinstance(cur, list) and part.isdigit() and int(part) < len(cur):
            cur = cur[int(part)]
        else:
            raise _unprocessable(f"jsonpatch: path {path!r} not found")
    return cur


def _add(doc: Any, path: str, value: Any) -> Any:
    parts = _pointer(path)
    if not parts:
        return value
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict):
        parent[last] = value
    elif isinstance(parent, list):
        if last == "-":
            parent.append(value)
        elif last.isdigit() and int(last) <= len(parent):
            parent.insert(int(last), value)
        else:
            raise _unprocessable(f"jsonpatch: index out of range in {path!r}")
    else:
        raise _unprocessable(f"jsonpatch: cannot add to {path!r}")
    return doc


def _remove(doc: Any, path: str) -> tuple[Any, Any]:
    parts = _pointer(path)
    if not parts:
        raise _unprocessable("jsonpatch: cannot remove the document root")
    parent, last = _parent(doc, parts, path)
    if isinstance(parent, dict) and last in parent:
        return doc, parent.pop(last)
    if isinstance(parent, list) and last.isdigit() and int(last) < len(parent):
        return doc, parent.pop(int(last))
    raise _unprocessable(f"jsonpatch: path {path!r} not found for remove")


def json_patch(target: Any, ops: Any) -> Any:
    """Apply an RFC 6902 JSON patch.

    Args:
        target: The current document.
        ops: A list of operations (``add``, ``remove``, ``replace``, ``move``, ``copy``, ``test``).

    Returns:
        A new document.

    Raises:
        ApiError: ``400`` for a malformed patch, ``422`` when an operation cannot be applied
            (missing path, failed ``test``), as kube-apiserver does.
    """
    if not isinstance(ops, list):
        raise bad_request("json patch body must be a list of operations")
    doc = copy.deepcopy(target)
    for op in ops:
        if not isinstance(op, dict) or "op" not in op or "path" not in op:
            raise bad_request(f"invalid json patch operation: {op!r}")
        kind, path = op["op"], op["path"]
        if kind in ("add", "replace", "test") and "value" not in op:
            raise bad_request(f"json patch {kind} operation needs a value: {op!r}")
        if kind == "add":
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind == "remove":
            doc, _ = _remove(doc, path)
        elif kind == "replace":
            _get(doc, path)  # replace requires the target to exist
            doc, _ = _remove(doc, path) if _pointer(path) else (doc, None)
            doc = _add(doc, path, copy.deepcopy(op["value"]))
        elif kind in ("move", "copy"):
            if "from" not in op:
                raise bad_request(f"json patch {kind} operation needs 'from': {op!r}")
            value = copy.deepcopy(_get(doc, op["from"]))
            if kind == "move":
                doc, _ = _remove(doc, op["from"])
            doc = _add(doc, path, value)
        elif kind == "test":
            if _get(doc, path) != op["value"]:
                raise _unprocessable(
                    f"the server rejected our request due to an error in our request: testing value {path} failed"
                )
        else:
            raise bad_request(f"unexpected json patch operation {kind!r}")
    return doc


def apply_patch(content_type: str, target: dict[str, Any], body: Any, custom: bool) -> dict[str, Any]:
    """Apply a PATCH body of the given content type.

    Args:
        content_type: The request's ``Content-Type`` (parameters after ``;`` are ignored).
        target: The current object.
        body: The decoded patch.
        custom: Whether the resource is a custom resource (which rejects strategic merge patch).

    Returns:
        The patched object.

    Raises:
        ApiError: ``415`` for an unsupported patch type, ``400``/``422`` for bad patches.
    """
    ctype = content_type.split(";")[0].strip().lower()
    if ctype == JSON_PATCH:
        result = json_patch(target, body)
    elif ctype in (MERGE, APPLY):
        if not isinstance(body, dict):
            raise bad_request("merge patch body must be a JSON object")
        result = merge_patch(target, body)
    elif ctype == STRATEGIC:
        if custom:
            # Custom resources have no patch-merge keys, so the real server refuses this type.
            raise ApiError(
                "UnsupportedMediaType",
                f"the body of the request was in an unknown format - accepted media types include: "
                f"{JSON_PATCH}, {MERGE}, {APPLY}",
                code=415,
            )
        if not isinstance(body, dict):
            raise bad_request("strategic merge patch body must be a JSON object")
        result = strategic_merge_patch(target, body)
    else:
        raise ApiError(
            "UnsupportedMediaType",
            f"the body of the request was in an unknown format - accepted media types include: "
            f"{', '.join(PATCH_TYPES)}",
            code=415,
        )
    if not isinstance(result, dict):
        raise _unprocessable("patch result is not an object")
    return result
