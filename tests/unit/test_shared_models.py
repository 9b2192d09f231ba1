"""A models directory written by one user (the trainer) and served by another (the API):
compose runs them as different uids, a Kubernetes training Job may too.

The reader runs in a forked child that drops root for `nobody` (as root, permission checks
would not apply); it reads with the modules the parent has already imported.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from devtools.committed import committed_models
from mnist_shared.manifest import MANIFEST_NAME, Manifest, list_versions
from service.runtime.model_loading import LoadFailed, load_version
from training.export import share_like

NOBODY = 65534
pytestmark = pytest.mark.skipif(
    not hasattr(os, "fork") or os.geteuid() != 0, reason="needs root to run a reader as nobody"
)
COMMITTED = committed_models() / "group" / "3"


def as_nobody(read: Callable[[], object]) -> object:
    """`read()` in a forked child running as nobody; its result (JSON) or its error's text."""
    reader, writer = os.pipe()
    child = os.fork()
    if child == 0:  # pragma: no cover - the child
        os.close(reader)
        try:
            os.setgroups([])
            os.setgid(NOBODY)
            os.setuid(NOBODY)
            answer = {"result": read()}
        except BaseException as error:
            answer = {"error": f"{type(error).__name__}: {error}"}
        os.write(writer, json.dumps(answer).encode())
        os._exit(0)
    os.close(writer)
    with os.fdopen(reader) as pipe:
        answer = json.loads(pipe.read())
    os.waitpid(child, 0)
    if "error" in answer:
        raise AssertionError(answer["error"])
    return answer["result"]


@pytest.fixture
def models() -> Iterator[Path]:
    """A models directory others may enter (pytest's own tmp_path is private to root)."""
    directory = Path(tempfile.mkdtemp(prefix="shared-models-"))
    directory.chmod(0o755)
    (directory / "group").mkdir(mode=0o755)
    yield directory
    shutil.rmtree(directory)


def _copy_version(models: Path, version: int) -> Path:
    """The committed group version as `version`, written the way export writes one: in a
    mkdtemp staging directory (mode 0700), renamed into place."""
    staging = Path(tempfile.mkdtemp(dir=models / "group"))
    shutil.copytree(
        COMMITTED, staging, dirs_exist_ok=True, ignore=shutil.ignore_patterns("*.keras")
    )
    manifest = Manifest.read(staging)
    manifest.version = version
    manifest.files = {k: v for k, v in manifest.files.items() if not k.endswith(".keras")}
    (staging / MANIFEST_NAME).write_text(manifest.model_dump_json(indent=2))
    staging.chmod(0o700)  # copytree copied the source's mode over mkdtemp's
    return staging


def test_an_exported_version_is_readable_by_the_server_s_user(models):
    staging = _copy_version(models, 1)
    assert stat.S_IMODE(staging.stat().st_mode) == 0o700  # what mkdtemp made
    share_like(staging, models / "group")
    staging.rename(models / "group" / "1")

    def read() -> list[int]:
        load_version(models / "group" / "1", threads=1)
        return list_versions(models / "group")

    assert as_nobody(read) == [1]


def test_a_version_the_server_cannot_read_fails_with_its_reason_and_hides_nothing(models):
    readable = _copy_version(models, 1)
    share_like(readable, models / "group")
    readable.rename(models / "group" / "1")
    _copy_version(models, 2).rename(models / "group" / "2")  # left 0700, as before the fix

    def read() -> dict[str, object]:
        versions = list_versions(models / "group")  # used to raise PermissionError: a 500
        try:
            load_version(models / "group" / "2", threads=1)
            refused = ""
        except LoadFailed as error:
            refused = str(error)
        load_version(models / "group" / "1", threads=1)
        return {"versions": versions, "refused": refused}

    answer = as_nobody(read)
    assert answer["versions"] == [1, 2]
    assert "manifest.json cannot be read" in answer["refused"]
    assert "Permission denied" in answer["refused"]
