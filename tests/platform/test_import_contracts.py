"""Import direction (pyproject's import-linter contracts): pipelines -> resources -> discord_ml_platform,
``spec/`` pure, the core never reaching into the CLI, the code location or the Dagster adapters."""

import os
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.timeout(120)


def lint_imports(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(Path(sys.executable).parent / "lint-imports"), "--no-cache", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=110)


def test_every_import_contract_is_kept() -> None:
    result = lint_imports()
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-2000:]
    assert "broken" in result.stdout and " 0 broken" in result.stdout


# One module that breaks exactly one of the project's contracts, per contract (in pyproject's order).
VIOLATIONS = [
    ("discord_ml_platform/_contract_probe.py", "import pipelines"),  # the core reaches up to the code location
    ("discord_ml_platform/spec/_contract_probe.py", "import requests"),  # spec does I/O
    ("discord_ml_platform/jobs/_contract_probe.py", "import discord_ml_platform.cli"),  # the core imports the CLI
    ("discord_ml_platform/sandbox/_contract_probe.py", "import dagster"),  # the core needs Dagster
]


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The three root packages and pyproject.toml (the project's own contracts), copied: probes go there."""
    copy = tmp_path_factory.mktemp("contracts")
    for package in ("discord_ml_platform", "pipelines", "resources"):
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.mark.parametrize(("index", "path", "line"), [(i, *v) for i, v in enumerate(VIOLATIONS)],
                         ids=[path for path, _ in VIOLATIONS])
def test_a_module_that_breaks_a_contract_is_reported(project_copy: Path, index: int, path: str, line: str) -> None:
    """The project's contracts are not vacuous: a module that breaks one is reported, the others stay kept."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    contracts = [contract["name"] for contract in config["contracts"]]
    assert len(contracts) == len(VIOLATIONS)  # a new contract gets its own violation here
    probe = project_copy / path
    probe.write_text(f"{line}\n")
    try:
        # The copy comes first on the path: import-linter analyses it, not the installed project.
        result = subprocess.run(
            [str(Path(sys.executable).parent / "lint-imports"), "--no-cache"], cwd=project_copy,
            env={**os.environ, "PYTHONPATH": str(project_copy)}, capture_output=True, text=True, timeout=110)
    finally:
        probe.unlink()
    report = result.stdout + result.stderr
    module = path.removesuffix(".py").replace("/", ".")
    assert result.returncode == 1 and f"Contracts: {len(contracts) - 1} kept, 1 broken." in report, report[-3000:]
    assert f"{contracts[index]} BROKEN" in report and module in report, report[-3000:]
