"""Request bodies -> MNIST-ready uint8 arrays (N, 28, 28). Pure functions, no HTTP.

Accepted forms: multipart parts named `file`, a raw image body, JSON `{"images": [base64...]}`
and JSON `{"pixels": [28x28 arrays of 0..255]}`. Every way a client can get this wrong raises a
`ServiceError` subclass with a message that says what to send instead.
"""

from __future__ import annotations

import base64
import binascii
import io
import re
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from threading import Event
from typing import TYPE_CHECKING

import numpy as np
import orjson
import pillow_heif
from PIL import (  # the plugins Pillow would load only on a first unknown file
    AvifImagePlugin,  # noqa: F401
    Image,
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
)

from mnist_shared.preprocessing import (
    IMAGE_SIZE,
    INK_THRESHOLD,
    NoDigitFound,
    reduce_for_digit,
    to_mnist_digit,
)
from service.dataplane.image_structure import check_structure
from service.errors import BadRequest, NoDigit, PayloadTooLarge

if TYPE_CHECKING:
    from service.settings import Settings

pillow_heif.register_heif_opener()  # HEIC/HEIF, iPhones' photos; Pillow reads AVIF itself

# JPEG includes MPO, the variant many phones write (several pictures, the first the photo).
IMAGE_FORMATS = ("PNG", "JPEG", "WEBP", "HEIF", "AVIF", "TIFF", "BMP", "GIF")
_FORMAT_NAMES = "PNG, JPEG, WebP, HEIC, AVIF, TIFF, BMP or GIF"
OpenedImage = tuple[str, Image.Image]  # (label, the image with its header read)


@dataclass(frozen=True)
class Limits:
    max_images: int
    max_image_pixels: int
    max_request_pixels: int

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.max_images_per_request,
            settings.max_image_pixels,
            settings.max_request_pixels,
        )


class PixelBudget:
    """The pixels one request's images may hold together, spent as each image's header is read
    (before it is decoded), so a request's decoding work is bounded, not only its bytes."""

    def __init__(self, limit: int) -> None:
        self.limit, self.spent = limit, 0

    def spend(self, pixels: int, label: str) -> None:
        self.spent += pixels
        if self.spent > self.limit:
            raise PayloadTooLarge(
                f"{label} brings the request to {self.spent} pixels, over the limit of "
                f"{self.limit} for all its images together (MNIST_MAX_REQUEST_PIXELS). Send "
                "smaller pictures (a digit needs no more than a few hundred pixels a side) or "
                "fewer per request."
            )


@dataclass(frozen=True)
class ImagePayload:
    """A request's images, counted but not decoded yet (admission needs the count first):
    encoded files, JSON pixels that are MNIST-ready already, or the model's own input."""

    files: list[tuple[str, bytes]] = field(default_factory=list)  # (label, encoded bytes)
    pixels: np.ndarray | None = None  # uint8 (N, 28, 28)
    model_input: np.ndarray | None = None  # float32 (N, 28, 28) in [0, 1]

    @property
    def count(self) -> int:
        for array in (self.pixels, self.model_input):
            if array is not None:
                return len(array)
        return len(self.files)


class HeaderCheck:
    """Each image's declared size against the per-image and per-request pixel limits, one image
    at a time as they arrive (the parts of a large multipart body): a request over the limits
    is refused at the first image that passes them, before the rest is even split out."""

    def __init__(self, limits: Limits) -> None:
        self._limits = limits
        self._budget = PixelBudget(limits.max_request_pixels)

    def __call__(self, data: bytes, label: str) -> Image.Image:
        """The image with only its header read, its size counted against both limits."""
        image = _open(data, self._limits, label)
        self._budget.spend(image.width * image.height, label)
        return image


