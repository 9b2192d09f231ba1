"""Response models (and the examples shown in the OpenAPI docs at /docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field


class DigitCheckVerdict(BaseModel):
    """The digit check's fields, in each prediction and each digit of a reading."""

    looks_like_digit: bool | None = Field(
        None,
        description="Whether the picture looks like one handwritten digit at all (the digit "
        "check; absent where the server runs without it). False for a letter, a symbol, a "
        "scribble or several digits: `digit` is then the model's guess, not a reading.",
    )
    digit_score: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The digit check's score; below its threshold (GET "
        "/models) the picture does not look like a digit.",
    )


class Prediction(DigitCheckVerdict):
    digit: int | None = Field(None, ge=0, le=9, description="The most probable digit.")
    confidence: float | None = Field(None, ge=0, le=1, description="Probability of `digit`.")
    probabilities: list[float] | None = Field(None, description="Probability of each digit 0-9.")
    digits_in_picture: int | None = Field(
        None,
        description="Present when the picture holds a number, not one digit: how many digits "
        "stand side by side in it (this answer reads one of them; POST /read reads them all). "
        "`looks_like_digit` is then false, and strict=true refuses the picture.",
    )
    error: str | None = Field(
        None,
        description="Instead of the digit, for a picture in which no digit was found (the "
        "request still answers 200 when another picture has one; 422 when none has).",
    )
    input: str | None = Field(
        None,
        description="With `return_input=true`: the 28x28 image the model saw, a base64 PNG.",
    )


class VariantPredictions(BaseModel):
    variant: str
    model_version: int
    backend: str
    precision: str = Field(description="The model that ran: fp32, or its INT8 twin (int8).")
    predictions: list[Prediction] = Field(description="One per input image, in input order.")


class AllVariantsPredictions(BaseModel):
    variant: str = "all"
    backend: str
    results: dict[str, VariantPredictions] = Field(description="Each variant's answer, by name.")


class ReadDigit(DigitCheckVerdict):
    digit: int = Field(ge=0, le=9)
    confidence: float = Field(ge=0, le=1)
    box: list[int] = Field(description="x, y, width, height in the upright picture's pixels.")
    line: int = Field(description="0 for the first line of the picture, top to bottom.")
    probabilities: list[float]
    input: str | None = Field(None, description="With `return_input=true`: what the model saw.")


class Reading(BaseModel):
    number: str | None = Field(None, description="The digits in reading order.")
    lines: list[str] | None = Field(None, description="The number's lines, top to bottom.")
    confidence: float | None = Field(
        None, ge=0, le=1, description="Of the whole reading: the product of its digits'."
    )
    digits: list[ReadDigit] | None = None
    looks_like_number: bool | None = Field(
        None,
        description="Whether every digit found looks like one (the digit check, and whether "
        "a wide mark's cuts made convincing digits; absent without the check). False for a "
        'letter read as "11" or a symbol among digits; `strict=true` refuses such a picture.',
    )
    error: str | None = Field(
        None, description="Instead of a reading, for a picture in which no digit was found."
    )


class VariantReadings(BaseModel):
    variant: str
    model_version: int
    backend: str
    precision: str
    readings: list[Reading] = Field(description="One per input picture, in input order.")


class AllVariantsReadings(BaseModel):
    variant: str = "all"
    backend: str
    results: dict[str, VariantReadings]


class ErrorResponse(BaseModel):
    error: str = Field(description="What was wrong and what to do about it.")


PREDICTION_EXAMPLE = {
    "variant": "group",
    "model_version": 1,
    "backend": "onnx",
    "precision": "int8",
    "predictions": [
        {
            "digit": 7,
            "confidence": 0.998,
            "probabilities": [0.0, 0.0, 0.001, 0.0, 0.0, 0.0, 0.0, 0.998, 0.0, 0.001],
            "looks_like_digit": True,
            "digit_score": 0.999,
        }
    ],
}

