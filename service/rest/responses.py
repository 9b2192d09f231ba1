"""The service's errors as HTTP answers: `{"error": ...}` JSON with the error's status."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from service.errors import ServiceError
from service.rest.schemas import ErrorResponse

# The error answers every route documents in the OpenAPI schema.
ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    code: {"model": ErrorResponse, "description": text}
    for code, text in {
        400: "Malformed input: not an image, bad JSON, unknown variant or backend.",
        404: "Unknown model, or a model version that is not loaded.",
        413: "Body, pixels (per image or per request) or image count over the configured limit.",
        415: "Unsupported content type.",
        422: "The images hold no digit (a blank canvas, a uniform photo): send a picture of one "
        "digit. When only some of a request's images have none, the answer is 200 and each of "
        "those images' entries carries its `error` instead.",
        501: "Backend not installed in this deployment.",
        503: "Models loading, failed or unloaded; or at capacity (then with Retry-After).",
        504: "Not answered within MNIST_REQUEST_TIMEOUT_S; the queued work was dropped.",
    }.items()
}


class JSONLineResponse(JSONResponse):
    """JSON with a final newline, so that curl's output does not run into the shell's prompt."""

    def render(self, content: Any) -> bytes:
        return super().render(content) + b"\n"


def error_response(error: ServiceError) -> JSONResponse:
    return JSONLineResponse(
        {"error": error.message}, status_code=error.status_code, headers=error.headers
    )


def internal_error_response() -> JSONResponse:
    """A bug's answer: the details go to the log, not to the client."""
    return JSONLineResponse(
        {"error": "internal error (logged); retry, and report it if it persists."}, status_code=500
    )
