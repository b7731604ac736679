"""``ModelRegistry``: model versions with metrics and lineage under a storage root, and a champion.

Layout (a plain directory tree, so any shared filesystem or bucket mount works)::

    <root>/registry/<model>/<version>/model/          the model files (copied in)
    <root>/registry/<model>/<version>/version.json    metrics, lineage, created_at
    <root>/registry/<model>/champion.json             {"version": ..., "promoted_at": ..., "history": [...]}

Versions are immutable once registered. The champion pointer is replaced atomically (write a
temp file in the same directory, then ``os.replace``), so a reader sees the old champion or the
new one, never half a file. Promotion is champion/challenger: :func:`promotion_decision` says
whether a candidate may replace the champion, and why not.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

VERSION_FILE = "version.json"
CHAMPION_FILE = "champion.json"
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._=-]{0,127}$")


@dataclass(frozen=True)
class ModelVersion:
    """One registered version.

    Attributes:
        model: Model name.
        version: Version id (unique per model), e.g. ``2026-01-15-ab12cd34``.
        path: Directory of the version.
        metrics: Offline metrics at registration (holdout AUC, ...).
        lineage: Where it came from: run id, partition, training windows, data paths, code version.
        created_at: ISO timestamp (UTC).
    """

    model: str
    version: str
    path: Path
    metrics: dict[str, Any]
    lineage: dict[str, Any]
    created_at: str

    @property
    def model_path(self) -> Path:
        """Directory of the model files."""
        return self.path / "model"


@dataclass(frozen=True)
class PromotionDecision:
    """Whether a candidate may become champion, with the reasons.

    Attributes:
        promote: True when every gate passed.
        reasons: One line per gate, passed or failed.
        checks: Gate name -> passed.
    """

    promote: bool
    reasons: list[str] = field(default_factory=list)
    checks: dict[str, bool] = field(default_factory=dict)


def _write_json_atomic(path: Path, payload: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as handle:
            json.dump(payload, handle, indent=2, default=str)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def code_version() -> str:
    """The package version, plus the git commit when the code runs from a checkout."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        package = version("discord-ml-platform")
    except PackageNotFoundError:
        package = "unknown"
    head = Path(__file__).resolve().parents[2] / ".git" / "HEAD"
    commit = ""
    try:
        ref = head.read_text().strip()
        if ref.startswith("ref: "):
            ref_file = head.parent / ref[5:]
            commit = ref_file.read_text().strip() if ref_file.is_file() else ""
        else:
            commit = ref
    except OSError:
        pass
    return f"{package}+{commit[:12]}" if commit else package