@dataclass(frozen=True)
class DecodedImages:
    """A request's pictures as MNIST-ready digits, and why each unreadable one could not be
    read: one picture without a digit does not cost the others their answers."""

    digits: np.ndarray  # uint8 (M, 28, 28), in input order, the unreadable ones left out
    failures: dict[int, str] = field(default_factory=dict)  # input index -> what was wrong

    def all_read(self) -> np.ndarray:
        """The digits, or the first failure as NoDigit (for protocols answering a request
        whole, as the Open Inference Protocol does)."""
        if self.failures:
            raise NoDigit(next(iter(self.failures.values())))
        return self.digits


def decode_images(payloads: list[tuple[str, bytes]], limits: Limits) -> DecodedImages:
    """Every image's header is read and the request's pixels counted before any is decoded,
    so a request over MNIST_MAX_REQUEST_PIXELS costs no decoding at all. A picture with no
    digit is a failure of its own; NoDigit only when no picture has one."""
    return decode_opened(open_images(payloads, limits))


def open_images(payloads: list[tuple[str, bytes]], limits: Limits) -> list[OpenedImage]:
    """Every image with only its structure and header read, counted against the limits."""
    check_count(len(payloads), limits)
    check = HeaderCheck(limits)
    return [(label, check(data, label)) for label, data in payloads]


class DecodingStopped(Exception):
    """The request that wanted these pictures was cancelled (timed out or disconnected)."""


def decode_opened(opened: list[OpenedImage], stop: Event | None = None) -> DecodedImages:
    """The opened images decoded and framed, one after the other; with `stop`, checked before
    each, so that a cancelled request's work ends within one picture."""
    digits, failures = [], {}
    for index, (label, image) in enumerate(opened):
        if stop is not None and stop.is_set():
            raise DecodingStopped(label)
        try:
            digits.append(_decode(image, label))
        except NoDigit as error:
            failures[index] = str(error)
    if not digits:
        raise NoDigit(failures[0])
    if len(digits) == 1:  # the common case, without np.stack's overhead
        return DecodedImages(digits[0][None], failures)
    return DecodedImages(np.stack(digits), failures)


def _open(data: bytes, limits: Limits, label: str) -> Image.Image:
    """The image with only its header read, its declared size checked."""
    if not data:
        raise BadRequest(f"{label} is empty: send the bytes of a {_FORMAT_NAMES} image.")
    check_structure(data, label)  # before Pillow walks it segment by segment in Python
    with _decoding_errors(label):
        image = Image.open(io.BytesIO(data), formats=IMAGE_FORMATS)
        width, height = image.size  # header only: no pixels decoded yet
    if width * height > limits.max_image_pixels:
        raise PayloadTooLarge(
            f"{label} declares {width}x{height} pixels, more than the limit of "
            f"{limits.max_image_pixels}. Send a smaller image (28x28 is enough)."
        )
    if width < 2 or height < 2:
        raise BadRequest(
            f"{label} is {width}x{height} pixels, too small to hold a digit. "
            "Send an image of at least 2x2 pixels (28x28 is ideal)."
        )
    return image


def _decode(image: Image.Image, label: str) -> np.ndarray:
    with _decoding_errors(label):
        image.seek(0)  # first frame of an animated GIF/WebP
        image = reduce_for_digit(image)  # decodes, at reduced size where it can
    try:
        return to_mnist_digit(image)
    except NoDigitFound as error:
        raise NoDigit(f"{label}: {error}") from None


