"""Open Inference Protocol tensors, independent of the wire (REST JSON, binary, gRPC).

The REST and gRPC servers turn their requests' inputs into `Tensor`s, the tensors into the
images of an `InferenceRequest` (`payload_from_inputs`), and the answer into `Tensor`s
(`output_tensors`) that they write in their own format.

Inputs: `image` FP32 [N, 28, 28] in [0, 1] (the model's own input, no preprocessing) or
`image_bytes` BYTES [N] (encoded pictures, preprocessed as `/predict` does). Outputs:
`probabilities` FP32 [N, 10] and `digit` INT64 [N]; asking for any of the number outputs reads
every digit of each picture, as `/read` does: then N counts the digits found, and `boxes` INT64
[N, 4] (x, y, width, height), `picture` INT64 [N] (the input each digit is in) and `line` INT64
[N] say where each is.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np

from mnist_shared.preprocessing import IMAGE_SIZE
from service.dataplane.decoding import ImagePayload, Limits, check_count
from service.dataplane.inference import InferenceAnswer, VariantResult
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
# The inputs have 1 or 3 dimensions; numpy refuses more than 64.
MAX_RANK = 8
_SHAPES_HELP = "send [N, 28, 28] (image) or [N] (image_bytes), N the number of images"
PROBABILITIES, DIGIT = "probabilities", "digit"
DEFAULT_OUTPUTS = (PROBABILITIES, DIGIT)
BOXES, PICTURE, LINE = "boxes", "picture", "line"
NUMBER_OUTPUTS = (BOXES, PICTURE, LINE)  # asking for one reads whole numbers
LOOKS_LIKE_DIGIT, DIGIT_SCORE = "looks_like_digit", "digit_score"
CHECK_OUTPUTS = (LOOKS_LIKE_DIGIT, DIGIT_SCORE)  # where the server has the digit check
OUTPUTS = (*DEFAULT_OUTPUTS, *NUMBER_OUTPUTS, *CHECK_OUTPUTS)
# The model metadata's tensors (every variant's are the same).
INPUT_METADATA = [
    {"name": IMAGE_INPUT, "datatype": "FP32", "shape": [-1, IMAGE_SIZE, IMAGE_SIZE]},
    {"name": BYTES_INPUT, "datatype": "BYTES", "shape": [-1]},
]
OUTPUT_METADATA = [
    {"name": PROBABILITIES, "datatype": "FP32", "shape": [-1, 10]},
    {"name": DIGIT, "datatype": "INT64", "shape": [-1]},
    {"name": BOXES, "datatype": "INT64", "shape": [-1, 4]},
    {"name": PICTURE, "datatype": "INT64", "shape": [-1]},
    {"name": LINE, "datatype": "INT64", "shape": [-1]},
    {"name": LOOKS_LIKE_DIGIT, "datatype": "BOOL", "shape": [-1]},
    {"name": DIGIT_SCORE, "datatype": "FP32", "shape": [-1]},
]
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


def element_count(name: str, shape: Sequence[int], limits: Limits) -> int:
    """How many elements `shape` holds, checked before any element is converted: a shape numpy
    can hold, with no negative dimension, elements if it has images, and no more than the
    largest valid request holds."""
    if any(dimension < 0 for dimension in shape):
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} has a negative dimension; {_SHAPES_HELP}."
        )
    if len(shape) > MAX_RANK:
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} has {len(shape)} dimensions; {_SHAPES_HELP}."
        )
    count = math.prod(shape)  # Python integers: [2**60, 28, 28] must not wrap around
    limit = limits.max_images * IMAGE_SIZE * IMAGE_SIZE
    if shape and shape[0] and not count:
        raise BadRequest(
            f"input {name!r}: shape {list(shape)} holds no element for its {shape[0]} images; "
            f"{_SHAPES_HELP}."
        )
    if not count and math.prod(max(dimension, 1) for dimension in shape) > limit:
        # Empty, but numpy cannot even shape an empty array this large ([0, 2**62]).
        raise BadRequest(f"input {name!r}: shape {list(shape)} is out of range; {_SHAPES_HELP}.")
    if count > limit:
        raise PayloadTooLarge(
            f"input {name!r}: shape {list(shape)} holds {count} elements, more than the {limit} "
            f"of the largest request (the limit of {limits.max_images} images of 28x28, "
            "MNIST_MAX_IMAGES_PER_REQUEST). Split the request."
        )
    return count


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
    count = len(tensor.data) if isinstance(tensor.data, list) else tensor.data.size
    if count != math.prod(tensor.shape):
        raise BadRequest(
            f"input {tensor.name!r}: shape {tensor.shape} holds {math.prod(tensor.shape)} "
            f"elements, but {count} were sent."
        )


def payload_from_inputs(inputs: Sequence[Tensor], limits: Limits) -> ImagePayload:
    """The request's images from its single input, counted and checked, not decoded yet."""
    if len(inputs) != 1:
        raise BadRequest(f"{len(inputs)} inputs sent: {_INPUTS_HELP}.")
    (tensor,) = inputs
    check_shape(tensor)
    if tensor.name == IMAGE_INPUT:
        return ImagePayload(model_input=_pixels(tensor, limits))
    if tensor.name == BYTES_INPUT:
        return ImagePayload(files=_pictures(tensor, limits))
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


