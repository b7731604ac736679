"""Golden files: the rendered manifests of a few specs, byte for byte, and their CRD validity.

Regenerate after an intended change with ``UPDATE_GOLDEN=1 pytest tests/spec`` and review the diff:
the files under ``golden/`` are the contract with KubeRay.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from kuberay_crd_schema import manifest_problems, mutated
from spec_cases import CASES

from discord_ml_platform.spec import manifests_to_yaml

GOLDEN_DIR = Path(__file__).parent / "golden"
UPDATE = os.environ.get("UPDATE_GOLDEN") == "1"


@pytest.mark.parametrize("case", sorted(CASES))
def test_rendered_yaml_matches_golden(case: str) -> None:
    text = manifests_to_yaml([CASES[case]()])
    golden = GOLDEN_DIR / f"{case}.yaml"
    if UPDATE:
        golden.parent.mkdir(exist_ok=True)
        golden.write_text(text)
    assert golden.exists(), f"missing {golden.name}; run with UPDATE_GOLDEN=1 and review it"
    assert text == golden.read_text(), f"{case} differs from golden/{golden.name}; UPDATE_GOLDEN=1 if intended"


def test_no_stray_golden_files() -> None:
    assert sorted(p.stem for p in GOLDEN_DIR.glob("*.yaml")) == sorted(CASES)


@pytest.mark.parametrize("case", sorted(CASES))
def test_manifest_is_valid_for_the_kuberay_crd(case: str) -> None:
    assert manifest_problems(CASES[case]()) == []


def test_strict_check_catches_a_misspelt_field() -> None:
    manifest = mutated(CASES["a10g-2x1"]())
    pod = manifest["spec"]["workerGroupSpecs"][0]["template"]["spec"]
    pod["tolerration"] = pod.pop("tolerations")
    assert manifest_problems(manifest) == [
        "spec.workerGroupSpecs[0].template.spec.tolerration: unknown field (a real API server prunes it silently)"
    ]


def test_strict_check_catches_misplaced_and_mistyped_fields() -> None:
    manifest = mutated(CASES["l4-autoscaling"]())
    manifest["spec"]["headGroupSpec"]["template"]["spec"]["containers"][0]["securityContext"]["fsGroup"] = 100
    manifest["spec"]["workerGroupSpecs"][0]["replicas"] = "2"
    manifest["metadata"]["label"] = {}
    problems = manifest_problems(manifest)
    assert any("containers[0].securityContext.fsGroup: unknown field" in p for p in problems)
    assert any(p.startswith("spec.workerGroupSpecs.0.replicas:") and "integer" in p for p in problems)
    assert "metadata.label: not an ObjectMeta field" in problems


def test_strict_check_catches_bad_quantities_and_missing_required() -> None:
    manifest = mutated(CASES["cpu-2-workers"]())
    worker = manifest["spec"]["workerGroupSpecs"][0]
    worker["template"]["spec"]["containers"][0]["resources"]["limits"]["memory"] = "8 GB"
    del worker["groupName"]
    problems = manifest_problems(manifest)
    assert any("limits.memory" in p and "does not match" in p for p in problems)
    assert any("'groupName' is a required property" in p for p in problems)


def test_rayjob_strict_check_catches_unknown_field() -> None:
    manifest = mutated(CASES["rayjob-a100"]())
    manifest["spec"]["rayClusterSpec"]["headGroupSpec"]["rayStartParam"] = {}
    assert manifest_problems(manifest) == [
        "spec.rayClusterSpec.headGroupSpec.rayStartParam: unknown field (a real API server prunes it silently)"
    ]
