"""Version policies: parsing (with errors that list the spellings) and choosing versions."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from service.repository.version_policy import VersionPolicy
from service.settings import Settings


@pytest.mark.parametrize(
    ("text", "on_disk", "failed", "chosen"),
    [
        ("latest", [1, 2, 3], [], [3]),
        ("latest:1", [3, 1, 2], [], [3]),
        ("latest:2", [1, 2, 3], [], [2, 3]),
        ("latest:5", [1, 2], [], [1, 2]),
        ("latest", [1, 2, 3], [3], [2]),  # the newest failed: fall back, do not go dark
        ("latest:2", [1, 2, 3], [2], [1, 3]),
        ("specific:1,3", [1, 2, 3], [], [1, 3]),
        ("specific:2,7", [1, 2, 3], [], [2]),
        ("specific:2", [1, 2, 3], [2], []),
        ("latest", [], [], []),
    ],
)
def test_select(text, on_disk, failed, chosen):
    assert VersionPolicy.parse(text).select(on_disk, failed=failed) == chosen


@pytest.mark.parametrize("text", ["latest", "latest:3", "specific:1,2"])
def test_round_trip(text):
    assert str(VersionPolicy.parse(text)) == (text if ":" in text else "latest:1")


@pytest.mark.parametrize(
    "text", ["", "newest", "latest:0", "latest:x", "specific", "specific:", "specific:0,1"]
)
def test_bad_spellings_are_refused_with_the_valid_ones(text):
    with pytest.raises(ValueError, match=r"is not one of latest, latest:N \(N >= 1\) or specific"):
        VersionPolicy.parse(text)


def test_settings_refuse_a_bad_policy(monkeypatch):
    monkeypatch.setenv("MNIST_VERSION_POLICY", "latest:0")
    with pytest.raises(ValidationError, match="version policy 'latest:0' is not one of"):
        Settings()


def test_an_empty_admin_token_means_none(monkeypatch):
    monkeypatch.setenv("MNIST_ADMIN_TOKEN", "")
    assert Settings().admin_token is None
    monkeypatch.setenv("MNIST_ADMIN_TOKEN", "s3cret")
    token = Settings().admin_token
    assert token is not None and token.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(Settings())
