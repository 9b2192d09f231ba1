"""`POST /read`: every digit of each picture, read as a number.

Parses the request as `/predict` does (the same bodies and query parameters), asks the data
plane to read numbers, and shapes each picture's reading: its digits in reading order with their
boxes, the number they make, its lines, and the confidence of the whole reading.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
from fastapi import APIRouter, Request
from fastapi.responses import Response

from mnist_shared.segmentation import FoundDigit
from service.dataplane.decoding import ImagePayload, Limits
from service.dataplane.inference import (
    ALL_VARIANTS,
    InferenceAnswer,
    VariantResult,
)
from service.rest import schemas
from service.rest.body import read_payload
from service.rest.responses import ERROR_RESPONSES
from service.rest.routes import add_digit_check, infer_from_query, json_response, png_base64

router = APIRouter()


async def read(request: Request) -> Response:
    """Every digit of each picture, in reading order: lines top to bottom, each left to right."""
    asked = await infer_from_query(request, _number_pictures)
    answer = asked.answer
    readings = [_variant_readings(result, answer, asked.return_input) for result in answer.results]
    if asked.variant != ALL_VARIANTS:
        return json_response(readings[0])
    return json_response(
        {"variant": ALL_VARIANTS, "backend": answer.backend,
         "results": {entry["variant"]: entry for entry in readings}}
    )  # fmt: skip


async def _number_pictures(
    request: Request, max_bytes: int, max_json_bytes: int, limits: Limits
) -> ImagePayload:
    payload = await read_payload(request, max_bytes, max_json_bytes, limits)
    return dataclasses.replace(payload, numbers=True)


router.add_api_route(
    "/read",
    read,
    methods=["POST"],
    response_model=schemas.VariantReadings | schemas.AllVariantsReadings,
    response_model_exclude_none=True,
    responses={
        200: {"content": {"application/json": {"example": schemas.READING_EXAMPLE}}},
        **ERROR_RESPONSES,
    },
    openapi_extra={
        "parameters": schemas.READ_PARAMETERS,
        "requestBody": {"required": True, "content": schemas.PREDICT_REQUEST_BODIES},
    },
    summary="Read the whole number in each picture, digit by digit",
)


def _variant_readings(
    result: VariantResult, answer: InferenceAnswer, return_input: bool
) -> dict[str, Any]:
    assert answer.numbers is not None  # the data plane read numbers
    readings: list[dict[str, Any]] = []
    start = 0
    for found in answer.numbers:
        rows = slice(start, start + len(found))
        inputs = answer.digits_seen()[rows] if return_input else None
        reading = _reading(found, result.probabilities[rows], inputs)
        for row, entry in enumerate(reading["digits"], start=start):
            add_digit_check(entry, answer, row)
        if answer.looks_like_digits is not None:
            reading["looks_like_number"] = all(d["looks_like_digit"] for d in reading["digits"])
        readings.append(reading)
        start += len(found)
    for index in sorted(answer.failures):  # in input order, where the unreadable pictures were
        readings.insert(index, {"error": answer.failures[index]})
    return {
        "variant": result.variant,
        "model_version": result.version,
        "backend": result.backend,
        "precision": result.precision,
        "readings": readings,
    }


def _reading(
    found: list[FoundDigit], probabilities: np.ndarray, inputs: np.ndarray | None
) -> dict[str, Any]:
    digits = probabilities.argmax(axis=1)
    entries: list[dict[str, Any]] = []
    for index, (place, digit, row) in enumerate(zip(found, digits, probabilities, strict=True)):
        entry = {"digit": int(digit), "confidence": row[digit], "box": list(place.box),
                 "line": place.line, "probabilities": row}  # fmt: skip
        if inputs is not None:
            entry["input"] = png_base64(inputs[index])
        entries.append(entry)
    lines: list[str] = []
    previous = None
    for place, digit in zip(found, digits, strict=True):
        if place.line != previous:
            lines.append("")
            previous = place.line
        lines[-1] += str(int(digit))
    confidence = math.prod(
        float(row[digit]) for digit, row in zip(digits, probabilities, strict=True)
    )
    return {"number": "".join(lines), "lines": lines, "confidence": confidence, "digits": entries}
