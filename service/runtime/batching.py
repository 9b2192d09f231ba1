"""Dynamic micro-batching: concurrent requests for one model merged into one inference call.

One `MicroBatcher` per (variant, backend). A single collector task takes the first waiting
request, waits up to `max_wait_s` for company (only while other requests are in flight),
drains the queue up to `max_batch_size` images and runs the model in the inference thread
pool. While that batch runs, new requests queue up and form the next batch, so under load
batches fill without waiting.
If the model raises on a merged batch, each of its requests is run once more alone: only the
ones that fail again get `InferenceFailed`.

A small request that finds the service otherwise idle (nothing queued or running here, no
other request in flight, even after one turn of the event loop) is inferred at once on the
event loop (`inline_lone_requests`). A lone client waits for its own inference either way; this
way it does not also wait for the collector task and two thread hand-offs. When the other
workers are quiet too (`InFlight.other_workers_quiet`), it runs on `predict_lone`, which may spread
the model over the idle cores.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from concurrent.futures import Executor
from dataclasses import dataclass

import numpy as np

from service.errors import InferenceFailed
from service.runtime.in_flight import InFlight

logger = logging.getLogger(__name__)

Predict = Callable[[np.ndarray], np.ndarray]

# The most images a lone request may have inferred on the event loop, which stalls for their
# inference; a bigger one goes to the inference thread, keeping the loop free meanwhile.
LONE_MAX_IMAGES = 4


@dataclass
class _Pending:
    images: np.ndarray
    future: asyncio.Future[np.ndarray]


class MicroBatcher:
    def __init__(
        self,
        predict: Predict,
        executor: Executor,
        *,
        max_batch_size: int,
        max_wait_s: float,
        on_batch: Callable[[int], None] = lambda size: None,
        on_queue_change: Callable[[int], None] = lambda delta: None,
        in_flight: InFlight | None = None,
        inline_lone_requests: bool = False,
        predict_lone: Predict | None = None,
        name: str = "model",
    ) -> None:
        self._predict = predict
        self._predict_lone = predict_lone or predict
        self._inline_lone_requests = inline_lone_requests
        self._executor = executor
        self._max_batch_size = max_batch_size
        self._max_wait_s = max_wait_s
        self._on_batch = on_batch
        self._on_queue_change = on_queue_change
        self._in_flight = in_flight
        self._name = name
        self._queue: asyncio.Queue[_Pending] = asyncio.Queue()
        self._carry: _Pending | None = None  # a request that did not fit the previous batch
        self._task: asyncio.Task[None] | None = None
        self._running = 0  # inference calls in the executor right now

    @property
    def enabled(self) -> bool:
        return self._max_batch_size > 1

    def start(self) -> None:
        if self.enabled and self._task is None:
            self._task = asyncio.create_task(self._collect_forever(), name=f"batcher-{self._name}")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        drained = self._drain_all()
        self._on_queue_change(-sum(len(pending.images) for pending in drained))
        _fail(drained, "the service is shutting down; retry on another replica")

    async def predict(self, images: np.ndarray) -> np.ndarray:
        """Probabilities for `images`: on the event loop when lone, else in the inference
        thread, by themselves (batching off) or merged with other requests."""
        if len(images) <= LONE_MAX_IMAGES and await self._is_lone():
            return self._run_lone(images)
        if not self.enabled:
            self._on_batch(len(images))
            return await self._run_in_executor(images)
        if len(images) <= self._max_batch_size:
            return await self._queued(images)
        # A request larger than a batch is queued a batch at a time, each part after the one
        # before is answered: the requests arriving meanwhile run between its parts instead
        # of waiting for all of it (200 digits of a /read cost 30 ms).
        parts = range(0, len(images), self._max_batch_size)
        answers = [await self._queued(images[i : i + self._max_batch_size]) for i in parts]
        return np.concatenate(answers)

    async def _queued(self, images: np.ndarray) -> np.ndarray:
        future: asyncio.Future[np.ndarray] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(images, future))
        self._on_queue_change(len(images))
        return await future

    async def _collect_forever(self) -> None:
        while True:
            batch = await self._next_batch()
            self._on_queue_change(-sum(len(p.images) for p in batch))
            await self._run_batch(batch)

    async def _next_batch(self) -> list[_Pending]:
        # The first request stays in `_carry` until the batch is complete, so that a cancel
        # during the wait (shutdown) still finds it and fails it instead of leaving it hanging.
        if self._carry is None:
            self._carry = await self._queue.get()
        if self._max_wait_s > 0 and self._queue.empty() and self._others_on_the_way():
            await asyncio.sleep(self._max_wait_s)  # give concurrent requests a moment to arrive
        first, self._carry = self._carry, None
        batch, size = [first], len(first.images)
        while size < self._max_batch_size and not self._queue.empty():
            pending = self._queue.get_nowait()
            if size + len(pending.images) > self._max_batch_size:
                self._carry = pending
                break
            batch.append(pending)
            size += len(pending.images)
        return batch

    async def _is_lone(self) -> bool:
        """Whether this request has the service to itself. Requests whose bytes arrived
        together are started in the same turn of the event loop: one yield lets them count
        themselves in flight before this one decides."""
        if not self._inline_lone_requests or not self._idle() or self._others_on_the_way():
            return False
        await asyncio.sleep(0)
        return self._idle() and not self._others_on_the_way()

    def _idle(self) -> bool:
        return not self._running and self._carry is None and self._queue.empty()

    def _run_lone(self, images: np.ndarray) -> np.ndarray:
        self._on_batch(len(images))
        # Only while the sibling workers are quiet: their requests need the other cores.
        lone_in_service = self._in_flight is not None and self._in_flight.other_workers_quiet()
        try:
            return (self._predict_lone if lone_in_service else self._predict)(images)
        except Exception as error:
            raise self._failure(error, images) from error

    def _others_on_the_way(self) -> bool:
        """Waiting only pays when other requests are being decoded; a lone client would just
        lose `max_wait_s` on every request."""
        return self._in_flight is None or self._in_flight.count > 1

    async def _run_batch(self, batch: list[_Pending]) -> None:
        live = [p for p in batch if not p.future.done()]  # skip requests whose client went away
        if not live:
            return
        images = live[0].images if len(live) == 1 else np.concatenate([p.images for p in live])
        self._on_batch(len(images))
        try:
            probabilities = await self._run_in_executor(images)
        except InferenceFailed as error:
            if len(live) == 1:
                _fail(live, error.message)
            else:
                await self._run_each_separately(live)
            return
        except asyncio.CancelledError:
            _fail(live, "the service is shutting down; retry on another replica")
            raise
        start = 0
        for pending in live:
            end = start + len(pending.images)
            if not pending.future.done():
                pending.future.set_result(probabilities[start:end])
            start = end

    async def _run_each_separately(self, batch: list[_Pending]) -> None:
        """After a merged batch failed: each request once more on its own, so that one bad
        request fails alone instead of taking its neighbours down with it."""
        for pending in batch:
            if pending.future.done():
                continue
            try:
                result = await self._run_in_executor(pending.images)
            except asyncio.CancelledError:
                _fail(batch, "the service is shutting down; retry on another replica")
                raise
            except InferenceFailed as error:
                if not pending.future.done():
                    pending.future.set_exception(InferenceFailed(error.message))
                continue
            if not pending.future.done():
                pending.future.set_result(result)

    async def _run_in_executor(self, images: np.ndarray) -> np.ndarray:
        loop = asyncio.get_running_loop()
        self._running += 1
        try:
            return await loop.run_in_executor(self._executor, self._predict, images)
        except Exception as error:
            raise self._failure(error, images) from error
        finally:
            self._running -= 1

    def _failure(self, error: Exception, images: np.ndarray) -> InferenceFailed:
        logger.exception("inference failed on a batch of %d for %s", len(images), self._name)
        return InferenceFailed(
            f"inference failed for {self._name} on a batch of {len(images)} images "
            f"({type(error).__name__}); retry the request, and report it if it persists."
        )

    def _drain_all(self) -> list[_Pending]:
        drained = [self._carry] if self._carry else []
        self._carry = None
        while not self._queue.empty():
            drained.append(self._queue.get_nowait())
        return drained


def _fail(batch: list[_Pending], message: str) -> None:
    for pending in batch:
        if not pending.future.done():
            pending.future.set_exception(InferenceFailed(message))
