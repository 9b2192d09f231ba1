"""Client-like pictures of MNIST digits: phone photos, scans and canvas exports.

Used to measure the whole input path (decode -> preprocessing -> model) on what users actually
send, and to test it (`tests/api/test_realworld.py`, `benchmarks/realworld_accuracy.py`). Each kind
renders one 28x28 MNIST digit as a picture with random paper, ink, light, noise, blur, size,
position and encoding; `render(kind, digit, rng)` returns the encoded file and its media type.

The kinds here are the classic ones (paper, pens, light, canvas exports); the way phones,
notebooks and messaging apps deliver pictures (orientation tags, a desk around the sheet, hard
shadows, rule lines, every common encoding) is in `devtools/pictures/phone.py`, shadows
narrower than the digit in `devtools/pictures/shadows.py`. numpy + Pillow
only (no TensorFlow), like the preprocessing it exercises.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
from PIL import Image

from devtools.pictures.encodings import ENCODING_KINDS
from devtools.pictures.phone import PHONE_KINDS
from devtools.pictures.scene import (
    Picture,
    Scene,
    compose,
    encode,
    grey,
    ink_coverage,
    photo_scene,
    stroke_pixels,
)
from devtools.pictures.shadows import SHADOW_KINDS

# -- the kinds ------------------------------------------------------------------------------


def grey_photo(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Grey paper, sensor noise, slight blur; JPEG as a phone saves it."""
    scene = photo_scene(rng)
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(80, 95)))


def tinted_jpeg(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Tinted paper and coloured ink (blue, red, green pens), JPEG quality 60-90."""
    scene = photo_scene(rng)
    scene.paper = tuple(float(v) for v in rng.uniform(150, 250, 3))  # type: ignore[assignment]
    pens = [(30, 40, 150), (170, 25, 30), (20, 100, 40), (25, 25, 30)]
    scene.ink = tuple(float(v) + rng.uniform(-15, 15) for v in pens[rng.integers(len(pens))])  # type: ignore[assignment]
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(60, 91)))


def webp(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A photo shared as lossy WebP."""
    scene = photo_scene(rng, paper=grey(rng.uniform(150, 245), 8, rng))
    return encode(compose(digit, scene, rng), "WEBP", quality=int(rng.integers(60, 91)))


def uneven_light(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A shadow across the sheet: the light falls off by up to 45% from one side to the other."""
    scene = photo_scene(rng, paper=grey(rng.uniform(180, 245), 6, rng))
    scene.shadow = float(rng.uniform(0.25, 0.45))
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def rotated_blurred(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """The sheet held askew (up to 12 degrees) and the camera slightly out of focus."""
    scene = photo_scene(rng, rotation=float(rng.uniform(-12, 12)))
    scene.blur = scene.digit_height * float(rng.uniform(0.02, 0.04))
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def thick_marker(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A felt marker: strokes about twice as thick as MNIST's."""
    scene = photo_scene(rng, paper=grey(rng.uniform(170, 250), 5, rng))
    scene.stroke = stroke_pixels(scene, rng.uniform(0.03, 0.05))
    scene.ink = grey(rng.uniform(5, 40), 10, rng)
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def thin_pen_cream(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A fine pen on cream paper: strokes thinner than MNIST's."""
    cream = (
        float(rng.uniform(235, 252)),
        float(rng.uniform(222, 240)),
        float(rng.uniform(180, 210)),
    )
    scene = photo_scene(rng, paper=cream)
    scene.stroke = -stroke_pixels(scene, rng.uniform(0.025, 0.035))
    scene.ink = grey(rng.uniform(15, 70), 15, rng)
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def faint_pencil(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Pencil: graphite only about 80 grey levels darker than the paper."""
    paper = float(rng.uniform(185, 245))
    scene = photo_scene(rng, paper=grey(paper, 4, rng))
    scene.ink = grey(paper - rng.uniform(65, 95), 4, rng)
    scene.noise = float(rng.uniform(2, 6))
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(80, 95)))


def transparent_canvas(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A web canvas exported as PNG: coloured strokes on a transparent background."""
    side = int(rng.integers(200, 500))
    scene = Scene(canvas=(side, side), digit_height=int(side * rng.uniform(0.5, 0.8)))
    alpha = np.round(ink_coverage(digit, scene, rng) * 255).astype(np.uint8)
    colour = rng.integers(0, 256, 3).astype(np.uint8)
    rgba = np.empty((side, side, 4), np.uint8)
    rgba[..., :3], rgba[..., 3] = colour, alpha
    return encode(Image.fromarray(rgba, "RGBA"), "PNG")


def white_canvas(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A 280x280 white canvas exported as PNG with a black antialiased stroke."""
    scene = Scene(canvas=(280, 280), digit_height=int(rng.integers(140, 230)), ink=(0, 0, 0))
    scene.paper = (255.0, 255.0, 255.0)
    scene.centre = (float(rng.uniform(0.42, 0.58)), float(rng.uniform(0.42, 0.58)))
    return encode(compose(digit, scene, rng), "PNG")


def small_off_centre(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A small digit somewhere on a large photo (up to 2,700 px; preprocessing's cost on 4,000 px
    photos is measured by benchmarks/preprocessing_cost.py), away from the centre."""
    short = int(rng.integers(600, 2000))
    canvas = (int(short * rng.uniform(1.0, 1.34)), short)
    scene = photo_scene(rng, canvas=canvas, noise=float(rng.uniform(3, 7)))
    scene.digit_height = int(short * rng.uniform(0.12, 0.2))
    scene.blur = scene.digit_height * 0.01
    scene.centre = (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.85)))
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(80, 95)))


def chalkboard(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Light on dark: chalk on a blackboard or a white pen on a dark screen."""
    scene = photo_scene(rng, paper=grey(rng.uniform(20, 80), 10, rng))
    scene.ink = grey(rng.uniform(170, 240), 5, rng)
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], Picture]] = {
    "grey_photo": grey_photo,
    "tinted_jpeg": tinted_jpeg,
    "webp": webp,
    "uneven_light": uneven_light,
    "rotated_blurred": rotated_blurred,
    "thick_marker": thick_marker,
    "thin_pen_cream": thin_pen_cream,
    "faint_pencil": faint_pencil,
    "transparent_canvas": transparent_canvas,
    "white_canvas": white_canvas,
    "small_off_centre": small_off_centre,
    "chalkboard": chalkboard,
    **PHONE_KINDS,
    **ENCODING_KINDS,
    **SHADOW_KINDS,  # last: every earlier kind keeps its seeded samples
}


def render(kind: str, digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """One client-like picture of `digit` (uint8 28x28, white on black) of the given kind."""
    if kind not in KINDS:
        raise ValueError(f"Unknown `kind` {kind!r}; choose one of {', '.join(KINDS)}.")
    return KINDS[kind](digit, rng)


def sample(
    kind: str, images: np.ndarray, labels: np.ndarray, count: int, seed: int
) -> list[tuple[Picture, int]]:
    """`count` pictures of random digits from `images`, with their labels; same seed, same set."""
    rng = np.random.default_rng([seed, list(KINDS).index(kind)])
    picks = rng.choice(len(images), size=count, replace=False)
    return [(render(kind, images[i], rng), int(labels[i])) for i in picks]
