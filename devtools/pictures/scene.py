"""The scene behind every client-like picture: paper, ink, light, noise, blur, encoding.

`kinds.py` and `phone.py` describe kinds of pictures with it; numpy + Pillow only (no
TensorFlow), like the preprocessing it exercises.
"""

import io
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageFilter

Rgb = tuple[float, float, float]
# Pillow format -> (file extension, media type) of each encoding the kinds produce.
FORMATS = {
    "JPEG": ("jpg", "image/jpeg"),
    "PNG": ("png", "image/png"),
    "WEBP": ("webp", "image/webp"),
    "TIFF": ("tif", "image/tiff"),
    "HEIF": ("heic", "image/heic"),
    "AVIF": ("avif", "image/avif"),
}
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
    # Printed lines under the ink: (row spacing, column spacing) as fractions of the canvas
    # height, 0 for none (ruled paper has rows, graph paper both), their colour and width.
    ruling: tuple[float, float] = (0.0, 0.0)
    ruling_ink: Rgb = (150.0, 170.0, 215.0)
    ruling_width: int = 1


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
    ink = np.array(scene.ink, np.float32)
    pixels = paper_with_ruling(scene) * (1 - coverage) + ink * coverage
    if scene.shadow:
        pixels *= light_gradient(scene.canvas, scene.shadow, rng)[..., None]
    picture = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), "RGB")
    if scene.blur:
        picture = picture.filter(ImageFilter.GaussianBlur(scene.blur))
    if scene.noise:  # luminance noise, the same on the three channels
        grain = rng.standard_normal((*pixels.shape[:2], 1), dtype=np.float32) * scene.noise
        noisy = np.asarray(picture, np.float32) + grain
        picture = Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8), "RGB")
    return picture


def paper_with_ruling(scene: Scene) -> np.ndarray:
    """The sheet's colour, with its printed rule or grid lines."""
    paper = np.array(scene.paper, np.float32)
    if not any(scene.ruling):
        return paper
    width, height = scene.canvas
    lines = np.zeros((height, width), bool)
    for axis, spacing in enumerate(scene.ruling):
        if spacing:
            step = max(3, round(spacing * height))
            on_line = np.arange(lines.shape[axis]) % step < scene.ruling_width
            lines |= on_line[:, None] if axis == 0 else on_line[None, :]
    return np.where(lines[..., None], np.array(scene.ruling_ink, np.float32), paper)


def light_gradient(canvas: tuple[int, int], darkest: float, rng: np.random.Generator) -> np.ndarray:
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
    extension, media_type = FORMATS[fmt]
    return Picture(buffer.getvalue(), media_type, extension)


# -- scene parts ----------------------------------------------------------------------------


def grey(level: float, tint: float = 0.0, rng: np.random.Generator | None = None) -> Rgb:
    """A grey with a random colour cast of up to `tint` levels per channel."""
    cast = rng.uniform(-tint, tint, 3) if rng is not None else np.zeros(3)
    return tuple(float(np.clip(level + c, 0, 255)) for c in cast)  # type: ignore[return-value]


def photo_scene(rng: np.random.Generator, **changes: object) -> Scene:
    """A phone photo of a sheet: a few hundred pixels, the digit filling a good part of it."""
    short = int(rng.integers(200, 900))
    canvas = (int(short * rng.uniform(1.0, 1.5)), short)
    if rng.random() < 0.5:
        canvas = canvas[::-1]
    scene = Scene(
        canvas=canvas,
        digit_height=int(min(canvas) * rng.uniform(0.35, 0.7)),
        paper=grey(rng.uniform(135, 215), 6, rng),
        ink=grey(rng.uniform(10, 60), 6, rng),
        blur=float(rng.uniform(0.3, 1.2)) * min(canvas) / 300,
        noise=float(rng.uniform(3, 9)),
        centre=(float(rng.uniform(0.4, 0.6)), float(rng.uniform(0.4, 0.6))),
    )
    for name, value in changes.items():
        setattr(scene, name, value)
    return scene


def stroke_pixels(scene: Scene, fraction: float) -> int:
    """A stroke change of `fraction` of the digit's height, in pixels."""
    return round(scene.digit_height * fraction)
