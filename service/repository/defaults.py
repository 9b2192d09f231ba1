"""What requests naming no version get, per variant: the promotion gate (`mnist_shared.promotion`)
over the versions on disk, an operator's choice (`serving.json`) over it, and the gate sample's
second opinion on a version its manifest promotes; and so which versions must stay loaded."""

from __future__ import annotations

import functools
import logging
from pathlib import Path

import numpy as np

from mnist_shared.manifest import FP32, Manifest
from mnist_shared.preprocessing import scale_pixels
from mnist_shared.promotion import choose_among, load_gate_sample, sample_reasons
from service.metrics import Metrics
from service.repository.variants import VariantRecord
from service.repository.version_policy import VersionPolicy
from service.runtime.backends import Backend
from service.runtime.folded_check import split_digit_scores
from service.settings import Settings

logger = logging.getLogger(__name__)
SAMPLE_BATCH = 8  # gate sample pictures a session run: the batches the service runs anyway


class DefaultVersions:
    def __init__(self, settings: Settings, metrics: Metrics, policy: VersionPolicy) -> None:
        self._settings, self._metrics, self._policy = settings, metrics, policy
        self._gate_sample = load_gate_sample(settings.models_dir)

    def choose(self, record: VariantRecord, on_disk: list[int], variant_dir: Path) -> None:
        """The version requests naming none get, by the promotion gate (`promotion`), among
        the versions that did not fail (and, with a `specific` policy, that it names)."""
        usable = [version for version in on_disk if version not in record.failures]
        if self._policy.latest is None:
            usable = [version for version in usable if version in self._policy.specific]
        settings = self._settings
        chosen = choose_among(
            variant_dir,
            usable,
            always=settings.promotion == "always",
            tolerance_points=settings.promotion_tolerance,
            recheck=functools.partial(self._recheck, record),
        )
        for version in chosen.verdicts.keys() - record.verdicts.keys():
            if not chosen.verdicts[version].passed:
                logger.warning("%s version %d is a candidate: %s", record.name, version,
                               chosen.verdicts[version].summary())  # fmt: skip
        if chosen.note and chosen.note != record.chosen.note:
            logger.warning("%s: %s", record.name, chosen.note)
        record.chosen = chosen
        self._metrics.candidates.labels(variant=record.name).set(len(record.candidates))

    def sample_accuracy(self, backends: list[Backend]) -> float | None:
        """A loading version's fp32 accuracy on the gate sample (in its loading thread)."""
        if self._gate_sample is None:
            return None
        images, labels = self._gate_sample
        (fp32,) = [backend for backend in backends if backend.precision == FP32]
        # A batch at a time: onnxruntime's arena grows to the largest batch a session ever ran
        # and keeps it (1,000 pictures at once held hundreds of MB per session).
        digits = []
        for start in range(0, len(images), SAMPLE_BATCH):
            answer = fp32.predict(scale_pixels(images[start : start + SAMPLE_BATCH]))
            digits.append(split_digit_scores(answer)[0].argmax(axis=1))
        return float(np.mean(np.concatenate(digits) == labels))

    def _recheck(self, record: VariantRecord, new: Manifest, default: Manifest) -> list[str]:
        """The gate sample's second opinion on a version its manifest promotes, once both are
        loaded (a version is loaded before it can become the default)."""
        measured = {
            version: model.sample_accuracy
            for version, model in record.serving.items()
            if model.sample_accuracy is not None
        }
        if self._gate_sample is None or not {new.version, default.version} <= measured.keys():
            return []
        return sample_reasons(
            (new.version, measured[new.version]),
            (default.version, measured[default.version]),
            len(self._gate_sample[1]),
            self._settings.promotion_tolerance,
        )

    def wanted(self, record: VariantRecord, on_disk: list[int]) -> list[int]:
        """The versions to serve: the policy's, the default, and the default before it (the
        one the gate compared it with, or the one an operator's choice replaced): the gate
        sample measures both, and a rollback serves at once."""
        wanted = set(self._policy.select(on_disk, failed=record.failures))
        choice, verdict = record.chosen.choice, record.verdicts.get(record.default or 0)
        before = choice.previous if choice else (verdict.against if verdict else None)
        for version in (record.default, before):
            if version in on_disk and version not in record.failures:
                wanted.add(version)
        return sorted(wanted)
