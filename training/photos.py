"""Client-like pictures of MNIST digits: phone photos, scans and canvas exports.

Used to measure the whole input path (decode -> preprocessing -> model) on what users actually
send, and to test it (`tests/test_realworld.py`, `benchmarks/realworld_accuracy.py`). Each kind
renders one 28x28 MNIST digit as a picture with random paper, ink, light, noise, blur, size,
position and encoding; `render(kind, digit, rng)` returns the encoded file and its media type.

numpy + Pillow only (no TensorFlow), like the preprocessing it exercises.
"""

from __future__ import annotations

import io
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

Rgb = tuple[float, float, float]
STROKE_SIDE = 112  # strokes are thickened or thinned on the digit at this size


@dataclass(frozen=True)
class Picture:
    data: bytes
    media_type: str  # e.g. image/jpeg
    extension: str  # e.g. jpg


@dataclass
class Scene:
    """What one picture looks like before encoding."""

    canvas: tuple[int, int]  # width, height in pixels
    digit_height: int  # pixels from the top to the bottom of the digit's 20x20 box
    paper: Rgb = (245.0, 245.0, 240.0)
    ink: Rgb = (20.0, 20.0, 25.0)
    stroke: int = 0  # > 0 thickens, < 0 thins the strokes by that many pixels
    rotation: float = 0.0  # degrees, counter-clockwise
    blur: float = 0.0  # Gaussian radius in pixels, of the whole picture
    noise: float = 0.0  # sensor noise, standard deviation in grey levels
    shadow: float = 0.0  # darkest fraction of a linear light gradient across the sheet
    centre: tuple[float, float] = (0.5, 0.5)  # digit centre, as fractions of width and height


def ink_coverage(digit: np.ndarray, scene: Scene, rng: np.random.Generator) -> np.ndarray:
    """float32 0..1 ink coverage of the digit scaled to `scene.digit_height`, on the canvas."""
    scale = scene.digit_height / 20  # MNIST fits the digit into 20 of its 28 pixels
    side = max(8, round(28 * scale))
    strokes = _change_stroke(digit, scene.stroke * STROKE_SIDE / side)
    strokes = strokes.resize((side, side), Image.Resampling.BICUBIC)
    if scene.rotation:
        strokes = strokes.rotate(scene.rotation, Image.Resampling.BICUBIC, expand=True)
    width, height = scene.canvas
    left = round(scene.centre[0] * width - strokes.width / 2)
    top = round(scene.centre[1] * height - strokes.height / 2)
    layer = Image.new("L", scene.canvas, 0)
    layer.paste(strokes, (left, top))
    # Upscaled MNIST strokes have soft edges several pixels wide; pens draw crisper ones.
    coverage = np.asarray(layer, dtype=np.float32) / 255
    return np.clip((coverage - 0.2) / 0.5, 0, 1)


def _change_stroke(digit: np.ndarray, pixels: float) -> Image.Image:
    """The digit at STROKE_SIDE pixels, its strokes `pixels` (at that size) thicker or thinner:
    filtering there, not at the picture's size, keeps large pictures cheap to make."""
    strokes = Image.fromarray(digit).resize((STROKE_SIDE, STROKE_SIDE), Image.Resampling.BICUBIC)
    steps = round(abs(pixels))
    if steps == 0:
        return strokes
    if pixels < 0:
        # A pen's line is as dark along its whole length: MNIST's faint, pressure-thin parts
        # would vanish under thinning, leaving broken digits no pen draws.
        strokes = strokes.point(lambda level: min(255, 2 * level))
    size = 2 * steps + 1
    grow = ImageFilter.MaxFilter(size) if pixels > 0 else ImageFilter.MinFilter(size)
    return strokes.filter(grow)


