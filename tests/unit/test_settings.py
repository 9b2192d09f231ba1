"""Settings come from MNIST_* variables and reject what the service could not run with."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from devtools import REPO_ROOT
from service.settings import Settings


def test_environment_variables(monkeypatch):
    monkeypatch.setenv("MNIST_VARIANTS", "group,layer")
    monkeypatch.setenv("MNIST_DEFAULT_VARIANT", "layer")
    monkeypatch.setenv("MNIST_MAX_BATCH_SIZE", "1")
    monkeypatch.setenv("MNIST_PORT", "9001")
    settings = Settings()
    assert settings.variants == ["group", "layer"]
    assert settings.default_variant == "layer"
    assert settings.port == 9001
    assert settings.max_batch_size == 1


def test_variants_default_to_the_models_directory(tmp_path):
    from service.repository.variants import discover_variants

    for variant in ("layer", "group"):
        (tmp_path / variant / "1").mkdir(parents=True)
        (tmp_path / variant / "1" / "manifest.json").write_text("{}")
    (tmp_path / "instance" / "1").mkdir(parents=True)  # no manifest: not a servable version
    assert Settings(models_dir=tmp_path).variants == []
    assert discover_variants(Settings(models_dir=tmp_path)) == ["group", "layer"]
    assert discover_variants(Settings(models_dir=tmp_path, variants=["layer"])) == ["layer"]


@pytest.mark.parametrize(
    ("env", "message"),
    [
        (
            {"MNIST_VARIANTS": "group", "MNIST_DEFAULT_VARIANT": "layer"},
            "MNIST_DEFAULT_VARIANT=layer is not among",
        ),
        (
            {"MNIST_DEFAULT_BACKEND": "torch"},
            "unknown backend 'torch': choose one of onnx, savedmodel",
        ),
        ({"MNIST_MAX_BATCH_SIZE": "0"}, "greater than or equal to 1"),
        ({"MNIST_PORT": "70000"}, "less than or equal to 65535"),
    ],
)
def test_invalid_settings(monkeypatch, env, message):
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    with pytest.raises(ValidationError, match=message):
        Settings()


@pytest.mark.parametrize(
    ("inline", "asked", "cpus", "threads"),
    [(True, 2, 2, 2), (True, 2, 1, 1), (True, 4, 2, 2), (True, 1, 8, 1), (False, 2, 2, 1)],
)
def test_lone_session_threads_stay_within_the_cpus(monkeypatch, inline, asked, cpus, threads):
    monkeypatch.setattr("service.settings.available_cpus", lambda: cpus)
    settings = Settings(inline_lone_requests=inline, lone_request_threads=asked)
    assert settings.lone_session_threads == threads


def test_the_version_comes_from_pyproject_when_the_package_is_not_installed(monkeypatch):
    """The container copies the code and pyproject.toml without installing the package."""
    import importlib.metadata
    import tomllib

    import service

    def not_installed(name: str) -> str:
        raise importlib.metadata.PackageNotFoundError(name)

    monkeypatch.setattr(service, "version", not_installed)
    expected = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["version"]
    assert service._version() == expected == service.__version__
