"""Request bodies -> MNIST-ready uint8 arrays (N, 28, 28). Pure functions, no HTTP.

Accepted forms: multipart parts named `file`, a raw image body, JSON `{"images": [base64...]}`
and JSON `{"pixels": [28x28 arrays of 0..255]}`. Every way a client can get this wrong raises a
`ServiceError` subclass with a message that says what to send instead.
"""

from __future__ import annotations

import io
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from threading import Event
from typing import TYPE_CHECKING

import numpy as np
import pillow_heif
from PIL import (  # the plugins Pillow would load only on a first unknown file
    AvifImagePlugin,  # noqa: F401
    Image,
    TiffImagePlugin,  # noqa: F401
    UnidentifiedImageError,
)

from mnist_shared.marks import TooManyMarks, WorkStopped
from mnist_shared.preprocessing import (
    NoDigitFound,
    frame_picture,
    reduce_for_digit,
)
from mnist_shared.segmentation import MAX_DIGITS, FoundDigit, Judge, find_digits, upright_size
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
    max_digits: int = MAX_DIGITS  # digits read from all the pictures of a request, as numbers

    @classmethod
    def of(cls, settings: Settings) -> Limits:
        return cls(
            settings.max_images_per_request,
            settings.max_image_pixels,
            settings.max_request_pixels,
            settings.max_digits_per_request,
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
    # Every digit of each picture is read, in reading order (`/read`, the protocol's number
    # outputs), not one digit a picture.
    numbers: bool = False

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
    # Read as numbers (`/read`): each readable picture's digits in reading order, with their
    # boxes; `digits` holds them all, picture after picture.
    numbers: list[list[FoundDigit]] | None = None
    # One digit a picture (`/predict`): how many other digits stand beside each one framed
    # (int (M,); a picture of a number sent as one digit), None when reading numbers.
    digits_beside: np.ndarray | None = None

    def all_read(self) -> np.ndarray:
        """The digits, or the first failure as NoDigit (for protocols answering a request
        whole, as the Open Inference Protocol does)."""
        if self.failures:
            raise NoDigit(next(iter(self.failures.values())))
        return self.digits


def decode_images(
    payloads: list[tuple[str, bytes]],
    limits: Limits,
    numbers: bool = False,
    judge: Judge | None = None,
) -> DecodedImages:
    """Every image's header is read and the request's pixels counted before any is decoded,
    so a request over MNIST_MAX_REQUEST_PIXELS costs no decoding at all. A picture with no
    digit is a failure of its own; NoDigit only when no picture has one. With `numbers`, every
    digit of each picture is found (`segmentation`, touching digits told apart by `judge`, the
    digit check, where there is one), not one a picture."""
    decoding = Decoding(limits, numbers, judge)
    for index, opened in enumerate(open_images(payloads, limits)):
        decoding.step(index, opened)
    return decoding.result()


def open_images(payloads: list[tuple[str, bytes]], limits: Limits) -> list[OpenedImage]:
    """Every image with only its structure and header read, counted against the limits."""
    check_count(len(payloads), limits)
    check = HeaderCheck(limits)
    return [(label, check(data, label)) for label, data in payloads]


class Decoding:
    """One request's pictures decoded and framed one at a time (with `numbers`, each read as
    a number within what is left of the request's MNIST_MAX_DIGITS_PER_REQUEST): each `step`
    a picture, so that the steps of several requests can take turns on one thread."""

    def __init__(self, limits: Limits, numbers: bool = False, judge: Judge | None = None) -> None:
        self._numbers, self._judge, self._digits_left = numbers, judge, limits.max_digits
        self._digits: list[np.ndarray] = []
        self._failures: dict[int, str] = {}
        self._found: list[list[FoundDigit]] = []
        self._beside: list[int] = []

    def step(self, index: int, opened: OpenedImage, stop: Event | None = None) -> None:
        """Picture `index` decoded (`stop` checked before and, reading a number, inside)."""
        label, image = opened
        if stop is not None and stop.is_set():  # the request timed out or its client left
            raise WorkStopped(label)
        try:
            if self._numbers:
                found = _read_number(image, label, self._judge, stop, self._digits_left)
                self._found.append(found)
                self._digits += [digit.digit for digit in found]
                self._digits_left -= len(found)
            else:
                digit, beside = _decode(image, label)
                self._digits.append(digit)
                self._beside.append(beside)
        except NoDigit as error:
            self._failures[index] = str(error)

    def result(self) -> DecodedImages:
        """What the steps decoded; NoDigit when no picture was readable."""
        if not self._digits:
            raise NoDigit(self._failures[0])
        digits = self._digits
        # One digit is the common case: without np.stack's overhead.
        stacked = digits[0][None] if len(digits) == 1 else np.stack(digits)
        if self._numbers:
            return DecodedImages(stacked, self._failures, self._found)
        return DecodedImages(stacked, self._failures, None, np.array(self._beside, np.int64))


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


def _decode(image: Image.Image, label: str) -> tuple[np.ndarray, int]:
    """The picture's digit, framed, and how many digits stand beside it."""
    with _decoding_errors(label):
        image.seek(0)  # first frame of an animated GIF/WebP
        image = reduce_for_digit(image)  # decodes, at reduced size where it can
    try:
        return frame_picture(image)
    except NoDigitFound as error:
        raise NoDigit(f"{label}: {error}") from None


def _read_number(
    image: Image.Image, label: str, judge: Judge | None, stop: Event | None, max_digits: int
) -> list[FoundDigit]:
    with _decoding_errors(label):
        image.seek(0)
        size = upright_size(image)
        image = reduce_for_digit(image)
    try:
        return find_digits(image, size, judge, stop, max_digits)
    except (NoDigitFound, TooManyMarks) as error:
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
