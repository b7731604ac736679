"""The API reference at ``/api/docs``: the OpenAPI document rendered as a plain page by X-Ray itself.

It replaces FastAPI's Swagger UI, which loads its bundle from a CDN (without subresource
integrity) and needs an inline script: this page is rendered on the server, loads only X-Ray's own
stylesheet and script (the token box every page has), and so runs under the same strict CSP as the
other pages. The machine-readable document stays at ``/api/openapi.json``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

METHODS = ("get", "post", "put", "patch", "delete")


@dataclass(frozen=True)
class Param:
    """One parameter of an operation."""

    name: str
    where: str
    required: bool
    type: str
    description: str = ""


@dataclass(frozen=True)
class Operation:
    """One method on one path."""

    method: str
    path: str
    summary: str
    description: str
    needs_token: bool
    params: list[Param] = field(default_factory=list)
    responses: list[tuple[str, str]] = field(default_factory=list)
    anchor: str = ""


@dataclass(frozen=True)
class Schema:
    """A component schema: its fields as ``(name, type, description)``."""

    name: str
    description: str
    fields: list[tuple[str, str, str]]


def type_of(schema: Mapping[str, Any]) -> str:
    """A short human type of a JSON schema: ``string``, ``integer (1..5000)``, ``ClusterView[]``..."""
    if "$ref" in schema:
        return str(schema["$ref"]).rsplit("/", 1)[-1]
    for combo in ("anyOf", "oneOf", "allOf"):
        if combo in schema:
            return " | ".join(type_of(s) for s in schema[combo])
    kind = str(schema.get("type", "any"))
    if kind == "array":
        return type_of(schema.get("items") or {}) + "[]"
    if kind == "object" and isinstance(schema.get("additionalProperties"), Mapping):
        return f"map of {type_of(schema['additionalProperties'])}"
    limits = [f"{k} {schema[k]}" for k in ("minimum", "maximum", "maxLength") if k in schema]
    if "pattern" in schema:
        limits.append(f"pattern {schema['pattern']}")
    if "enum" in schema:
        limits.append("one of " + ", ".join(map(str, schema["enum"])))
    return kind + (f" ({'; '.join(limits)})" if limits else "")


def _response_text(response: Mapping[str, Any]) -> str:
    text = str(response.get("description") or "")
    content = response.get("content") or {}
    schema = (content.get("application/json") or {}).get("schema")
    return f"{text}: {type_of(schema)}" if schema else text


def operations(openapi: Mapping[str, Any]) -> list[Operation]:
    """Every operation of the document, in path order."""
    found = []
    for path, item in (openapi.get("paths") or {}).items():
        for method in METHODS:
            op = item.get(method)
            if not isinstance(op, Mapping):
                continue
            responses = op.get("responses") or {}
            params = [
                Param(
                    name=str(p.get("name")),
                    where=str(p.get("in")),
                    required=bool(p.get("required")),
                    type=type_of(p.get("schema") or {}),
                    description=str(p.get("description") or ""),
                )
                for p in op.get("parameters") or []
            ]
            found.append(
                Operation(
                    method=method.upper(),
                    path=path,
                    summary=str(op.get("summary") or ""),
                    description=str(op.get("description") or ""),
                    needs_token="401" in responses,
                    params=params,
                    responses=[(str(code), _response_text(r)) for code, r in sorted(responses.items())],
                    anchor=str(op.get("operationId") or f"{method}-{path}"),
                )
            )
    return found


def schemas(openapi: Mapping[str, Any]) -> list[Schema]:
    """The document's component schemas with their fields."""
    out = []
    for name, schema in sorted(((openapi.get("components") or {}).get("schemas") or {}).items()):
        props = schema.get("properties") or {}
        out.append(
            Schema(
                name=name,
                description=str(schema.get("description") or ""),
                fields=[(k, type_of(v), str(v.get("description") or "")) for k, v in props.items()],
            )
        )
    return out
