"""Where a request's decoding runs: on the event loop while it is cheap, else in a thread
that a cancelled request stops, taking turns with other requests a picture at a time.

The event loop serves every connection, probe and gRPC call of the worker, so it only takes
work that costs a few milliseconds at most, judged by what the pictures declare (their pixels),
never by their encoded size: 2 KB of lossless WebP can declare 16 megapixels. The rest runs in
a thread: reading numbers (`/read`: segmentation, the digit check's cuts) in one, everything
else (one digit a picture, large JSON) in another, so that a slow reading never holds up a
`/predict`. A request hands its thread one picture at a time and waits for it before handing
the next: with every waiting request holding one step in the thread's first-in-first-out
queue, requests take turns picture by picture, and a request of 64 pictures delays another
by one picture, not 64. A request cancelled meanwhile (its deadline passed, its client left)
sets its stop signal, which the work checks between pictures and inside segmentation's
loops, and stays admitted until the thread has stopped, so that the admission bound keeps
counting the CPU it really uses.
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
    Decoding,
    Limits,
    OpenedImage,
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
# One thread for each kind of work a worker decodes: decoders and JSON parsers hold the GIL,
# which the event loop needs, in stretches of up to 30 ms; several threads of one kind held it
# for 110 ms (4 clients posting 3.8 MB of JSON). One a kind keeps the loop's wait short and
# one large picture's memory at a time per kind (the service's parallelism is its worker
# processes); two kinds keep `/read`'s segmentation from queueing ahead of `/predict`'s
# pictures. Threads start on first use.
_PICTURE_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="decoding")
_NUMBER_THREAD = ThreadPoolExecutor(max_workers=1, thread_name_prefix="reading-numbers")


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
    thread = _NUMBER_THREAD if numbers else _PICTURE_THREAD
    decoding, first = Decoding(limits, numbers, judge), 0
    if sum(len(data) for _, data in files) > INLINE_BYTES:
        opened = await in_stoppable_thread(
            _open_and_decode_first, files, limits, decoding, thread=thread
        )
        first = 1
    else:
        opened = open_images(files, limits)
        if _inline_cost(opened, numbers) <= INLINE_COST:
            for index, picture in enumerate(opened):
                decoding.step(index, picture)
            return decoding.result()
    for index in range(first, len(opened)):
        await in_stoppable_thread(decoding.step, index, opened[index], thread=thread)
    return decoding.result()


def _open_and_decode_first(
    files: list[tuple[str, bytes]], limits: Limits, decoding: Decoding, stop: Event
) -> list[OpenedImage]:
    """Every picture's header read (the request's pixels counted before any is decoded), then
    the first picture decoded: one hop for the common large body of one picture."""
    opened = open_images(files, limits)
    decoding.step(0, opened[0], stop)
    return opened


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


async def in_stoppable_thread(
    work: Callable[..., T], *args: object, thread: ThreadPoolExecutor = _PICTURE_THREAD
) -> T:
    """`work(*args, stop=event)` in `thread`. If the awaiting task is cancelled, `event` is
    set and the cancellation waits for `work` to return (it checks `stop` in its loops).

    The result or error crosses back as a value, and the error is raised here without the
    thread's frames: an exception stored in a future and raised from it forms a reference
    cycle (exception -> traceback -> frames -> future -> exception) that pins the request's
    body until a full garbage collection, 30 MB a failed request for a large body."""
    stop = Event()
    future = asyncio.get_running_loop().run_in_executor(
        thread, functools.partial(_outcome, work, *args, stop=stop)
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
