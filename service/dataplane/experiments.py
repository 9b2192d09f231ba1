"""Candidates tried on real traffic before anyone promotes them: a canary share of the requests
that name no version answered by the candidate, and a shadow copy of them run on it without
answering from it (KServe's `canaryTrafficPercent`, Seldon's shadow).

Only requests naming no version take part, and only while the variant has a candidate loaded
(the newest one the promotion gate held back). A shadow run is extra work the client did not
ask for, so it is bounded: it runs only while the inference queue is under half its bound
(counted there while it runs), one at a time per variant, and never delays the answer.
Agreement with the default (the same digit), latency and errors are counted per candidate,
in `/models` and as metrics.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from service.dataplane.admission import Admission
from service.errors import Overloaded
from service.metrics import Metrics
from service.repository.variants import LoadedModel
from service.settings import Settings

# Runs the candidate: (model, images) -> probabilities.
Infer = Callable[[LoadedModel, np.ndarray], Awaitable[np.ndarray]]


@dataclass
class _Record:
    """What one candidate did on real traffic."""

    canary_requests: int = 0
    shadow_requests: int = 0
    shadow_images: int = 0
    agreed_images: int = 0
    errors: int = 0
    skipped: int = 0  # shadow runs left out: the queue was busy or one was running
    seconds: float = 0.0

    def describe(self) -> dict[str, Any]:
        agreement = self.agreed_images / self.shadow_images if self.shadow_images else None
        mean_ms = 1000 * self.seconds / self.shadow_requests if self.shadow_requests else None
        return {
            "canary_requests": self.canary_requests,
            "shadow_requests": self.shadow_requests,
            "shadow_images": self.shadow_images,
            "agreement": agreement,
            "shadow_mean_ms": mean_ms,
            "shadow_errors": self.errors,
            "shadow_skipped": self.skipped,
        }


class Experiments:
    def __init__(
        self,
        settings: Settings,
        admission: Admission,
        metrics: Metrics,
        candidate_of: Callable[[str], LoadedModel | None],
    ) -> None:
        self.canary_percent, self.shadow = settings.canary_percent, settings.shadow
        self._admission, self._metrics, self._candidate_of = admission, metrics, candidate_of
        self._records: dict[tuple[str, int], _Record] = {}
        self._running: set[str] = set()  # variants with a shadow run under way
        self._tasks: set[asyncio.Task[None]] = set()

    def candidate(self, variant: str, version: int | None, asked: str | None) -> LoadedModel | None:
        """The variant's candidate for a canary or shadow run: only for requests naming no
        version, only with either experiment on, and only one that runs the precision asked."""
        if version is not None or not (self.canary_percent or self.shadow):
            return None
        candidate = self._candidate_of(variant)
        if candidate is None or (asked is not None and asked not in candidate.precisions):
            return None
        return candidate

    def route(self, default: LoadedModel, candidate: LoadedModel | None) -> LoadedModel:
        """The model that answers a request naming no version: the candidate for a canary
        share of them, else the default."""
        if candidate is None or random.uniform(0, 100) >= self.canary_percent:
            return default
        self._record(candidate).canary_requests += 1
        self._metrics.canary_requests.labels(variant=candidate.variant).inc()
        return candidate

    def mirror(
        self, candidate: LoadedModel | None, images: np.ndarray, answer: np.ndarray, infer: Infer
    ) -> None:
        """With `shadow` on, run `candidate` on the request's images in the background and
        compare its digits with the default's `answer`."""
        if not self.shadow or candidate is None:
            return
        record = self._record(candidate)
        room = self._admission.max_queued_images // 2 - self._admission.queued
        if candidate.variant in self._running or len(images) > room:
            record.skipped += 1
            return
        self._running.add(candidate.variant)  # before the task starts: one at a time
        task = asyncio.create_task(self._shadow_run(candidate, images, answer, infer))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _shadow_run(
        self, candidate: LoadedModel, images: np.ndarray, answer: np.ndarray, infer: Infer
    ) -> None:
        record, variant = self._record(candidate), candidate.variant
        try:
            self._admission.admit(len(images))  # the queue may have filled since `mirror`
        except Overloaded:
            record.skipped += 1
            self._running.discard(variant)
            return
        started = time.perf_counter()
        try:
            probabilities = await infer(candidate, images)
        except Exception:  # the candidate's failure must not reach anyone: counted
            record.errors += 1
            self._metrics.shadow_errors.labels(variant=variant).inc()
            return
        finally:
            self._admission.release(len(images))
            self._running.discard(variant)
        seconds = time.perf_counter() - started
        agreed = int(np.sum(probabilities.argmax(axis=1) == answer.argmax(axis=1)))
        record.shadow_requests += 1
        record.shadow_images += len(images)
        record.agreed_images += agreed
        record.seconds += seconds
        self._metrics.shadow_images.labels(variant=variant, agreed="true").inc(agreed)
        self._metrics.shadow_images.labels(variant=variant, agreed="false").inc(
            len(images) - agreed
        )
        self._metrics.shadow_latency.labels(variant=variant).observe(seconds)

    def describe(self) -> dict[str, Any]:
        """The settings, and per candidate what it did on real traffic."""
        return {
            "canary_percent": self.canary_percent,
            "shadow": self.shadow,
            "candidates": {
                f"{variant}/{version}": record.describe()
                for (variant, version), record in sorted(self._records.items())
            },
        }

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _record(self, model: LoadedModel) -> _Record:
        return self._records.setdefault((model.variant, model.version), _Record())
