"""The service's errors as HTTP answers: `{"error": ...}` JSON with the error's status."""

from __future__ import annotations

from typing import Any

from starlette.responses import JSONResponse

from service.errors import ServiceError


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
