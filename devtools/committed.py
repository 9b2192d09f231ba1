"""The model versions the repository ships, whatever else `models/` holds.

A user who follows the README retrains (`make train ARGS=...`) and gets a version 4 in
`models/`; the tests and benchmarks must still read the committed versions, or `make test`
fails after a retrain. `committed_models()` is `models/` itself when it holds only what git
tracks, else a mirror of the tracked files (hard links, copies across file systems) in
`.committed-models/` (ignored by git), rebuilt when the tracked files change.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
from pathlib import Path

from devtools import REPO_ROOT

MIRROR_NAME = ".committed-models"


@functools.cache
def committed_models(repo: Path = REPO_ROOT) -> Path:
    """The directory of `repo`'s committed model versions (see the module's docstring)."""
    models, mirror = repo / "models", repo / MIRROR_NAME
    tracked = _tracked_files(repo)
    if tracked is None:  # not a git checkout (a container, an sdist): models/ is what shipped
        return models
    present = {path.relative_to(models).as_posix() for path in models.rglob("*") if path.is_file()}
    if present == set(tracked):
        return models
    stamp = hashlib.sha256("\n".join(f"{p} {tracked[p]}" for p in sorted(tracked)).encode())
    marker = mirror / ".tracked"
    if marker.is_file() and marker.read_text() == stamp.hexdigest():
        return mirror
    _build_mirror(models, mirror, tracked)
    marker.write_text(stamp.hexdigest())
    return mirror


def _tracked_files(repo: Path) -> dict[str, str] | None:
    """Tracked files under models/ (relative to it) and their blob ids; None outside git."""
    try:
        listing = subprocess.run(
            ["git", "ls-files", "-s", "-z", "--", "models"],
            cwd=repo,
            capture_output=True,
            check=True,
        ).stdout.decode()
    except (OSError, subprocess.CalledProcessError):
        return None
    files = {}
    for entry in filter(None, listing.split("\0")):
        meta, path = entry.split("\t", 1)
        files[Path(path).relative_to("models").as_posix()] = meta.split()[1]
    return files or None


def _build_mirror(models: Path, mirror: Path, tracked: dict[str, str]) -> None:
    shutil.rmtree(mirror, ignore_errors=True)
    for relative in tracked:
        source, target = models / relative, mirror / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        try:
            os.link(source, target)
        except OSError:
            shutil.copy2(source, target)
