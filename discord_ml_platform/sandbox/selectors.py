"""Label and field selectors, parsed and matched the way kube-apiserver does.

Label selectors support the full string grammar of ``k8s.io/apimachinery/pkg/labels``:
``k=v``, ``k==v``, ``k!=v``, ``k in (a,b)``, ``k notin (a,b)``, ``k`` (exists), ``!k`` (does not
exist), and ``k>n`` / ``k<n``. ``!=`` and ``notin`` match objects that lack the key, as upstream.
Field selectors support ``=``, ``==`` and ``!=`` on a per-type set of field labels; an unknown
label is a 400, like the real server, so a typo fails in the sandbox too.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from .errors import bad_request

_KEY = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?/)?[A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?$")
_VALUE = re.compile(r"^([A-Za-z0-9]([-A-Za-z0-9_.]*[A-Za-z0-9])?)?$")


@dataclass(frozen=True)
class Requirement:
    """One clause of a label selector.

    Attributes:
        key: Label key.
        op: One of ``=``, ``!=``, ``in``, ``notin``, ``exists``, ``!``, ``gt``, ``lt``.
        values: Values the clause compares against.
    """

    key: str
    op: str
    values: tuple[str, ...] = ()

    def matches(self, labels: Mapping[str, str]) -> bool:
        """Whether ``labels`` satisfy this clause."""
        has = self.key in labels
        val = labels.get(self.key)
        if self.op in ("=", "in"):
            return has and val in self.values
        if self.op in ("!=", "notin"):
            return not has or val not in self.values
        if self.op == "exists":
            return has
        if self.op == "!":
            return not has
        if self.op in ("gt", "lt"):
            try:
                num, bound = int(val or ""), int(self.values[0])
            except ValueError:
                return False
            return num > bound if self.op == "gt" else num < bound
        return False


def _split_top_level(text: str) -> list[str]:
    """Split on commas that are not inside ``( )``."""
    parts: list[str] = []
    cur: list[str] = []
    depth = 0
    for ch in text:
        if ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        if ch == "," and depth == 0:
            parts.append("".join(cur))
            cur = []
        else:
            cur.append(ch)
    parts.append("".join(cur))
    return [p.strip() for p in parts]


def _check_key(key: str, selector: str) -> str:
    if not key or len(key.split("/")[-1]) > 63 or not _KEY.match(key):
        raise bad_request(f'unable to parse requirement: invalid label key "{key}" in selector "{selector}"')
    return key


def _check_value(value: str, selector: str) -> str:
    if len(value) > 63 or not _VALUE.match(value):
        raise bad_request(f'unable to parse requirement: invalid label value "{value}" in selector "{selector}"')
    return value


_SET_RE = re.compile(r"^(?P<key>\S+)\s+(?P<op>in|notin)\s*\((?P<vals>[^)]*)\)$")
_CMP_RE = re.compile(r"^(?P<key>[^=!<>\s]+)\s*(?P<op>==|!=|=|>|<)\s*(?P<val>\S*)$")


def parse_label_selector(selector: str | None) -> list[Requirement]:
    """Parse a label selector string.

    Args:
        selector: e.g. ``"app=ray,tier in (head, worker),!canary"``; empty selects everything.

    Returns:
        The requirements, all of which must hold (logical AND).

    Raises:
        ApiError: ``400 BadRequest`` when the selector does not parse.
    """
    if not selector or not selector.strip():
        return []
    reqs = []
    for part in _split_top_level(selector):
        if not part:
            raise bad_request(f'unable to parse requirement: found "", expected: identifier in "{selector}"')
        if m := _SET_RE.match(part):
            vals = tuple(_check_value(v.strip(), selector) for v in m["vals"].split(",") if v.strip())
            reqs.append(Requirement(_check_key(m["key"], selector), m["op"], vals))
        elif m := _CMP_RE.match(part):
            op = {"==": "=", ">": "gt", "<": "lt"}.get(m["op"], m["op"])
            val = m["val"]
            if op in ("gt", "lt") and not val.lstrip("-").isdigit():
                raise bad_request(
                    'unable to parse requirement: for "gt", "lt" operators, exactly one '
                    f'integer value is required, in "{selector}"'
                )
            reqs.append(Requirement(_check_key(m["key"], selector), op, (_check_value(val, selector),)))
        elif part.startswith("!"):
            reqs.append(Requirement(_check_key(part[1:].strip(), selector), "!"))
        else:
            reqs.append(Requirement(_check_key(part, selector), "exists"))
    return reqs


def labels_match(reqs: list[Requirement], labels: Mapping[str, str] | None) -> bool:
    """Whether ``labels`` satisfy every requirement."""
    labels = labels or {}
    return all(r.matches(labels) for r in reqs)


# Field labels whose value is not at the dotted path of the same name.
_FIELD_ALIASES = {"source": "source.component"}


def _lookup(obj: Mapping[str, Any], path: str) -> str:
    cur: Any = obj
    for part in _FIELD_ALIASES.get(path, path).split("."):
        if not isinstance(cur, Mapping):
            return ""
        cur = cur.get(part)
    if cur is None:
        return ""
    if isinstance(cur, bool):
        return "true" if cur else "false"
    return str(cur)


def parse_field_selector(
    selector: str | None, allowed: set[str] | frozenset[str], resource: str
) -> Callable[[Mapping[str, Any]], bool]:
    """Parse a field selector into a predicate on objects.

    Args:
        selector: e.g. ``"metadata.name=head,status.phase!=Running"``.
        allowed: Field labels the resource supports.
        resource: Resource name, for the error message.

    Returns:
        A function returning whether an object matches.

    Raises:
        ApiError: ``400 BadRequest`` for a malformed selector or an unsupported field label.
    """
    if not selector or not selector.strip():
        return lambda _obj: True
    clauses: list[tuple[str, bool, str]] = []
    for part in selector.split(","):
        part = part.strip()
        m = re.match(r"^([^=!]+?)\s*(==|!=|=)\s*(.*)$", part)
        if not m:
            raise bad_request(f"invalid selector: '{selector}'; can't understand '{part}'")
        field, op, value = m.group(1), m.group(2), m.group(3)
        if field not in allowed:
            raise bad_request(f"field label not supported: {field}")
        clauses.append((field, op == "!=", value))

    def predicate(obj: Mapping[str, Any]) -> bool:
        return all((_lookup(obj, f) == v) != negate for f, negate, v in clauses)

    return predicate
