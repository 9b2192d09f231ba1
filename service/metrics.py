"""Prometheus metrics, registered on a registry passed in (one per app, so tests stay isolated)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

_LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class Metrics:
    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
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
            ["variant", "backend"],
            buckets=_BATCH_BUCKETS,
            registry=registry,
        )
        self.queue_depth = Gauge(
            "mnist_queue_depth",
            "Images waiting for an inference call.",
            ["variant", "backend"],
            registry=registry,
        )
