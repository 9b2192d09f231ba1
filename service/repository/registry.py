"""The model registry: which versions of which variants serve, and how they change while the
service runs.

Every variant directory under MNIST_MODELS_DIR (narrowed by MNIST_VARIANTS) is a model; its
integer-named subdirectories with a manifest are versions. `sync` makes the versions that
serve match the version policy: new ones are loaded in a worker thread (verified, smoke
checked, see `model_loading`) while the old ones keep serving, then swapped in by replacing
one dict; retired ones stop once their in-flight requests have finished. A version that fails
to load is recorded with its reason and not retried until its files change. The poller runs
`sync` every MNIST_MODEL_POLL_S; the model-repository endpoints call it on demand.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from concurrent.futures import Executor
from typing import Any

import numpy as np

from mnist_shared.manifest import list_versions
from mnist_shared.serving_choice import write_choice
from service.errors import Conflict, NotFound, NotReady
from service.metrics import Metrics
from service.repository.defaults import DefaultVersions
from service.repository.registry_state import RegistryState
from service.repository.variants import (
    LoadedModel,
    VariantRecord,
    VersionFailure,
    discover_variants,
)
from service.repository.version_policy import VersionPolicy
from service.runtime.backends import Backend, SavedModelBackend
from service.runtime.batching import MicroBatcher
from service.runtime.folded_check import split_digit_scores
from service.runtime.in_flight import InFlight
from service.runtime.model_loading import LoadFailed, fingerprint, load_version, smoke_check
from service.settings import Settings

logger = logging.getLogger(__name__)


class ModelRegistry(RegistryState):
    def __init__(
        self,
        settings: Settings,
        metrics: Metrics,
        executor: Executor,
        in_flight: InFlight,
        digit_check: bytes | None = None,
    ) -> None:
        """`digit_check`: the check's verified ONNX model, folded into every ONNX session."""
        super().__init__(settings, discover_variants(settings))
        self._digit_check = digit_check
        self._metrics = metrics
        self._executor = executor
        self._in_flight = in_flight
        self.policy = VersionPolicy.parse(settings.version_policy)
        self._retiring: set[LoadedModel] = set()
        self._background: set[asyncio.Task[None]] = set()
        self._defaults = DefaultVersions(settings, metrics, self.policy)

    # -- lifecycle ----------------------------------------------------------------------------

    async def start(self, *, poll: bool = True) -> None:
        """Load what the policy serves, then poll the models directory (unless turned off)."""
        try:
            await self.sync_all()
        finally:  # whatever failed is in the records' reasons; polling goes on regardless
            self.loading = False
            logger.info("serving %s", self.readiness()["loaded"] or "nothing")
            if poll and self._settings.model_poll_s > 0:
                self._spawn(self._poll_forever())

    async def close(self) -> None:
        for task in list(self._background):
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        for model in [
            *self._retiring,
            *(m for s in self._variants.values() for m in s.serving.values()),
        ]:
            await model.stop()

    async def sync_all(self) -> None:
        if not self._settings.variants:  # a variant directory created since start
            for name in discover_variants(self._settings):
                self._variants.setdefault(name, VariantRecord(name))
        for name in list(self._variants):
            try:
                await self.sync(name)
            except Exception:  # one unreadable variant must not stop the others
                logger.exception("could not scan the versions of %s", name)

    async def sync(self, variant: str, *, retry_failed: bool = False, load: bool = False) -> None:
        """Make `variant`'s serving versions match the policy and the files on disk. `load`:
        the repository's load, which also ends an unload (under the lock, after any unload
        queued before it)."""
        record = self._variants[variant]
        async with record.lock:
            if load:
                record.unloaded = False
            on_disk = list_versions(self._variant_dir(variant))
            self._forget_stale_failures(record, on_disk, retry_failed)
            while not record.unloaded:
                self._defaults.choose(record, on_disk, self._variant_dir(variant))
                wanted = self._defaults.wanted(record, on_disk)
                missing = [version for version in wanted if version not in record.serving]
                if not missing:
                    break
                await self._load(record, missing[-1])  # newest first: it is what `latest` serves
            wanted = [] if record.unloaded else self._defaults.wanted(record, on_disk)
            self._retire(record, [version for version in record.serving if version not in wanted])

    async def load_now(self, variant: str) -> None:
        """The repository's `load`: serve `variant` again, retrying failed versions; LoadFailed
        (with the reason) unless the newest version the policy allows ends up serving."""
        if variant not in self._variants and not self._settings.variants:
            await self.sync_all()  # a variant directory created since the last poll
        record = self._known(variant)
        await self.sync(variant, retry_failed=True, load=True)
        wanted = self.policy.select(list_versions(self._variant_dir(variant)))
        if not wanted:
            raise LoadFailed(f"no version of {variant!r} on disk matches the policy {self.policy}")
        if wanted[-1] not in record.serving:
            failure = record.failures.get(wanted[-1])
            reason = failure.reason if failure else "it did not load"
            raise LoadFailed(f"version {wanted[-1]} of {variant!r} is not served: {reason}")

    async def choose_version(self, variant: str, version: int) -> str:
        """Make `version` what requests naming none get (an operator's promote or rollback,
        kept in `serving.json`), loaded now; LoadFailed saying why it cannot be. Returns the
        action recorded."""
        record = self._known(variant)
        previous = record.default
        action = "rollback" if previous is not None and version < previous else "promote"
        try:
            write_choice(self._variant_dir(variant), version, previous, action)
        except ValueError as error:
            raise LoadFailed(str(error)) from None
        await self.sync(variant, retry_failed=True, load=True)
        if record.default != version or version not in record.serving:
            failure = record.failures.get(version)
            raise LoadFailed(
                f"version {version} of {variant!r} was chosen but does not serve: "
                f"{failure.reason if failure else 'it did not load'}"
            )
        logger.warning("%s: %s to version %d (was %s)", variant, action, version, previous)
        return action

    async def unload(self, variant: str) -> None:
        """The repository's `unload`: stop serving `variant` until `load_now` is called."""
        record = self._known(variant)
        if self._settings.workers > 1:
            raise Conflict(
                f"unload would stop {variant!r} in the one of {self._settings.workers} uvicorn "
                "workers that answered, not in the others: run with MNIST_WORKERS=1 (and scale "
                "with replicas), or stop serving it through the files (MNIST_VARIANTS, the "
                "version policy)."
            )
        async with record.lock:
            record.unloaded = True
            self._retire(record, list(record.serving))

    # -- serving ------------------------------------------------------------------------------

    @property
    def first_variant(self) -> str:
        """The first variant found at start; with none then, the first serving now."""
        serving = (name for name in self.variants if self._variants[name].serving)
        return self._first_variant or next(serving, "")

    @property
    def known_variants(self) -> list[str]:
        return sorted(self._variants)

    def knows(self, variant: str) -> bool:
        return variant in self._variants

    def serving_versions(self, variant: str) -> list[int]:
        return sorted(self._known(variant).serving)

    def model(self, variant: str, version: int | None = None) -> LoadedModel:
        """The serving model of `variant` (its default version, or `version`); NotFound /
        NotReady, saying why, otherwise."""
        record = self._known(variant)
        serving = record.serving
        if version is not None and version in serving:
            return serving[version]
        if version is not None and serving:
            raise NotFound(
                f"version {version} of model {variant!r} is not loaded; loaded: "
                f"{', '.join(map(str, sorted(serving)))}. Ask for one of those, or none for "
                "the default."
            )
        if (default := record.default_model()) is not None:
            return default
        raise NotReady(self._why_not_serving(record))

    def candidate(self, variant: str) -> LoadedModel | None:
        """The newest loaded version the promotion gate held back, if any."""
        record = self._known(variant)
        loaded = [version for version in record.candidates if version in record.serving]
        return record.serving[max(loaded)] if loaded else None

    async def predict(
        self, model: LoadedModel, backend: str, precision: str, images: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Probabilities (N, 10) of `images`, and their digit scores where the backend's
        session has the check folded in (else None)."""
        model.users += 1
        try:
            if (backend, precision) not in model.batchers:
                await self._load_savedmodel(model)
            return split_digit_scores(await model.batchers[backend, precision].predict(images))
        finally:
            model.users -= 1

    # -- helpers ------------------------------------------------------------------------------

    def _known(self, variant: str) -> VariantRecord:
        if variant not in self._variants:
            known = ", ".join(sorted(self._variants)) or "none"
            raise NotFound(f"unknown model {variant!r}: served models are {known}.")
        return self._variants[variant]

    def _forget_stale_failures(
        self, record: VariantRecord, on_disk: list[int], everything: bool
    ) -> None:
        for version, failure in list(record.failures.items()):
            version_dir = self._variant_dir(record.name) / str(version)
            if everything or version not in on_disk or fingerprint(version_dir) != failure.files:
                del record.failures[version]

    async def _load(self, record: VariantRecord, version: int) -> None:
        version_dir = self._variant_dir(record.name) / str(version)
        files = fingerprint(version_dir)
        record.loading.add(version)
        try:
            threads = self._settings.inference_threads
            manifest, backends = await asyncio.to_thread(
                load_version,
                version_dir,
                threads,
                self._settings.lone_session_threads,
                self._digit_check,
            )
            sample_accuracy = await asyncio.to_thread(self._defaults.sample_accuracy, backends)
        except LoadFailed as error:
            record.failures[version] = VersionFailure(str(error), files)
            self._metrics.load_failures.labels(variant=record.name).inc()
            logger.error("refused %s version %d: %s", record.name, version, error)
            return
        finally:
            record.loading.discard(version)
        model = LoadedModel(record.name, version_dir, manifest, sample_accuracy=sample_accuracy)
        for backend in backends:
            self._add_batcher(model, backend)
        record.serving = {**record.serving, version: model}  # the swap: one assignment
        record.required = True
        logger.info(
            "serving %s version %d (onnx: %s) from %s",
            record.name, version, ", ".join(model.precisions), version_dir,
        )  # fmt: skip

    def _retire(self, record: VariantRecord, versions: list[int]) -> None:
        if not versions:
            return
        retired = [record.serving[version] for version in versions]
        record.serving = {v: m for v, m in record.serving.items() if v not in versions}
        for model in retired:
            logger.info("retiring %s version %d", model.variant, model.version)
            self._retiring.add(model)
            self._spawn(self._stop_when_unused(model))

    async def _stop_when_unused(self, model: LoadedModel) -> None:
        await model.stop_when_unused()
        self._retiring.discard(model)

    def _spawn(self, coroutine: Any) -> None:
        task = asyncio.create_task(coroutine)
        self._background.add(task)
        task.add_done_callback(self._background.discard)

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._settings.model_poll_s)
            try:
                await self.sync_all()
            except Exception:  # a poll must never stop polling
                logger.exception("polling %s failed", self._settings.models_dir)

    async def _load_savedmodel(self, model: LoadedModel) -> None:
        record = self._variants[model.variant]
        async with record.lock:
            if (SavedModelBackend.name, SavedModelBackend.precision) in model.batchers:
                return
            try:
                backend = await asyncio.to_thread(
                    SavedModelBackend, model.version_dir, model.manifest
                )
            except ValueError as error:  # its files do not match the manifest
                logger.error("%s/%s SavedModel refused: %s", model.variant, model.version, error)
                raise NotReady(
                    f"{model.variant} version {model.version} cannot serve on the tensorflow "
                    f"backend: {error}"
                ) from None
            await asyncio.to_thread(smoke_check, backend)
            self._add_batcher(model, backend)

    def _add_batcher(self, model: LoadedModel, backend: Backend) -> None:
        labels = {"variant": model.variant, "backend": backend.name, "precision": backend.precision}
        batcher = MicroBatcher(
            backend.predict,
            self._executor,
            predict_lone=backend.predict_lone,
            max_batch_size=self._settings.max_batch_size,
            max_wait_s=self._settings.max_batch_wait_ms / 1000,
            on_batch=self._metrics.batch_size.labels(**labels).observe,
            on_queue_change=self._metrics.queue_depth.labels(**labels).inc,
            in_flight=self._in_flight,
            inline_lone_requests=self._settings.inline_lone_requests,
            name=f"{model.variant}/{model.version}/{backend.name}/{backend.precision}",
        )
        batcher.start()
        model.batchers[backend.name, backend.precision] = batcher
