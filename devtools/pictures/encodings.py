"""Client-like pictures in every encoding phones, scanners and editors write: 16-bit PNG, grey
+ alpha, palettes with transparency, CMYK JPEG, TIFF (one page or several), HEIC and AVIF."""

from __future__ import annotations

from collections.abc import Callable

import cv2
import numpy as np
import pillow_heif
from PIL import Image, ImageDraw

from devtools.pictures.phone import photo as composed
from devtools.pictures.scene import Picture, encode, grey

pillow_heif.register_heif_opener()  # HEIC encoding (Pillow reads and writes AVIF itself)


def _grey_photo(digit: np.ndarray, rng: np.random.Generator) -> Image.Image:
    return composed(digit, rng, paper=grey(rng.uniform(170, 245), 0, rng)).convert("L")


def png16_grey(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A 16-bit greyscale PNG, as scanners and camera apps in raw mode write."""
    levels = np.asarray(_grey_photo(digit, rng), np.float32) * 257
    levels += rng.uniform(0, 256, levels.shape)  # the low byte holds real detail
    return encode(Image.fromarray(levels.astype(np.uint16)), "PNG")


def png16_rgb(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A 48-bit (16 bits a channel) RGB PNG. Pillow cannot write one; OpenCV can."""
    rgb = np.asarray(composed(digit, rng), np.uint16) * 257
    ok, data = cv2.imencode(".png", np.ascontiguousarray(rgb[..., ::-1]))  # OpenCV is BGR
    assert ok
    return Picture(data.tobytes(), "image/png", "png")


def grey_alpha_png(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """Grey + alpha PNG: opaque where the photo is, a transparent frame around it (black under
    the transparency, as most editors store it)."""
    photo = _grey_photo(digit, rng)
    alpha = Image.new("L", photo.size, 0)
    margin = int(rng.integers(0, max(1, min(photo.size) // 12)))
    ImageDraw.Draw(alpha).rectangle(
        (margin, margin, photo.width - 1 - margin, photo.height - 1 - margin), fill=255
    )
    pixels = Image.composite(photo, Image.new("L", photo.size, 0), alpha)
    return encode(Image.merge("LA", (pixels, alpha)), "PNG")


def palette_png(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A palette PNG (255 colours) whose spare index is transparent, used for a frame."""
    photo = composed(digit, rng).quantize(255)
    photo.putpalette([*photo.getpalette()[: 255 * 3], 0, 0, 0])  # index 255: the frame
    frame = int(rng.integers(0, max(1, min(photo.size) // 12)))
    if frame:
        pixels = np.array(photo)
        pixels[:frame], pixels[-frame:], pixels[:, :frame], pixels[:, -frame:] = 255, 255, 255, 255
        palette = photo.getpalette()
        photo = Image.fromarray(pixels, "P")
        photo.putpalette(palette)
    return encode(photo, "PNG", transparency=255)


def cmyk_jpeg(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A CMYK JPEG, as print workflows and some scanners save."""
    picture = composed(digit, rng).convert("CMYK")
    return encode(picture, "JPEG", quality=int(rng.integers(75, 95)))


def tiff(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """A scanner's TIFF: compressed or not, sometimes a second page after the digit's."""
    photo = composed(digit, rng)
    compression = str(rng.choice(["raw", "tiff_lzw", "tiff_adobe_deflate", "jpeg"]))
    options: dict[str, object] = {"compression": compression}
    if rng.random() < 0.3:  # multi-page: the service reads the first
        options |= {"save_all": True, "append_images": [Image.new("RGB", photo.size, "white")]}
    return encode(photo, "TIFF", **options)


def heic(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """HEIC, iPhones' default photo format."""
    return encode(composed(digit, rng), "HEIF", quality=int(rng.integers(60, 90)))


def avif(digit: np.ndarray, rng: np.random.Generator) -> Picture:
    """AVIF, Android's newer photo format."""
    return encode(composed(digit, rng), "AVIF", quality=int(rng.integers(50, 85)))


ENCODING_KINDS: dict[str, Callable[[np.ndarray, np.random.Generator], Picture]] = {
    "png16_grey": png16_grey,
    "png16_rgb": png16_rgb,
    "grey_alpha_png": grey_alpha_png,
    "palette_png": palette_png,
    "cmyk_jpeg": cmyk_jpeg,
    "tiff": tiff,
    "heic": heic,
    "avif": avif,
}