def compose(digit: np.ndarray, scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Paper and ink under the scene's light, blur and noise, as an RGB picture."""
    coverage = ink_coverage(digit, scene, rng)[..., None]
    paper, ink = np.array(scene.paper, np.float32), np.array(scene.ink, np.float32)
    pixels = paper * (1 - coverage) + ink * coverage
    if scene.shadow:
        pixels *= _light_gradient(scene.canvas, scene.shadow, rng)[..., None]
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if scene.blur:
        picture = picture.filter(ImageFilter.GaussianBlur(scene.blur))
    if scene.noise:  # luminance noise, the same on the three channels
        grain = rng.standard_normal((*pixels.shape[:2], 1), dtype=np.float32) * scene.noise
        noisy = np.asarray(picture, np.float32) + grain
        picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    return picture


def _light_gradient(
    canvas: tuple[int, int], darkest: float, rng: np.random.Generator
) -> np.ndarray:
    """1 on the lit side falling linearly to 1 - darkest on the other, in a random direction."""
    width, height = canvas
    angle = rng.uniform(0, 2 * np.pi)
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    along = np.cos(angle) * xs / width + np.sin(angle) * ys / height
    along = (along - along.min()) / max(float(np.ptp(along)), 1e-6)
    return 1 - darkest * along


def encode(picture: Image.Image, fmt: str, **options: object) -> Picture:
    buffer = io.BytesIO()
    picture.save(buffer, fmt, **options)
    extension = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp"}[fmt]
    media_type = "image/jpeg" if fmt == "JPEG" else f"image/{extension}"
    return Picture(buffer.getvalue(), media_type, extension)


# -- scene parts ----------------------------------------------------------------------------


def _grey(level: float, tint: float = 0.0, rng: np.random.Generator | None = None) -> Rgb:
    """A grey with a random colour cast of up to `tint` levels per channel."""
    cast = rng.uniform(-tint, tint, 3) if rng is not None else np.zeros(3)
    return tuple(float(np.clip(level + c, 0, 255)) for c in cast)  # type: ignore[return-value]


def _photo_scene(rng: np.random.Generator, **changes: object) -> Scene:
    """A phone photo of a sheet: a few hundred pixels, the digit filling a good part of it."""
    short = int(rng.integers(200, 900))
    canvas = (int(short * rng.uniform(1.0, 1.5)), short)
    if rng.random() < 0.5:
        canvas = canvas[::-1]
    scene = Scene(
        canvas=canvas,
        digit_height=int(min(canvas) * rng.uniform(0.35, 0.7)),
        paper=_grey(rng.uniform(135, 215), 6, rng),
        ink=_grey(rng.uniform(10, 60), 6, rng),
        blur=float(rng.uniform(0.3, 1.2)) * min(canvas) / 300,
        noise=float(rng.uniform(3, 9)),
        centre=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
    )
    for name, value in changes.items():
        setattr(scene, name, value)
    return scene


def _stroke_pixels(scene: Scene, fraction: float) -> int:
    """A stroke change of `fraction` of the digit's height, in pixels."""
    return round(scene.digit_height * fraction)


# -- the kinds ------------------------------------------------------------------------------


def grey_photo(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Grey paper, sensor noise, slight blur; JPEG as a phone saves it."""
    scene = _photo_scene(rng)
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(80, 95)))


def tinted_jpeg(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Tinted paper and coloured ink (blue, red, green pens), JPEG quality 60-90."""
    scene = _photo_scene(rng)
    scene.paper = tuple(float(v) for v in rng.uniform(150, 250, 3))  # type: ignore[assignment]
    pens = [(30, 40, 150), (170, 25, 30), (20, 100, 40), (25, 25, 30)]
    scene.ink = tuple(float(v) + rng.uniform(-15, 15) for v in pens[rng.integers(len(pens))])  # type: ignore[assignment]
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(60, 91)))


def webp(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A photo shared as lossy WebP."""
    scene = _photo_scene(rng, paper=_grey(rng.uniform(150, 245), 8, rng))
    return encode(compose(digit, scene, rng), "WEBP", quality=int(rng.integers(60, 91)))


def uneven_light(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A shadow across the sheet: the light falls off by up to 45% from one side to the other."""
    scene = _photo_scene(rng, paper=_grey(rng.uniform(180, 245), 6, rng))
    scene.shadow = float(rng.uniform(0.25, 0.45))
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def rotated_blurred(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """The sheet held askew (up to 12 degrees) and the camera slightly out of focus."""
    scene = _photo_scene(rng, rotation=float(rng.uniform(-12, 12)))
    scene.blur = scene.digit_height * float(rng.uniform(0.02, 0.04))
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def thick_marker(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A felt marker: strokes about twice as thick as MNIST's."""
    scene = _photo_scene(rng, paper=_grey(rng.uniform(170, 250), 5, rng))
    scene.stroke = _stroke_pixels(scene, rng.uniform(0.03, 0.05))
    scene.ink = _grey(rng.uniform(5, 40), 10, rng)
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def thin_pen_cream(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A fine pen on cream paper: strokes thinner than MNIST's."""
    cream = (
        float(rng.uniform(235, 252)),
        float(rng.uniform(222, 240)),
        float(rng.uniform(180, 210)),
    )
    scene = _photo_scene(rng, paper=cream)
    scene.stroke = -_stroke_pixels(scene, rng.uniform(0.025, 0.035))
    scene.ink = _grey(rng.uniform(15, 70), 15, rng)
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(75, 95)))


def faint_pencil(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Pencil: graphite only about 80 grey levels darker than the paper."""
    paper = float(rng.uniform(185, 245))
    scene = _photo_scene(rng, paper=_grey(paper, 4, rng))
    scene.ink = _grey(paper - rng.uniform(65, 95), 4, rng)
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
    scene = _photo_scene(rng, canvas=canvas, noise=float(rng.uniform(3, 7)))
    scene.digit_height = int(short * rng.uniform(0.12, 0.2))
    scene.blur = scene.digit_height * 0.01
    scene.centre = (float(rng.uniform(0.15, 0.85)), float(rng.uniform(0.15, 0.85)))
    return encode(compose(digit, scene, rng), "JPEG", quality=int(rng.integers(80, 95)))


def chalkboard(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Light on dark: chalk on a blackboard or a white pen on a dark screen."""
    scene = _photo_scene(rng, paper=_grey(rng.uniform(20, 80), 10, rng))
    scene.ink = _grey(rng.uniform(170, 240), 5, rng)
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
