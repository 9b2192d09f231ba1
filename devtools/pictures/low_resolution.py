"""Digits scanned at low resolution, as the UCI digits were: what a training set of client
pictures adds to the kinds the benchmarks measure (`devtools.client_frames`).

The UCI digits (scikit-learn's `load_digits`) are 32x32 bitmaps of a size-normalised digit,
counted in 4x4 blocks: 8x8 pictures at 17 grey levels, each stroke one or two blocks wide.
This draws an MNIST digit the same way from its own pixels and hands it over as the benchmark
hands the UCI digits to the service (64 px, dark on light, cropped tight or with a margin), so
that nothing of scikit-learn's digits is ever trained on.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image, ImageOps

from devtools.pictures.scene import Picture

BITMAP_SIDE = 32
BLOCK = 4  # 32x32 counted in 4x4 blocks -> 8x8 at levels 0..16
SHOWN_SIDE = 64
MARGINS = (0, 0, 2, 4, 8)  # pixels of paper around the 64 px picture; tight most often


def low_resolution(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """One UCI-like picture of `digit` (uint8 28x28, white on black): PNG, dark on light."""
    bitmap = _size_normalised_bitmap(digit, rng)
    counts = bitmap.reshape(8, BLOCK, 8, BLOCK).sum(axis=(1, 3))  # 0..16 per block
    paper = (255 - counts * (255 / 16)).astype(np.uint8)
    picture = Image.fromarray(paper).resize((SHOWN_SIDE, SHOWN_SIDE), Image.Resampling.BICUBIC)
    margin = int(rng.choice(MARGINS))
    if margin:
        picture = ImageOps.expand(picture, margin, fill=255)
    buffer = io.BytesIO()
    picture.save(buffer, "PNG")
    return Picture(buffer.getvalue(), "image/png", "png")


def _size_normalised_bitmap(digit: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The digit's ink box stretched to the 32x32 bitmap (a narrow digit, a 1, only partly:
    NIST's normalisation kept some of its slenderness), thresholded as a scanner would."""
    rows, cols = np.nonzero(digit > 64)
    crop = Image.fromarray(digit[rows.min() : rows.max() + 1, cols.min() : cols.max() + 1])
    height, width = crop.height, crop.width
    stretch = float(rng.uniform(0.0, 0.4))  # 0: keep the aspect ratio, 1: fill the width
    shown_width = round(BITMAP_SIDE * (width / height + stretch * (1 - width / height)))
    shown_width = min(BITMAP_SIDE, max(4, shown_width)) if width < height else BITMAP_SIDE
    shown_height = BITMAP_SIDE if width <= height else max(4, round(BITMAP_SIDE * height / width))
    scaled = np.asarray(crop.resize((shown_width, shown_height), Image.Resampling.BILINEAR))
    bitmap = np.zeros((BITMAP_SIDE, BITMAP_SIDE), np.uint8)
    top, left = (BITMAP_SIDE - shown_height) // 2, (BITMAP_SIDE - shown_width) // 2
    bitmap[top : top + shown_height, left : left + shown_width] = scaled > rng.uniform(80, 150)
    return bitmap
