"""Segmentation's judgement of its own cuts: a mark that does not look like a digit, cut into
pieces that do not either, gives digits marked `doubtful` (the strokes of an "A" read as "11");
pieces that look like digits are not doubted; the doubt survives every later cut and merge."""

from __future__ import annotations

import numpy as np
from PIL import Image, ImageDraw

from mnist_shared.cuts import CONVINCING
from mnist_shared.marks import Mark
from mnist_shared.segmentation import read_number


def _zigzag() -> Image.Image:
    """One wide connected mark, about three digit widths wide."""
    picture = Image.new("L", (240, 120), 255)
    points = [(20, 100), (60, 20), (100, 100), (140, 20), (180, 100), (220, 20)]
    ImageDraw.Draw(picture).line(points, fill=0, width=7, joint="curve")
    return picture


def _judge(piece_score: float):
    """The whole mark (judged alone, first) scores 0.001; every piece `piece_score`."""

    def judge(frames: np.ndarray) -> np.ndarray:
        return np.full(len(frames), 0.001 if len(frames) == 1 else piece_score, np.float32)

    return judge


def test_pieces_that_do_not_look_like_digits_are_doubted():
    found = read_number(_zigzag(), _judge(CONVINCING * 0.75))
    assert len(found) >= 2 and all(digit.doubtful for digit in found)


def test_pieces_that_look_like_digits_are_not():
    found = read_number(_zigzag(), _judge(0.9))
    assert len(found) >= 2 and not any(digit.doubtful for digit in found)


def test_without_a_judge_nothing_is_doubted():
    found = read_number(_zigzag())
    assert found and not any(digit.doubtful for digit in found)


def test_the_doubt_is_carried_by_every_part_and_merge():
    doubted = Mark(0, 0, 4, 4, np.ones((4, 4), bool), doubtful=True)
    plain = Mark(4, 0, 8, 4, np.ones((4, 4), bool))
    assert doubted.columns(0, 2).doubtful and not plain.columns(0, 2).doubtful
    assert plain.merged(doubted).doubtful and doubted.merged(plain).doubtful
    assert not plain.merged(plain).doubtful
