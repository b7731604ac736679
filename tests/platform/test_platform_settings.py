"""The platform core's settings and config: every bad value is refused when it loads, naming its variable
or key, and a cluster spec's problems are reported at once."""

from __future__ import annotations

from pathlib import Path

import pytest

from discord_ml_platform.backends.local import LocalBackend
from discord_ml_platform.platform import Platform
from discord_ml_platform.spec import ConfigError, SpecError

BAD_IMAGE = "registry.example.com/ML/ray:7"  # no spaces, but a repository path must be lowercase
IMAGE_GRAMMAR = "must be an image reference [registry/]repository[:tag][@digest]"


@pytest.mark.parametrize("variable", ["DMP_RAY_IMAGE", "DMP_RAY_GPU_IMAGE"])
def test_a_bad_ray_image_variable_is_refused_when_the_platform_loads(variable: str) -> None:
    with pytest.raises(ConfigError) as info:
        Platform.from_env({variable: BAD_IMAGE})
    assert str(info.value).startswith(f"{variable}: image '{BAD_IMAGE}' {IMAGE_GRAMMAR}"), str(info.value)


@pytest.mark.parametrize(
    ("document", "key"),
    [
        (f"images:\n  cpu: {BAD_IMAGE}\n", "images.cpu"),
        (f"images:\n  gpu: '{BAD_IMAGE}\n'\n", "images.gpu"),  # a trailing newline is no reference either
        (f"catalog:\n  types:\n    h100-80gb:\n      image: {BAD_IMAGE}\n", "catalog.types.h100-80gb.image"),
    ],
)
def test_a_bad_image_in_the_platform_config_is_refused_when_it_loads(tmp_path: Path, document: str, key: str) -> None:
    config = tmp_path / "platform.yaml"
    config.write_text(document)
    with pytest.raises(ConfigError) as info:
        Platform.from_env({"DMP_PLATFORM_CONFIG": str(config)})
    message = str(info.value)
    assert message.startswith(f"DMP_PLATFORM_CONFIG={config}: {key}: image ") and IMAGE_GRAMMAR in message, message


def test_settings_changed_later_are_named_by_their_variable_as_when_they_load() -> None:
    platform = Platform.from_env({})
    with pytest.raises(ConfigError) as info:
        platform.with_settings(cluster_mode="kubejob", ray_image=BAD_IMAGE)
    message = str(info.value)
    assert "DMP_CLUSTER_MODE: Input should be 'raycluster' or 'rayjob' (got 'kubejob')" in message
    assert f"DMP_RAY_IMAGE: image '{BAD_IMAGE}' {IMAGE_GRAMMAR}" in message
    changed = platform.with_settings(ray_image="registry.example.com/ml/ray:7")
    assert changed.images.cpu == "registry.example.com/ml/ray:7" and changed.images.gpu == platform.images.gpu


def test_an_unknown_gpu_type_is_reported_with_every_other_problem() -> None:
    with pytest.raises(SpecError) as info:
        Platform.from_env({}).cluster_spec({"name": "Not_A_Name", "gpu_type": "h100", "workers": -1})
    problems = {p.field: p.message for p in info.value.problems}
    assert set(problems) == {"name", "gpu_type", "workers"}, problems
    assert problems["gpu_type"].startswith("unknown gpu_type 'h100'; did you mean 'h100-80gb'?")


def test_a_local_backend_reads_only_its_own_variables(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DMP_BACKEND", "cloud")  # wrong, but none of a local backend's business
    monkeypatch.setenv("DMP_LOCAL_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.setenv("DMP_RAY_TEMP_ROOT", str(tmp_path / "r"))
    backend = LocalBackend()
    assert (backend.state_dir, backend.temp_root) == (tmp_path / "state", tmp_path / "r")
    assert LocalBackend(state_dir=tmp_path / "elsewhere").temp_root == tmp_path / "r"
