"""Load what deploy/ ships: the kustomize objects, the Helm values, the platform config, Dockerfiles.

Kustomize is emulated for the one feature deploy/kustomization.yaml uses besides ``resources``
(a ``configMapGenerator`` without hash suffixes); a test compares the emulation with
``kubectl kustomize`` where kubectl is installed.
"""

from __future__ import annotations

import re
import shlex
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
DOCKER = DEPLOY / "docker"
HELM_VALUES = DEPLOY / "helm" / "dagster-values.yaml"
PLATFORM_CONFIG = DEPLOY / "platform-config.yaml"
DOCS = ROOT / "docs" / "deploy.md"
NAMESPACED_KINDS = {"ServiceAccount", "Role", "RoleBinding", "NetworkPolicy", "Deployment", "Service", "ConfigMap",
                    "Secret"}


def load_docs(path: Path) -> list[dict[str, Any]]:
    """The non-empty YAML documents of ``path``."""
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def kustomization() -> dict[str, Any]:
    return load_docs(DEPLOY / "kustomization.yaml")[0]


def kustomize_objects() -> list[dict[str, Any]]:
    """What ``kubectl kustomize deploy/`` outputs, as dicts (order aside)."""
    kust = kustomization()
    objects: list[dict[str, Any]] = []
    for resource in kust.get("resources", []):
        objects += load_docs(DEPLOY / resource)
    for gen in kust.get("configMapGenerator", []):
        data = {}
        for entry in gen.get("files", []):
            key, _, source = entry.partition("=")
            source = source or key
            data[Path(key).name] = (DEPLOY / source).read_text()
        meta = {"name": gen["name"]}
        if gen.get("namespace"):
            meta["namespace"] = gen["namespace"]
        objects.append({"apiVersion": "v1", "kind": "ConfigMap", "metadata": meta, "data": data})
    return objects


def find(objects: list[dict[str, Any]], kind: str, name: str, namespace: str | None = None) -> dict[str, Any] | None:
    for obj in objects:
        meta = obj.get("metadata") or {}
        if obj.get("kind") == kind and meta.get("name") == name and meta.get("namespace") == namespace:
            return obj
    return None


def of_kind(objects: list[dict[str, Any]], kind: str) -> list[dict[str, Any]]:
    return [o for o in objects if o.get("kind") == kind]


def helm_values() -> dict[str, Any]:
    return load_docs(HELM_VALUES)[0]


def user_deployment() -> dict[str, Any]:
    [deployment] = helm_values()["dagster-user-deployments"]["deployments"]
    return deployment


def k8s_run_launcher_values() -> dict[str, Any]:
    return helm_values()["runLauncher"]["config"]["k8sRunLauncher"]


def env_of(entries: list[dict[str, Any]]) -> dict[str, Any]:
    return {e["name"]: e.get("value", e.get("valueFrom")) for e in entries}


def pyproject() -> dict[str, Any]:
    return tomllib.loads((ROOT / "pyproject.toml").read_text())


def pinned(requirement_lines: list[str], name: str) -> str | None:
    """The ``==`` version of ``name`` (extras ignored) in requirement lines, or None."""
    pattern = re.compile(rf"^{re.escape(name)}(\[[^\]]*\])?==([^\s;#]+)", re.IGNORECASE)
    for line in requirement_lines:
        match = pattern.match(line.strip())
        if match:
            return match.group(2)
    return None


def constraints() -> list[str]:
    return [line for line in (ROOT / "constraints.txt").read_text().splitlines() if line and not line.startswith("#")]


# --- Dockerfiles ---------------------------------------------------------------------------------


@dataclass
class Stage:
    """One ``FROM`` stage: its base image (ARGs resolved) and instructions."""

    base: str
    alias: str | None
    instructions: list[tuple[str, str]] = field(default_factory=list)

    def all(self, name: str) -> list[str]:
        return [args for instr, args in self.instructions if instr == name]


@dataclass
class Dockerfile:
    path: Path
    global_args: dict[str, str]
    stages: list[Stage]

    @property
    def final(self) -> Stage:
        return self.stages[-1]

    def run_commands(self) -> list[str]:
        return [args for stage in self.stages for args in stage.all("RUN")]


def logical_lines(text: str) -> list[str]:
    """Instructions with continuations joined and comments dropped (parser directives included)."""
    out, current = [], ""
    for raw in text.splitlines():
        line = raw.strip()
        if not current and (not line or line.startswith("#")):
            continue
        if line.startswith("#"):
            continue  # a comment inside a continued instruction
        if line.endswith("\\"):
            current += line[:-1] + " "
            continue
        out.append(current + line)
        current = ""
    if current:
        out.append(current)
    return out


def substitute(text: str, values: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)\}|\$(\w+)", lambda m: values.get(m.group(1) or m.group(2), m.group(0)), text)


def parse_dockerfile(path: Path, build_args: dict[str, str] | None = None) -> Dockerfile:
    """Parse a Dockerfile enough for static checks; ``build_args`` act like ``--build-arg``."""
    build_args = build_args or {}
    global_args: dict[str, str] = {}
    stages: list[Stage] = []
    for line in logical_lines(path.read_text()):
        instr, _, args = line.partition(" ")
        instr, args = instr.upper(), args.strip()
        if instr == "ARG" and not stages:
            name, _, default = args.partition("=")
            global_args[name] = build_args.get(name, default)
        elif instr == "FROM":
            parts = args.split()
            alias = parts[2] if len(parts) >= 3 and parts[1].upper() == "AS" else None
            stages.append(Stage(substitute(parts[0], global_args), alias))
        else:
            stages[-1].instructions.append((instr, args))
    return Dockerfile(path, global_args, stages)


def pip_installs(command: str) -> list[list[str]]:
    """The argument lists of every ``pip install`` in a RUN command."""
    found = []
    for part in command.split("&&"):
        if not re.search(r"\bpip install\b", part):
            continue
        words = shlex.split(part.strip())
        if "pip" in words and "install" in words:
            found.append(words[words.index("install") + 1:])
    return found
