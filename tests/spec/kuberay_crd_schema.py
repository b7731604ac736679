"""Validate rendered manifests against KubeRay's CRD schemas, strictly.

The CRDs are data shared beside the project (``../shared/kuberay-crds`` from its root), not part
of it; tests skip when they are absent. A real API server prunes unknown fields silently, so a
typo such as ``tolerration`` would vanish without an error: besides ``jsonschema``, every key of a
manifest must be declared in the schema's ``properties``.
"""

from __future__ import annotations

import copy
import functools
from pathlib import Path
from typing import Any

import pytest
import yaml
from jsonschema import Draft7Validator

CRD_DIR = Path(__file__).resolve().parents[2].parent / "shared" / "kuberay-crds"
CRD_FILES = {"RayCluster": "ray.io_rayclusters.yaml", "RayJob": "ray.io_rayjobs.yaml"}
# ObjectMeta is `type: object` in a CRD (the API server validates it itself): check its keys here.
OBJECT_META_KEYS = {"name", "namespace", "labels", "annotations", "generateName", "finalizers", "ownerReferences"}
Loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@functools.cache
def _load_schema(kind: str) -> dict[str, Any] | None:
    path = CRD_DIR / CRD_FILES[kind]
    if not path.exists():
        return None
    with path.open() as handle:
        crd = yaml.load(handle, Loader=Loader)  # Loader is the C *safe* loader
    version = next(v for v in crd["spec"]["versions"] if v["name"] == "v1")
    return _openapi_to_jsonschema(version["schema"]["openAPIV3Schema"])


def schema_for(kind: str) -> dict[str, Any]:
    """The v1 openAPIV3Schema of ``kind`` prepared for jsonschema; skips the test when absent."""
    schema = _load_schema(kind)
    if schema is None:
        pytest.skip(f"KubeRay CRDs not found at {CRD_DIR}")
    return schema


def _openapi_to_jsonschema(node: Any) -> Any:
    """Translate the OpenAPI v3 extensions jsonschema does not know into plain JSON Schema."""
    if isinstance(node, list):
        return [_openapi_to_jsonschema(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {key: _openapi_to_jsonschema(value) for key, value in node.items()}
    if out.get("x-kubernetes-int-or-string") and "anyOf" not in out:
        out.pop("type", None)
        out["anyOf"] = [{"type": "integer"}, {"type": "string"}]
    if out.get("nullable"):
        kind = out.get("type")
        if isinstance(kind, str):
            out["type"] = [kind, "null"]
    return out


def unknown_keys(instance: Any, schema: dict[str, Any], path: str = "") -> list[str]:
    """Paths of keys in ``instance`` that ``schema`` does not declare (what an API server would prune)."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(instance, dict):
        properties = schema.get("properties")
        extra = schema.get("additionalProperties")
        for key, value in instance.items():
            where = f"{path}.{key}" if path else key
            if properties is not None and key in properties:
                found += unknown_keys(value, properties[key], where)
            elif isinstance(extra, dict):
                found += unknown_keys(value, extra, where)
            elif properties is not None or extra is False:
                found.append(where)
    elif isinstance(instance, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(instance):
            found += unknown_keys(item, schema["items"], f"{path}[{index}]")
    return found


def _metadata_problems(metadata: Any, where: str) -> list[str]:
    if not isinstance(metadata, dict):
        return [f"{where}: must be a mapping"]
    problems = [f"{where}.{key}: not an ObjectMeta field" for key in metadata if key not in OBJECT_META_KEYS]
    for field in ("labels", "annotations"):
        values = metadata.get(field, {})
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in values.items()):
            problems.append(f"{where}.{field}: keys and values must be strings")
    return problems


def manifest_problems(manifest: dict[str, Any]) -> list[str]:
    """Everything a real API server (or its silent pruning) would object to in ``manifest``."""
    kind = manifest.get("kind")
    if kind not in CRD_FILES:
        return [f"kind {kind!r} is not a KubeRay CRD handled here"]
    schema = schema_for(kind)
    validator = Draft7Validator(schema)
    problems = [
        f"{'.'.join(str(p) for p in error.absolute_path) or '<root>'}: {error.message}"
        for error in validator.iter_errors(manifest)
    ]
    problems += [f"{key}: unknown field (a real API server prunes it silently)" for key in unknown_keys(manifest, schema)]
    if manifest.get("apiVersion") != "ray.io/v1":
        problems.append(f"apiVersion: {manifest.get('apiVersion')!r} is not ray.io/v1")
    problems += _metadata_problems(manifest.get("metadata"), "metadata")
    return problems


def mutated(manifest: dict[str, Any]) -> dict[str, Any]:
    """A deep copy to break on purpose in negative tests."""
    return copy.deepcopy(manifest)
