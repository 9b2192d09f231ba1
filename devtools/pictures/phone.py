"""Client-like pictures as phones, notebooks and messaging apps deliver them.

The kinds of `devtools/pictures/kinds.py` vary paper, pens and light; these vary what happens around
the digit and to the file: an EXIF orientation tag instead of upright pixels, a desk around the
sheet, the phone's hard shadow, rule lines, a sheet photographed at an angle, a tight crop, a
messaging app's recompression and every encoding phones and scanners write (16-bit PNG, grey +
alpha, palettes, CMYK JPEG, TIFF, HEIC, AVIF: `devtools/pictures/encodings.py`).
"""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from devtools.pictures.scene import (
    Picture,
    Rgb,
    compose,
    encode,
    grey,
    ink_coverage,
    photo_scene,
    stroke_pixels,
)

# EXIF Orientation tag -> how the camera stored the upright picture (a viewer undoes it).
_STORED_AS = {
    3: Image.Transpose.ROTATE_180,
    6: Image.Transpose.ROTATE_90,
    8: Image.Transpose.ROTATE_270,
}
_ORIENTATION_TAG = 0x0112


def photo(digit: np.ndarray, rng: np.random.Generator, **changes: object) -> Image.Image:
    return compose(digit, photo_scene(rng, **changes), rng)


def _jpeg(picture: Image.Image, rng: np.random.Generator, **options: object) -> Picture:
    return encode(picture, "JPEG", quality=int(rng.integers(75, 95)), **options)


def _desk(rng: np.random.Generator) -> Rgb:
    """A dark desk: grey, wood or a dark cloth."""
    base = rng.uniform(25, 95)
    return grey(base, 0, rng) if rng.random() < 0.5 else (base * 1.3, base, base * 0.7)


def _on_desk(picture: Image.Image, sheet: Image.Image, rng: np.random.Generator) -> Image.Image:
    """`picture` where the `sheet` mask (L, 255 = sheet) is, a textured desk elsewhere."""
    width, height = picture.size
    desk = np.array(_desk(rng), np.float32) + rng.normal(0, 6, (height, width, 1))
    desk_image = Image.fromarray(np.clip(desk, 0, 255).astype(np.uint8), "RGB")
    return Image.composite(picture, desk_image, sheet.filter(ImageFilter.GaussianBlur(1.0)))


# -- orientation, framing and light ---------------------------------------------------------


