"""The model registry: finds, verifies, loads and warms up the exported models, one per variant.

The served variants are the models directory's: every `<variant>/` holding a version with a
manifest, narrowed by `MNIST_VARIANTS`. ONNX models load at start-up (in a thread, so
/health/live answers meanwhile); SavedModels load on first use, only where TensorFlow is
installed. Each (variant, backend) gets a batcher.
"""

from __future__ import annotations

import asyncio
import logging
from concurrent.futures import Executor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from mnist_shared.manifest import Manifest, latest_version, list_versions
from mnist_shared.preprocessing import IMAGE_SIZE
from service.backends import Backend, OnnxBackend, SavedModelBackend, installed_backends
from service.batching import InFlight, MicroBatcher
from service.errors import NotFound, NotReady
from service.metrics import Metrics
from service.settings import Settings

logger = logging.getLogger(__name__)


@dataclass
class LoadedModel:
    variant: str
    version_dir: Path
    manifest: Manifest
    batchers: dict[str, MicroBatcher] = field(default_factory=dict)


def warm_up(backend: Backend) -> None:
    """One inference so the first request does not pay for lazy initialization."""
    probabilities = backend.predict(np.zeros((1, IMAGE_SIZE, IMAGE_SIZE), dtype=np.float32))
    if probabilities.shape != (1, 10) or not np.isfinite(probabilities).all():
        raise ValueError(f"warm-up produced {probabilities.shape} / non-finite probabilities")


class ModelRegistry:
    def __init__(
        self, settings: Settings, metrics: Metrics, executor: Executor, in_flight: InFlight
    ) -> None:
        self._settings = settings
        self._metrics = metrics
        self._executor = executor
        self._in_flight = in_flight
        self._models: dict[str, LoadedModel] = {}
        self._errors: dict[str, str] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self.variants: list[str] = discover_variants(settings)
        self.loading = True

    # -- lifecycle ----------------------------------------------------------------------------

    async def load(self) -> None:
        """Load every served variant's ONNX model; errors are kept for /health/ready."""
        if not self.variants:
            self._errors["models"] = self.no_models_message()
        for variant in self.variants:
            try:
                model, backend = await asyncio.to_thread(self._load_onnx, variant)
            except Exception as error:  # a broken model must not take the others down
                logger.error("could not load %s: %s", variant, error)
                self._errors[variant] = str(error)
                continue
            self._models[variant] = model
            self._add_batcher(model, backend)
        self.loading = False
        logger.info("models loaded: %s; failed: %s", sorted(self._models), self._errors or "none")

    async def close(self) -> None:
        for model in self._models.values():
            for batcher in model.batchers.values():
                await batcher.stop()

    @property
    def ready(self) -> bool:
        served = set(self.variants)
        return not self.loading and bool(self._models) and served <= self._models.keys()

    def readiness(self) -> dict[str, Any]:
        return {
            "ready": self.ready,
            "loading": self.loading,
            "loaded": {v: m.manifest.version for v, m in sorted(self._models.items())},
            "errors": self._errors,
        }

    # -- inference ----------------------------------------------------------------------------

    async def predict(
        self, variant: str, backend: str, images: np.ndarray
    ) -> tuple[Manifest, np.ndarray]:
        model = self.model(variant)
        if backend not in model.batchers:
            await self._load_savedmodel(model)
        return model.manifest, await model.batchers[backend].predict(images)

    def model(self, variant: str) -> LoadedModel:
        """The loaded model of `variant`; NotFound / NotReady (saying why) otherwise."""
        if variant in self._models:
            return self._models[variant]
        if variant not in self.variants:
            raise NotFound(
                f"unknown model {variant!r}: served models are {', '.join(self.variants)}."
            )
        if self.loading:
            raise NotReady(f"variant {variant!r} is still loading; retry in a few seconds.")
        raise NotReady(f"variant {variant!r} failed to load: {self._errors.get(variant)}")

    def no_models_message(self, where: Path | None = None) -> str:
        return (
            f"no model version with a manifest.json under {where or self._settings.models_dir}; "
            "train one with `make train` or point MNIST_MODELS_DIR at the models directory."
        )

    def _load_onnx(self, variant: str) -> tuple[LoadedModel, Backend]:
        variant_dir = self._settings.models_dir / variant
        version = latest_version(variant_dir)
        if version is None:
            raise FileNotFoundError(self.no_models_message(variant_dir))
        version_dir = variant_dir / str(version)
        manifest = Manifest.read(version_dir)
        backend = OnnxBackend(version_dir, manifest, self._settings.inference_threads)
        warm_up(backend)
        logger.info("loaded %s version %d (onnx) from %s", variant, version, version_dir)
        return LoadedModel(variant, version_dir, manifest), backend

    async def _load_savedmodel(self, model: LoadedModel) -> None:
        lock = self._locks.setdefault(model.variant, asyncio.Lock())
        async with lock:
            if "savedmodel" in model.batchers:
                return
            backend = await asyncio.to_thread(SavedModelBackend, model.version_dir, model.manifest)
            await asyncio.to_thread(warm_up, backend)
            self._add_batcher(model, backend)

    def _add_batcher(self, model: LoadedModel, backend: Backend) -> None:
        labels = {"variant": model.variant, "backend": backend.name}
        batcher = MicroBatcher(
            backend.predict,
            self._executor,
            max_batch_size=self._settings.max_batch_size,
            max_wait_s=self._settings.max_batch_wait_ms / 1000,
            on_batch=self._metrics.batch_size.labels(**labels).observe,
            on_queue_change=self._metrics.queue_depth.labels(**labels).inc,
            in_flight=self._in_flight,
            name=f"{model.variant}/{backend.name}",
        )
        batcher.start()
        model.batchers[backend.name] = batcher

    # -- description --------------------------------------------------------------------------

    def describe(self) -> list[dict[str, Any]]:
        """Per served variant: versions on disk, the one served, backends, spec, accuracy."""
        described = []
        for variant in self.variants:
            versions = list_versions(self._settings.models_dir / variant)
            model = self._models.get(variant)
            entry: dict[str, Any] = {
                "variant": variant,
                "versions": versions,
                "loaded": bool(model),
            }
            if model is not None:
                manifest = model.manifest
                entry |= {
                    "served_version": manifest.version,
                    "architecture": manifest.architecture,
                    "backends": installed_backends(),
                    "input": manifest.input.model_dump(),
                    "output": manifest.output.model_dump(),
                    "test_accuracy": manifest.test_accuracy,
                    "test_samples": manifest.test_samples,
                    "created_at": manifest.created_at,
                }
            else:
                entry["error"] = self._errors.get(variant, "loading")
            described.append(entry)
        return described


def discover_variants(settings: Settings) -> list[str]:
    """Variants with at least one version under the models directory, narrowed by
    MNIST_VARIANTS. A variant named there without a model is kept, so readiness says so."""
    models_dir = settings.models_dir
    found = sorted(
        child.name
        for child in (models_dir.iterdir() if models_dir.is_dir() else [])
        if child.is_dir() and list_versions(child)
    )
    return list(settings.variants) if settings.variants else found
