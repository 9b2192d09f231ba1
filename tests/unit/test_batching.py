"""The micro-batcher on its own: merging, order, limits, and a failed batch retried request by
request."""

from __future__ import annotations

import asyncio
import threading
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

from service.errors import InferenceFailed
from service.runtime.batching import LONE_MAX_IMAGES, MicroBatcher
from service.runtime.in_flight import InFlight, InFlightBoard


def _run(coroutine):
    return asyncio.run(coroutine)


def _batcher(predict, max_batch_size=8, max_wait_s=0.01, sizes=None):
    executor = ThreadPoolExecutor(1)
    on_batch = sizes.append if sizes is not None else (lambda size: None)
    return MicroBatcher(
        predict, executor, max_batch_size=max_batch_size, max_wait_s=max_wait_s, on_batch=on_batch
    )


def test_merges_concurrent_requests_and_keeps_order():
    sizes: list[int] = []

    async def main():
        batcher = _batcher(lambda x: x * 2, sizes=sizes)
        batcher.start()
        inputs = [np.full((1 + i % 3, 2), i, dtype=np.float32) for i in range(10)]
        outputs = await asyncio.gather(*(batcher.predict(x) for x in inputs))
        await batcher.stop()
        return inputs, outputs

    inputs, outputs = _run(main())
    for x, y in zip(inputs, outputs, strict=True):
        np.testing.assert_array_equal(y, x * 2)
    assert sum(sizes) == sum(len(x) for x in inputs)
    assert max(sizes) <= 8 and len(sizes) < 10


def test_a_request_larger_than_a_batch_lets_others_run_between_its_parts():
    """20 images in batches of 8: queued a batch at a time, so that a request arriving while
    its first part runs is answered before its last part, not after all of it."""
    calls: list[tuple[float, int]] = []
    first_part_running, go_on = threading.Event(), threading.Event()

    def predict(x):
        calls.append((float(x[0, 0]), len(x)))
        if len(calls) == 1:
            first_part_running.set()
            go_on.wait(10)
        return x * 2

    async def main():
        batcher = _batcher(predict, max_wait_s=0)
        batcher.start()
        large = np.arange(20, dtype=np.float32)[:, None].repeat(2, axis=1)
        large_task = asyncio.create_task(batcher.predict(large))
        await asyncio.get_running_loop().run_in_executor(None, first_part_running.wait, 10)
        small_task = asyncio.create_task(batcher.predict(np.full((1, 2), -1, np.float32)))
        await asyncio.sleep(0)  # the small request queued while the first part runs
        go_on.set()
        answers = await asyncio.gather(large_task, small_task)
        await batcher.stop()
        return large, answers

    large, (large_answer, small_answer) = _run(main())
    np.testing.assert_array_equal(large_answer, large * 2)
    np.testing.assert_array_equal(small_answer, np.full((1, 2), -2))
    assert calls == [(0.0, 8), (-1.0, 1), (8.0, 8), (16.0, 4)]


def test_a_failed_batch_fails_every_waiting_request():
    calls = []

    def predict(x):
        calls.append(len(x))
        raise RuntimeError("GPU on fire")

    async def main():
        batcher = _batcher(predict, max_wait_s=0.02)
        batcher.start()
        results = await asyncio.gather(
            *(batcher.predict(np.zeros((1, 2))) for _ in range(5)), return_exceptions=True
        )
        await batcher.stop()
        return results

    results = _run(main())
    assert all(isinstance(r, InferenceFailed) for r in results)
    assert "inference failed" in results[0].message and "RuntimeError" in results[0].message
    assert calls == [5, 1, 1, 1, 1, 1]  # the batch, then each request alone once


def test_one_bad_request_fails_alone_and_its_neighbours_are_answered():
    calls = []

    def predict(x):
        calls.append(len(x))
        if np.isnan(x).any():
            raise ValueError("NaN in the batch")
        return x * 2

    async def main():
        batcher = _batcher(predict, max_wait_s=0.02)
        batcher.start()
        inputs = [np.full((1, 2), np.nan if i == 2 else i) for i in range(5)]
        results = await asyncio.gather(
            *(batcher.predict(x) for x in inputs), return_exceptions=True
        )
        await batcher.stop()
        return inputs, results

    inputs, results = _run(main())
    assert isinstance(results[2], InferenceFailed) and "ValueError" in results[2].message
    for i in (0, 1, 3, 4):
        np.testing.assert_array_equal(results[i], inputs[i] * 2)
    assert calls == [5, 1, 1, 1, 1, 1]


