"""Open Inference Protocol tensors, independent of the wire (REST JSON, binary, gRPC).

The REST and gRPC front doors turn their requests into `Tensor`s, call `infer` and write the
`Tensor`s it returns in their own format. Inputs: `image` FP32 [N, 28, 28] in [0, 1] (the
model's own input, no preprocessing) or `image_bytes` BYTES [N] (encoded pictures, preprocessed
as `/predict` does). Outputs: `probabilities` FP32 [N, 10] and `digit` INT64 [N].
"""

from __future__ import annotations

import math
import struct
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from mnist_shared.preprocessing import IMAGE_SIZE, scale_pixels
from service.dataplane.dataplane import DataPlane, VariantResult
from service.dataplane.decode_work import decode_files
from service.dataplane.decoding import Limits, check_count
from service.errors import BadRequest, PayloadTooLarge

# Wire datatypes of the protocol with a fixed element size, little-endian.
NUMPY_DATATYPES: dict[str, np.dtype] = {
    "BOOL": np.dtype("?"),
    "UINT8": np.dtype("<u1"),
    "UINT16": np.dtype("<u2"),
    "UINT32": np.dtype("<u4"),
    "UINT64": np.dtype("<u8"),
    "INT8": np.dtype("<i1"),
    "INT16": np.dtype("<i2"),
    "INT32": np.dtype("<i4"),
    "INT64": np.dtype("<i8"),
    "FP16": np.dtype("<f2"),
    "FP32": np.dtype("<f4"),
    "FP64": np.dtype("<f8"),
}
IMAGE_INPUT, BYTES_INPUT = "image", "image_bytes"
# Version numbers and lengths a client sends: int64's 18 safe digits (int() of thousands of
# digits costs quadratic time, and numpy and protobuf overflow past int64).
MAX_DIGITS = 18
PROBABILITIES, DIGIT = "probabilities", "digit"
OUTPUTS = (PROBABILITIES, DIGIT)
_INPUTS_HELP = (
    f"send one input: {IMAGE_INPUT!r} FP32 [N, 28, 28] in 0..1, or {BYTES_INPUT!r} BYTES [N] "
    "(encoded PNG/JPEG/WebP/BMP/GIF pictures)"
)


@dataclass(frozen=True)
class Tensor:
    """A named tensor: numbers as a numpy array of `shape`, BYTES as a list of bytes."""

    name: str
    datatype: str
    shape: list[int]
    data: np.ndarray | list[bytes]


def check_datatype(name: str, datatype: str) -> None:
    if datatype != "BYTES" and datatype not in NUMPY_DATATYPES:
        known = ", ".join([*NUMPY_DATATYPES, "BYTES"])
        raise BadRequest(f"input {name!r}: unknown datatype {datatype!r}; use {known}.")


def element_count(name: str, shape: Sequence[int], limit: int) -> int:
    """How many elements `shape` holds, checked before any element is converted: no negative
    dimension, and at most `limit` (what the largest valid request holds)."""
    if any(dimension < 0 for dimension in shape):
        raise BadRequest(f"input {name!r}: shape {list(shape)} has a negative dimension.")
    count = math.prod(shape)  # Python integers: [2**60, 28, 28] must not wrap around
    if count > limit:
        raise PayloadTooLarge(
            f"input {name!r}: shape {list(shape)} holds {count} elements, more than the {limit} "
            "one request may carry (MNIST_MAX_IMAGES_PER_REQUEST images). Split the request."
        )
    return count


def max_elements(limits: Limits) -> int:
    """The most elements a valid input holds: the largest request's pixels."""
    return limits.max_images * IMAGE_SIZE * IMAGE_SIZE


def array_from_bytes(raw: bytes, datatype: str, shape: Sequence[int], name: str) -> np.ndarray:
    """A fixed-size datatype's raw little-endian bytes, checked against its shape (whose
    element count `element_count` has bounded)."""
    dtype = NUMPY_DATATYPES[datatype]
    expected = math.prod(shape) * dtype.itemsize
    if len(raw) != expected:
        raise BadRequest(
            f"input {name!r}: {len(raw)} bytes of data, but {datatype} {list(shape)} needs "
            f"{expected}."
        )
    return np.frombuffer(raw, dtype=dtype).reshape(shape)


def split_bytes_elements(raw: bytes, name: str, count: int) -> list[bytes]:
    """BYTES tensor data in the protocol's binary form: each element a 4-byte little-endian
    length, then that many bytes. Refused as soon as it holds more than the shape's `count`
    (a megabyte of empty elements must not be split out to be refused after)."""
    elements, offset = [], 0
    while offset < len(raw):
        if len(elements) == count:
            raise BadRequest(f"input {name!r}: BYTES data holds more than the shape's {count}.")
        if offset + 4 > len(raw):
            raise BadRequest(f"input {name!r}: BYTES data ends inside an element's length.")
        (length,) = struct.unpack_from("<I", raw, offset)
        offset += 4
        if offset + length > len(raw):
            raise BadRequest(f"input {name!r}: BYTES element of {length} bytes runs past the data.")
        elements.append(raw[offset : offset + length])
        offset += length
    return elements


