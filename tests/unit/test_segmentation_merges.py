"""Segmentation joins a digit broken in two (a thin pen's 0 open at the top, a 9's tail lifted
off its loop) when the pair looks more like one digit than the two look like one each, and keeps
a mark about a digit wide whole unless its pieces are far more convincing than it is."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from mnist_shared import merges
from mnist_shared.cuts import Reading
from mnist_shared.marks import Mark
from mnist_shared.merges import merge_broken
from mnist_shared.segmentation import read_number


def _mark(left: int, right: int) -> Mark:
    return Mark(left, 10, right, 50, np.ones((40, right - left), bool))


def _reading(scores: list[float]) -> Reading:
    """A judge answering `scores` (each mark alone, then each close pair joined)."""

    def judge(frames: np.ndarray) -> np.ndarray:
        assert len(frames) == len(scores)
        return np.array(scores, np.float32)

    return Reading(np.ones((60, 200), np.float32), judge, None)


def test_a_pair_that_looks_like_one_digit_together_is_joined():
    line = [_mark(10, 22), _mark(24, 36)]  # two halves, 2 pixels apart, 26 wide together
    (joined,) = merge_broken(line, digit_width=26.0, height=40.0, reading=_reading([0.3, 0.3, 0.6]))
    assert (joined.left, joined.right) == (10, 36) and joined.mask.sum() == 2 * 12 * 40


def test_two_digits_are_not_joined():
    line = [_mark(10, 22), _mark(24, 36)]  # each looks like a digit, the pair does not
    assert merge_broken(line, 26.0, 40.0, _reading([0.9, 0.9, 0.05])) == line
    # Even where the pair's score beats the pieces', one under CONVINCING is no digit.
    assert merge_broken(line, 26.0, 40.0, _reading([0.05, 0.05, 0.15])) == line


def test_only_close_neighbours_no_wider_than_a_digit_are_judged():
    far = [_mark(10, 22), _mark(40, 52)]  # 18 pixels apart: more than MERGE_GAP of 40
    wide = [_mark(10, 30), _mark(31, 52)]  # 42 wide together: more than MERGE_WIDTH digits

    def no_judge(frames: np.ndarray) -> np.ndarray:
        raise AssertionError("nothing should be judged")

    for line in (far, wide):
        assert merge_broken(line, 26.0, 40.0, Reading(np.ones((60, 200)), no_judge, None)) == line


def test_the_best_pair_is_joined_and_a_mark_joins_once():
    line = [_mark(10, 18), _mark(19, 27), _mark(28, 36)]
    # Singles 0.3 each; pair (0, 1) joined 0.5, pair (1, 2) joined 0.8: (1, 2) wins.
    joined = merge_broken(line, 26.0, 40.0, _reading([0.3, 0.3, 0.3, 0.5, 0.8]))
    assert [(m.left, m.right) for m in joined] == [(10, 18), (19, 36)]


def _broken(digit: np.ndarray) -> Image.Image:
    """An MNIST digit drawn at 4x on white paper with a one-pixel (at 28x28) break down its
    middle: its ink in two marks side by side, as a thin pen's strokes part."""
    big = np.asarray(Image.fromarray(digit).resize((112, 112), Image.Resampling.BICUBIC)).copy()
    columns = np.flatnonzero(big.max(axis=0) > 100)
    middle = (columns[0] + columns[-1]) // 2
    big[:, middle - 3 : middle + 3] = 0
    page = np.full((200, 300), 255, np.uint8)
    page[40:152, 90:202] = 255 - big
    return Image.fromarray(page)


@pytest.fixture(scope="module")
def judge():
    from concurrent.futures import ThreadPoolExecutor

    from devtools.committed import committed_models
    from service.runtime.digit_check import load_digit_check

    return load_digit_check(committed_models() / "digit_check", ThreadPoolExecutor(1)).judge


def test_broken_digits_are_read_as_one_with_the_committed_check(mnist, judge, monkeypatch):
    picks = [
        i for label in (0, 4, 6, 8, 9) for i in np.flatnonzero(mnist.test_labels == label)[:10]
    ]
    pictures = [_broken(mnist.test_images[i]) for i in picks]
    whole = sum(len(read_number(picture, judge)) == 1 for picture in pictures)
    monkeypatch.setattr(merges, "MERGE_GAP", -1.0)  # no pair is close enough: no merges
    without = sum(len(read_number(picture, judge)) == 1 for picture in pictures)
    assert without == 0
    assert whole >= 0.4 * len(pictures), f"{whole} of {len(pictures)} read as one digit"
