"""Segmentation's cost is bounded by the picture's pixels and the digits it may read, and it
stops when asked (issue 34's attacks: dense dot grids, cascades of bars merging one at a time,
many small digits).

Costs are counted, not timed: `Counting` is the stop signal, and segmentation checks it at
every step of every loop, so its count of checks is the count of steps. Where a time is
compared, it is against a baseline measured in the same test.
"""

from __future__ import annotations

import contextlib
import io
import threading
import time

import cv2
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image

from devtools.pictures.hostile import dot_grid, many_small_digits, wide_strokes
from devtools.pictures.numbers import sample_numbers
from mnist_shared.cuts import JUDGED_BATCH
from mnist_shared.ink import NoDigitFound
from mnist_shared.marks import MAX_MARKS, TooManyMarks, WorkStopped, find_marks
from mnist_shared.segmentation import read_number


class Counting(threading.Event):
    """A stop signal that counts how often it is looked at, and sets itself after `after`."""

    def __init__(self, after: int | None = None) -> None:
        super().__init__()
        self.checks, self._after = 0, after

    def is_set(self) -> bool:
        self.checks += 1
        if self._after is not None and self.checks > self._after:
            self.set()
        return super().is_set()


class CountingJudge:
    """Scores every piece 0.1 (nothing looks like one digit: every wide mark is cut as far as
    the judged cut goes), counting the pieces and the calls."""

    def __init__(self) -> None:
        self.frames = self.calls = 0

    def __call__(self, framed: np.ndarray) -> np.ndarray:
        self.frames += len(framed)
        self.calls += 1
        return np.full(len(framed), 0.1, np.float32)


def _read(data: bytes, **kwargs) -> list:
    return read_number(Image.open(io.BytesIO(data)), **kwargs)


def _cascade(side: int, columns: int) -> np.ndarray:
    """An ink map: columns of 1x3 bars one pixel apart (each merges with its column's others
    one at a time, the merged mark reaching the next), beside dots of the same ink."""
    ink = np.zeros((side, side), np.float32)
    ink[1::6, 1::6] = 1.0
    for column in range(columns):
        x = 3 + column * 8
        ink[:, x] = 0
        for top in range(0, side - 3, 4):
            ink[top : top + 3, x] = 1.0
    return ink


def test_a_dense_dot_grid_is_refused_before_any_merging():
    data = dot_grid(320, spacing=3)
    assert len(data) < 1024
    stop = Counting()
    with pytest.raises(TooManyMarks, match=r"holds \d{4,5} separate marks .* at most 200"):
        _read(data, judge=CountingJudge(), stop=stop)
    assert stop.checks <= 2  # refused on the marks' count: no merge step ran


@pytest.mark.parametrize(("side", "columns"), [(40, 2), (60, 4), (70, 1)])
def test_cascading_bars_merge_in_steps_bounded_by_the_marks(side, columns):
    ink = _cascade(side, columns)
    components = _component_count(ink)
    assert components <= MAX_MARKS
    stop = Counting()
    merged = find_marks(ink, 0.1, stop)
    # Each column of bars became one mark, the dots stayed apart.
    assert len(merged) == components - columns * (len(range(0, side - 3, 4)) - 1)
    # One step per mark, one more per merge (fewer merges than marks): never quadratic.
    assert stop.checks <= 2 * components + 1


def test_too_many_marks_are_refused_before_merging():
    ink = _cascade(160, 4)
    stop = Counting()
    with pytest.raises(TooManyMarks, match=rf"holds {_component_count(ink)} separate marks"):
        find_marks(ink, 0.1, stop)
    assert stop.checks == 0


def test_wide_marks_are_judged_within_the_digit_budget():
    """Marks as wide as many digits, none looking like one: the pieces tried grow with the
    digits the picture may hold, and past the budget it is refused before any is tried."""
    data = wide_strokes(3)
    judge = CountingJudge()
    found = _read(data, judge=judge, max_digits=64)
    assert 1 <= len(found) <= 64
    assert judge.frames <= 40 * 64  # about 32 pieces a digit width
    assert judge.calls <= 6 * 2 + judge.frames // JUDGED_BATCH + 6
    judge = CountingJudge()
    with pytest.raises(TooManyMarks, match="more than the 5 left to read"):
        _read(data, judge=judge, max_digits=5)
    assert judge.frames == 0


def test_many_small_digits_are_refused_past_the_budget():
    data = many_small_digits(320, cell=24)  # 78 rings
    with pytest.raises(TooManyMarks, match=r"holds about (\d+) digits, more than the 10"):
        _read(data, max_digits=10)
    assert len(_read(data, max_digits=78)) == 78


def test_a_set_stop_signal_ends_the_reading_at_its_next_check():
    data = wide_strokes(3)
    whole = Counting()
    _read(data, judge=CountingJudge(), stop=whole)
    for after in (1, whole.checks // 3, whole.checks - 1):
        stop = Counting(after=after)
        with pytest.raises(WorkStopped):
            _read(data, judge=CountingJudge(), stop=stop)
        assert stop.checks == after + 1


def test_the_worst_picture_costs_little_more_than_an_ordinary_number(mnist):
    """CPU of the hostile shapes against a 6-digit number on a photo, measured in this test."""
    (number,) = sample_numbers(mnist.test_images, mnist.test_labels, 1, seed=3, lengths=(6,))
    baseline = _cpu_s(lambda: _read(number.picture.data, judge=CountingJudge()))
    for data in (
        dot_grid(320, 3),
        dot_grid(120, 3, dot=2),
        wide_strokes(3),
        many_small_digits(320),
    ):
        cost = _cpu_s(lambda data=data: _read(data, judge=CountingJudge()))
        assert cost <= 40 * baseline + 0.05, (cost, baseline)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.integers(0, 2**32 - 1),
    st.sampled_from([40, 120, 320]),
    st.floats(0.002, 0.2),
    st.integers(1, 6),
)
def test_random_ink_costs_steps_bounded_by_marks_and_digits(seed, side, density, dot):
    """Any ink: refused, no digit, or read in a number of steps (stop checks) and judged
    pieces bounded by the marks and the digit budget, never by the pixels squared."""
    rng = np.random.default_rng(seed)
    pixels = np.full((side, side), 255, np.uint8)
    for y, x in rng.integers(0, side - dot, (round(density * side * side / dot**2), 2)):
        pixels[y : y + dot, x : x + rng.integers(1, 4 * dot)] = 0
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "PNG")
    stop, judge = Counting(), CountingJudge()
    try:
        found = _read(buffer.getvalue(), judge=judge, stop=stop, max_digits=64)
    except (TooManyMarks, NoDigitFound):
        found = []
    assert len(found) <= 64
    assert judge.frames <= 40 * 64 + 64
    assert stop.checks <= 3 * MAX_MARKS + judge.frames + judge.calls + 8


def _component_count(ink: np.ndarray) -> int:
    return cv2.connectedComponents((ink > 0.1).astype(np.uint8))[0] - 1


def _cpu_s(work) -> float:
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        with contextlib.suppress(TooManyMarks, NoDigitFound):
            work()
        best = min(best, time.process_time() - started)
    return best
