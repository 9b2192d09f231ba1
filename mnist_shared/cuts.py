"""Cutting a mark that holds several digits: by width alone, or judged by the digit check.

By width: into as many pieces as the mark's width holds digits, each cut at the column with the
least ink near an even split. Judged (with the service's digit check as the judge): the mark
whole if it looks like one digit, else cut where its pieces look most like digits together;
pieces that do not (the strokes of an "A") are marked `doubtful`. `stop` is checked in every
loop and between the judge's batches (`segmentation`'s bounds).
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event

import numpy as np

from mnist_shared.ink import NoDigitFound
from mnist_shared.marks import Mark, check_stop
from mnist_shared.preprocessing import frame_digit

# A cut is looked for within this share of a digit's width around the even split.
CUT_REACH = 0.35
# With a judge (the digit check): a mark at least this many digit widths wide and scoring
# under ONE_DIGIT is tried cut into 2 .. its width's worth + 1 pieces ...
JUDGED_WIDTH = 0.8
ONE_DIGIT = 0.5
# ... when it is at most this many digit widths wide (wider, it is cut by width alone: the
# pieces tried grow with the width, about 32 a digit width).
JUDGED_MAX_WIDTH = 10.0
# Cut so, it gives digits only if each piece scores at least this (else they are `doubtful`).
CONVINCING = 0.2
# In a mark under NARROW_MARK digit widths wide, a piece narrower than a digit costs this much
# log-score per digit width it lacks: the check alone scores the halves of a 4 or an open 0
# higher than the whole (0.93 and 0.71 against 0.35), and a mark about a digit wide is far
# more often one digit than two. Wider marks hold several digits, 1s and 7s among them.
NARROW_PIECE = 1.0
NARROW_MARK = 1.5
# Judged cuts are looked for every CUT_STEPS-th of a digit's width, making pieces between
# these shares of a digit's width wide.
CUT_STEPS = 5
PIECE_WIDTHS = (0.3, 1.6)
# The judge scores at most this many framed pieces a call (about 12 ms), `stop` checked between.
JUDGED_BATCH = 128

# Framed digits, uint8 (N, 28, 28) -> how much each looks like one digit, 0..1: the service's
# digit check (`service.runtime.digit_check`), which tells two touching digits from one.
Judge = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class Reading:
    """What one reading works with: the ink map, the judge, the stop signal."""

    ink: np.ndarray
    judge: Judge | None
    stop: Event | None

    def framed(self, mark: Mark | None) -> np.ndarray:
        """The mark framed as a digit; blank when it holds none."""
        if mark is None:
            return np.zeros((28, 28), np.uint8)
        try:
            return frame_digit(mark.ink(self.ink))
        except NoDigitFound:
            return np.zeros((28, 28), np.uint8)

    def scores(self, frames: np.ndarray) -> np.ndarray:
        """The judge's scores of framed digits, JUDGED_BATCH at a time."""
        assert self.judge is not None
        scores = []
        for start in range(0, len(frames), JUDGED_BATCH):
            check_stop(self.stop)
            scores.append(self.judge(frames[start : start + JUDGED_BATCH]))
        return np.concatenate(scores)


def judged_cut(mark: Mark, digit_width: float, reading: Reading) -> list[Mark]:
    """The mark whole if it looks like one digit; else cut where its pieces look most like
    digits together: among columns a CUT_STEPS-th of a digit apart, pieces PIECE_WIDTHS digit
    widths wide, the cuts with the highest sum of the log of each piece's score, less
    NARROW_PIECE for each digit width a piece lacks."""
    whole = reading.scores(reading.framed(mark)[None])[0]
    if whole >= ONE_DIGIT:
        return [mark]
    step = max(1, round(digit_width / CUT_STEPS))
    bounds = [*range(0, mark.width, step), mark.width]
    last = len(bounds) - 1
    low, high = (share * digit_width for share in PIECE_WIDTHS)
    spans = [
        (i, j)
        for i in range(last)
        for j in range(i + 1, last + 1)
        if low <= bounds[j] - bounds[i] <= high and (i, j) != (0, last)
    ]
    frames = []
    for i, j in spans:
        check_stop(reading.stop)
        frames.append(reading.framed(mark.columns(bounds[i], bounds[j])))
    if not frames:
        return [mark]
    spans.append((0, last))  # the whole mark, judged above
    scores = np.log(np.maximum(np.append(reading.scores(np.stack(frames)), whole), 1e-6))
    widths = np.array([bounds[j] - bounds[i] for i, j in spans]) / digit_width
    narrow = NARROW_PIECE if mark.width < NARROW_MARK * digit_width else 0.0
    weighed = scores - narrow * np.maximum(0.0, 1.0 - widths)
    best: dict[int, tuple[float, int]] = {0: (0.0, 0)}  # bound -> (best total, previous bound)
    for (i, j), score in sorted(zip(spans, weighed, strict=True)):
        if i in best and (j not in best or best[i][0] + score > best[j][0]):
            best[j] = (best[i][0] + float(score), i)
    path, at = [last], last
    while (at := best[at][1]) > 0:
        path.append(at)
    pieces = pieces_of(mark, sorted(bounds[at] for at in path[1:]))
    if len(path) == 1:
        return pieces
    chosen = dict(zip(spans, scores, strict=True))
    spans_taken = itertools.pairwise([0, *reversed(path)])
    convincing = min(chosen[span] for span in spans_taken) >= np.log(CONVINCING)
    return pieces if convincing else [dataclasses.replace(p, doubtful=True) for p in pieces]


def cut_evenly(mark: Mark, count: int, ink: np.ndarray) -> list[Mark]:
    """`mark` cut into `count` pieces at the columns with the least ink near even splits."""
    profile = mark.ink(ink)[1:-1, 1:-1].sum(axis=0)
    step, reach = mark.width / count, max(1, round(CUT_REACH * mark.width / count))
    cuts = [0]
    for index in range(1, count):
        centre = round(index * step)
        low, high = max(cuts[-1] + 1, centre - reach), min(mark.width - 1, centre + reach)
        cuts.append(low + int(np.argmin(profile[low : high + 1])) if high >= low else centre)
    return pieces_of(mark, cuts[1:])


def pieces_of(mark: Mark, cuts: list[int]) -> list[Mark]:
    """`mark` cut at these columns (counted from its left edge, increasing)."""
    spans = [mark.columns(start, end) for start, end in itertools.pairwise([0, *cuts, mark.width])]
    return [piece for piece in spans if piece is not None]
