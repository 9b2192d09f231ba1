"""Prometheus metrics, registered on a registry passed in (one per app, so tests stay isolated).

With several uvicorn workers, `python -m service` points PROMETHEUS_MULTIPROC_DIR at a fresh
directory before the workers start: each worker then writes its values there and one scrape,
answered by any worker, sums them all (prometheus_client's multiprocess mode).
"""

from __future__ import annotations

import os
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.metrics import MetricWrapperBase
from prometheus_client.multiprocess import MultiProcessCollector, mark_process_dead

MULTIPROCESS_DIR = "PROMETHEUS_MULTIPROC_DIR"

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)
_LAG_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.03, 0.05, 0.075, 0.1, 0.25, 0.5, 1.0, 5.0)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self._children: dict[tuple[MetricWrapperBase, tuple[str, ...]], Any] = {}
        self.requests = Counter(
            "mnist_requests",
            "Prediction requests by variant and HTTP status.",
            ["variant", "status"],
            registry=registry,
        )
        self.latency = Histogram(
            "mnist_request_latency_seconds",
            "Time to answer a prediction request, decoding included.",
            ["variant"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.images = Counter(
            "mnist_images", "Images classified, by variant.", ["variant"], registry=registry
        )
        self.batch_size = Histogram(
            "mnist_batch_size",
            "Images per inference call (micro-batches merge requests).",
            ["variant", "backend", "precision"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "mnist_queue_depth",
            "Images waiting for an inference call.",
            ["variant", "backend", "precision"],
            registry=registry,
            multiprocess_mode="livesum",  # every live worker's queue, added up
        )

        self.candidates = Gauge(
            "mnist_model_candidates",
            "Versions the promotion gate holds back from requests naming none (GET /models "
            "says why), by variant.",
            ["variant"],
            registry=registry,
            multiprocess_mode="max",
        )
        self.canary_requests = Counter(
            "mnist_canary_requests",
            "Requests naming no version answered by a candidate (MNIST_CANARY_PERCENT).",
            ["variant"],
            registry=registry,
        )
        self.shadow_images = Counter(
            "mnist_shadow_images",
            "Images a candidate read in the shadow of the default (MNIST_SHADOW), by whether "
            "it gave the default's digit.",
            ["variant", "agreed"],
            registry=registry,
        )
        self.shadow_errors = Counter(
            "mnist_shadow_errors", "Shadow runs of a candidate that failed.", ["variant"],
            registry=registry,
        )  # fmt: skip
        self.shadow_latency = Histogram(
            "mnist_shadow_latency_seconds",
            "Time a candidate took on a request's images in the shadow of the default.",
            ["variant"],
            buckets=_LATENCY_BUCKETS,
            registry=registry,
        )
        self.feedback = Counter(
            "mnist_feedback",
            "Corrections from users kept by POST /feedback, by the variant they correct.",
            ["variant"],
            registry=registry,
        )
        self.shed = Counter(
            "mnist_requests_shed",
            "Requests answered 503 at once because MNIST_MAX_QUEUED_IMAGES images were waiting.",
            ["variant"],
            registry=registry,
        )
        self.load_failures = Counter(
            "mnist_model_load_failures",
            "Model versions refused: files not matching the manifest, ONNX that does not load, "
            "a failed smoke check. Counted once per version and set of files.",
            ["variant"],
            registry=registry,
        )

        self.loop_lag = Histogram(
            "mnist_event_loop_lag_seconds",
            "How late a timer on the event loop fires (checked every 20 ms): how long work "
            "that is ready waits for the loop, whatever holds it (a step, the GIL, the CPU).",
            buckets=_LAG_BUCKETS,
            registry=registry,
        )

    def request_answered(self, variant: str, status: int, seconds: float | None = None) -> None:
        """A prediction request's answer counted by status, and its latency unless it was
        refused before it was timed (shed at the door)."""
        self._child(self.requests, variant, str(status)).inc()
        if seconds is not None:
            self._child(self.latency, variant).observe(seconds)

    def images_classified(self, variant: str, count: int) -> None:
        self._child(self.images, variant).inc(count)

    def request_shed(self, variant: str) -> None:
        self._child(self.shed, variant).inc()

    def _child(self, metric: MetricWrapperBase, *labels: str) -> Any:
        """`metric.labels(*labels)`, looked up once: `labels()` checks its arguments and takes
        a lock on every call, a cost on every request. Labels are few (served variants,
        `all`, `other`; status codes), so the cache stays small."""
        key = (metric, labels)
        child = self._children.get(key)
        if child is None:
            child = self._children[key] = metric.labels(*labels)
        return child

    def exposition(self) -> bytes:
        """One scrape in Prometheus' text format: this process's metrics, or every worker's
        summed in multiprocess mode."""
        if not os.environ.get(MULTIPROCESS_DIR):
            return generate_latest(self.registry)
        registry = CollectorRegistry()
        MultiProcessCollector(registry)
        return generate_latest(registry)

    @staticmethod
    def close() -> None:
        """A worker that stops takes its live gauges out of the sums."""
        if os.environ.get(MULTIPROCESS_DIR):
            mark_process_dead(os.getpid())
