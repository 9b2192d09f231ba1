"""The one place that turns pixels into model input, shared by training and serving.

Imports numpy, Pillow and OpenCV, never TensorFlow, so the service can use it on its own.

* `to_mnist_digit` makes any picture of one digit look like an MNIST sample:
  1. `reduce_for_digit`: decode large pictures at reduced size (JPEG draft, `Image.reduce`),
     16-bit and palette pictures made 8-bit pictures, the camera's EXIF orientation applied;
  2. `ink_map` (`mnist_shared/ink.py`): the digit's ink as 0..1 over the picture, with the
     paper's light (gradients, a desk around the sheet, hard shadows) removed;
  3. `frame_digit`: crop to the ink, grow a fine pen's strokes towards MNIST's width, scale to
     fit 20x20 keeping the aspect ratio and place in 28x28 with the centre of mass at the
     centre, as the MNIST authors framed their scans.
  A 28x28 picture is taken as already framed: only made white-on-black grayscale, so a real
  MNIST digit passes through unchanged. A picture with no ink raises `NoDigitFound`.
* `scale_pixels` maps uint8 0..255 to float32 0..1, the models' input range.
"""

from __future__ import annotations

import io

import cv2
import numpy as np
from PIL import ExifTags, Image, ImageOps

from mnist_shared.ink import NO_DIGIT, NoDigitFound, digit_ink, is_transparent_canvas

IMAGE_SIZE = 28
DIGIT_BOX = 20  # MNIST digits are scaled to fit 20x20 inside the 28x28 frame
PIXEL_MAX = 255.0
# Pictures are analysed at most this many pixels a side: a digit needs 20, and the smallest
# digit we read (an eighth of a photo's height) still spans 50 or more.
WORK_SIDE = 320
# Strokes thinner than this fraction of the digit's longer side are grown towards it (MNIST's
# median is 2.6 of 20 pixels), by at most this fraction of it a side (loops stay open).
STROKE_WIDTH = 0.13
MAX_STROKE_GROWTH = 0.04
# A 28x28 input (taken as framed) is blank when no pixel reaches this level.
INK_THRESHOLD = 32


def scale_pixels(pixels: np.ndarray) -> np.ndarray:
    """uint8 (or 0..255 numbers) -> float32 in [0, 1]: the models' input."""
    return np.asarray(pixels, dtype=np.float32) / np.float32(PIXEL_MAX)


def to_mnist_digit(image: Image.Image) -> np.ndarray:
    """Any picture of one digit -> uint8 array (28, 28), white digit on black, MNIST-style."""
    return frame_picture(image)[0]


def frame_picture(image: Image.Image) -> tuple[np.ndarray, int]:
    """`to_mnist_digit`, and how many other digits stand beside the one framed (a picture of a
    number sent as one digit; `ink.DigitInk.digits_beside`)."""
    if image.size == (IMAGE_SIZE, IMAGE_SIZE):
        # Already at MNIST resolution: taken as framed like MNIST. Re-framing would resample a
        # real MNIST digit (many touch the 20x20 box's edge) and change what the model sees.
        digit = _framed_ink_on_black(_eight_bits(image))
        if digit.max() < INK_THRESHOLD:
            raise NoDigitFound(NO_DIGIT)
        return digit, 0
    found = digit_ink(reduce_for_digit(image))
    return frame_digit(found.ink), found.digits_beside


# -- 1. decoding at reduced size ------------------------------------------------------------


def reduce_for_digit(image: Image.Image) -> Image.Image:
    """The picture upright, in 8 bits a channel, at no more than WORK_SIDE pixels a side.

    Pillow's `thumbnail` decodes a JPEG not yet loaded at 1/2, 1/4 or 1/8 scale (its DCT
    `draft` mode) and box-reduces other formats by an integer factor before resampling; the
    camera's EXIF orientation is applied after, on the small picture, where it costs nothing."""
    if image.size == (IMAGE_SIZE, IMAGE_SIZE):  # taken as framed (`to_mnist_digit`): as it is
        image.load()
        return image
    if image.format == "WEBP" and max(image.size) > WORK_SIDE and isinstance(image.fp, io.BytesIO):
        return _reduced_webp(image)
    image = _eight_bits(image)
    turned = image.getexif().get(ExifTags.Base.Orientation, 1) != 1
    if image.format == "JPEG" and image.mode == "RGB":
        # Only the luma is read (`ink.ink_map`), and libjpeg hands it over without
        # upsampling and converting the colour planes; the scale is chosen as `thumbnail` would.
        image.draft("L", (WORK_SIDE, WORK_SIDE))
    if max(image.size) > WORK_SIDE:
        # reducing_gap=1: the coarsest DCT scale that still gives WORK_SIDE pixels (the default
        # 2 decodes a 4000-pixel JPEG at 1/4 instead of 1/8 scale: a third slower).
        image.thumbnail((WORK_SIDE, WORK_SIDE), Image.Resampling.BOX, reducing_gap=1.0)
    else:
        image.load()
    return ImageOps.exif_transpose(image) if turned else image  # (a copy costs a 28x28 a third)


