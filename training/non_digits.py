"""Ink that is not one digit: letters, symbols, scribbles, several digits written together and
letters drawn by hand.

The negatives the digit check learns from (`training.digit_check`) and is measured on
(`devtools.pictures.non_digits` draws them as client-like pictures). Each item is white ink on
black, framed by `frame_digit` exactly as serving frames an upload.

* Letters and symbols are rendered from the machine's TrueType fonts (and Pillow's built-in
  font, always there) with handwriting-like distortion: shear, rotation, squeeze, a wobble of
  the strokes and a different pen width. Glyphs a person reads as a digit themselves (O o D Q
  for 0; I l i j ! | ( ) [ ] { } for 1; Z z for 2; S s for 5; b G for 6; B for 8; g q for 9)
  are left out: no check can tell an "O" from a 0, nor should it.
* Scribbles: one to three smooth random pen strokes.
* Several digits: two or three MNIST digits written close together, touching, overlapping or
  a pixel or two apart.
* Hand-drawn letters and symbols: pen strokes, not a font's glyphs (`training.hand_letters`).

Fonts are split by family and hand-drawn shapes by shape (`split_lettering`): the check trains
on some and is measured on the others, so its figures are for lettering it never saw. numpy,
Pillow and OpenCV only.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from mnist_shared.ink import NoDigitFound
from mnist_shared.preprocessing import frame_digit
from training.hand_letters import draw, split_shapes

LETTERS = "AaCcEeFfHhKkLMmNnPpRrTtUuVvWwXxYydhkrwyJ"
SYMBOLS = "+=#@&%?$*<>~^€£¥§πΣΩ√∞≠÷\u00d7"  # the last: a multiplication sign
KINDS = ("letter", "symbol", "scribble", "several_digits", "hand_drawn")
FONT_DIRS = (Path("/usr/share/fonts/truetype"), Path("/usr/share/fonts/opentype"))
HELD_OUT_EVERY = 3  # every third font family (sorted by name) is kept for measuring
GLYPH_SIDE = 112  # glyphs are drawn and distorted on a canvas twice this size
INK_LEVEL = 30  # uint8 ink below this is background when cropping

Font = ImageFont.FreeTypeFont


def fonts() -> dict[str, list[Font]]:
    """Every TrueType font under FONT_DIRS and Pillow's built-in one, by family name."""
    paths = sorted(p for folder in FONT_DIRS if folder.is_dir() for p in folder.rglob("*.[ot]tf"))
    loaded = [ImageFont.truetype(str(path), 80) for path in paths]
    families: dict[str, list[Font]] = {}
    for font in [*loaded, ImageFont.load_default(80)]:
        assert isinstance(font, Font)  # Pillow's built-in font is scalable with FreeType
        families.setdefault(str(font.getname()[0]), []).append(font)
    return families


def split_fonts(families: dict[str, list[Font]]) -> tuple[list[Font], list[Font]]:
    """(fonts to train on, fonts to measure on): every HELD_OUT_EVERY-th family is held out;
    with a single family (a bare container) both get it."""
    names = sorted(families)
    held = {name for index, name in enumerate(names) if index % HELD_OUT_EVERY == 1}
    train = [font for name in names if name not in held for font in families[name]]
    measure = [font for name in names if name in held for font in families[name]]
    return (train or measure), (measure or train)


@dataclass(frozen=True)
class Lettering:
    """What letters and symbols are drawn with: font faces, and shapes a hand draws."""

    faces: list[Font]
    shapes: list[str]


def split_lettering() -> tuple[Lettering, Lettering]:
    """(lettering to train on, lettering to measure on): font families and hand-drawn shapes
    each split so that neither part has the other's."""
    train_faces, measure_faces = split_fonts(fonts())
    train_shapes, measure_shapes = split_shapes()
    return Lettering(train_faces, train_shapes), Lettering(measure_faces, measure_shapes)


def glyph(character: str, font: Font, rng: np.random.Generator) -> np.ndarray:
    """`character` in `font` as handwriting-like ink, float32 0..1 (all 0: no such glyph)."""
    canvas = Image.new("L", (2 * GLYPH_SIDE, 2 * GLYPH_SIDE), 0)
    ImageDraw.Draw(canvas).text((GLYPH_SIDE, GLYPH_SIDE), character, 255, font=font, anchor="mm")
    ink = np.asarray(canvas)
    if ink.max() == 0:
        return ink.astype(np.float32)
    return _pen_width(_wobble(_slant(ink, rng), rng), rng).astype(np.float32) / 255


