"""The `manifest.json` beside every exported model version: the contract between training and
serving. Training writes it; the service reads it to find, verify and describe the artifacts,
without importing TensorFlow.

Layout (TF Serving style):  models/<variant>/<version>/{manifest.json, model.onnx,
saved_model/, model.keras, history.json}
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path, PurePosixPath
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
FP32, INT8 = "fp32", "int8"  # the exported ONNX model's own precision, and its twin's
PRECISIONS = (FP32, INT8)
_CHUNK = 1 << 20


class TensorSpec(BaseModel):
    name: str
    dtype: str
    shape: list[int | None] = Field(description="None marks the dynamic batch dimension.")
    description: str = ""


class PrecisionTwin(BaseModel):
    """A reduced-precision twin of the ONNX model, as export measured it against fp32."""

    model_config = ConfigDict(extra="allow")

    passed_gate: bool
    reason: str = Field("", description="Why it failed the gate; empty when it passed.")
    file: str | None = Field(None, description="Its ONNX file, when it passed the gate.")
    test_accuracy: float = Field(ge=0, le=1)
    fp32_test_accuracy: float = Field(ge=0, le=1)
    agreement: float = Field(ge=0, le=1, description="Share of test images with fp32's digit.")
    max_probability_diff: float = Field(ge=0)
    cpu_us_per_image: float = Field(gt=0, description="One thread, at the service's batch.")
    fp32_cpu_us_per_image: float = Field(gt=0)
    kinds: dict[str, dict[str, float]] = Field(
        default_factory=dict,
        description="Accuracy on each kind of client-like picture, its own and fp32's.",
    )

    @property
    def faster(self) -> bool:
        return self.cpu_us_per_image < self.fp32_cpu_us_per_image


class Evaluation(BaseModel):
    """Accuracy on an evaluation beside the test split (e.g. held-out corrections from users),
    and the accuracy of the default version export compared it with, on the same pictures."""

    accuracy: float = Field(ge=0, le=1)
    pictures: int = Field(ge=0)
    baseline_version: int | None = Field(None, ge=1)
    baseline_accuracy: float | None = Field(None, ge=0, le=1)


class Manifest(BaseModel):
    """Everything needed to load, verify and describe one exported model version."""

    model_config = ConfigDict(extra="allow", protected_namespaces=())

    schema_version: int = SCHEMA_VERSION
    variant: str
    version: int = Field(ge=1)
    architecture: str
    created_at: str = Field(description="UTC time of export, ISO 8601.")
    test_accuracy: float = Field(ge=0, le=1)
    test_samples: int = Field(ge=0)
    input: TensorSpec
    output: TensorSpec
    onnx_file: str = "model.onnx"
    onnx_opset: int
    saved_model_dir: str = "saved_model"
    saved_model_signature: str = "serving_default"
    training: dict[str, Any] = Field(description="Training config and the exact command line.")
    data: dict[str, Any] = Field(description="Data source and sample counts.")
    parity: dict[str, Any] = Field(description="Export parity check: Keras vs SavedModel vs ONNX.")
    libraries: dict[str, str]
    files: dict[str, str] = Field(description="sha256 of every artifact file, by relative path.")
    evaluations: dict[str, Evaluation] = Field(
        default_factory=dict,
        description="Accuracy on other evaluations (held-out corrections from users), each with "
        "the default version's on the same pictures: the promotion gate compares them.",
    )
    precisions: dict[str, PrecisionTwin] = Field(
        default_factory=dict,
        description="Reduced-precision twins of the ONNX model by precision (e.g. int8): each "
        "one's test accuracy, agreement with fp32, CPU cost, and whether it passed the gate "
        "(`passed_gate` and its `file`, else `reason`). Empty: none was made.",
    )

    def precision_files(self) -> dict[str, str]:
        """The ONNX file of each precision this version may serve: fp32's, then each twin that
        passed its gate, fastest first (by its CPU cost measured at export)."""
        passed = sorted(
            (twin.cpu_us_per_image, precision, twin.file)
            for precision, twin in self.precisions.items()
            if twin.passed_gate and twin.file
        )
        return {FP32: self.onnx_file} | {precision: file for _, precision, file in passed if file}

    def fastest_precision(self) -> str:
        """The precision that cost fewest CPU microseconds per image at export, among fp32 and
        the twins that passed their gate."""
        for precision in self.precision_files():
            if precision != FP32 and self.precisions[precision].faster:
                return precision
        return FP32

    @classmethod
    def read(cls, version_dir: Path) -> Manifest:
        return cls.model_validate_json((version_dir / MANIFEST_NAME).read_text(encoding="utf-8"))

    def write(self, version_dir: Path) -> None:
        write_atomically(version_dir / MANIFEST_NAME, self.model_dump_json(indent=2) + "\n")


def write_atomically(path: Path, text: str) -> None:
    """Replace `path` with `text`: a reader sees the old file or the new one, whole."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(text, encoding="utf-8")
    partial.replace(path)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def hash_artifacts(version_dir: Path) -> dict[str, str]:
    """sha256 of every file under `version_dir` except the manifest itself, sorted by path."""
    return {
        path.relative_to(version_dir).as_posix(): sha256_file(path)
        for path in sorted(version_dir.rglob("*"))
        if path.is_file() and path.name != MANIFEST_NAME
    }


# Said by every refusal below: both fixes give a version whose manifest vouches for each file.
_FIX = (
    "Re-export the version (mnist-train, or mnist-export for a .keras file) or fix its "
    f"{MANIFEST_NAME}."
)


