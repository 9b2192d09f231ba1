"""Thin shadows across a photographed digit: narrower than the digit, sharp-edged, 30-50% darker
than the paper, where `phone.hard_shadow` darkens a whole side of the picture.

* `pen_shadow`: a pen lying on the sheet, a band a few strokes wide across the digit;
* `finger_shadow`: a finger over the sheet, a band with a rounded end reaching into the digit;
* `wedge_shadow`: the phone's edge, a wedge from the picture's edge narrowing across the digit.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image, ImageDraw

from devtools.pictures.scene import Picture, Scene, compose, encode, grey, photo_scene

Point = tuple[float, float]


def _shaded(digit: np.ndarray, rng: np.random.Generator, shape: Callable) -> Picture:
    """A phone photo of the digit with `shape(draw, scene, rng)` drawn as its shadow."""
    scene = photo_scene(rng, paper=grey(rng.uniform(170, 245), 6, rng))
    picture = compose(digit, scene, rng)
    mask = Image.new("L", scene.canvas, 0)
    shape(ImageDraw.Draw(mask), scene, rng)
    light = 1 - rng.uniform(0.3, 0.5) * np.asarray(mask, np.float32)[..., None] / 255
    shaded = np.clip(np.asarray(picture, np.float32) * light, 0, 255).astype(np.uint8)
    return encode(Image.fromarray(shaded, "RGB"), "JPEG", quality=int(rng.integers(75, 95)))


def _across(scene: Scene, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray, float]:
    """A point near the digit's centre, a direction, and the digit's height in pixels."""
    width, height = scene.canvas
    centre = np.array(scene.centre) * (width, height)
    digit = float(scene.digit_height)
    centre += rng.uniform(-0.25, 0.25, 2) * digit
    angle = rng.uniform(0, np.pi)
    return centre, np.array([np.cos(angle), np.sin(angle)]), digit


def _pen(draw: ImageDraw.ImageDraw, scene: Scene, rng: np.random.Generator) -> None:
    centre, direction, digit = _across(scene, rng)
    reach = 2 * max(scene.canvas)
    ends = [tuple(centre - reach * direction), tuple(centre + reach * direction)]
    draw.line(ends, fill=255, width=max(2, round(digit * rng.uniform(0.08, 0.2))))


def _finger(draw: ImageDraw.ImageDraw, scene: Scene, rng: np.random.Generator) -> None:
    centre, direction, digit = _across(scene, rng)
    width = max(3, round(digit * rng.uniform(0.2, 0.35)))
    tip = centre + direction * rng.uniform(-0.2, 0.2) * digit
    start = tip - 2 * max(scene.canvas) * direction
    draw.line([tuple(start), tuple(tip)], fill=255, width=width)
    radius = width / 2
    draw.ellipse((tip[0] - radius, tip[1] - radius, tip[0] + radius, tip[1] + radius), fill=255)


def _wedge(draw: ImageDraw.ImageDraw, scene: Scene, rng: np.random.Generator) -> None:
    centre, direction, digit = _across(scene, rng)
    base = centre - 2 * max(scene.canvas) * direction
    across = np.array([-direction[1], direction[0]]) * digit * rng.uniform(0.3, 0.6)
    tip = centre + direction * rng.uniform(0.3, 0.8) * digit
    draw.polygon([tuple(base + across), tuple(base - across), tuple(tip)], fill=255)


def pen_shadow(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    return _shaded(digit, rng, _pen)


def finger_shadow(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    return _shaded(digit, rng, _finger)


def wedge_shadow(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    return _shaded(digit, rng, _wedge)


SHADOW_KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], Picture]] = {
    "pen_shadow": pen_shadow,
    "finger_shadow": finger_shadow,
    "wedge_shadow": wedge_shadow,
}
