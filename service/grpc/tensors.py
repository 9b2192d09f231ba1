"""ModelInfer's inputs as the data plane's images: the protocol buffer's tensors (typed
`contents` or `raw_input_contents`), each shape checked before any element is converted."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

from service.dataplane.decoding import ImagePayload, Limits
from service.dataplane.tensors import (
    NUMPY_DATATYPES,
    Tensor,
    array_from_bytes,
    check_datatype,
    check_outputs,
    element_count,
    payload_from_inputs,
    reads_numbers,
    split_bytes_elements,
    text_parameter,
)
from service.errors import BadRequest

# Typed contents fields of InferTensorContents, by protocol datatype (FP16 has none).
_CONTENTS_FIELD = {
    "BOOL": "bool_contents",
    "INT8": "int_contents",
    "INT16": "int_contents",
    "INT32": "int_contents",
    "INT64": "int64_contents",
    "UINT8": "uint_contents",
    "UINT16": "uint_contents",
    "UINT32": "uint_contents",
    "UINT64": "uint64_contents",
    "FP32": "fp32_contents",
    "FP64": "fp64_contents",
    "BYTES": "bytes_contents",
}


async def images_of(request: Any, limits: Limits) -> ImagePayload:
    """The request's images (gRPC has parsed the message already: nothing to wait for)."""
    requested = [output.name for output in request.outputs]
    check_outputs(requested)
    payload = payload_from_inputs(_input_tensors(request, limits), limits)
    return dataclasses.replace(payload, numbers=reads_numbers(requested))


def _input_tensors(request: Any, limits: Limits) -> list[Tensor]:
    raw = list(request.raw_input_contents)
    if raw and len(raw) != len(request.inputs):
        raise BadRequest(
            f"{len(raw)} raw_input_contents for {len(request.inputs)} inputs: send one per input "
            "or none."
        )
    return [
        _input_tensor(item, raw[i] if raw else None, limits)
        for i, item in enumerate(request.inputs)
    ]


def _input_tensor(item: Any, raw: bytes | None, limits: Limits) -> Tensor:
    name, shape, datatype = item.name, list(item.shape), item.datatype
    check_datatype(name, datatype)
    count = element_count(name, shape, limits)
    data: np.ndarray | list[bytes]
    if raw is None:
        data = _contents(item, datatype, shape, count)
    elif item.HasField("contents"):
        raise BadRequest(
            f"input {name!r} has data both in contents and in raw_input_contents; send one."
        )
    elif datatype == "BYTES":
        data = split_bytes_elements(raw, name, count)
    else:
        data = array_from_bytes(raw, datatype, shape, name)
    return Tensor(name, datatype, shape, data)


def _contents(
    item: Any, datatype: str, shape: Sequence[int], count: int
) -> np.ndarray | list[bytes]:
    """The data of `item.contents`' typed field for `datatype`, `count` elements of `shape`."""
    field = _CONTENTS_FIELD.get(datatype)
    if field is None:
        raise BadRequest(
            f"input {item.name!r}: {datatype} has no contents field in the protocol; send its "
            "data in raw_input_contents."
        )
    values = list(getattr(item.contents, field))
    if len(values) != count:
        raise BadRequest(
            f"input {item.name!r}: shape {list(shape)} holds {count} elements, but "
            f"{len(values)} were sent in contents.{field} (the field of {datatype})."
        )
    if datatype == "BYTES":
        return values
    dtype = NUMPY_DATATYPES[datatype]
    try:
        return np.asarray(values, dtype)
    except OverflowError:
        info = np.iinfo(dtype)
        raise BadRequest(
            f"input {item.name!r}: a value in contents.{field} is outside {datatype}'s range "
            f"{info.min}..{info.max}."
        ) from None


def precision_of(request: Any) -> str | None:
    """ModelInfer's `precision` parameter (a string_param), None when absent."""
    if "precision" not in request.parameters:
        return None
    value = request.parameters["precision"]
    choice = value.WhichOneof("parameter_choice")
    return text_parameter({"precision": getattr(value, choice) if choice else ""}, "precision")
