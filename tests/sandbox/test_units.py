"""Pure units: selector parsing and patch algorithms (no server)."""

from __future__ import annotations

import pytest

from discord_ml_platform.sandbox.errors import ApiError
from discord_ml_platform.sandbox.patching import json_patch, merge_patch, strategic_merge_patch
from discord_ml_platform.sandbox.selectors import labels_match, parse_field_selector, parse_label_selector


@pytest.mark.parametrize(("selector", "labels", "expected"), [
    ("", {}, True),
    ("a=1", {"a": "1"}, True),
    ("a=1", {"a": "2"}, False),
    ("a!=1", {}, True),
    ("a notin (1,2)", {"a": "3"}, True),
    ("a notin (1,2)", {}, True),
    ("a in (1, 2)", {"a": "2"}, True),
    ("a in (1, 2)", {}, False),
    ("mlplatform.discord.com/owner", {"mlplatform.discord.com/owner": "x"}, True),
    ("!a", {"a": ""}, False),
    ("size>5", {"size": "6"}, True),
    ("size<5", {"size": "6"}, False),
    ("a=1, b in (x), !c", {"a": "1", "b": "x"}, True),
])
def test_label_selector_matching(selector: str, labels: dict[str, str], expected: bool) -> None:
    assert labels_match(parse_label_selector(selector), labels) is expected


@pytest.mark.parametrize("bad", ["a in (b", "a=b=c", "=x", "a,,b", "bad key=1", "a>x"])
def test_bad_label_selectors(bad: str) -> None:
    with pytest.raises(ApiError) as err:
        parse_label_selector(bad)
    assert err.value.code == 400


def test_field_selector() -> None:
    pred = parse_field_selector("metadata.name=a,status.phase!=Running", {"metadata.name", "status.phase"}, "pods")
    assert pred({"metadata": {"name": "a"}, "status": {"phase": "Pending"}})
    assert not pred({"metadata": {"name": "a"}, "status": {"phase": "Running"}})
    with pytest.raises(ApiError):
        parse_field_selector("spec.foo=1", {"metadata.name"}, "pods")


def test_merge_patch_rfc7386() -> None:
    target = {"a": "b", "c": {"d": "e", "f": "g"}, "l": [1, 2]}
    patch = {"a": "z", "c": {"f": None}, "l": [3]}
    assert merge_patch(target, patch) == {"a": "z", "c": {"d": "e"}, "l": [3]}
    assert target["c"]["f"] == "g"  # input untouched


def test_strategic_merge_patch_merges_lists_by_key() -> None:
    target = {"spec": {"containers": [{"name": "a", "image": "1"}, {"name": "b", "image": "1"}]},
              "metadata": {"finalizers": ["x"]}}
    patch = {"spec": {"containers": [{"name": "b", "image": "2"}, {"name": "c", "image": "3"},
                                     {"name": "a", "$patch": "delete"}]},
             "metadata": {"finalizers": ["y"]}}
    out = strategic_merge_patch(target, patch)
    assert out["spec"]["containers"] == [{"name": "b", "image": "2"}, {"name": "c", "image": "3"}]
    assert out["metadata"]["finalizers"] == ["x", "y"]
    out = strategic_merge_patch(out, {"metadata": {"$deleteFromPrimitiveList/finalizers": ["x"]}})
    assert out["metadata"]["finalizers"] == ["y"]


def test_json_patch_operations() -> None:
    doc = {"a": [1, 2], "b": {"c": 1}}
    out = json_patch(doc, [
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "add", "path": "/a/0", "value": 0},
        {"op": "remove", "path": "/a/1"},
        {"op": "move", "from": "/b/c", "path": "/d"},
        {"op": "copy", "from": "/d", "path": "/e"},
        {"op": "test", "path": "/e", "value": 1},
    ])
    assert out == {"a": [0, 2, 3], "b": {}, "d": 1, "e": 1}
    with pytest.raises(ApiError) as err:
        json_patch(doc, [{"op": "replace", "path": "/missing", "value": 1}])
    assert err.value.code == 422
    with pytest.raises(ApiError) as err:
        json_patch(doc, {"op": "add"})
    assert err.value.code == 400