READING_EXAMPLE = {
    "variant": "group",
    "model_version": 3,
    "backend": "onnx",
    "precision": "int8",
    "readings": [
        {
            "number": "42",
            "lines": ["42"],
            "confidence": 0.991,
            "digits": [
                {"digit": 4, "confidence": 0.995, "box": [40, 31, 52, 80], "line": 0,
                 "probabilities": [0.0, 0.0, 0.0, 0.0, 0.995, 0.0, 0.0, 0.004, 0.0, 0.001]},
                {"digit": 2, "confidence": 0.996, "box": [104, 35, 49, 74], "line": 0,
                 "probabilities": [0.0, 0.0, 0.996, 0.003, 0.0, 0.0, 0.0, 0.001, 0.0, 0.0]},
            ],
        }
    ],
}  # fmt: skip

_CHOICES = [
    {
        "name": name,
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": kind} | ({"enum": enum} if enum else {}),
    }
    for name, kind, enum, description in [
        ("variant", "string", None, "group, instance, layer or all; default: the first served."),
        ("backend", "string", ["onnx", "savedmodel"], "onnx (default) or savedmodel."),
        (
            "precision",
            "string",
            ["fp32", "int8"],
            "fp32, or int8 where the model's INT8 twin passed its accuracy gate; default: the "
            "fastest that passed (GET /models lists each model's).",
        ),
        ("version", "integer", None, "a loaded model version; default: the newest serving."),
        (
            "return_input",
            "boolean",
            None,
            "add each image as the model saw it: a 28x28 base64 PNG.",
        ),
    ]
]


def _strict(description: str) -> dict[str, Any]:
    return {
        "name": "strict",
        "in": "query",
        "required": False,
        "description": description,
        "schema": {"type": "boolean"},
    }


PREDICT_PARAMETERS = [
    *_CHOICES,
    _strict(
        "true: a picture that does not look like one digit (`looks_like_digit` false) gets an "
        "error entry instead of a guess, and the request 422 when none does."
    ),
]
READ_PARAMETERS = [
    *_CHOICES,
    _strict(
        "true: a picture whose reading holds something that does not look like a digit "
        "(`looks_like_number` false: a letter, a symbol) gets an error entry instead of a "
        "reading, and the request 422 when none is left."
    ),
]

READ_PARAMETER_NAMES = frozenset(parameter["name"] for parameter in READ_PARAMETERS)
PREDICT_PARAMETER_NAMES = frozenset(parameter["name"] for parameter in PREDICT_PARAMETERS)

PREDICT_REQUEST_BODIES = {
    "multipart/form-data": {
        "schema": {
            "type": "object",
            "properties": {
                "file": {"type": "array", "items": {"type": "string", "format": "binary"}}
            },
        },
    },
    "image/png": {"schema": {"type": "string", "format": "binary"}},
    "image/jpeg": {"schema": {"type": "string", "format": "binary"}},
    "application/json": {
        "schema": {
            "oneOf": [
                {
                    "type": "object",
                    "properties": {"images": {"type": "array", "items": {"type": "string"}}},
                    "required": ["images"],
                },
                {
                    "type": "object",
                    "properties": {
                        "pixels": {
                            "type": "array",
                            "description": "28x28 arrays of numbers 0..255 (not 0..1), white "
                            "digit on black, taken as MNIST-ready (no preprocessing).",
                            "items": {"type": "array", "items": {"type": "array"}},
                        }
                    },
                    "required": ["pixels"],
                },
            ]
        },
        "examples": {
            "images": {
                "summary": "base64-encoded image files",
                "value": {"images": ["iVBORw0KGgoAAAANSUhEUgAA..."]},
            },
            "pixels": {
                "summary": "28x28 arrays of 0..255, white digit on black",
                "value": {"pixels": [[[0] * 28] * 28]},
            },
        },
    },
}
