"""Static checks of the Dockerfiles (no Docker engine here): base images, users, locked installs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from discord_ml_platform.spec import DEFAULT_POLICY, RAY_VERSION, platform_config_from_yaml
from discord_ml_platform.spec.cluster_spec import DEFAULT_GPU_IMAGE, DEFAULT_IMAGE

from .deploy_files import (
    DOCKER,
    PLATFORM_CONFIG,
    ROOT,
    constraints,
    logical_lines,
    parse_dockerfile,
    pinned,
    pip_installs,
    pyproject,
)

CODE = DOCKER / "code-location.Dockerfile"
RAY = DOCKER / "ray.Dockerfile"
DOCKERFILES = [CODE, RAY]


def user_of(path: Path, **build_args: str) -> str:
    users = parse_dockerfile(path, build_args).final.all("USER")
    assert users, f"{path.name}: the final stage sets no USER (it would run as root)"
    return users[-1]


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_dockerfile_parses_and_every_instruction_is_known(path: Path) -> None:
    known = {"FROM", "ARG", "ENV", "RUN", "COPY", "WORKDIR", "USER", "LABEL", "EXPOSE", "CMD", "ENTRYPOINT"}
    instructions = [line.split()[0].upper() for line in logical_lines(path.read_text())]
    assert instructions[0] in ("ARG", "FROM")
    assert set(instructions) <= known, set(instructions) - known
    assert path.read_text().startswith("# syntax=docker/dockerfile:1")


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_final_user_is_not_root(path: Path) -> None:
    user = user_of(path)
    name, _, group = user.partition(":")
    assert name not in ("root", "0") and group not in ("root", "0"), user
    assert name.isdigit(), f"numeric USER lets the kubelet check runAsNonRoot without /etc/passwd: {user}"


def test_ray_image_runs_as_the_uid_and_gid_the_policy_renders() -> None:
    policy = platform_config_from_yaml(PLATFORM_CONFIG.read_text()).policy
    uid, gid = (int(x) for x in user_of(RAY).split(":"))
    assert (uid, gid) == (policy.run_as_user, policy.run_as_group) == (DEFAULT_POLICY.run_as_user,
                                                                       DEFAULT_POLICY.run_as_group)
    assert policy.fs_group == gid


def test_code_location_user_is_created_with_the_uid_it_runs_as() -> None:
    uid, gid = user_of(CODE).split(":")
    runs = " ".join(parse_dockerfile(CODE).final.all("RUN"))
    assert re.search(rf"useradd [^&]*--uid {uid}\b", runs) and re.search(rf"groupadd [^&]*--gid {gid}\b", runs)


def test_ray_versions_agree_everywhere() -> None:
    ray_pin = pinned(pyproject()["project"]["dependencies"], "ray")
    df = parse_dockerfile(RAY)
    assert df.global_args["RAY_VERSION"] == ray_pin == pinned(constraints(), "ray") == RAY_VERSION


@pytest.mark.parametrize(("variant", "expected"), [("cpu", DEFAULT_IMAGE), ("gpu", DEFAULT_GPU_IMAGE)])
def test_ray_base_image_is_the_pinned_rayproject_image(variant: str, expected: str) -> None:
    base = parse_dockerfile(RAY, {"RAY_VARIANT": variant}).stages[0].base
    assert base == expected == f"rayproject/ray:{RAY_VERSION}-py311-{variant}"


def test_ray_dockerfile_defaults_to_cpu_and_knows_both_variants() -> None:
    df = parse_dockerfile(RAY)
    assert df.global_args["RAY_VARIANT"] == "cpu"
    case = next(cmd for cmd in df.run_commands() if "case" in cmd)
    assert re.search(r"\bcpu\)", case) and re.search(r"\bgpu\)", case)


def test_python_versions_match_requires_python() -> None:
    requires = pyproject()["project"]["requires-python"]  # ">=3.11,<3.13"
    code_python = parse_dockerfile(CODE).global_args["PYTHON_VERSION"]
    ray_python = parse_dockerfile(RAY).global_args["PYTHON_TAG"]
    assert code_python == "3.11" and ray_python == "py311"
    assert ">=3.11" in requires and "<3.13" in requires
    assert parse_dockerfile(CODE).stages[0].base == "python:3.11-slim-bookworm"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_every_pip_install_uses_the_constraints_file_and_only_locked_packages(path: Path) -> None:
    df = parse_dockerfile(path)
    installs = [args for cmd in df.run_commands() for args in pip_installs(cmd)]
    assert installs, "no pip install found"
    locked = constraints()
    for args in installs:
        assert "-c" in args and args[args.index("-c") + 1] == "constraints.txt", args
        copied = " ".join(src for stage in df.stages for src in stage.all("COPY"))
        assert "constraints.txt" in copied
        packages = [a for a in args if not a.startswith("-") and a != "constraints.txt"
                    and not a.startswith(("http://", "https://", "${"))]
        for package in packages:
            if package == ".":
                continue
            name, _, version = package.partition("==")
            assert pinned(locked, name), f"{package} is not locked in constraints.txt"
            if version:
                assert version == pinned(locked, name) == pinned(pyproject()["project"]["dependencies"], name)
    assert any("." in args for args in installs), "the project itself is never installed"


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_copied_paths_exist_and_the_dockerignore_lets_them_through(path: Path) -> None:
    ignore = (path.parent / f"{path.name}.dockerignore").read_text().splitlines()
    allowed = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore, "the context must exclude everything by default (.venv, data, history)"
    for stage in parse_dockerfile(path).stages:
        for args in stage.all("COPY"):
            if "--from=" in args:
                continue  # from an earlier stage, not the context
            words = [w for w in args.split() if not w.startswith("--")]
            for source in words[:-1]:
                assert (ROOT / source).exists(), source
                assert source.rstrip("/") in allowed, f"{source} is excluded by the .dockerignore"


def test_code_location_serves_the_module_of_pyproject() -> None:
    cmd = parse_dockerfile(CODE).final.all("CMD")[-1]
    assert pyproject()["tool"]["dagster"]["module_name"] in cmd
    env = " ".join(parse_dockerfile(CODE).final.all("ENV"))
    assert "DAGSTER_HOME=/opt/dagster/dagster_home" in env and "RAY_USAGE_STATS_ENABLED=0" in env


@pytest.mark.parametrize("path", DOCKERFILES, ids=lambda p: p.name)
def test_images_are_labelled_with_their_name(path: Path) -> None:
    labels = " ".join(parse_dockerfile(path).final.all("LABEL"))
    assert re.search(r'org\.opencontainers\.image\.title="dmp-(code-location|ray)"', labels)


def test_the_package_metadata_builds_without_deprecation_noise() -> None:
    """An SPDX license string (setuptools >= 77), not the deprecated table that made every install print
    setuptools' warning four times."""
    from .deploy_files import pyproject

    project = pyproject()
    assert isinstance(project["project"]["license"], str)
    assert any(req.startswith("setuptools>=77") for req in project["build-system"]["requires"])
