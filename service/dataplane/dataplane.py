"""The protocol-neutral data plane: what `/predict`, the Open Inference Protocol's REST routes
and its gRPC service all call (as MLServer's `handlers/dataplane.py` serves its REST and gRPC
servers alike).

`infer` owns an inference request from its first byte to its answer: choose the variants and
the backend, read the images, admit them, decode, scale, infer, count. The protocol layers only
parse their wire format into an `InferenceRequest`, call it once and shape the answer. Health
and metadata are here too; the model repository's operations are `RepositoryHandlers`'.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from mnist_shared.preprocessing import scale_pixels
from service import __version__
from service.dataplane.admission import Admission, Admitted
from service.dataplane.decode_work import decode_files
from service.dataplane.decoding import ImagePayload, Limits
from service.dataplane.digit_verdicts import DigitVerdicts
from service.dataplane.experiments import Experiments
from service.dataplane.feedback import FeedbackStore
from service.dataplane.inference import (
    ALL_VARIANTS,
    InferenceAnswer,
    InferenceRequest,
    ModelInput,
    one_digit_each,
    parse_version,
)
from service.dataplane.model_runs import ModelRuns
from service.dataplane.precision import check_precision
from service.dataplane.tensors import INPUT_METADATA, OUTPUT_METADATA
from service.errors import (
    BadRequest,
    GatewayTimeout,
    NotFound,
    NotReady,
    Overloaded,
    ServiceError,
)
from service.metrics import Metrics
from service.repository.registry import ModelRegistry
from service.repository.variants import LoadedModel
from service.runtime.backends import BACKENDS
from service.runtime.digit_check import DigitCheck
from service.runtime.in_flight import InFlight
from service.settings import Settings

SERVER_NAME = "mnist-normalization-serving"
SERVER_VERSION = __version__


class DataPlane:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: Metrics,
        in_flight: InFlight,
        digit_check: DigitCheck | str = "not loaded",
    ) -> None:
        """`digit_check`: the loaded check, or why there is none."""
        self.settings = settings
        self.digit_verdicts = DigitVerdicts(digit_check)
        self._registry = registry
        self._metrics = metrics
        self._in_flight = in_flight
        self._admission = Admission(settings.max_queued_images)
        self.experiments = Experiments(settings, self._admission, metrics, registry.candidate)
        self._model_runs = ModelRuns(settings, registry, metrics, self.experiments)
        self.feedback = FeedbackStore(settings, metrics)
        self._limits = Limits.of(settings)
        self.draining = False  # SIGTERM received: finishing what was accepted, then exiting

    # -- health and metadata ------------------------------------------------------------------

    def ready(self) -> bool:
        return self._registry.ready and not self.draining and self._default_unserved() is None

    def readiness(self) -> dict[str, Any]:
        state = self._registry.readiness()
        if (reason := self._default_unserved()) is not None:
            state["ready"] = False
            state["errors"] = {**state["errors"], self.default_variant: reason}
        if self.draining:
            state |= {"ready": False, "draining": True}
        return state

    def _default_unserved(self) -> str | None:
        """Why the default variant (what a request naming none gets) serves no version, if it
        does not once the first load is done: every such request would get 503."""
        name = self.default_variant
        if self._registry.loading or not name:
            return None
        try:
            self.loaded_model(name)
        except (NotReady, NotFound) as error:
            return f"{error.message} It is the default variant: requests naming none get 503."
        return None

    def model_ready(self, name: str, version: int | None = None) -> bool:
        """Whether `name` (at `version`) can answer; NotFound for a model never served."""
        try:
            self.loaded_model(name, version)
        except NotReady:
            return False
        return True

    def server_metadata(self) -> dict[str, Any]:
        return {
            "name": SERVER_NAME,
            "version": SERVER_VERSION,
            "extensions": ["binary_tensor_data"],
        }

    def model_metadata(self, name: str, version: int | None = None) -> dict[str, Any]:
        """The Open Inference Protocol's model metadata of a loaded variant."""
        model = self.loaded_model(name, version)
        return {
            "name": name,
            "versions": [str(model.version)],
            "platform": "onnxruntime_onnx",
            "inputs": INPUT_METADATA,
            "outputs": OUTPUT_METADATA,
        }

    # -- inference ----------------------------------------------------------------------------

    @property
    def default_variant(self) -> str:
        """MNIST_DEFAULT_VARIANT, else the first variant found at start (one appearing later
        does not change it)."""
        return self.settings.default_variant or self._registry.first_variant

    def choose_variants(self, variant: str | None) -> list[str]:
        """The variants a request asks for: one by name, `all`, or the default."""
        served = self._registry.variants
        if not self._registry.known_variants:
            raise NotReady(self._registry.no_models_message())
        variant = variant or self.default_variant
        if variant == ALL_VARIANTS:
            if not served:
                raise NotReady(
                    "every model is unloaded: load one with "
                    "POST /v2/repository/models/<variant>/load."
                )
            return list(served)
        if self._registry.knows(variant):  # unloaded or failed: the registry says why if asked
            return [variant]
        raise BadRequest(
            f"unknown variant {variant!r}: choose one of {', '.join([*served, ALL_VARIANTS])}."
        )

    def choose_backend(self, backend: str | None) -> str:
        backend = backend or self.settings.default_backend
        if backend not in BACKENDS:
            raise BadRequest(f"unknown backend {backend!r}: choose one of {', '.join(BACKENDS)}.")
        return backend

    async def infer(self, request: InferenceRequest) -> InferenceAnswer:
        """One inference request, from its first byte to its answer: choose the variants and
        the backend (404 / 503 before any reading), read the images, admit them (503 before
        decoding), decode, scale, infer. All of it within MNIST_REQUEST_TIMEOUT_S (else 504,
        its queued work dropped), counted in flight and in the request metrics."""
        async with self._answering(request.name):
            version = parse_version(request.version)
            self.digit_verdicts.check_strict(request.strict)
            backend = self.choose_backend(request.backend)
            variants = self._chosen_variants(request, version)
            payload = await request.read_images(self._limits)
            precision = self._chosen_precision(request.precision(), backend, variants, version)
            admitted = self._admitted(payload.count * len(variants))
            async with admitted as admission, request.watch_client():
                decoded = await self._model_input(payload, request.whole)
                admission.grow((len(decoded.images) - payload.count) * len(variants))
                results, scores = await self._model_runs.run(
                    variants, backend, precision, decoded.images, version
                )
                decoded, results, scores = await self.digit_verdicts.verdicts(
                    decoded, results, scores, request.strict, request.whole
                )
        return InferenceAnswer(
            results, backend, decoded.images, decoded.failures, decoded.numbers,
            scores, self.digit_verdicts.threshold, decoded.digits_beside,
        )  # fmt: skip

    def _chosen_variants(self, request: InferenceRequest, version: int | None) -> list[str]:
        """The variants to run, each checked to serve `version` (NotFound or NotReady saying
        why otherwise)."""
        if request.model is not None:  # the protocol's one model: unknown is not found
            variants = [request.model]
        else:
            variants = self.choose_variants(request.variant)
        for variant in variants:
            self.loaded_model(variant, version)
        return variants

    def _chosen_precision(
        self, asked: str | None, backend: str, variants: list[str], version: int | None
    ) -> str | None:
        """The precision a request names (None: each model's default), checked to be known,
        runnable on `backend` and served by every chosen model (400 / 404 saying why)."""
        asked = check_precision(asked, backend)
        for variant in variants:
            self._model_runs.precision_of(self.loaded_model(variant, version), backend, asked)
        return asked

    async def _model_input(self, payload: ImagePayload, whole: bool) -> ModelInput:
        """The models' input, float32 (M, 28, 28) in [0, 1], and why each picture left out
        could not be read (none when `whole`: the first such picture fails the request)."""
        if payload.files:
            judge = self.digit_verdicts.judge
            decoded = await decode_files(payload.files, self._limits, payload.numbers, judge)
            digits = decoded.all_read() if whole else decoded.digits
            failures = {} if whole else decoded.failures
            return ModelInput(
                scale_pixels(digits), failures, decoded.numbers, decoded.digits_beside
            )
        if payload.model_input is not None:
            images = payload.model_input
        else:
            images = scale_pixels(payload.pixels)
        return ModelInput(images, {}, one_digit_each(images) if payload.numbers else None)

    @asynccontextmanager
    async def _admitted(self, image_inferences: int) -> AsyncIterator[Admitted]:
        """Room for `image_inferences` (images x variants) in the bounded queue until the
        answer, or Overloaded (503 with Retry-After) at once. Taken before decoding, so that a
        shed request costs no decoding; grown by the digits a number's picture holds."""
        admitted = Admitted(self._admission, image_inferences)
        try:
            yield admitted
        finally:
            self._admission.release(admitted.images)

    @property
    def at_capacity(self) -> bool:
        """The inference queue is full: requests are shed at the door, before anything is
        read (under a retry storm a shed request must cost next to nothing, or shedding alone
        would fill the event loop and starve the requests being served)."""
        return self._admission.full

    def shed_at_door(self, name: str | None) -> Overloaded:
        """The 503 (with Retry-After) for a request refused `at_capacity`, counted."""
        error = self._admission.overloaded()
        label = self.metric_label(name)
        self._metrics.request_shed(label)
        self._metrics.request_answered(label, error.status_code)
        return error

    def metric_label(self, name: str | None) -> str:
        """The variant label of a request's metrics: a known variant, `all`, else `other` (a
        label per misspelt name would grow the metrics without bound)."""
        name = name or self.default_variant
        return name if self._registry.knows(name) or name == ALL_VARIANTS else "other"

    @asynccontextmanager
    async def _answering(self, name: str | None) -> AsyncIterator[None]:
        """The scope of one inference request: shed at once when the queue is full, answered
        within MNIST_REQUEST_TIMEOUT_S (else 504), counted in flight (the batchers wait for
        company only when there is some) and in the request metrics."""
        started, status, label = time.perf_counter(), 500, self.metric_label(name)
        try:
            self._admission.check_room()
            async with asyncio.timeout(self.settings.request_timeout_s):
                with self._in_flight:
                    yield
            status = 200
        except TimeoutError:
            status = GatewayTimeout.status_code
            raise GatewayTimeout(
                f"the request was not answered within MNIST_REQUEST_TIMEOUT_S="
                f"{self.settings.request_timeout_s:g} s; its queued work was dropped. Retry "
                "with fewer images, or later."
            ) from None
        except ServiceError as error:
            status = error.status_code
            if isinstance(error, Overloaded):
                self._metrics.request_shed(label)
            raise
        finally:
            self._metrics.request_answered(label, status, time.perf_counter() - started)

    # -- helpers ------------------------------------------------------------------------------

    def loaded_model(self, name: str, version: int | None = None) -> LoadedModel:
        """The serving model `name` (at `version`): NotFound / NotReady saying why otherwise."""
        return self._registry.model(name, version)