def verify_artifacts(version_dir: Path, manifest: Manifest, only: list[str] | None = None) -> None:
    """Raise ValueError naming the first file that is not exactly what the manifest lists.

    `only` names what is about to be loaded (the ONNX file, the SavedModel directory): then
    every file there must also be listed, since a file the manifest leaves out is one no hash
    vouches for. Without `only`, every listed file is checked."""
    check_paths(version_dir, manifest)
    if only is None:
        relatives = sorted(manifest.files)
    else:
        relatives = sorted(
            {name for target in only for name in _loaded(version_dir, manifest, target)}
        )
    for relative in relatives:
        _verify_file(version_dir, manifest, relative)


def check_paths(version_dir: Path, manifest: Manifest) -> None:
    """Raise ValueError unless every path the manifest names stays inside `version_dir`."""
    artifact_path(version_dir, manifest.onnx_file, "onnx_file")
    artifact_path(version_dir, manifest.saved_model_dir, "saved_model_dir")
    for precision, file in manifest.precision_files().items():
        artifact_path(version_dir, file, f"precisions.{precision}.file")
    for relative in manifest.files:
        artifact_path(version_dir, relative, "files")


def artifact_path(version_dir: Path, relative: str, field: str) -> Path:
    """`version_dir / relative`, once shown to stay inside the version directory. The manifest
    is data read from disk: an absolute path, a `..` or a symlink leading out would have the
    service hash and load any file on the machine, with whatever hash the manifest claims."""
    pure = PurePosixPath(relative)
    if pure.is_absolute() or ".." in pure.parts or not pure.parts:
        raise ValueError(
            f"{field} entry {relative!r} in the {MANIFEST_NAME} of {version_dir} is not a "
            f"relative path inside the version directory. {_FIX}"
        )
    path = version_dir / relative
    try:
        real, root = path.resolve(), version_dir.resolve()
    except (OSError, RuntimeError) as error:  # RuntimeError: a symlink loop (Python < 3.13)
        raise ValueError(
            f"{relative} in {version_dir} cannot be resolved ({error}). {_FIX}"
        ) from None
    if not real.is_relative_to(root):
        raise ValueError(
            f"{relative} in {version_dir} leads to {real} through a symlink, outside the "
            f"version directory: every file a version loads must lie inside it. {_FIX}"
        )
    return path


def _loaded(version_dir: Path, manifest: Manifest, target: str) -> set[str]:
    """The relative paths of what loading `target` reads: the files found there on disk (every
    file of a directory) and those the manifest lists there (so a missing one is reported)."""
    path = artifact_path(version_dir, target, "artifact")
    on_disk = _files_under(path, version_dir) if path.is_dir() else [path] if path.exists() else []
    found = {file.relative_to(version_dir).as_posix() for file in on_disk}
    prefix = PurePosixPath(target).as_posix()
    listed = {name for name in manifest.files if name == prefix or name.startswith(prefix + "/")}
    if not found and not listed:
        raise ValueError(
            f"{prefix} is missing from {version_dir} and not listed in its {MANIFEST_NAME}. {_FIX}"
        )
    return found | listed


def _files_under(directory: Path, version_dir: Path) -> list[Path]:
    """Every non-directory entry below `directory`, through symlinked subdirectories too (the
    loader follows them, so their files are loaded). A subdirectory leading out of the version
    is refused before it is walked; each one is visited once, so a link back up cannot loop."""
    files: list[Path] = []
    seen: set[Path] = set()

    def fail(error: OSError) -> None:  # an unreadable directory would hide files from the check
        raise ValueError(
            f"{error.filename} cannot be listed ({error.strerror}): make it readable by the "
            "service."
        ) from None

    for top, dirs, names in os.walk(directory, onerror=fail, followlinks=True):
        relative = Path(top).relative_to(version_dir).as_posix()
        real = artifact_path(version_dir, relative, "artifact").resolve()
        if real in seen:
            dirs.clear()
            continue
        seen.add(real)
        files += [Path(top) / name for name in names]
    return files


def _verify_file(version_dir: Path, manifest: Manifest, relative: str) -> None:
    expected = manifest.files.get(relative)
    if expected is None:
        raise ValueError(
            f"{relative} in {version_dir} is loaded but not listed in the files of its "
            f"{MANIFEST_NAME}, so its sha256 cannot be checked. {_FIX}"
        )
    path = artifact_path(version_dir, relative, "files")
    if not path.is_file():
        raise ValueError(
            f"{relative} is listed in the manifest but missing from {version_dir}: "
            "re-export the model."
        )
    actual = sha256_file(path)
    if actual != expected:
        raise ValueError(
            f"sha256 of {relative} ({actual[:12]}…) does not match the manifest "
            f"({expected[:12]}…) in {version_dir}: the file was changed or corrupted. "
            "Re-export the model."
        )


def list_versions(variant_dir: Path) -> list[int]:
    """Integer-named subdirectories that hold a manifest, ascending (TF Serving's layout).

    Export renames a version into place only once its manifest is written, so a version
    without one is not servable."""
    if not variant_dir.is_dir():
        return []
    return sorted(
        int(child.name)
        for child in variant_dir.iterdir()
        if child.is_dir() and child.name.isdigit() and _holds_manifest(child)
    )


def _holds_manifest(version_dir: Path) -> bool:
    """Whether the version has its manifest. A version this process may not read (written by
    another user, mode 0700) is listed all the same: loading it then fails, saying why, instead
    of the listing of every version failing."""
    try:
        return (version_dir / MANIFEST_NAME).is_file()
    except PermissionError:
        return True


def latest_version(variant_dir: Path) -> int | None:
    """The version served: the highest one (TF Serving's rule)."""
    versions = list_versions(variant_dir)
    return versions[-1] if versions else None