def scribble(rng: np.random.Generator) -> np.ndarray:
    """One to three smooth random pen strokes, float32 0..1."""
    canvas = np.zeros((2 * GLYPH_SIDE, 2 * GLYPH_SIDE), np.uint8)
    for _ in range(int(rng.integers(1, 4))):
        point = rng.uniform(0.3, 0.7, 2) * canvas.shape[0]
        heading, turn, points = rng.uniform(0, 2 * np.pi), 0.0, [point.copy()]
        for _ in range(int(rng.integers(20, 50))):
            turn = 0.8 * turn + rng.normal(0, 0.35)
            heading += turn
            point += 6 * np.array([np.cos(heading), np.sin(heading)])
            points.append(point.copy())
        track = np.clip(np.array(points), 0, canvas.shape[0] - 1).astype(np.int32)
        cv2.polylines(canvas, [track], False, 255, int(rng.integers(8, 14)), cv2.LINE_AA)
    return canvas.astype(np.float32) / 255


def several_digits(images: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Two or three of `images` (uint8 MNIST digits) side by side, overlapping by up to 4
    pixels or up to 2 apart, the baseline drifting: float32 0..1."""
    count = int(rng.integers(2, 4))
    strip = np.zeros((40, 4 + 32 * count), np.uint8)
    x = 4
    for index in rng.choice(len(images), size=count, replace=False):
        digit = images[index]
        columns = np.flatnonzero(digit.max(axis=0) > INK_LEVEL)
        piece = digit[:, columns[0] : columns[-1] + 1] if columns.size else digit
        top = 6 + int(rng.integers(-3, 4))
        region = strip[top : top + 28, x : x + piece.shape[1]]
        np.maximum(region, piece[:, : region.shape[1]], out=region)
        x += piece.shape[1] + int(rng.integers(-4, 3))
    return strip[:, : x + 4].astype(np.float32) / 255


def non_digits(
    images: np.ndarray,
    count: int,
    rng: np.random.Generator,
    lettering: Lettering,
    kinds: tuple[str, ...] = KINDS,
) -> tuple[np.ndarray, list[str]]:
    """`count` non-digits framed as serving frames an upload (uint8 (count, 28, 28)) and their
    kinds, taking turns; `images` are the MNIST digits several-digit pictures are made of."""
    faces = lettering.faces
    makers: dict[str, Callable[[], np.ndarray]] = {
        "letter": lambda: glyph(str(rng.choice(list(LETTERS))), _pick(faces, rng), rng),
        "symbol": lambda: glyph(str(rng.choice(list(SYMBOLS))), _pick(faces, rng), rng),
        "scribble": lambda: scribble(rng),
        "several_digits": lambda: several_digits(images, rng),
        "hand_drawn": lambda: draw(str(rng.choice(lettering.shapes)), rng) / 255.0,
    }
    made: list[np.ndarray] = []
    made_kinds: list[str] = []
    while len(made) < count:
        kind = kinds[len(made) % len(kinds)]
        try:
            made.append(frame_digit(makers[kind]()))
        except NoDigitFound:  # a glyph the font lacks, or one eroded away
            continue
        made_kinds.append(kind)
    return np.stack(made), made_kinds


def _pick(faces: list[Font], rng: np.random.Generator) -> Font:
    return faces[int(rng.integers(len(faces)))]


# -- handwriting-like distortion ------------------------------------------------------------


def _slant(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A random shear, rotation and squeeze, as people's hands differ."""
    side = ink.shape[0]
    shear, angle, squeeze = rng.uniform(-0.35, 0.35), rng.uniform(-15, 15), rng.uniform(0.75, 1.15)
    rotation = np.vstack([cv2.getRotationMatrix2D((side / 2, side / 2), angle, 1.0), [0, 0, 1]])
    skew = np.array([[squeeze, shear, -shear * side / 2], [0, 1, 0], [0, 0, 1]])
    matrix = (rotation @ skew)[:2].astype(np.float32)
    return cv2.warpAffine(ink, matrix, (side, side), flags=cv2.INTER_LINEAR)


def _wobble(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Strokes bent by a smooth random displacement field (an unsteady hand)."""
    side = ink.shape[0]
    field = rng.normal(0, 1, (2, side // 16, side // 16)).astype(np.float32)
    dx, dy = (cv2.resize(f, (side, side), interpolation=cv2.INTER_CUBIC) * 3 for f in field)
    grid_x, grid_y = np.meshgrid(
        np.arange(side, dtype=np.float32), np.arange(side, dtype=np.float32)
    )
    return cv2.remap(ink, grid_x + dx, grid_y + dy, cv2.INTER_LINEAR)


def _pen_width(ink: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A pen up to 2 pixels a side thinner or 3 thicker than the font's stroke."""
    steps = int(rng.integers(-2, 4))
    if steps == 0:
        return ink
    kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * abs(steps) + 1,) * 2)
    changed = cv2.dilate(ink, kernel) if steps > 0 else cv2.erode(ink, kernel)
    return changed if changed.max() > INK_LEVEL else ink