class ModelRegistry:
    """Versions and champions of models under ``<root>/registry``.

    Args:
        root: The storage root every cluster shares (the data root).
    """

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root) / "registry"

    def _model_dir(self, model: str) -> Path:
        if not _VERSION.match(model):
            raise ValueError(f"invalid model name {model!r}")
        return self.root / model

    def register(
        self,
        model: str,
        version: str,
        model_path: str | Path,
        metrics: dict[str, Any],
        lineage: dict[str, Any],
        *,
        exist_ok: bool = True,
    ) -> ModelVersion:
        """Copy a model directory in as a new version, with its metrics and lineage.

        Registering the same version again (a retried run) replaces its metrics and files
        unless ``exist_ok`` is False.

        Raises:
            ValueError: bad version id.
            FileExistsError: the version exists and ``exist_ok`` is False.
        """
        if not _VERSION.match(version):
            raise ValueError(f"invalid version {version!r}")
        target = self._model_dir(model) / version
        if target.exists() and not exist_ok:
            raise FileExistsError(f"{model} version {version} exists")
        staging = Path(tempfile.mkdtemp(prefix=f".{version}.", dir=self._ensure(model)))
        try:
            shutil.copytree(model_path, staging / "model")
            created = dt.datetime.now(dt.UTC).isoformat()
            lineage = {"code_version": code_version(), **lineage}
            (staging / VERSION_FILE).write_text(
                json.dumps(
                    {"model": model, "version": version, "metrics": metrics, "lineage": lineage, "created_at": created},
                    indent=2,
                    default=str,
                )
            )
            if target.exists():
                shutil.rmtree(target)
            os.replace(staging, target)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        return self.get(model, version)

    def _ensure(self, model: str) -> Path:
        d = self._model_dir(model)
        d.mkdir(parents=True, exist_ok=True)
        return d

    def get(self, model: str, version: str) -> ModelVersion:
        """A registered version.

        Raises:
            KeyError: no such version.
        """
        path = self._model_dir(model) / version
        meta_file = path / VERSION_FILE
        if not meta_file.is_file():
            raise KeyError(f"{model} has no version {version}")
        meta = json.loads(meta_file.read_text())
        return ModelVersion(
            model, version, path, meta.get("metrics", {}), meta.get("lineage", {}), meta.get("created_at", "")
        )

    def versions(self, model: str) -> list[ModelVersion]:
        """All versions of ``model``, oldest first."""
        d = self._model_dir(model)
        if not d.is_dir():
            return []
        found = [self.get(model, p.name) for p in d.iterdir() if (p / VERSION_FILE).is_file()]
        return sorted(found, key=lambda v: (v.created_at, v.version))

    def get_champion(self, model: str) -> ModelVersion | None:
        """The promoted version, or None before the first promotion."""
        pointer = self._model_dir(model) / CHAMPION_FILE
        if not pointer.is_file():
            return None
        return self.get(model, json.loads(pointer.read_text())["version"])

    def promote(self, model: str, version: str, reason: str = "") -> ModelVersion:
        """Make ``version`` the champion (atomic pointer swap); keeps a promotion history.

        Raises:
            KeyError: the version is not registered.
        """
        candidate = self.get(model, version)
        pointer = self._model_dir(model) / CHAMPION_FILE
        history: list[dict[str, Any]] = []
        if pointer.is_file():
            history = json.loads(pointer.read_text()).get("history", [])
        now = dt.datetime.now(dt.UTC).isoformat()
        history.append({"version": version, "promoted_at": now, "reason": reason})
        _write_json_atomic(
            pointer, {"version": version, "promoted_at": now, "reason": reason, "history": history[-100:]}
        )
        return candidate


def promotion_decision(
    candidate: dict[str, Any],
    baseline: dict[str, Any] | None,
    champion: dict[str, Any] | None,
    *,
    metric: str = "auc",
    min_gain_over_baseline: float = 0.0,
    max_regression_vs_champion: float = 0.0,
) -> PromotionDecision:
    """Champion/challenger gates on one metric (higher is better).

    Args:
        candidate: The candidate's metrics.
        baseline: The baseline's metrics on the same holdout (None: gate fails, no evidence).
        champion: The champion's metrics on the same holdout (None: no champion yet, gate passes).
        metric: The metric compared.
        min_gain_over_baseline: Candidate must beat the baseline by more than this.
        max_regression_vs_champion: Candidate may trail the champion by at most this.

    Returns:
        The decision and a reason per gate.
    """
    value = float(candidate[metric])
    checks: dict[str, bool] = {}
    reasons: list[str] = []
    if baseline is None or metric not in baseline:
        checks["beats_baseline"] = False
        reasons.append("no baseline metrics: cannot show the candidate beats the baseline")
    else:
        gain = value - float(baseline[metric])
        checks["beats_baseline"] = gain > min_gain_over_baseline
        reasons.append(
            f"{metric} {value:.4f} vs baseline {float(baseline[metric]):.4f} ({gain:+.4f}, need > {min_gain_over_baseline:+.4f})"
        )
    if champion is None or metric not in champion:
        checks["not_worse_than_champion"] = True
        reasons.append("no champion yet")
    else:
        delta = value - float(champion[metric])
        checks["not_worse_than_champion"] = delta >= -max_regression_vs_champion
        reasons.append(
            f"{metric} {value:.4f} vs champion {float(champion[metric]):.4f} ({delta:+.4f}, allowed >= {-max_regression_vs_champion:+.4f})"
        )
    return PromotionDecision(all(checks.values()), reasons, checks)


__all__ = ["ModelRegistry", "ModelVersion", "PromotionDecision", "code_version", "promotion_decision"]
