"""Where a request's decoding runs: on the event loop while it is cheap, else in a thread
that a cancelled request stops.

The event loop serves every connection, probe and gRPC call of the worker, so it only takes
work that costs a few milliseconds at most, judged by what the pictures declare (their pixels),
never by their encoded size: 2 KB of lossless WebP can declare 16 megapixels. The rest runs in
a thread. A request cancelled meanwhile (its deadline passed, its client left) stops that
thread before its next picture and stays admitted until it has stopped, so that the admission
bound keeps counting the CPU it really uses.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from threading import Event
from typing import TypeVar

from mnist_shared.preprocessing import IMAGE_SIZE
from mnist_shared.segmentation import Judge
from service.dataplane.decoding import (
    DecodedImages,
    Limits,
    OpenedImage,
    decode_opened,
    open_images,
)

T = TypeVar("T")
# Decoded on the event loop: up to this many units, a 28x28 picture costing one (0.15 ms) ...
INLINE_COST = 64
# ... and a larger picture of up to INLINE_PIXELS this many (it is framed at full
# preprocessing cost, up to 8 ms for a 280x280 canvas). Anything larger goes to a thread.
PICTURE_COST = 64
INLINE_PIXELS = 320 * 320
# Other work (JSON) judged by its bytes: parsing 256 KB takes about 1 ms.
INLINE_BYTES = 256 * 1024
# One thread a worker: decoders and JSON parsers hold the GIL, which the event loop needs, in
# stretches of up to 30 ms; several threads in turn held it for 110 ms (4 clients posting 3.8
# MB of JSON). One keeps the loop's wait to one stretch, and one large picture's memory at a
# time (the service's parallelism is its worker processes). Threads start on first use.
_DECODING_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoding")


async def decode_files(
    files: list[tuple[str, bytes]],
    limits: Limits,
    numbers: bool = False,
    judge: Judge | None = None,
) -> DecodedImages:
    """Encoded pictures -> MNIST-ready digits (with `numbers`, every digit of each). Small
    files' structure and headers are read on the event loop (bounded by `image_structure`, a
    fraction of a millisecond), their pixels decoded where their declared size says; large
    files are read wholly in a thread (walking a JPEG's scans costs about 1 ms a megabyte).
    `judge`: the digit check, telling touching digits apart when reading numbers."""
    if sum(len(data) for _, data in files) > INLINE_BYTES:
        return await in_stoppable_thread(_open_and_decode, files, limits, numbers, judge)
    opened = open_images(files, limits)
    if _inline_cost(opened, numbers) <= INLINE_COST:
        return decode_opened(opened, numbers=numbers, judge=judge)
    decode = functools.partial(decode_opened, numbers=numbers, judge=judge)
    return await in_stoppable_thread(decode, opened)


def _open_and_decode(
    files: list[tuple[str, bytes]],
    limits: Limits,
    numbers: bool,
    judge: Judge | None,
    stop: Event,
) -> DecodedImages:
    return decode_opened(open_images(files, limits), stop, numbers, judge)


def _inline_cost(opened: list[OpenedImage], numbers: bool = False) -> int:
    if numbers:  # several digits framed a picture: a thread's work
        return INLINE_COST + 1
    cost = 0
    for _, image in opened:
        width, height = image.size
        if (width, height) == (IMAGE_SIZE, IMAGE_SIZE):
            cost += 1
        elif width * height <= INLINE_PIXELS:
            cost += PICTURE_COST
        else:
            return INLINE_COST + 1
    return cost


async def by_size(function: Callable[..., T], payload: bytes, *args: object) -> T:
    """`function(payload, *args)` inline for a small payload, else in a stoppable thread."""
    if len(payload) <= INLINE_BYTES:
        return function(payload, *args)
    return await in_stoppable_thread(_ignoring_stop(function), payload, *args)


async def in_stoppable_thread(work: Callable[..., T], *args: object) -> T:
    """`work(*args, stop=event)` in a thread. If the awaiting task is cancelled, `event` is
    set and the cancellation waits for `work` to return (it checks `stop` between steps).

    The result or error crosses back as a value, and the error is raised here without the
    thread's frames: an exception stored in a future and raised from it forms a reference
    cycle (exception -> traceback -> frames -> future -> exception) that pins the request's
    body until a full garbage collection, 30 MB a failed request for a large body."""
    stop = Event()
    future = asyncio.get_running_loop().run_in_executor(
        _DECODING_THREAD, functools.partial(_outcome, work, *args, stop=stop)
    )
    try:
        result, error = await asyncio.shield(future)
    except asyncio.CancelledError:
        stop.set()
        with contextlib.suppress(Exception):
            await asyncio.shield(future)  # admitted until the thread has really stopped
        raise
    del future  # it holds the outcome: this frame must not hold the error its traceback holds
    if error is not None:
        try:
            raise error
        finally:
            del error
    return result  # type: ignore[return-value]


def _outcome(
    work: Callable[..., T], *args: object, stop: Event
) -> tuple[T | None, BaseException | None]:
    try:
        return work(*args, stop=stop), None
    except Exception as error:
        error.__context__ = None  # `raise ... from None` hides the context but keeps it
        return None, error.with_traceback(None)


def _ignoring_stop(function: Callable[..., T]) -> Callable[..., T]:
    """`function` as a stoppable step: one call, too short to be worth stopping."""

    def step(*args: object, stop: Event) -> T:
        return function(*args)

    return step
