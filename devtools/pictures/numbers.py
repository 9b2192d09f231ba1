"""Client-like pictures of whole numbers: 2-8 MNIST test digits written side by side.

Each number is laid out at MNIST's scale (digits cropped to their ink, a random gap between
them, negative for touching and slightly overlapping digits, the baseline drifting up and
down, sizes varying a little), then drawn on paper as `scene` draws one digit: a clean canvas
export, a phone photo (grey paper, noise, blur, JPEG), a sheet with a shadow across it, or ruled
paper. `sample_numbers` gives a seeded set with the truth; `tests/unit/test_segmentation.py` and
`benchmarks/read_numbers.py` read them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image

from devtools.pictures.scene import (
    Picture,
    Scene,
    encode,
    grey,
    light_gradient,
    paper_with_ruling,
)

CONDITIONS = ("canvas", "photo", "shadow", "ruled")
SPACINGS = {"separated": (3, 9), "touching": (-3, 0)}  # gap between digits, MNIST pixels


@dataclass(frozen=True)
class NumberPicture:
    picture: Picture
    number: str  # the digits, as a client would read them
    condition: str
    spacing: str


def layout(digits: list[np.ndarray], spacing: str, rng: np.random.Generator) -> np.ndarray:
    """uint8 ink, white on black, of the digits side by side at MNIST's scale."""
    low, high = SPACINGS[spacing]
    pieces, offsets, x = [], [], 4
    for digit in digits:
        columns = np.flatnonzero(digit.max(axis=0) > 30)
        piece = digit[:, columns[0] : columns[-1] + 1] if columns.size else digit
        scale = rng.uniform(0.9, 1.1)
        size = (max(1, round(piece.shape[1] * scale)), max(1, round(piece.shape[0] * scale)))
        pieces.append(np.asarray(Image.fromarray(piece).resize(size, Image.Resampling.BILINEAR)))
        offsets.append((x, 4 + int(rng.integers(-2, 3))))  # the baseline drifts
        x += size[0] + int(rng.integers(low, high + 1))
    strip = np.zeros((40, x + 4), np.uint8)
    for piece, (left, top) in zip(pieces, offsets, strict=True):
        region = strip[top : top + piece.shape[0], left : left + piece.shape[1]]
        np.maximum(region, piece[: region.shape[0], : region.shape[1]], out=region)
    return strip


def render(strip: np.ndarray, condition: str, rng: np.random.Generator) -> Picture:
    """The laid-out number drawn on paper under `condition`, encoded as a client sends it."""
    height = int(rng.integers(50, 110))  # pixels for the strip's 40 rows
    scale = height / strip.shape[0]
    ink = Image.fromarray(strip).resize(
        (round(strip.shape[1] * scale), height), Image.Resampling.BICUBIC
    )
    margin = (int(rng.integers(20, 80)), int(rng.integers(20, 60)))
    canvas = (ink.width + 2 * margin[0], ink.height + 2 * margin[1])
    scene = Scene(canvas=canvas, digit_height=height)
    if condition in ("photo", "shadow", "ruled"):
        scene.paper = grey(rng.uniform(150, 225), 6, rng)
        scene.ink = grey(rng.uniform(10, 60), 6, rng)
        scene.noise = float(rng.uniform(2, 7))
    if condition == "ruled":
        scene.ruling = (float(rng.uniform(0.12, 0.2)), 0.0)
    layer = Image.new("L", canvas, 0)
    layer.paste(ink, margin)
    coverage = np.clip((np.asarray(layer, np.float32) / 255 - 0.2) / 0.5, 0, 1)[..., None]
    pixels = paper_with_ruling(scene) * (1 - coverage) + np.array(scene.ink, np.float32) * coverage
    if condition == "shadow":
        pixels *= light_gradient(canvas, float(rng.uniform(0.25, 0.45)), rng)[..., None]
    if scene.noise:
        pixels += rng.standard_normal((*pixels.shape[:2], 1)).astype(np.float32) * scene.noise
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if condition == "canvas":
        return encode(picture, "PNG")
    return encode(picture, "JPEG", quality=int(rng.integers(75, 93)))


def sample_numbers(
    images: np.ndarray,
    labels: np.ndarray,
    count: int,
    seed: int,
    lengths: tuple[int, ...] = (4,),
    spacing: str = "separated",
    conditions: tuple[str, ...] = CONDITIONS,
) -> list[NumberPicture]:
    """`count` seeded pictures of numbers of the given lengths, spacing and conditions."""
    rng = np.random.default_rng([seed, len(lengths), list(SPACINGS).index(spacing)])
    pictures = []
    for index in range(count):
        length = lengths[index % len(lengths)]
        condition = conditions[index % len(conditions)]
        picks = rng.choice(len(images), size=length, replace=False)
        strip = layout([images[i] for i in picks], spacing, rng)
        number = "".join(str(int(labels[i])) for i in picks)
        pictures.append(NumberPicture(render(strip, condition, rng), number, condition, spacing))
    return pictures
