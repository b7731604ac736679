"""Import direction (pyproject's import-linter contracts): pipelines -> resources -> discord_ml_platform,
``spec/`` pure, the core never reaching into the CLI, the code location or the Dagster adapters."""

import subprocess
import sys
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


def test_a_core_module_that_imports_the_code_location_breaks_the_contracts(tmp_path: Path) -> None:
    """The contracts are not vacuous: the layer check catches a core module reaching up."""
    config = tmp_path / "contracts.toml"
    config.write_text(
        '[tool.importlinter]\nroot_packages = ["discord_ml_platform", "pipelines", "resources"]\n'
        '[[tool.importlinter.contracts]]\nname = "layers"\ntype = "layers"\n'
        'layers = ["discord_ml_platform.cli", "discord_ml_platform.platform"]\n'
    )
    # cli imports platform (allowed downward); asking for the reverse order must fail.
    reversed_config = config.read_text().replace(
        '"discord_ml_platform.cli", "discord_ml_platform.platform"', '"discord_ml_platform.platform", "discord_ml_platform.cli"')
    config.write_text(reversed_config)
    result = lint_imports("--config", str(config))
    assert result.returncode != 0 and "BROKEN" in result.stdout.upper(), result.stdout[-2000:]