def _reduced_webp(image: Image.Image) -> Image.Image:
    """A large WebP decoded by OpenCV and area-reduced to WORK_SIDE: Pillow's WebP decoder
    cannot decode at reduced size and holds the GIL (which the service's event loop needs)
    for 60 ms at 16 megapixels; OpenCV releases it, and decodes in half the time."""
    data = np.frombuffer(image.fp.getvalue(), np.uint8)  # type: ignore[union-attr]
    pixels = cv2.imdecode(data, cv2.IMREAD_UNCHANGED)  # BGR or BGRA, the first frame
    if pixels is None:
        raise OSError("OpenCV could not decode the WebP picture")
    scale = WORK_SIDE / max(pixels.shape[:2])
    size = (max(1, round(pixels.shape[1] * scale)), max(1, round(pixels.shape[0] * scale)))
    pixels = cv2.resize(pixels, size, interpolation=cv2.INTER_AREA)
    alpha = pixels.shape[2] == 4
    pixels = cv2.cvtColor(pixels, cv2.COLOR_BGRA2RGBA if alpha else cv2.COLOR_BGR2RGB)
    reduced = Image.fromarray(pixels, "RGBA" if alpha else "RGB")
    reduced.info["exif"] = image.info.get("exif", b"")
    return ImageOps.exif_transpose(reduced) if reduced.info["exif"] else reduced


def _eight_bits(image: Image.Image) -> Image.Image:
    """16-bit and float pictures scaled (not clipped) to 8 bits; palettes expanded, so that
    they are resampled as pictures, not as colour indexes."""
    if image.mode in ("P", "PA"):
        transparent = "transparency" in image.info or image.mode == "PA"
        return image.convert("RGBA" if transparent else "RGB")
    if image.mode.startswith("I") or image.mode == "F":
        values = np.asarray(image, dtype=np.float32)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 255.0)
        gray = Image.fromarray(np.round(values * (PIXEL_MAX / top)).astype(np.uint8), "L")
        gray.info = image.info  # the EXIF orientation
        return gray
    return image


# -- 3. framing -----------------------------------------------------------------------------


def frame_digit(ink: np.ndarray) -> np.ndarray:
    """Ink map (0..1, any size) -> uint8 (28, 28): cropped to the ink, fitted into 20x20
    keeping the aspect ratio, centred on the mass. Raises NoDigitFound without ink."""
    box = _ink_bounding_box(ink)
    if box is None:
        raise NoDigitFound(NO_DIGIT)
    top, bottom, left, right = box
    crop = Image.fromarray(np.round(ink[top:bottom, left:right] * PIXEL_MAX).astype(np.uint8))
    crop = _thicken_thin_strokes(crop)
    scale = DIGIT_BOX / max(crop.width, crop.height)
    size = (max(1, round(crop.width * scale)), max(1, round(crop.height * scale)))
    fitted = np.asarray(crop.resize(size, Image.Resampling.LANCZOS), dtype=np.float32)
    # Thin strokes lose intensity when scaled down: bring the strongest ink back to 255.
    strongest = float(np.quantile(fitted[fitted > 0], 0.95)) if fitted.any() else 0.0
    if strongest <= 0:
        raise NoDigitFound(NO_DIGIT)
    fitted = np.clip(fitted * (PIXEL_MAX / strongest), 0, PIXEL_MAX)
    return _centre_on_mass(np.round(fitted).astype(np.uint8))


def _thicken_thin_strokes(crop: Image.Image) -> Image.Image:
    """A fine pen's strokes grown towards MNIST's width (about an eighth of the digit's
    height): thin strokes would otherwise fade when the digit is scaled down to 20 pixels."""
    mask = np.asarray(crop) > 127
    padded = np.pad(mask, 1)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    edge = np.count_nonzero(mask & ~inner)
    if edge == 0:
        return crop
    width = 2 * np.count_nonzero(mask) / edge  # area / half the perimeter, for long strokes
    grow = round((STROKE_WIDTH * max(crop.size) - width) / 2)
    if grow < 1:
        return crop
    limit = max(1, round(MAX_STROKE_GROWTH * max(crop.size)))
    side = 2 * min(grow, limit) + 1  # a square max filter, OpenCV's being ~10x Pillow's speed
    return Image.fromarray(cv2.dilate(np.asarray(crop), np.ones((side, side), np.uint8)))


def _ink_bounding_box(ink: np.ndarray) -> tuple[int, int, int, int] | None:
    """Rows and columns holding clear ink, ignoring specks: a pixel counts when at least 3
    of its 3x3 neighbourhood are ink (a stroke has many, a speck of dust or noise one)."""
    clear = np.pad(ink > 0.25, 1).astype(np.uint8)
    rows = clear[:-2] + clear[1:-1] + clear[2:]
    neighbours = rows[:, :-2] + rows[:, 1:-1] + rows[:, 2:]
    inked = (neighbours >= 3) & (clear[1:-1, 1:-1] > 0)
    ink_rows = np.flatnonzero(inked.any(axis=1))
    ink_cols = np.flatnonzero(inked.any(axis=0))
    if ink_rows.size == 0:
        return None
    return int(ink_rows[0]), int(ink_rows[-1]) + 1, int(ink_cols[0]), int(ink_cols[-1]) + 1


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


# -- 28x28 pictures -------------------------------------------------------------------------


def _framed_ink_on_black(image: Image.Image) -> np.ndarray:
    """A 28x28 picture (8-bit, palettes expanded) as white-on-black grayscale, pixels
    otherwise untouched."""
    if image.mode in ("RGBA", "LA") and is_transparent_canvas(image):
        return np.asarray(image.getchannel("A"), dtype=np.uint8)
    if image.mode != "L":
        image = ImageOps.grayscale(image.convert("RGB"))
    gray = np.asarray(image, dtype=np.uint8)
    border = np.concatenate([gray[0], gray[-1], gray[:, 0], gray[:, -1]])
    # Paper is the majority of a digit picture: a mostly bright border means dark ink on light
    # paper (the border's median above mid-grey, counted rather than sorted).
    return 255 - gray if np.count_nonzero(border > 127) * 2 > border.size else gray
