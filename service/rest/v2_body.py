"""The Open Inference Protocol's REST request body: JSON, or a JSON header followed by binary
tensor data (`Inference-Header-Content-Length` bytes of JSON first), parsed into the tensors and
answer options the route needs; read when the data plane asks for the request's images."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import json
from typing import Any

import numpy as np
from fastapi import Request
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from service.dataplane.decoding import ImagePayload, Limits
from service.dataplane.inference import is_small_number
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
from service.errors import BadRequest, PayloadTooLarge
from service.rest.body import BodyLimit, read_body

HEADER_LENGTH = "inference-header-content-length"
JSON_TENSORS_LIMIT = BodyLimit(
    "the request's JSON",
    "MNIST_MAX_JSON_BYTES",
    "Send large tensors as binary data (the binary tensor data extension), not in JSON.",
)


class RequestInput(BaseModel):
    name: str
    shape: list[int]
    datatype: str
    parameters: dict[str, Any] | None = None
    data: Any = Field(None, description="Row-major values; BYTES as base64 strings.")


class RequestOutput(BaseModel):
    name: str
    parameters: dict[str, Any] | None = None


class InferenceRequestJSON(BaseModel):
    """The protocol's inference request as JSON (the data plane's is `InferenceRequest`)."""

    model_config = ConfigDict(title="InferenceRequest")  # the protocol's name, in the schema
    id: str | None = None
    parameters: dict[str, Any] | None = None
    inputs: list[RequestInput]
    outputs: list[RequestOutput] | None = None


class InferenceBody:
    """Reads the request's body when the data plane asks for its images, and keeps what the
    answer needs from it (the id, the parameters, the outputs asked for)."""

    def __init__(self, request: Request, max_bytes: int, max_json_bytes: int) -> None:
        self._request, self._max_bytes, self._max_json_bytes = request, max_bytes, max_json_bytes
        self.inference: InferenceRequestJSON | None = None  # once read
        self.requested_outputs: list[str] = []
        self.binary_outputs: dict[str, bool] = {}

    async def read_images(self, limits: Limits) -> ImagePayload:
        header_length = self._request.headers.get(HEADER_LENGTH)
        if header_length is None:  # all of it JSON
            body = await read_body(self._request, self._max_json_bytes, JSON_TENSORS_LIMIT)
        else:
            body = await read_body(self._request, self._max_bytes)
        header, binary = _split_body(body, header_length)
        if len(header) > self._max_json_bytes:
            raise PayloadTooLarge(JSON_TENSORS_LIMIT.message(len(header), self._max_json_bytes))
        self.inference = _parse_request(header)
        self.requested_outputs = [output.name for output in self.inference.outputs or []]
        check_outputs(self.requested_outputs)
        self.binary_outputs = _binary_outputs(self.inference)  # 400 before any work if malformed
        inputs = _input_tensors(self.inference, binary, limits)
        payload = payload_from_inputs(inputs, limits)
        return dataclasses.replace(payload, numbers=reads_numbers(self.requested_outputs))

    def precision(self) -> str | None:
        """The request's `precision` parameter (once read), as the data plane asks for it."""
        assert self.inference is not None  # the data plane reads the images first
        return text_parameter(self.inference.parameters or {}, "precision")


def _split_body(body: bytes, header_length: str | None) -> tuple[bytes, memoryview]:
    """(JSON header, binary tensor data) of a request, binary extension or plain JSON."""
    if header_length is None:
        return body, memoryview(b"")
    if not is_small_number(header_length) or int(header_length) > len(body):
        raise BadRequest(
            f"Inference-Header-Content-Length {header_length[:40]!r} must be the JSON header's "
            f"byte count, at most the body's {len(body)} bytes."
        )
    size = int(header_length)
    return body[:size], memoryview(body)[size:]


