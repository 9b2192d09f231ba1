"""The one place that turns pixels into model input, shared by training and serving.

Imports only numpy and Pillow so the service can use it without TensorFlow.

Two steps:
* `to_mnist_digit` makes any picture of a digit look like an MNIST sample, the way the MNIST
  authors prepared their scans: grayscale, white ink on black, cropped to the ink, scaled to fit
  20x20 keeping the aspect ratio, and placed in 28x28 with its centre of mass at the centre.
  A 28x28 image is taken as already framed: only converted to white-on-black grayscale, so
  a real MNIST digit passes through unchanged.
* `scale_pixels` maps uint8 0..255 to float32 0..1, the models' input range.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

IMAGE_SIZE = 28
DIGIT_BOX = 20  # MNIST digits are scaled to fit 20x20 inside the 28x28 frame
PIXEL_MAX = 255.0
# A pixel counts as ink above this level (out of 255) when looking for the digit's bounding box.
INK_THRESHOLD = 32


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 (or 0..255 numbers) -> float32 in [0, 1]: the models' input."""
    return np.asarray(pixels, dtype=np.float32) / np.float32(PIXEL_MAX)


def to_mnist_digit(image: Image.Image) -> np.ndarray:
    """Any image of one digit -> uint8 array (28, 28), white digit on black, MNIST-style."""
    gray = _ink_on_black(image)
    if gray.shape == (IMAGE_SIZE, IMAGE_SIZE):
        # Already at MNIST resolution: taken as framed like MNIST. Re-framing would resample a
        # real MNIST digit (many touch the 20x20 box's edge) and change what the model sees.
        return gray
    box = _ink_bounding_box(gray)
    if box is None:  # blank canvas: nothing to centre
        return np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    top, bottom, left, right = box
    digit = Image.fromarray(gray[top:bottom, left:right])
    scale = DIGIT_BOX / max(digit.width, digit.height)
    size = (max(1, round(digit.width * scale)), max(1, round(digit.height * scale)))
    fitted = np.asarray(digit.resize(size, Image.Resampling.LANCZOS), dtype=np.uint8)
    return _centre_on_mass(fitted)


def _ink_on_black(image: Image.Image) -> np.ndarray:
    """Grayscale where ink is bright. A transparent canvas's alpha channel is the ink."""
    if image.mode == "P":
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA", "PA") and _has_transparency(image):
        return np.asarray(image.getchannel("A"), dtype=np.uint8)
    gray = np.asarray(ImageOps.grayscale(image.convert("RGB")), dtype=np.uint8)
    if _is_dark_on_light(gray):
        gray = 255 - gray
    return gray


def _has_transparency(image: Image.Image) -> bool:
    alpha = np.asarray(image.getchannel("A"))
    return bool(alpha.min() < 255)


def _is_dark_on_light(gray: np.ndarray) -> bool:
    """Paper is the majority of a digit picture: a bright border means dark ink on light paper."""
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    return float(np.median(border)) > 127


def _ink_bounding_box(gray: np.ndarray) -> tuple[int, int, int, int] | None:
    rows = np.flatnonzero((gray > INK_THRESHOLD).any(axis=1))
    cols = np.flatnonzero((gray > INK_THRESHOLD).any(axis=0))
    if rows.size == 0:
        return None
    return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1


def _centre_on_mass(digit: np.ndarray) -> np.ndarray:
    """Paste `digit` into a 28x28 frame so its intensity-weighted centre lands at the centre."""
    frame = np.zeros((IMAGE_SIZE, IMAGE_SIZE), dtype=np.uint8)
    weights = digit.astype(np.float64)
    total = weights.sum()
    height, width = digit.shape
    if total > 0:
        centre_y = (weights.sum(axis=1) @ np.arange(height)) / total
        centre_x = (weights.sum(axis=0) @ np.arange(width)) / total
    else:
        centre_y, centre_x = (height - 1) / 2, (width - 1) / 2
    top = round((IMAGE_SIZE - 1) / 2 - centre_y)
    left = round((IMAGE_SIZE - 1) / 2 - centre_x)
    # Keep the whole digit inside the frame even when its mass is far off-centre.
    top = min(max(top, 0), IMAGE_SIZE - height)
    left = min(max(left, 0), IMAGE_SIZE - width)
    frame[top : top + height, left : left + width] = digit
    return frame
