"""The `manifest.json` beside every exported model version: the contract between training and
serving. Training writes it; the service reads it to find, verify and describe the artifacts,
without importing TensorFlow.

Layout (TF Serving style):  models/<variant>/<version>/{manifest.json, model.onnx,
saved_model/, model.keras, history.json}
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

MANIFEST_NAME = "manifest.json"
SCHEMA_VERSION = 1
_CHUNK = 1 << 20


class TensorSpec(BaseModel):
    name: str
    dtype: str
    shape: list[int | None] = Field(description="None marks the dynamic batch dimension.")
    description: str = ""


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

    @classmethod
    def read(cls, version_dir: Path) -> Manifest:
        return cls.model_validate_json((version_dir / MANIFEST_NAME).read_text(encoding="utf-8"))

    def write(self, version_dir: Path) -> None:
        text = self.model_dump_json(indent=2) + "\n"
        (version_dir / MANIFEST_NAME).write_text(text, encoding="utf-8")


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


def verify_artifacts(version_dir: Path, manifest: Manifest, only: list[str] | None = None) -> None:
    """Raise ValueError naming the first file whose hash differs from the manifest.

    `only` restricts the check to files under those relative paths (e.g. just the ONNX file,
    when the SavedModel is not going to be loaded)."""
    for relative, expected in manifest.files.items():
        if only is not None and not any(relative.startswith(prefix) for prefix in only):
            continue
        path = version_dir / relative
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