def _parse_request(header: bytes) -> InferenceRequestJSON:
    try:
        inference = InferenceRequestJSON.model_validate_json(header)
    except ValidationError as error:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in e['loc']) or 'body'}: {e['msg']}" for e in error.errors()
        )
        raise BadRequest(f"invalid inference request: {problems}.") from None
    try:  # echoed in the answer, which must be valid JSON
        json.dumps(inference.parameters, allow_nan=False)
    except ValueError:
        raise BadRequest(
            "invalid inference request: parameters hold NaN or Infinity, which JSON has not."
        ) from None
    return inference


def _input_tensors(
    inference: InferenceRequestJSON, binary: memoryview, limits: Limits
) -> list[Tensor]:
    """The inputs as tensors, each shape's element count checked (within `limits`) before its
    elements are converted."""
    tensors, offset = [], 0
    for item in inference.inputs:
        count = element_count(item.name, item.shape, limits)
        size = (item.parameters or {}).get("binary_data_size")
        if size is None:
            tensors.append(_json_tensor(item, count))
            continue
        if not isinstance(size, int) or size < 0 or offset + size > len(binary):
            raise BadRequest(
                f"input {item.name!r}: binary_data_size {size!r} runs past the "
                f"{len(binary)} bytes of binary data."
            )
        tensors.append(_binary_tensor(item, bytes(binary[offset : offset + size]), count))
        offset += size
    if offset != len(binary):
        raise BadRequest(f"{len(binary) - offset} bytes of binary data belong to no input.")
    return tensors


def _binary_tensor(item: RequestInput, raw: bytes, count: int) -> Tensor:
    if item.datatype == "BYTES":
        return Tensor(item.name, "BYTES", item.shape, split_bytes_elements(raw, item.name, count))
    check_datatype(item.name, item.datatype)
    data = array_from_bytes(raw, item.datatype, item.shape, item.name)
    return Tensor(item.name, item.datatype, item.shape, data)


def _json_tensor(item: RequestInput, count: int) -> Tensor:
    if item.data is None:
        raise BadRequest(f"input {item.name!r} has no data: send 'data' or binary_data_size.")
    if isinstance(item.data, list) and len(item.data) > count:  # before converting any
        raise BadRequest(
            f"input {item.name!r}: shape {item.shape} holds {count} elements, but more were sent."
        )
    if item.datatype == "BYTES":
        values = np.asarray(item.data, dtype=object).ravel().tolist()
        return Tensor(item.name, "BYTES", item.shape, [_base64(v, item.name) for v in values])
    check_datatype(item.name, item.datatype)
    try:
        data = np.asarray(item.data, dtype=NUMPY_DATATYPES[item.datatype]).ravel()
    except (TypeError, ValueError, OverflowError):  # OverflowError: INT8 1000
        raise BadRequest(
            f"input {item.name!r}: data must be {item.datatype} numbers within its range, in "
            "row-major order."
        ) from None
    return Tensor(item.name, item.datatype, item.shape, data)


def _base64(value: object, name: str) -> bytes:
    if not isinstance(value, str):
        raise BadRequest(f"input {name!r}: BYTES elements in JSON must be base64 strings.")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadRequest(
            f"input {name!r}: BYTES elements in JSON must be base64 strings (or send them as "
            "binary data)."
        ) from None


def _binary_outputs(inference: InferenceRequestJSON) -> dict[str, bool]:
    """Which outputs go back as binary data: each output's `binary_data`, defaulting to the
    request's `binary_data_output`."""
    default = _flag(inference.parameters, "binary_data_output", False)
    return {
        output.name: _flag(output.parameters, "binary_data", default)
        for output in inference.outputs or []
    } | {"*": default}


def _flag(parameters: dict[str, Any] | None, name: str, default: bool) -> bool:
    """A boolean parameter: JSON true or false ("false" is not false, and not true either)."""
    value = (parameters or {}).get(name, default)
    if not isinstance(value, bool):
        raise BadRequest(f"parameter {name!r} must be true or false (JSON booleans): {value!r}.")
    return value
