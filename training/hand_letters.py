"""Capital letters and symbols drawn as a hand draws them: pen strokes, not a font's glyphs.

Each shape is a few polylines in a unit box; every drawing jitters the points, slants and
squeezes the shape, and picks a pen width, then draws it at MNIST's format (white on black,
28x28, the shape in the middle 20x20), so that `devtools.pictures.kinds` can make any client
picture of it (a phone photo, a canvas export ...) as it does of a digit. The digit check
learns from some shapes and is measured on the others (`split_shapes`, as fonts are split by
family in `training.non_digits`).

Shapes a reader would take for a digit are left out (O, I, S, Z, B, G, and symbols such as `/`
or `|`): no check can tell them from one, and they are not what these pictures measure.
"""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

Stroke = list[tuple[float, float]]

# x to the right, y down, in a unit box.
SHAPES: dict[str, list[Stroke]] = {
    "A": [[(0.0, 1.0), (0.5, 0.0), (1.0, 1.0)], [(0.22, 0.6), (0.78, 0.6)]],
    "C": [[(0.95, 0.15), (0.6, 0.0), (0.2, 0.1), (0.0, 0.5), (0.2, 0.9), (0.6, 1.0), (0.95, 0.85)]],
    "D": [
        [(0.0, 0.0), (0.0, 1.0)],
        [(0.0, 0.0), (0.6, 0.08), (0.95, 0.5), (0.6, 0.92), (0.0, 1.0)],
    ],
    "E": [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0), (1.0, 1.0)], [(0.0, 0.5), (0.75, 0.5)]],
    "F": [[(1.0, 0.0), (0.0, 0.0), (0.0, 1.0)], [(0.0, 0.5), (0.75, 0.5)]],
    "H": [[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (1.0, 1.0)], [(0.0, 0.5), (1.0, 0.5)]],
    "J": [[(0.3, 0.0), (1.0, 0.0)], [(0.7, 0.0), (0.7, 0.8), (0.45, 1.0), (0.1, 0.85)]],
    "K": [[(0.0, 0.0), (0.0, 1.0)], [(1.0, 0.0), (0.0, 0.55), (1.0, 1.0)]],
    "L": [[(0.0, 0.0), (0.0, 1.0), (0.9, 1.0)]],
    "M": [[(0.0, 1.0), (0.05, 0.0), (0.5, 0.65), (0.95, 0.0), (1.0, 1.0)]],
    "N": [[(0.0, 1.0), (0.0, 0.0), (1.0, 1.0), (1.0, 0.0)]],
    "P": [[(0.0, 1.0), (0.0, 0.0), (0.7, 0.05), (0.9, 0.25), (0.7, 0.48), (0.0, 0.5)]],
    "Q": [
        [
            (0.5, 0.0),
            (0.1, 0.2),
            (0.0, 0.55),
            (0.25, 0.95),
            (0.7, 0.95),
            (1.0, 0.5),
            (0.8, 0.1),
            (0.5, 0.0),
        ],
        [(0.6, 0.7), (1.0, 1.05)],
    ],
    "R": [[(0.0, 1.0), (0.0, 0.0), (0.7, 0.05), (0.9, 0.25), (0.7, 0.48), (0.0, 0.5), (1.0, 1.0)]],
    "T": [[(0.0, 0.0), (1.0, 0.0)], [(0.5, 0.0), (0.5, 1.0)]],
    "U": [[(0.0, 0.0), (0.0, 0.7), (0.3, 1.0), (0.7, 1.0), (1.0, 0.7), (1.0, 0.0)]],
    "V": [[(0.0, 0.0), (0.5, 1.0), (1.0, 0.0)]],
    "W": [[(0.0, 0.0), (0.25, 1.0), (0.5, 0.35), (0.75, 1.0), (1.0, 0.0)]],
    "X": [[(0.0, 0.0), (1.0, 1.0)], [(1.0, 0.0), (0.0, 1.0)]],
    "Y": [[(0.0, 0.0), (0.5, 0.5), (1.0, 0.0)], [(0.5, 0.5), (0.5, 1.0)]],
    "+": [[(0.5, 0.1), (0.5, 0.9)], [(0.1, 0.5), (0.9, 0.5)]],
    "=": [[(0.0, 0.35), (1.0, 0.35)], [(0.0, 0.65), (1.0, 0.65)]],
    "#": [
        [(0.35, 0.0), (0.25, 1.0)],
        [(0.75, 0.0), (0.65, 1.0)],
        [(0.0, 0.35), (1.0, 0.35)],
        [(0.0, 0.65), (1.0, 0.65)],
    ],
    "*": [[(0.5, 0.0), (0.5, 1.0)], [(0.05, 0.25), (0.95, 0.75)], [(0.95, 0.25), (0.05, 0.75)]],
    "?": [[(0.1, 0.2), (0.4, 0.0), (0.8, 0.05), (0.9, 0.3), (0.5, 0.5), (0.5, 0.75)]],
    "&": [
        [
            (1.0, 1.0),
            (0.2, 0.35),
            (0.3, 0.05),
            (0.55, 0.05),
            (0.6, 0.25),
            (0.0, 0.7),
            (0.2, 1.0),
            (0.6, 0.95),
            (0.95, 0.6),
        ],
    ],
    "@": [
        [
            (0.7, 0.55),
            (0.6, 0.35),
            (0.4, 0.35),
            (0.35, 0.6),
            (0.55, 0.7),
            (0.7, 0.55),
            (0.8, 0.7),
            (1.0, 0.5),
            (0.8, 0.1),
            (0.4, 0.0),
            (0.05, 0.3),
            (0.05, 0.7),
            (0.4, 1.0),
            (0.85, 0.9),
        ],
    ],
    "%": [
        [(1.0, 0.0), (0.0, 1.0)],
        [(0.1, 0.05), (0.3, 0.05), (0.3, 0.3), (0.1, 0.3), (0.1, 0.05)],
        [(0.7, 0.7), (0.9, 0.7), (0.9, 0.95), (0.7, 0.95), (0.7, 0.7)],
    ],
    "<": [[(1.0, 0.1), (0.0, 0.5), (1.0, 0.9)]],
    ">": [[(0.0, 0.1), (1.0, 0.5), (0.0, 0.9)]],
    "$": [
        [(0.9, 0.15), (0.5, 0.05), (0.1, 0.25), (0.5, 0.5), (0.9, 0.75), (0.5, 0.95), (0.1, 0.85)],
        [(0.5, -0.1), (0.5, 1.1)],
    ],
}
# Drawn wider or narrower than tall (the unit box's width against its height).
_ASPECT = {"+": 1.0, "=": 1.0, "#": 1.0, "*": 1.0, "%": 0.9, "@": 1.0, "M": 1.0, "W": 1.1}
_SCALE = 4  # drawn at 4x and reduced, as MNIST's anti-aliased strokes
HELD_OUT_EVERY = 3  # every third shape (sorted) is kept for measuring the digit check


