"""The digit check's artifact: a small ONNX model that tells one handwritten digit from
anything else (a letter, a symbol, a scribble, several digits), and its manifest.

The classifiers answer a digit for every picture, as sure of an "A" (4, 99.9%) as of a 4: a
softmax over ten digits has no "none of these". The check reads the same 28x28 input the
classifiers read and scores how much it looks like one digit, 0..1; below the manifest's
`threshold` the picture is flagged. The threshold is calibrated when the check is trained
(`mnist-digit-check`) on held-out digits, and the manifest records what it flags of each kind
of held-out picture. It lives beside the classifiers' versions, in `models/digit_check/`
(a directory without version numbers, so the registry does not take it for a variant).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pydantic import BaseModel, Field

from mnist_shared.manifest import write_atomically

CHECK_DIR_NAME = "digit_check"
CHECK_MANIFEST = "manifest.json"
INPUT_NAME = "image"  # float32 (N, 28, 28) in [0, 1], as the classifiers read it
OUTPUT_NAME = "digit_score"  # float32 (N,): how much each input looks like one digit, 0..1


class DigitCheckManifest(BaseModel):
    """What `mnist-digit-check` wrote, and what it measured on pictures it did not train on."""

    version: int = Field(ge=1)
    created_at: str = Field(description="UTC time of training, ISO 8601.")
    onnx_file: str = "model.onnx"
    sha256: str = Field(description="sha256 of onnx_file.")
    threshold: float = Field(
        gt=0, lt=1, description="Scores below this are flagged as not looking like a digit."
    )
    calibration: dict[str, Any] = Field(
        description="How the threshold was chosen: the held-out digits it was set on and the "
        "share of them it flags."
    )
    measured: dict[str, float] = Field(
        description="Share flagged of each kind of held-out picture (digits and non-digits)."
    )
    training: dict[str, Any] = Field(description="Training config and the exact command line.")
    libraries: dict[str, str]

    @classmethod
    def read(cls, check_dir: Path) -> DigitCheckManifest:
        return cls.model_validate_json((check_dir / CHECK_MANIFEST).read_text(encoding="utf-8"))

    def write(self, check_dir: Path) -> None:
        write_atomically(check_dir / CHECK_MANIFEST, self.model_dump_json(indent=2) + "\n")
