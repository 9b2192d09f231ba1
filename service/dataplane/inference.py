"""The protocol-neutral inference request and its answer.

`/predict`, the Open Inference Protocol's REST route and its gRPC method each turn their wire
format into an `InferenceRequest`, call `DataPlane.infer` once and shape the `InferenceAnswer`
in their own format. What differs between the protocols is said here, as data: how a model is
named (`variant` or `model`), whether one unreadable picture fails the request (`whole`), how
the images are read (`read_images`) and how a client's departure is noticed (`watch_client`).
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Awaitable, Callable
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass, field

import numpy as np

from mnist_shared.preprocessing import PIXEL_MAX
from mnist_shared.segmentation import FoundDigit
from service.dataplane.decoding import ImagePayload, Limits
from service.errors import BadRequest

ALL_VARIANTS = "all"
# Version numbers and lengths a client sends: int64's 18 safe digits (int() of thousands of
# digits costs quadratic time, and numpy and protobuf overflow past int64).
MAX_DIGITS = 18

# Reads and parses the request's images (not decoding them yet) once its model is chosen:
# a request for a model that cannot answer costs no body reading.
ReadImages = Callable[[Limits], Awaitable[ImagePayload]]
# The precision the request names (None or "": each model's MNIST_DEFAULT_PRECISION), asked
# once its images are read: the Open Inference Protocol's REST body carries it as a parameter.
AskedPrecision = Callable[[], str | None]
# An async context around the inference that cancels it when the client goes away.
WatchClient = Callable[[], AbstractAsyncContextManager[None]]


@dataclass(frozen=True)
class InferenceRequest:
    read_images: ReadImages
    # /predict names a variant, `all` or none (the default; an unknown name is a bad request);
    # the Open Inference Protocol names one model (an unknown name is not found).
    variant: str | None = None
    model: str | None = None
    version: str | None = None  # as the protocol sends it; None or "": the newest serving
    backend: str | None = None  # None: MNIST_DEFAULT_BACKEND
    precision: AskedPrecision = field(default=lambda: None)
    # True: a picture without a digit fails the whole request (the Open Inference Protocol
    # answers a request whole); False: it gets an error entry in its place (`/predict`).
    whole: bool = False
    # True: a picture that does not look like one digit (the digit check) is refused as a
    # picture without a digit is (`whole`: the request; else that picture, 422 when all are).
    strict: bool = False
    watch_client: WatchClient = field(default=nullcontext)

    @property
    def name(self) -> str | None:
        """What the request asked for, as its metrics label it."""
        return self.model if self.model is not None else self.variant


@dataclass(frozen=True)
class VariantResult:
    """One variant's answer for a batch of images."""

    variant: str
    version: int
    backend: str
    precision: str  # the model file that ran: fp32, or a twin (int8)
    probabilities: np.ndarray  # float32 (N, 10)

    @property
    def digits(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def rows(self, kept: np.ndarray) -> VariantResult:
        """This answer for the rows `kept` (a bool mask) only."""
        return dataclasses.replace(self, probabilities=self.probabilities[kept])


@dataclass(frozen=True)
class InferenceAnswer:
    results: list[VariantResult]  # one per variant, in the order chosen
    backend: str
    model_input: np.ndarray  # float32 (M, 28, 28) in [0, 1]: what the models saw
    failures: dict[int, str]  # input index -> why that picture has no answer (not `whole`)
    # With `ImagePayload.numbers`: each readable picture's digits (their boxes and lines);
    # the rows of `model_input` and of each result are these digits, picture after picture.
    numbers: list[list[FoundDigit]] | None = None
    # With the digit check: each row's score (how much it looks like one digit) and the
    # threshold below which a row is flagged; None without one.
    digit_scores: np.ndarray | None = None
    digit_threshold: float = 0.0
    # One digit a picture: how many other digits stand beside each row's (a number sent to
    # /predict); None when reading numbers or for tensors.
    digits_beside: np.ndarray | None = None

    @functools.cached_property
    def looks_like_digits(self) -> np.ndarray | None:
        """bool (M,): which rows the digit check did not flag; None without one."""
        if self.digit_scores is None:
            return None
        return (self.digit_scores >= self.digit_threshold) & ~several_digits(self)

    def digits_seen(self) -> np.ndarray:
        """The model input as uint8 digits: exactly those it was scaled from, when it was
        (x / 255 * 255 rounds back to x in float32)."""
        return np.rint(self.model_input * np.float32(PIXEL_MAX)).astype(np.uint8)


@dataclass(frozen=True)
class ModelInput:
    """A request's decoded images as the models take them."""

    images: np.ndarray  # float32 (M, 28, 28) in [0, 1]
    failures: dict[int, str]
    numbers: list[list[FoundDigit]] | None
    digits_beside: np.ndarray | None = None  # as `InferenceAnswer.digits_beside`


def several_digits(found: InferenceAnswer | ModelInput) -> np.ndarray | bool:
    """bool (M,): the rows that are not one digit whatever the check says: a picture with
    digits beside the one framed, or a digit segmentation doubted; False where none can be."""
    if found.digits_beside is not None:
        return found.digits_beside > 0
    return doubtful_rows(found.numbers)


def doubtful_rows(numbers: list[list[FoundDigit]] | None) -> np.ndarray | bool:
    """bool (M,): the rows segmentation doubted (cut from a mark that did not look like a
    digit, into pieces not all of which do); False when no numbers were read."""
    if numbers is None:
        return False
    return np.array([digit.doubtful for found in numbers for digit in found], bool)


def one_digit_each(images: np.ndarray) -> list[list[FoundDigit]]:
    """Pictures already framed as digits (28x28 pixels, tensors), read as numbers: one digit
    each, its box the whole picture."""
    framed = np.rint(images * np.float32(PIXEL_MAX)).astype(np.uint8)
    return [[FoundDigit(digit, (0, 0, digit.shape[1], digit.shape[0]), 0)] for digit in framed]


def parse_version(version: str | None) -> int | None:
    """A version as every protocol sends it, a string ("" or absent: the newest)."""
    if not version:
        return None
    if not is_small_number(version):
        raise BadRequest(
            f"model version {version[:40]!r} is not a number of at most {MAX_DIGITS} digits; "
            "versions are 1, 2, ..."
        )
    return int(version)


def is_small_number(text: str) -> bool:
    """Digits only ("²".isdigit(), but int() refuses it), few enough for an int64."""
    return text.isascii() and text.isdigit() and len(text) <= MAX_DIGITS