def exif_rotated(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A phone JPEG stored sideways or upside down, with the EXIF tag that says so."""
    tag = int(rng.choice(list(_STORED_AS)))
    stored = photo(digit, rng).transpose(_STORED_AS[tag])
    exif = Image.Exif()
    exif[_ORIENTATION_TAG] = tag
    return _jpeg(stored, rng, exif=exif.tobytes())


def sheet_on_desk(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """The sheet does not fill the frame: a dark desk along one to four edges, the sheet
    slightly turned."""
    scene = photo_scene(rng, paper=grey(rng.uniform(170, 245), 6, rng))
    width, height = scene.canvas
    scene.digit_height = int(min(scene.canvas) * rng.uniform(0.3, 0.45))
    margins = rng.uniform(0.04, 0.2, 4) * (rng.random(4) < 0.6)  # left, top, right, bottom
    if not margins.any():
        margins[rng.integers(4)] = rng.uniform(0.04, 0.2)
    left, top = margins[0] * width, margins[1] * height
    right, bottom = (1 - margins[2]) * width, (1 - margins[3]) * height
    scene.centre = (((left + right) / 2) / width, ((top + bottom) / 2) / height)
    sheet = Image.new("L", scene.canvas, 0)
    ImageDraw.Draw(sheet).rectangle((left, top, right, bottom), fill=255)
    angle = float(rng.uniform(-6, 6))
    sheet = sheet.rotate(angle, Image.Resampling.BILINEAR, center=(width / 2, height / 2))
    return _jpeg(_on_desk(compose(digit, scene, rng), sheet, rng), rng)


def hard_shadow(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """The phone's shadow across part of the digit: a polygon 30-50% darker, its edge sharp or
    soft."""
    scene = photo_scene(rng, paper=grey(rng.uniform(170, 245), 6, rng))
    picture = compose(digit, scene, rng)
    width, height = scene.canvas
    # A corner near the digit, its two edges 60-180 degrees apart (180: one straight edge).
    corner = np.array(scene.centre) * (width, height)
    corner += rng.uniform(-0.15, 0.15, 2) * (width, height)
    first = rng.uniform(0, 2 * np.pi)
    turn = rng.uniform(np.pi / 3, np.pi) if rng.random() < 0.5 else np.pi
    reach = 3 * max(width, height)
    polygon = [tuple(corner)] + [
        tuple(corner + reach * np.array([np.cos(angle), np.sin(angle)]))
        for angle in (first, first + turn / 2, first + turn)
    ]
    mask = Image.new("L", scene.canvas, 0)
    ImageDraw.Draw(mask).polygon(polygon, fill=255)
    softness = float(rng.choice([0.0, rng.uniform(0.002, 0.02)])) * max(width, height)
    if softness:
        mask = mask.filter(ImageFilter.GaussianBlur(softness))
    darkness = rng.uniform(0.3, 0.5)
    light = 1 - darkness * np.asarray(mask, np.float32)[..., None] / 255
    shaded = np.asarray(picture, np.float32) * light
    return _jpeg(Image.fromarray(np.clip(shaded, 0, 255).astype(np.uint8), "RGB"), rng)


def perspective(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """The sheet photographed at an angle of up to about 25 degrees: one side of the sheet
    nearer the camera than the other, the desk showing beyond the far corners."""
    scene = photo_scene(rng, paper=grey(rng.uniform(170, 245), 6, rng))
    scene.digit_height = int(min(scene.canvas) * rng.uniform(0.3, 0.5))
    scene.centre = (0.5, 0.5)
    picture = compose(digit, scene, rng)
    width, height = scene.canvas
    shrink = 1 - np.tan(np.radians(rng.uniform(8, 25))) * 0.55  # the far side's length
    inset = rng.uniform(0.03, 0.1)
    far = (1 - shrink) / 2
    # Output corners (top-left, top-right, bottom-right, bottom-left) as fractions of the
    # frame, the far side shortened, on a random side.
    near, short = (inset, 1 - inset), (far, 1 - far)
    top, bottom = [[near[0], inset], [near[1], inset]], [[near[1], near[1]], [near[0], near[1]]]
    quad = np.array(
        [
            [[short[0], inset], [short[1], inset], *bottom],  # the far side at the top
            [*top, [short[1], near[1]], [short[0], near[1]]],  # ... at the bottom
            [[inset, short[0]], top[1], bottom[0], [inset, short[1]]],  # ... on the left
            [top[0], [near[1], short[0]], [near[1], short[1]], bottom[1]],  # ... on the right
        ][int(rng.integers(4))]
    ) * (width, height)
    source = np.array([[0, 0], [width, 0], [width, height], [0, height]], np.float32)
    to_source = cv2.getPerspectiveTransform(quad.astype(np.float32), source)
    coefficients = (to_source / to_source[2, 2]).ravel()[:8]
    warped = picture.transform(
        scene.canvas, Image.Transform.PERSPECTIVE, coefficients, Image.Resampling.BILINEAR
    )
    sheet = Image.new("L", scene.canvas, 0)
    ImageDraw.Draw(sheet).polygon([tuple(p) for p in quad], fill=255)
    return _jpeg(_on_desk(warped, sheet, rng), rng)


def tight_crop(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A digit cropped to its ink, as people crop a photo: strokes touch the edges."""
    scene = photo_scene(rng, paper=grey(rng.uniform(170, 250), 5, rng))
    scene.centre = (0.5, 0.5)
    picture = compose(digit, scene, rng)
    coverage = ink_coverage(digit, scene, rng) > 0.5
    rows, cols = np.flatnonzero(coverage.any(axis=1)), np.flatnonzero(coverage.any(axis=0))
    margin = int(rng.integers(0, 3))
    box = (
        max(cols[0] - margin, 0),
        max(rows[0] - margin, 0),
        cols[-1] + 1 + margin,
        rows[-1] + 1 + margin,
    )
    return _jpeg(picture.crop(box), rng)


# -- paper and pens -------------------------------------------------------------------------


def ruled_paper(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A notebook page: pale blue rule lines under the digit."""
    scene = photo_scene(rng, paper=grey(rng.uniform(200, 250), 4, rng))
    scene.ruling = (float(rng.uniform(0.05, 0.09)), 0.0)
    scene.ruling_width = max(1, round(min(scene.canvas) / 300))
    return _jpeg(compose(digit, scene, rng), rng)


def grid_paper(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Graph paper: a fine grid of pale lines in both directions."""
    scene = photo_scene(rng, paper=grey(rng.uniform(200, 250), 4, rng))
    spacing = float(rng.uniform(0.03, 0.06))
    scene.ruling = (spacing, spacing)
    scene.ruling_ink = (float(rng.uniform(140, 200)), float(rng.uniform(170, 215)), 200.0)
    scene.ruling_width = max(1, round(min(scene.canvas) / 400))
    return _jpeg(compose(digit, scene, rng), rng)


def messaging_app(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A photo forwarded through a messaging app: 48-96 pixels, JPEG quality 12-30."""
    picture = photo(digit, rng)
    scale = rng.uniform(48, 96) / min(picture.size)
    small = picture.resize(
        (round(picture.width * scale), round(picture.height * scale)), Image.Resampling.BILINEAR
    )
    return encode(small, "JPEG", quality=int(rng.integers(12, 31)))


def ballpoint_sheared(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A coloured ballpoint's thin strokes on a sheet sheared by the camera's angle."""
    scene = photo_scene(rng, paper=grey(rng.uniform(190, 250), 5, rng))
    scene.stroke = -stroke_pixels(scene, rng.uniform(0.01, 0.025))
    pens = [(30, 45, 160), (25, 35, 110), (170, 30, 35), (30, 110, 50)]
    scene.ink = tuple(float(v) + rng.uniform(-15, 15) for v in pens[rng.integers(len(pens))])  # type: ignore[assignment]
    picture = compose(digit, scene, rng)
    shear_x, shear_y = rng.uniform(-0.25, 0.25, 2)
    width, height = picture.size
    # Shear about the centre, the paper's colour where the sheet moved away from the frame.
    matrix = (1, shear_x, -shear_x * height / 2, shear_y, 1, -shear_y * width / 2)
    fill = tuple(round(v) for v in scene.paper)
    sheared = picture.transform(
        picture.size, Image.Transform.AFFINE, matrix, Image.Resampling.BILINEAR, fillcolor=fill
    )
    return _jpeg(sheared, rng)


PHONE_KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], Picture]] = {
    "exif_rotated": exif_rotated,
    "sheet_on_desk": sheet_on_desk,
    "hard_shadow": hard_shadow,
    "perspective": perspective,
    "tight_crop": tight_crop,
    "ruled_paper": ruled_paper,
    "grid_paper": grid_paper,
    "messaging_app": messaging_app,
    "ballpoint_sheared": ballpoint_sheared,
}
