"""Loading one model version so that it is fit to take traffic: the manifest read, its paths
shown to stay inside the version, the ONNX file found listed with a matching sha256, the
session built and a smoke check passed.

Blocking work: the registry calls `load_version` in a worker thread, so requests keep being
served while a new version loads.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from pydantic import ValidationError

from mnist_shared.manifest import FP32, MANIFEST_NAME, Manifest, check_paths
from mnist_shared.preprocessing import IMAGE_SIZE
from service.runtime.backends import Backend, OnnxBackend
from service.runtime.folded_check import CLASSES, split_digit_scores

# What a version's files looked like when it was tried: (path, size, mtime) of each file. A
# failed version is retried only once this changes, so a broken export is reported once, not
# at every poll.
Fingerprint = tuple[tuple[str, int, int], ...]


class LoadFailed(Exception):
    """A version that must not serve; the message is the reason shown in /models."""


def fingerprint(version_dir: Path) -> Fingerprint:
    entries = []
    for path in sorted(version_dir.rglob("*")):
        if path.is_file():
            stat = path.stat()
            entries.append(
                (path.relative_to(version_dir).as_posix(), stat.st_size, stat.st_mtime_ns)
            )
    return tuple(entries)


def load_version(
    version_dir: Path,
    threads: int,
    lone_session_threads: int = 1,
    digit_check: bytes | None = None,
) -> tuple[Manifest, list[Backend]]:
    """The version's manifest and its verified, smoke-checked ONNX backends, one per precision
    it serves (fp32, and each twin that passed its gate; sessions of `threads` and
    `lone_session_threads` threads with `digit_check` folded in, see `OnnxBackend`);
    LoadFailed saying why otherwise: a twin the manifest vouches for but that does not load
    refuses the whole version, as a damaged fp32 file would."""
    try:
        manifest = Manifest.read(version_dir)
    except (OSError, ValidationError, ValueError) as error:
        raise LoadFailed(f"{MANIFEST_NAME} cannot be read ({_first_line(error)})") from None
    if str(manifest.version) != version_dir.name:
        raise LoadFailed(
            f"{MANIFEST_NAME} says version {manifest.version} but the directory is "
            f"{version_dir.name}: re-export the model instead of renaming its directory"
        )
    try:
        # Every path up front, the SavedModel's too: a manifest pointing outside its version is
        # refused as a whole, not only once someone asks for the TensorFlow backend.
        check_paths(version_dir, manifest)
    except ValueError as error:  # a path leading out of the version
        raise LoadFailed(str(error)) from None
    backends = [
        _onnx_backend(version_dir, manifest, precision, threads, lone_session_threads, digit_check)
        for precision in manifest.precision_files()
    ]
    for backend in backends:
        smoke_check(backend)
    return manifest, backends


def _onnx_backend(
    version_dir: Path,
    manifest: Manifest,
    precision: str,
    threads: int,
    lone_threads: int,
    digit_check: bytes | None,
) -> Backend:
    try:
        return OnnxBackend(version_dir, manifest, threads, lone_threads, precision, digit_check)
    # verify_artifacts (unlisted, missing, outside, sha256 mismatch) and FoldFailed
    except ValueError as error:
        raise LoadFailed(str(error)) from None
    except Exception as error:  # onnxruntime's own errors share no base class
        file = manifest.precision_files()[precision]
        raise LoadFailed(f"{file} does not load in onnxruntime ({_first_line(error)})") from None


def smoke_check(backend: Backend) -> None:
    """Fixed inputs through the model (which also warms it up): shape (N, 10), finite, each
    row a probability distribution, digit scores in [0, 1] where the check is folded in, and
    the same from the lone-request path."""
    images = _smoke_images()
    check = "smoke check" if backend.precision == FP32 else f"smoke check ({backend.precision})"
    try:
        answer = np.asarray(backend.predict(images))
        lone = np.asarray(backend.predict_lone(images[:1]))
    except Exception as error:
        raise LoadFailed(f"{check}: inference raised {_first_line(error)}") from None
    columns = CLASSES + 1 if backend.scores_digits else CLASSES
    if answer.shape != (len(images), columns):
        raise LoadFailed(
            f"{check}: output shape {answer.shape}, expected ({len(images)}, {columns})"
        )
    if not np.isfinite(answer).all():
        raise LoadFailed(f"{check}: the probabilities are not all finite (NaN or infinity)")
    probabilities, scores = split_digit_scores(answer)
    sums = probabilities.sum(axis=1)
    if (probabilities < 0).any() or not np.allclose(sums, 1.0, atol=1e-3):
        raise LoadFailed(
            f"{check}: rows are not probability distributions (row sums {sums.min():.4f}"
            f"..{sums.max():.4f}, expected 1)"
        )
    if scores is not None and not np.all((scores >= 0) & (scores <= 1)):
        raise LoadFailed(f"{check}: the folded digit check's scores are not all in [0, 1]")
    if lone.shape != (1, columns) or not np.allclose(lone, answer[:1], atol=1e-5):
        raise LoadFailed(f"{check}: the lone-request session disagrees with the batch one")


def _smoke_images() -> np.ndarray:
    blank = np.zeros((IMAGE_SIZE, IMAGE_SIZE), np.float32)
    bar = blank.copy()
    bar[4:24, 13:15] = 1.0  # a "1"
    noise = np.random.default_rng(0).random((IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32)
    return np.stack([blank, bar, noise, np.ones_like(blank)])


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0]}" if text else type(error).__name__
