"""Training on corrections from users (`mnist-train --corrections DIR`, the files `POST
/feedback` keeps): most are mixed into the training images, a stable share is held out, and
the new model's accuracy on that share is recorded beside the default version's on the same
pictures, so that the promotion gate promotes a model trained on corrections only if it reads
them better (or no worse) than the one serving."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from mnist_shared.corrections import as_arrays, load_corrections
from mnist_shared.manifest import Evaluation, Manifest, list_versions
from mnist_shared.preprocessing import scale_pixels
from mnist_shared.promotion import choose_among

logger = logging.getLogger(__name__)

HELD_OUT = "corrections (held out)"
# Each correction is seen this many times an epoch: a few dozen among thousands of training
# images would otherwise change nothing.
REPEATS = 10


class Corrections:
    """The corrections of a directory, split into training and held-out pictures."""

    def __init__(self, directory: Path) -> None:
        training, held_out = load_corrections(directory)
        self.train_images, self.train_labels = as_arrays(training)
        self.held_images, self.held_labels = as_arrays(held_out)
        logger.info(
            "corrections from %s: %d to train on (x%d), %d held out",
            directory, len(training), REPEATS, len(held_out),
        )  # fmt: skip

    def mixed_into(self, images: np.ndarray, labels: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The training images with the training corrections added REPEATS times."""
        if not len(self.train_labels):
            return images, labels
        extra = np.repeat(self.train_images, REPEATS, axis=0)
        extra_labels = np.repeat(self.train_labels, REPEATS)
        return np.concatenate([images, extra]), np.concatenate([labels, extra_labels])

    def evaluation(self, model: Any, variant_dir: Path) -> dict[str, Evaluation]:
        """The held-out share's accuracy by `model` and by the default version in
        `variant_dir` (none yet: no baseline); empty without held-out corrections."""
        if not len(self.held_labels):
            return {}
        inputs = scale_pixels(self.held_images)
        predicted = np.asarray(model.predict(inputs, verbose=0)).argmax(axis=1)
        accuracy = float(np.mean(predicted == self.held_labels))
        version, baseline = self._baseline(inputs, variant_dir)
        logger.info(
            "held-out corrections (%d): %.4f, the default version %s: %s",
            len(self.held_labels), accuracy, version, baseline,
        )  # fmt: skip
        return {
            HELD_OUT: Evaluation(
                accuracy=accuracy,
                pictures=len(self.held_labels),
                baseline_version=version,
                baseline_accuracy=baseline,
            )
        }

    def _baseline(self, inputs: np.ndarray, variant_dir: Path) -> tuple[int | None, float | None]:
        """The default version's accuracy on the held-out pictures (onnxruntime, fp32)."""
        if not variant_dir.is_dir():
            return None, None
        versions = list_versions(variant_dir)
        version = choose_among(variant_dir, versions, always=False, tolerance_points=0.1).version
        if version is None:
            return None, None
        import onnxruntime as ort

        version_dir = variant_dir / str(version)
        manifest = Manifest.read(version_dir)
        session = ort.InferenceSession(
            str(version_dir / manifest.onnx_file), providers=["CPUExecutionProvider"]
        )
        (probabilities,) = session.run(None, {manifest.input.name: inputs})
        return version, float(np.mean(probabilities.argmax(axis=1) == self.held_labels))