def split_shapes() -> tuple[list[str], list[str]]:
    """(shapes to train on, shapes to measure on): every HELD_OUT_EVERY-th one held out."""
    names = sorted(SHAPES)
    held = [name for index, name in enumerate(names) if index % HELD_OUT_EVERY == 1]
    return [name for name in names if name not in held], held


def draw(shape: str, rng: np.random.Generator) -> np.ndarray:
    """One hand drawing of `shape`: uint8 (28, 28), white on black, in MNIST's 20x20 box."""
    side = 28 * _SCALE
    canvas = Image.new("L", (side, side), 0)
    pen = ImageDraw.Draw(canvas)
    height = 20 * _SCALE * rng.uniform(0.85, 1.0)
    width = height * _ASPECT.get(shape, 0.75) * rng.uniform(0.8, 1.15)
    slant = rng.uniform(-0.25, 0.25)
    left, top = (side - width) / 2, (side - height) / 2
    stroke = max(1, round(_SCALE * rng.uniform(1.6, 3.2)))
    for line in SHAPES[shape]:
        points = np.array(line) + rng.normal(0.0, 0.03, size=(len(line), 2))
        xs = left + (points[:, 0] + slant * (0.5 - points[:, 1])) * width
        ys = top + points[:, 1] * height
        pen.line(list(zip(xs.tolist(), ys.tolist(), strict=True)), fill=255, width=stroke)
        for x, y in zip(xs, ys, strict=True):  # round joints, as a pen makes them
            pen.ellipse((x - stroke / 2, y - stroke / 2, x + stroke / 2, y + stroke / 2), fill=255)
    return np.asarray(canvas.resize((28, 28), Image.Resampling.BOX))


def drawings(count: int, seed: int) -> list[tuple[str, np.ndarray]]:
    """`count` seeded drawings, every shape in turn: (shape, uint8 28x28)."""
    rng = np.random.default_rng(seed)
    names = list(SHAPES)
    return [(names[i % len(names)], draw(names[i % len(names)], rng)) for i in range(count)]
