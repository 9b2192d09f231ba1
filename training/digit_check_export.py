"""The digit check's export (`mnist-digit-check`'s last step): ONNX from a tf.function, parity
with Keras, the threshold calibrated on held-out digits and what it flags of each held-out kind,
all measured on the exported file, the directory moved into place only when all of it passed."""

from __future__ import annotations

import datetime as dt
import shlex
import shutil
import sys
import tempfile
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist_shared.digit_check import INPUT_NAME, OUTPUT_NAME, DigitCheckManifest
from mnist_shared.manifest import sha256_file
from mnist_shared.preprocessing import IMAGE_SIZE, scale_pixels

if TYPE_CHECKING:
    from training.digit_check import CheckConfig, Examples

PARITY_TOLERANCE = 1e-5
DIGITS = "digits"  # held-out MNIST digits as they are
REDRAWN = "redrawn_digits"  # the same, redrawn as client pictures look


def calibrate(digit_scores: np.ndarray, flag_rate: float) -> float:
    """The score below which `flag_rate` of these held-out digits fall."""
    return float(np.quantile(digit_scores, flag_rate))


def measure(scores: dict[str, np.ndarray], threshold: float) -> dict[str, float]:
    """Share flagged (score below the threshold) of each kind of held-out picture."""
    return {kind: round(float(np.mean(s < threshold)), 4) for kind, s in scores.items()}


def export_onnx(model: Any, path: Path) -> None:
    """tf2onnx from a tf.function (its Keras 3 entry point fails on Keras 3 models)."""
    import onnx
    import tensorflow as tf
    import tf2onnx

    signature = tf.TensorSpec((None, IMAGE_SIZE, IMAGE_SIZE), tf.float32, name=INPUT_NAME)

    @tf.function(input_signature=[signature])
    def serve(image: tf.Tensor) -> dict[str, tf.Tensor]:
        return {OUTPUT_NAME: model(image, training=False)}

    proto, _ = tf2onnx.convert.from_function(serve, input_signature=[signature], opset=17)
    onnx.save(proto, str(path))


def onnx_scores(path: Path, images: np.ndarray) -> np.ndarray:
    import onnxruntime as ort

    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run([OUTPUT_NAME], {INPUT_NAME: scale_pixels(images)})[0]


def write_check(model: Any, config: CheckConfig, examples: Examples) -> DigitCheckManifest:
    """Export, check parity, calibrate and measure on the exported file, and move the
    directory into place only when all of it succeeded."""
    from training.export import library_versions, share_like

    output = config.output_dir
    output.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{output.name}.", dir=output.parent))
    try:
        export_onnx(model, staging / "model.onnx")
        scores = {k: onnx_scores(staging / "model.onnx", v) for k, v in examples.held_out.items()}
        keras_scores = model.predict(scale_pixels(examples.held_out[DIGITS]), verbose=0)
        difference = float(np.abs(keras_scores - scores[DIGITS]).max())
        if difference > PARITY_TOLERANCE:
            raise RuntimeError(f"ONNX export differs from Keras by {difference:.2e}; discarded")
        threshold = calibrate(np.concatenate([scores[DIGITS], scores[REDRAWN]]), config.flag_rate)
        manifest = DigitCheckManifest(
            version=config.version,
            created_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            sha256=sha256_file(staging / "model.onnx"),
            threshold=threshold,
            calibration={
                "flag_rate": config.flag_rate,
                "held_out_digits": len(scores[DIGITS]) + len(scores[REDRAWN]),
                "parity_max_abs_diff": difference,
            },
            measured=measure(scores, threshold),
            training={**asdict(config), "output_dir": str(output), "command": _command()},
            libraries=library_versions(),
        )
        manifest.write(staging)
        share_like(staging, output.parent)
        _replace(staging, output)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return manifest


def _replace(staging: Path, output: Path) -> None:
    """`output` becomes `staging`; a previous check is removed only once the new one is there."""
    previous = output.with_name(f".{output.name}.previous")
    shutil.rmtree(previous, ignore_errors=True)
    if output.exists():
        output.rename(previous)
    staging.rename(output)
    shutil.rmtree(previous, ignore_errors=True)


def _command() -> str:
    return shlex.join(["mnist-digit-check", *sys.argv[1:]])
