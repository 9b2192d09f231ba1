"""Read a /predict request body within the size limit and dispatch on its content type."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from fastapi import Request
from starlette.requests import ClientDisconnect

from service.dataplane.decode_work import INLINE_BYTES, by_size
from service.dataplane.decoding import (
    HeaderCheck,
    ImagePayload,
    Limits,
    check_count,
)
from service.dataplane.inference import MAX_DIGITS, is_small_number
from service.dataplane.json_images import parse_json
from service.errors import (
    BadRequest,
    ClientClosedRequest,
    PayloadTooLarge,
    UnsupportedMediaType,
)
from service.rest.multipart import Part, parse_multipart

ACCEPTED_TYPES = (
    "multipart/form-data (parts named 'file'), image/png, image/jpeg, image/webp, image/heic, "
    "image/avif, image/tiff, image/bmp, image/gif, application/octet-stream, or "
    "application/json"
)
# A request still unanswered after this long starts watching for its client's disconnect (a
# watcher task per request would cost every fast answer a task created and cancelled).
_WATCH_AFTER_S = 0.005


@dataclass(frozen=True)
class BodyLimit:
    """A limit on a body's bytes: its setting, and what to send instead."""

    what: str
    setting: str
    advice: str

    def message(self, size: int, limit: int) -> str:
        return (
            f"{self.what} is {size} bytes or more, over the limit of {limit} bytes "
            f"({self.setting}). {self.advice}"
        )


UPLOAD_LIMIT = BodyLimit("request body", "MNIST_MAX_UPLOAD_BYTES", "Send smaller or fewer images.")
# JSON is parsed holding the GIL, which the event loop needs (docs/design.md): pictures
# larger than a JSON body allows go as files, which decode without it.
JSON_LIMIT = BodyLimit(
    "JSON body",
    "MNIST_MAX_JSON_BYTES",
    "Send large pictures as files (multipart/form-data or the raw image bytes) rather than "
    "base64 in JSON.",
)


async def read_body(request: Request, max_bytes: int, limit: BodyLimit = UPLOAD_LIMIT) -> bytes:
    """The whole body, refusing (413) as soon as it exceeds `max_bytes`, declared or streamed
    (`limit` names the setting and what to send instead)."""
    declared = request.headers.get("content-length")
    if declared is not None and (size := _declared_size(declared)) > max_bytes:
        raise PayloadTooLarge(limit.message(size, max_bytes))
    chunks, size = [], 0
    try:
        async for chunk in request.stream():
            size += len(chunk)
            if size > max_bytes:
                raise PayloadTooLarge(limit.message(size, max_bytes))
            chunks.append(chunk)
    except ClientDisconnect:
        raise ClientClosedRequest("client disconnected before the body was complete") from None
    return b"".join(chunks)


def _declared_size(content_length: str) -> int:
    """A Content-Length's bytes (0 if it is not a number; h11 refuses those anyway), at most
    10**MAX_DIGITS: int() of a thousand digits costs quadratic time."""
    if not (content_length.isascii() and content_length.isdigit()):
        return 0
    return int(content_length) if is_small_number(content_length) else 10**MAX_DIGITS


@asynccontextmanager
async def dropped_on_disconnect(request: Request) -> AsyncIterator[None]:
    """Run the body (after the request's body was read); if the client goes away meanwhile,
    cancel it, so that its queued inference is dropped instead of computed for nobody, and
    raise ClientClosedRequest (499). The watch starts only once the request has waited
    `_WATCH_AFTER_S`: most answers come sooner, and a disconnect is still seen then."""
    task = asyncio.current_task()
    assert task is not None
    disconnected = False
    watcher: asyncio.Task[None] | None = None

    async def watch() -> None:
        nonlocal disconnected
        while (await request.receive())["type"] != "http.disconnect":
            pass
        disconnected = True
        task.cancel()

    def start_watching() -> None:
        nonlocal watcher
        watcher = asyncio.create_task(watch())

    timer = asyncio.get_running_loop().call_later(_WATCH_AFTER_S, start_watching)
    try:
        yield
    except asyncio.CancelledError:
        if not disconnected:
            raise
        task.uncancel()
        raise ClientClosedRequest(
            "the client disconnected before its answer; its queued work was dropped"
        ) from None
    finally:
        timer.cancel()
        if watcher is not None:
            watcher.cancel()


async def read_payload(
    request: Request, max_bytes: int, max_json_bytes: int, limits: Limits
) -> ImagePayload:
    """The request's images from any accepted form, counted and checked, not decoded yet."""
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    is_multipart = content_type.startswith("multipart/form-data")
    is_image = content_type.startswith("image/") or content_type == "application/octet-stream"
    is_json = content_type == "application/json"
    if not (is_multipart or is_image or is_json):
        shown = content_type or "none"
        raise UnsupportedMediaType(f"unsupported content type {shown!r}: send {ACCEPTED_TYPES}.")
    if is_json:
        body = await read_body(request, min(max_bytes, max_json_bytes), JSON_LIMIT)
    else:
        body = await read_body(request, max_bytes)
    if is_multipart:
        return ImagePayload(files=_multipart_files(request.headers["content-type"], body, limits))
    if is_image:
        return ImagePayload(files=[("image", body)])
    if not body:
        raise BadRequest('empty JSON body: send {"images": [...]} or {"pixels": [...]}.')
    return await by_size(parse_json, body, limits)


def _multipart_files(content_type: str, body: bytes, limits: Limits) -> list[tuple[str, bytes]]:
    on_part = _early_header_check(limits) if len(body) > INLINE_BYTES else None
    parts = parse_multipart(content_type, body, max_parts=limits.max_images + 1, on_part=on_part)
    files = [part for part in parts if part.name == "file"]
    if not files and parts:
        names = ", ".join(sorted({repr(part.name) for part in parts}))
        raise BadRequest(
            f"the request holds no image: no multipart part is named 'file' (the parts sent "
            f"were {names}). Send each image as a part named file (curl -F file=@digit.png)."
        )
    if any(part.filename is None for part in files):
        raise BadRequest("multipart part 'file' must be a file upload, not a text field.")
    check_count(len(files), limits)
    return [(_file_label(i, part), bytes(part.data)) for i, part in enumerate(files)]


def _file_label(index: int, part: Part) -> str:
    return f"file[{index}] ({part.filename or 'unnamed'})"


def _early_header_check(limits: Limits) -> Callable[[Part], None]:
    """For a large body: each image's header checked as soon as its part is split out, so that
    a body of many huge pictures is refused at the first one over the limits instead of after
    splitting all of them (the event loop pays for splitting part by part). Small bodies skip
    this: `decode_images` reads every header anyway, and reading them twice would tax the
    common one-digit request."""
    check, files = HeaderCheck(limits), 0

    def on_part(part: Part) -> None:
        nonlocal files
        if part.name == "file":
            if part.filename is not None:  # a text field is refused once all is split
                check(bytes(part.data), _file_label(files, part))
            files += 1

    return on_part