def test_batching_off_runs_each_request_alone():
    sizes: list[int] = []

    async def main():
        batcher = _batcher(lambda x: x + 1, max_batch_size=1, sizes=sizes)
        batcher.start()
        await asyncio.gather(*(batcher.predict(np.zeros((1, 2))) for _ in range(6)))
        await batcher.stop()

    _run(main())
    assert sizes == [1] * 6


def test_stop_fails_queued_requests():
    async def main():
        batcher = _batcher(lambda x: x, max_wait_s=10)
        batcher.start()
        pending = asyncio.ensure_future(batcher.predict(np.zeros((1, 2))))
        await asyncio.sleep(0.01)
        await batcher.stop()
        with pytest.raises(InferenceFailed, match="shutting down"):
            await asyncio.wait_for(pending, 1)

    _run(main())


def _run_requests(
    predict,
    inline_lone_requests: bool,
    plan: list[list[int]],
    sizes: list[int],
    in_flight: InFlight | None = None,
    **batcher_args,
):
    """Rounds of concurrent requests (each round a list of image counts), each request counted
    in flight as the data plane counts it (`in_flight`, else a fresh count); returns every
    answer."""
    in_flight = in_flight or InFlight()

    async def main():
        executor = ThreadPoolExecutor(1, thread_name_prefix="inference")
        batcher = MicroBatcher(
            predict, executor, max_batch_size=8, max_wait_s=0.01, on_batch=sizes.append,
            in_flight=in_flight, inline_lone_requests=inline_lone_requests, **batcher_args,
        )  # fmt: skip
        batcher.start()

        async def request(count: int):
            with in_flight:
                return await batcher.predict(np.ones((count, 2), np.float32))

        answers = [await asyncio.gather(*map(request, counts)) for counts in plan]
        await batcher.stop()
        executor.shutdown()
        return answers

    return _run(main())


def test_a_lone_small_request_is_inferred_on_the_event_loop_and_company_is_batched():
    threads: list[str] = []

    def predict(x):
        threads.append(threading.current_thread().name)
        return x * 2

    sizes: list[int] = []
    plan = [[1], [LONE_MAX_IMAGES], [LONE_MAX_IMAGES + 1], [1, 1, 1]]
    answers = _run_requests(predict, True, plan, sizes)
    # Alone: on the loop. Too big to stall the loop: the inference thread. Three requests
    # started in the same turn of the loop: none is alone, all three merged in one batch.
    assert threads == ["MainThread", "MainThread", "inference_0", "inference_0"]
    assert sizes == [1, LONE_MAX_IMAGES, LONE_MAX_IMAGES + 1, 3]
    for counts, round_answers in zip(plan, answers, strict=True):
        assert [len(a) for a in round_answers] == counts
        assert all((a == 2).all() for a in round_answers)


def test_the_lone_session_serves_only_while_no_other_worker_has_a_request(tmp_path):
    calls: list[str] = []
    this_worker, sibling = InFlight(InFlightBoard(tmp_path)), InFlight(InFlightBoard(tmp_path))

    def run(plan: list[list[int]]) -> None:
        _run_requests(
            lambda x: calls.append("batch session") or x, True, plan, [],
            predict_lone=lambda x: calls.append("lone session") or x, in_flight=this_worker,
        )  # fmt: skip

    try:
        run([[1]])
        assert calls == ["lone session"]
        calls.clear()
        with sibling:  # another worker is busy: its cores are not idle
            run([[1]])
        assert calls == ["batch session"]
        calls.clear()
        run([[1, 1]])  # company in this worker: batched in the inference thread
        assert calls == ["batch session"]
    finally:
        this_worker.close()
        sibling.close()


def test_with_inline_off_even_a_lone_request_goes_to_the_inference_thread():
    threads: list[str] = []

    def predict(x):
        threads.append(threading.current_thread().name)
        return x

    _run_requests(predict, False, [[1], [1]], [])
    assert threads == ["inference_0", "inference_0"]


def test_a_lone_request_that_fails_on_the_loop_gets_inference_failed():
    def predict(x):
        raise RuntimeError("bad weights")

    with pytest.raises(InferenceFailed, match=r"inference failed .* \(RuntimeError\); retry"):
        _run_requests(predict, True, [[1]], [])
