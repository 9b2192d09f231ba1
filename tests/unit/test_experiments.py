"""Shadow runs are bounded: skipped while the inference queue is busy, also when it fills
between the request and the run, and never two at once for a variant."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace

import numpy as np
from prometheus_client import CollectorRegistry

from service.dataplane.admission import Admission
from service.dataplane.experiments import Experiments
from service.metrics import Metrics


def _experiments(admission: Admission) -> Experiments:
    settings = SimpleNamespace(canary_percent=0.0, shadow=True)
    return Experiments(settings, admission, Metrics(CollectorRegistry()), lambda variant: None)


def test_a_queue_filled_before_the_shadow_run_skips_it_and_frees_the_variant():
    candidate = SimpleNamespace(variant="group", version=4)
    images, answer = np.zeros((2, 28, 28), np.float32), np.eye(10, dtype=np.float32)[:2]
    runs = []

    async def infer(model, pictures):
        runs.append(len(pictures))
        return answer

    async def main():
        admission = Admission(max_queued_images=8)
        experiments = _experiments(admission)
        experiments.mirror(candidate, images, answer, infer)
        admission.admit(8)  # the queue fills before the shadow task starts
        await _settled(experiments)
        record = experiments.describe()["candidates"]["group/4"]
        assert record["shadow_skipped"] == 1 and runs == []
        admission.release(8)
        experiments.mirror(candidate, images, answer, infer)
        experiments.mirror(candidate, images, answer, infer)  # one already under way: skipped
        await _settled(experiments)
        record = experiments.describe()["candidates"]["group/4"]
        assert runs == [2] and record["shadow_requests"] == 1 and record["shadow_skipped"] == 2
        assert record["agreement"] == 1.0 and admission.queued == 0
        await experiments.close()

    asyncio.run(main())


async def _settled(experiments: Experiments) -> None:
    """Until the shadow runs started so far have finished (each needs a turn of the loop)."""
    while experiments._tasks:
        await asyncio.sleep(0)