def _pictures(tensor: Tensor, limits: Limits) -> list[tuple[str, bytes]]:
    if tensor.datatype != "BYTES" or not isinstance(tensor.data, list):
        raise BadRequest(f"input {BYTES_INPUT!r} must be BYTES, not {tensor.datatype}.")
    if len(tensor.shape) != 1:
        raise BadRequest(f"input {BYTES_INPUT!r} has shape {tensor.shape}; expected [N].")
    check_count(len(tensor.data), limits)
    return [(f"{BYTES_INPUT}[{i}]", data) for i, data in enumerate(tensor.data)]


def check_outputs(requested: Sequence[str]) -> None:
    """Every output asked for exists (before any work is done for the request)."""
    for name in requested:
        if name not in OUTPUTS:
            raise BadRequest(f"unknown output {name!r}: choose from {', '.join(OUTPUTS)}.")


def text_parameter(parameters: Mapping[str, object], name: str) -> str | None:
    """A request parameter that must be a string (the Open Inference Protocol's `precision`);
    None when absent."""
    value = parameters.get(name)
    if value is None or isinstance(value, str):
        return value
    raise BadRequest(
        f'parameter {name!r} must be a string such as "int8", not {str(value)[:40]!r}.'
    )


def reads_numbers(requested: Sequence[str]) -> bool:
    return any(name in NUMBER_OUTPUTS for name in requested)


def output_tensors(
    result: VariantResult, requested: Sequence[str], answer: InferenceAnswer
) -> list[Tensor]:
    """The requested outputs (the default ones when none are named, each checked by
    `check_outputs`), in the order asked for: the answer's numbers where the digits are
    (`reads_numbers`), the digit check's verdicts where the server has one."""
    count = len(result.probabilities)
    available = {
        PROBABILITIES: Tensor(PROBABILITIES, "FP32", [count, 10], result.probabilities),
        DIGIT: Tensor(DIGIT, "INT64", [count], result.digits.astype(np.int64)),
    }
    flags = answer.looks_like_digits
    if flags is not None and answer.digit_scores is not None:
        available[LOOKS_LIKE_DIGIT] = Tensor(LOOKS_LIKE_DIGIT, "BOOL", [count], flags)
        available[DIGIT_SCORE] = Tensor(DIGIT_SCORE, "FP32", [count], answer.digit_scores)
    if unavailable := [
        name for name in requested if name not in available and name in CHECK_OUTPUTS
    ]:
        raise BadRequest(
            f"output {unavailable[0]!r} needs the digit check, which this server has not "
            "loaded (GET /models says why); ask for the other outputs"
        )
    numbers = answer.numbers
    if numbers is not None:
        found = [(index, digit) for index, number in enumerate(numbers) for digit in number]
        boxes = np.array([digit.box for _, digit in found], np.int64).reshape(-1, 4)
        available[BOXES] = Tensor(BOXES, "INT64", [count, 4], boxes)
        pictures = np.array([index for index, _ in found], np.int64)
        available[PICTURE] = Tensor(PICTURE, "INT64", [count], pictures)
        lines = np.array([digit.line for _, digit in found], np.int64)
        available[LINE] = Tensor(LINE, "INT64", [count], lines)
    return [available[name] for name in (requested or DEFAULT_OUTPUTS)]