@contextmanager
def _decoding_errors(label: str) -> Iterator[None]:
    """Pillow's errors while reading `label`, as the client errors they are."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error", Image.DecompressionBombWarning)
            yield
    except (Image.DecompressionBombError, Image.DecompressionBombWarning) as error:
        raise PayloadTooLarge(
            f"{label} is too large to decode ({error}). Send a smaller image (28x28 is enough)."
        ) from None
    except UnidentifiedImageError:
        raise BadRequest(f"{label} is not a readable image: send a {_FORMAT_NAMES} file.") from None
    except (OSError, SyntaxError, ValueError, EOFError) as error:
        raise BadRequest(
            f"{label} could not be decoded ({error}); it may be truncated. "
            f"Send a complete {_FORMAT_NAMES} file."
        ) from None


def check_count(count: int, limits: Limits) -> None:
    if count == 0:
        raise BadRequest("the request holds no image: send at least one.")
    if count > limits.max_images:
        raise PayloadTooLarge(
            f"the request holds {count} images, more than the limit of {limits.max_images}. "
            "Split it into several requests."
        )


def parse_json(body: bytes, limits: Limits) -> ImagePayload:
    """`{"images": [base64, ...]}` or `{"pixels": [[[0..255] * 28] * 28, ...]}`."""
    try:
        # orjson: several times the standard library's speed on numbers (docs/design.md),
        # and it holds the GIL (which the
        # event loop needs) while it parses; it refuses what JSON has not (NaN, Infinity),
        # integers beyond 64 bits and nesting deeper than 1024.
        document = orjson.loads(body)
    except orjson.JSONDecodeError as error:
        hint = "; NaN and Infinity are not JSON" if re.search(rb"NaN|Infinity", body) else ""
        raise BadRequest(f"malformed JSON body ({error}{hint}).") from None
    if not isinstance(document, dict) or len({"images", "pixels"} & document.keys()) != 1:
        raise BadRequest(
            'JSON body must be an object with exactly one of "images" (a list of base64-encoded '
            'image files) or "pixels" (a list of 28x28 arrays of numbers 0..255).'
        )
    if "images" in document:
        return _json_images(document["images"], limits)
    return _json_pixels(document["pixels"], limits)


def _json_images(items: object, limits: Limits) -> ImagePayload:
    if not isinstance(items, list) or not all(isinstance(item, str) for item in items):
        raise BadRequest(
            '"images" must be a list of base64 strings (or data: URLs), one per image file.'
        )
    check_count(len(items), limits)
    payloads = []
    for index, item in enumerate(items):
        if item.startswith("data:") and "," in item:  # a data: URL, as a browser's canvas gives
            item = item.split(",", 1)[1]
        try:
            payloads.append((f"images[{index}]", base64.b64decode(item, validate=True)))
        except (binascii.Error, ValueError):
            raise BadRequest(f"images[{index}] is not valid base64.") from None
    return ImagePayload(files=payloads)


def _json_pixels(items: object, limits: Limits) -> ImagePayload:
    if not isinstance(items, list):
        raise BadRequest('"pixels" must be a list of 28x28 arrays of numbers 0..255.')
    check_count(len(items), limits)
    try:
        pixels = np.asarray(items, dtype=np.float64)
    except (ValueError, TypeError, OverflowError):  # OverflowError: 10**400
        raise BadRequest(
            '"pixels" must hold only numbers, as 28x28 nested lists (ragged or non-numeric found).'
        ) from None
    if pixels.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE):
        raise BadRequest(
            f'"pixels" has shape {list(pixels.shape)}; expected [N, 28, 28] (N images of 28 rows '
            "of 28 numbers)."
        )
    if not np.isfinite(pixels).all():
        raise BadRequest('"pixels" contains NaN or infinity; send numbers from 0 to 255.')
    if pixels.min() < 0 or pixels.max() > 255:
        raise BadRequest(
            f'"pixels" values must lie in 0..255 (found {pixels.min():g}..{pixels.max():g}).'
        )
    if pixels.max() <= 1 and (pixels != np.rint(pixels)).any():
        raise BadRequest(
            '"pixels" looks like 0..1 floats: send 0..255 (multiply by 255), white digit on black.'
        )
    # Pixels are taken as MNIST-ready (white digit on black): only rounded to the uint8 grid.
    digits = np.rint(pixels).astype(np.uint8)
    blank = np.flatnonzero(digits.max(axis=(1, 2)) < INK_THRESHOLD)
    if blank.size:
        raise NoDigit(
            f"pixels[{blank[0]}]: no digit found: no value reaches {INK_THRESHOLD}. Send the "
            "digit as white (255) strokes on black (0)."
        )
    return ImagePayload(pixels=digits)
