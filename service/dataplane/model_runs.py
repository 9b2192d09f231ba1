"""The chosen variants' models run on a request's images: each variant's model picked once
(a candidate takes its canary share when the request names no version), each in the precision
asked or its default, their batched answers gathered, the images counted, and the candidates'
shadow runs started beside them."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from service.dataplane.experiments import Experiments, Infer
from service.dataplane.inference import VariantResult
from service.dataplane.precision import precision_of
from service.metrics import Metrics
from service.repository.registry import ModelRegistry
from service.repository.variants import LoadedModel
from service.settings import Settings


class ModelRuns:
    def __init__(
        self,
        settings: Settings,
        registry: ModelRegistry,
        metrics: Metrics,
        experiments: Experiments,
    ) -> None:
        self._default_precision = settings.default_precision
        self._registry = registry
        self._metrics = metrics
        self._experiments = experiments

    def precision_of(self, model: LoadedModel, backend: str, asked: str | None) -> str:
        """The model file a request runs: the precision `asked`, or the model's default."""
        return precision_of(model, backend, asked, self._default_precision)

    async def run(
        self,
        variants: Sequence[str],
        backend: str,
        asked: str | None,
        images: np.ndarray,
        version: int | None,
    ) -> tuple[list[VariantResult], np.ndarray | None]:
        """Probabilities of every variant, each in the precision `asked` or its default, and
        the digit scores where the check ran folded into a model's session (else None). Each
        variant's model is picked once, here (a canary share by a candidate when the request
        names no version): a version swapped in meanwhile serves the next request."""
        candidates = [self._experiments.candidate(v, version, asked) for v in variants]
        models = [
            self._experiments.route(self._registry.model(variant, version), candidate)
            for variant, candidate in zip(variants, candidates, strict=True)
        ]
        precisions = [self.precision_of(model, backend, asked) for model in models]
        if len(models) == 1:  # the common case: no tasks to create and gather
            answers = [await self._registry.predict(models[0], backend, precisions[0], images)]
        else:
            answers = await asyncio.gather(
                *(
                    self._registry.predict(model, backend, precision, images)
                    for model, precision in zip(models, precisions, strict=True)
                )
            )
        for model, candidate, (probabilities, _) in zip(models, candidates, answers, strict=True):
            self._metrics.images_classified(model.variant, len(images))
            if candidate is not None and model is not candidate:
                self._experiments.mirror(
                    candidate, images, probabilities, self._inferer(backend, asked)
                )
        results = [
            VariantResult(model.variant, model.version, backend, precision, answer[0])
            for model, precision, answer in zip(models, precisions, answers, strict=True)
        ]
        return results, next((scores for _, scores in answers if scores is not None), None)

    def _inferer(self, backend: str, asked: str | None) -> Infer:
        async def infer(model: LoadedModel, images: np.ndarray) -> np.ndarray:
            precision = self.precision_of(model, backend, asked)
            return (await self._registry.predict(model, backend, precision, images))[0]

        return infer
