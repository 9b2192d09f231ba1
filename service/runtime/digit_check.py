"""The digit check, loaded: scores each model input for how much it looks like one digit.

Its artifact and threshold are described in `mnist_shared.digit_check`. Loaded once at start
(`load_digit_check`), verified against its manifest's sha256 and smoke-checked as the
classifiers are; a server without one (`MNIST_DIGIT_CHECK=false`, or none in the models
directory) answers without the check's fields, and `strict=true` is refused saying why.

The ONNX classifiers' sessions run the check folded into their graphs (one batched run for
both: `service.runtime.folded_check`). This session of its own scores the pieces segmentation
weighs, and the images of a backend without the fold (the SavedModel): about 0.1 ms of CPU an
image (a sixth of a classifier's), a few images on the event loop, more in the inference
thread (onnxruntime leaves the GIL meanwhile).
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import logging
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import ValidationError

from mnist_shared.digit_check import (
    CHECK_MANIFEST,
    INPUT_NAME,
    OUTPUT_NAME,
    DigitCheckManifest,
)
from mnist_shared.preprocessing import IMAGE_SIZE, scale_pixels

logger = logging.getLogger(__name__)

INLINE_IMAGES = 4  # scored on the event loop up to this many (0.1 ms each)
EXECUTOR_PART = 16  # scored in the inference thread this many at a time (about 1.5 ms)


class DigitCheckUnavailable(Exception):
    """The check cannot be loaded; the message says why and what to do."""


class DigitCheck:
    def __init__(self, model: bytes, manifest: DigitCheckManifest, executor: Executor) -> None:
        """`model`: the ONNX file's bytes, verified against the manifest (the classifiers'
        loader folds the same bytes into their graphs: `service.runtime.folded_check`)."""
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        options.inter_op_num_threads = 1
        self._session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
        self.model = model
        self._executor = executor
        self.manifest = manifest
        self.threshold = manifest.threshold

    def scores_now(self, images: np.ndarray) -> np.ndarray:
        """float32 (N,) in [0, 1] for float32 (N, 28, 28) model inputs, on this thread."""
        return self._session.run([OUTPUT_NAME], {INPUT_NAME: images})[0]

    def judge(self, framed: np.ndarray) -> np.ndarray:
        """`scores_now` of uint8 framed digits: how segmentation asks (`segmentation.Judge`)."""
        return self.scores_now(scale_pixels(framed))

    async def scores(self, images: np.ndarray) -> np.ndarray:
        """`scores_now`, on the event loop for a few images, else in the executor."""
        if len(images) <= INLINE_IMAGES:
            return self.scores_now(images)
        loop = asyncio.get_running_loop()
        # A part at a time, so that other requests' inference in the same thread runs between
        # the parts of a large request instead of after all of it.
        scores = []
        for start in range(0, len(images), EXECUTOR_PART):
            part = functools.partial(self.scores_now, images[start : start + EXECUTOR_PART])
            scores.append(await loop.run_in_executor(self._executor, part))
        return np.concatenate(scores)

    def describe(self) -> dict[str, Any]:
        """What GET /models says of the check."""
        return {
            "version": self.manifest.version,
            "threshold": self.threshold,
            "flagged_when_measured": self.manifest.measured,
        }


def load_digit_check(check_dir: Path, executor: Executor) -> DigitCheck:
    """The verified, smoke-checked check in `check_dir`; DigitCheckUnavailable saying why."""
    fix = (
        f"train one with mnist-digit-check --output-dir {check_dir}, or set MNIST_DIGIT_CHECK=false"
    )
    try:
        manifest = DigitCheckManifest.read(check_dir)
    except FileNotFoundError:
        raise DigitCheckUnavailable(
            f"no digit check in {check_dir}: {fix} to serve without"
        ) from None
    except (OSError, ValidationError, ValueError) as error:
        reason = str(error).splitlines()[0]
        raise DigitCheckUnavailable(
            f"{check_dir}/{CHECK_MANIFEST} cannot be read ({reason}): {fix}"
        ) from None
    model_file = check_dir / manifest.onnx_file
    model = model_file.read_bytes() if model_file.is_file() else b""
    if hashlib.sha256(model).hexdigest() != manifest.sha256:
        raise DigitCheckUnavailable(
            f"{model_file} is missing or its sha256 does not match {CHECK_MANIFEST}: {fix}"
        )
    check = DigitCheck(model, manifest, executor)
    blank = np.zeros((2, IMAGE_SIZE, IMAGE_SIZE), np.float32)
    scores = check.scores_now(blank)
    if scores.shape != (2,) or not np.all((scores >= 0) & (scores <= 1)):
        raise DigitCheckUnavailable(f"{model_file} does not answer one score in [0, 1] an image")
    return check