def raw_bytes(tensor: Tensor) -> bytes:
    """A tensor's data in the protocol's binary form (BYTES elements length-prefixed)."""
    if isinstance(tensor.data, list):
        return b"".join(struct.pack("<I", len(e)) + e for e in tensor.data)
    return np.ascontiguousarray(tensor.data, dtype=NUMPY_DATATYPES[tensor.datatype]).tobytes()


def check_shape(tensor: Tensor) -> None:
    """The data holds as many elements as the shape says."""
    if any(d < 0 for d in tensor.shape):
        raise BadRequest(f"input {tensor.name!r}: shape {tensor.shape} has a negative dimension.")
    count = len(tensor.data) if isinstance(tensor.data, list) else tensor.data.size
    if count != math.prod(tensor.shape):
        raise BadRequest(
            f"input {tensor.name!r}: shape {tensor.shape} holds {math.prod(tensor.shape)} "
            f"elements, but {count} were sent."
        )


async def images_from_inputs(inputs: Sequence[Tensor], limits: Limits) -> np.ndarray:
    """float32 (N, 28, 28) in [0, 1] from the request's single input."""
    if len(inputs) != 1:
        raise BadRequest(f"{len(inputs)} inputs sent: {_INPUTS_HELP}.")
    (tensor,) = inputs
    check_shape(tensor)
    if tensor.name == IMAGE_INPUT:
        return _pixels(tensor, limits)
    if tensor.name == BYTES_INPUT:
        return await _pictures(tensor, limits)
    raise BadRequest(f"unknown input {tensor.name!r}: {_INPUTS_HELP}.")


def _pixels(tensor: Tensor, limits: Limits) -> np.ndarray:
    if tensor.datatype != "FP32" or isinstance(tensor.data, list):
        raise BadRequest(f"input {IMAGE_INPUT!r} must be FP32, not {tensor.datatype}.")
    if len(tensor.shape) != 3 or tensor.shape[1:] != [IMAGE_SIZE, IMAGE_SIZE]:
        raise BadRequest(
            f"input {IMAGE_INPUT!r} has shape {tensor.shape}; expected [N, 28, 28] (N images)."
        )
    check_count(tensor.shape[0], limits)
    images = tensor.data.reshape(tensor.shape).astype(np.float32, copy=False)
    if not np.isfinite(images).all() or images.min() < 0 or images.max() > 1:
        raise BadRequest(
            f"input {IMAGE_INPUT!r} values must be finite and in 0..1 (white digit on black); "
            "send encoded pictures as image_bytes for any other picture."
        )
    return images


async def _pictures(tensor: Tensor, limits: Limits) -> np.ndarray:
    if tensor.datatype != "BYTES" or not isinstance(tensor.data, list):
        raise BadRequest(f"input {BYTES_INPUT!r} must be BYTES, not {tensor.datatype}.")
    if len(tensor.shape) != 1:
        raise BadRequest(f"input {BYTES_INPUT!r} has shape {tensor.shape}; expected [N].")
    payloads = [(f"{BYTES_INPUT}[{i}]", data) for i, data in enumerate(tensor.data)]
    decoded = await decode_files(payloads, limits)
    return scale_pixels(decoded.all_read())


def output_tensors(result: VariantResult, requested: Sequence[str]) -> list[Tensor]:
    """The requested outputs (all when none are named), in the order asked for."""
    for name in requested:
        if name not in OUTPUTS:
            raise BadRequest(f"unknown output {name!r}: choose from {', '.join(OUTPUTS)}.")
    count = len(result.probabilities)
    available = {
        PROBABILITIES: Tensor(PROBABILITIES, "FP32", [count, 10], result.probabilities),
        DIGIT: Tensor(DIGIT, "INT64", [count], result.digits.astype(np.int64)),
    }
    return [available[name] for name in (requested or OUTPUTS)]


async def infer(
    dataplane: DataPlane,
    model: str,
    version: int | None,
    inputs: Sequence[Tensor],
    requested: Sequence[str],
) -> tuple[VariantResult, list[Tensor]]:
    """One protocol inference: decode the input, run `model`, shape the outputs."""
    settings = dataplane.settings
    dataplane.loaded_model(model, version)  # 404 / 503 before any decoding
    count = inputs[0].shape[0] if inputs and inputs[0].shape else 1
    async with dataplane.admitted(max(1, count)):  # else 503 before decoding
        images = await images_from_inputs(inputs, Limits.of(settings))
        backend = dataplane.choose_backend(None)
        (result,) = await dataplane.infer([model], backend, images, version)
    return result, output_tensors(result, requested)


def parse_version(version: str | None) -> int | None:
    """The protocol's version string ("" or absent: the latest) as an integer."""
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
