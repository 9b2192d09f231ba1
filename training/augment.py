"""Training augmentation for what real pictures look like after preprocessing.

Served digits come from pens, markers and pencils, held askew and out of focus, and are
framed by `mnist_shared.preprocessing.frame_digit`. MNIST's own digits are all of one kind of
pen and hand. Each augmented copy redraws an MNIST digit at 4x resolution with thicker or
thinner strokes, an elastic warp (another hand's wobble), a small rotation, blur and a
different edge profile, and then frames it with the very function serving uses, so the model
trains on what it will be shown.

numpy + Pillow only; the copies are made once before training (`augmented_pool`).
"""

from __future__ import annotations

import logging
import time

import cv2
import numpy as np
from PIL import Image, ImageFilter

from mnist_shared.preprocessing import IMAGE_SIZE, frame_digit

logger = logging.getLogger(__name__)

UPSCALE = 4  # draw at 112x112, where a stroke is about 10 pixels wide
MAX_ROTATION = 15.0  # degrees; photos are read up to about 12
STROKE_CHANGE = (-2, 4)  # pixels per side at 112x112: thin pen .. felt marker
MAX_BLUR = 2.0  # Gaussian radius at 112x112
GAMMA = (0.6, 1.6)  # edge profile: soft (pencil, blur) .. hard (marker, canvas)
# Elastic warp at 112x112 (Simard et al. 2003, at 4x): a random displacement field smoothed
# over ELASTIC_SIGMA pixels, pulling each pixel by at most ELASTIC_PULL pixels (3 at 28x28).
ELASTIC_PULL = 12.0
ELASTIC_SIGMA = 16.0


def augment_digit(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """One uint8 (28, 28) MNIST digit -> a redrawn, reframed uint8 (28, 28) digit."""
    side = IMAGE_SIZE * UPSCALE
    strokes = Image.fromarray(digit).resize((side, side), Image.Resampling.BICUBIC)
    change = int(rng.integers(STROKE_CHANGE[0], STROKE_CHANGE[1] + 1))
    if change:
        size = 2 * abs(change) + 1
        strokes = strokes.filter(
            ImageFilter.MaxFilter(size) if change > 0 else ImageFilter.MinFilter(size)
        )
    strokes = _elastic(strokes, float(rng.uniform(0, ELASTIC_PULL)), rng)
    strokes = strokes.rotate(
        float(rng.uniform(-MAX_ROTATION, MAX_ROTATION)), Image.Resampling.BICUBIC
    )
    blur = float(rng.uniform(0, MAX_BLUR))
    if blur > 0.3:
        strokes = strokes.filter(ImageFilter.GaussianBlur(blur))
    ink = (np.asarray(strokes, dtype=np.float32) / 255) ** float(rng.uniform(*GAMMA))
    if ink.max() < 0.3:  # a thin digit eroded away: keep the original
        return digit
    return frame_digit(ink / ink.max())


def _elastic(strokes: Image.Image, pull: float, rng: np.random.Generator) -> Image.Image:
    """`strokes` pulled along a smooth random field, each pixel by at most `pull` pixels and
    neighbours alike, so strokes bend and lengthen without breaking."""
    side = strokes.width
    pulls = []
    for _ in range(2):
        field = rng.uniform(-1, 1, (side, side)).astype(np.float32)
        field = cv2.GaussianBlur(field, (0, 0), ELASTIC_SIGMA)
        pulls.append(field * (pull / max(float(np.abs(field).max()), 1e-6)))
    grid_y, grid_x = np.mgrid[0:side, 0:side].astype(np.float32)
    warped = cv2.remap(
        np.asarray(strokes),
        grid_x + pulls[0],
        grid_y + pulls[1],
        cv2.INTER_LINEAR,
        borderMode=cv2.BORDER_CONSTANT,
        borderValue=0,
    )
    return Image.fromarray(warped)


def augmented_pool(images: np.ndarray, copies: int, seed: int) -> np.ndarray:
    """uint8 (copies, N, 28, 28): `copies` augmented versions of every image, reproducibly."""
    started = time.perf_counter()
    rng = np.random.default_rng(seed)
    pool = np.empty((copies, *images.shape), dtype=np.uint8)
    for copy in range(copies):
        for index, image in enumerate(images):
            pool[copy, index] = augment_digit(image, rng)
        logger.info(
            "augmented copy %d/%d of %d images (%.0f s)",
            copy + 1,
            copies,
            len(images),
            time.perf_counter() - started,
        )
    return pool
