"""A JSON request body's images: base64-encoded files (decoded later, like uploads) or pixels
that are MNIST-ready already (checked and rounded here)."""

from __future__ import annotations

import base64
import binascii
import re

import numpy as np
import orjson

from mnist_shared.preprocessing import IMAGE_SIZE, INK_THRESHOLD
from service.dataplane.decoding import ImagePayload, Limits, check_count
from service.errors import BadRequest, NoDigit


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
