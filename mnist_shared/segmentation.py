"""Every digit in a picture of a number, in reading order, each framed as `/predict` frames one.

`find_digits` reads the picture's ink as `ink.ink_map` does (paper, light, desk and shadows
removed) but keeps every mark, not only the largest, then:

1. Marks (`marks.find_marks`): connected components of ink; specks (tiny against the
   picture's typical mark), rule lines and strips along an edge are dropped; marks whose
   columns overlap mostly, in the same line, are one digit (a 5's hat, a 7's bar drawn apart,
   a 4 in two strokes).
2. Lines: marks whose vertical spans overlap are on one line; lines top to bottom.
3. Touching digits: a mark much wider than its line's digits are tall is cut into as many
   digits as its width holds, each cut at the column with the least ink near where an even
   split would put it.
4. Each digit's ink is framed by `preprocessing.frame_digit`, exactly as a lone digit is.

Boxes are in the upright picture's pixels (its EXIF orientation applied): x, y, width, height.

The cost is bounded by the picture's pixels and by `max_digits` (docs/reliability.md): at most
MAX_MARKS marks are considered, the digits a line's marks would make are counted before any is
cut (past `max_digits`: TooManyMarks), a judged cut tries at most JUDGED_SPANS pieces, and
`stop` (an Event) is checked in every loop, so that a request that times out stops at once.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass
from threading import Event

import numpy as np
from PIL import ExifTags, Image

from mnist_shared.ink import BLOB_LEVEL, NoDigitFound, all_marks
from mnist_shared.marks import Mark, TooManyMarks, check_stop, find_marks
from mnist_shared.preprocessing import frame_digit, reduce_for_digit

NO_NUMBER = (
    "no digit found: the picture has no ink that stands out from its background. Send a picture "
    "of a handwritten number, dark on light or light on dark."
)
# Digits one reading may find; the service passes what is left of a request's budget.
MAX_DIGITS = 64
# Marks whose row ranges overlap by this share of the shorter one are on one line.
SAME_LINE_OVERLAP = 0.3
# Handwritten digits are about this wide for their height (MNIST's average, 0 and 1 aside);
# a mark wider than TOUCHING times that holds several digits.
DIGIT_ASPECT = 0.65
TOUCHING = 2.0
# A mark shorter than this share of its line's digits is a fragment of its nearest neighbour
# (a 2's detached base, a 5's hat drawn off to the side).
FRAGMENT = 0.55
# A cut is looked for within this share of a digit's width around the even split.
CUT_REACH = 0.35
# With a judge (the digit check): a mark at least this many digit widths wide and scoring
# under ONE_DIGIT is tried cut into 2 .. its width's worth + 1 pieces ...
JUDGED_WIDTH = 0.8
ONE_DIGIT = 0.5
# ... when it is at most this many digit widths wide (wider, it is cut by width alone: the
# pieces tried grow with the width, about 32 a digit width).
JUDGED_MAX_WIDTH = 10.0
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
class FoundDigit:
    digit: np.ndarray  # uint8 (28, 28), framed as /predict frames one digit
    box: tuple[int, int, int, int]  # x, y, width, height in the upright picture's pixels
    line: int  # 0 for the first line of the picture, top to bottom


@dataclass(frozen=True)
class _Reading:
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


def read_number(
    image: Image.Image,
    judge: Judge | None = None,
    stop: Event | None = None,
    max_digits: int = MAX_DIGITS,
) -> list[FoundDigit]:
    """Every digit of a picture, as decoded by Pillow, in reading order (lines top to bottom,
    each left to right); with a `judge`, touching digits are told from one digit by it.
    Raises NoDigitFound when there is none, TooManyMarks past MAX_MARKS marks or `max_digits`
    digits, WorkStopped once `stop` is set."""
    size = upright_size(image)
    return find_digits(reduce_for_digit(image), size, judge, stop, max_digits)


def find_digits(
    reduced: Image.Image,
    size: tuple[int, int],
    judge: Judge | None = None,
    stop: Event | None = None,
    max_digits: int = MAX_DIGITS,
) -> list[FoundDigit]:
    """`read_number` of a picture already reduced by `preprocessing.reduce_for_digit`, whose
    upright size was `size` (width, height): the boxes are in those pixels."""
    try:
        ink = all_marks(reduced)
    except NoDigitFound:  # its message asks for one digit
        raise NoDigitFound(NO_NUMBER) from None
    check_stop(stop)
    marks = find_marks(ink, BLOB_LEVEL, stop)
    if not marks:
        raise NoDigitFound(NO_NUMBER)
    reading, lines = _Reading(ink, judge, stop), _lines(marks)
    _check_digit_count(lines, max_digits)
    scale_x, scale_y = size[0] / ink.shape[1], size[1] / ink.shape[0]
    found = []
    for line_number, line in enumerate(lines):
        for mark in _attach_fragments(_split_touching(line, reading), stop):
            check_stop(stop)
            box = (
                round(mark.left * scale_x), round(mark.top * scale_y),
                round(mark.width * scale_x), round(mark.height * scale_y),
            )  # fmt: skip
            try:
                digit = frame_digit(mark.ink(ink))
            except NoDigitFound:
                continue
            found.append(FoundDigit(digit, box, line_number))
    if not found:
        raise NoDigitFound(NO_NUMBER)
    _check_found(len(found), max_digits)
    return found


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the picture once its EXIF orientation is applied."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _check_digit_count(lines: list[list[Mark]], max_digits: int) -> None:
    """TooManyMarks if the lines' marks would make more than `max_digits` digits once cut as
    wide marks are cut: before any cutting, which costs in proportion to that count."""
    estimate = 0
    for line in lines:
        digit_width = _digit_width(line)
        estimate += sum(max(1, round(mark.width / digit_width)) for mark in line)
    _check_found(estimate, max_digits)


def _check_found(count: int, max_digits: int) -> None:
    if count > max_digits:
        raise TooManyMarks(
            f"the picture holds about {count} digits, more than the {max_digits} left to read "
            "(MNIST_MAX_DIGITS_PER_REQUEST counts the digits of all a request's pictures). "
            "Send the number alone, cropped to it, or fewer pictures a request."
        )


def _digit_width(line: list[Mark]) -> float:
    return DIGIT_ASPECT * float(np.median([mark.height for mark in line]))


def _lines(marks: list[Mark]) -> list[list[Mark]]:
    """Marks grouped into lines (row ranges overlapping), top to bottom, each left to right."""
    lines: list[list[Mark]] = []
    extents: list[tuple[int, int]] = []  # each line's top and bottom
    for mark in sorted(marks, key=lambda m: (m.top + m.bottom) / 2):
        for index, (top, bottom) in enumerate(extents):
            if _overlap(top, bottom, mark.top, mark.bottom) >= SAME_LINE_OVERLAP * min(
                mark.height, bottom - top
            ):
                lines[index].append(mark)
                extents[index] = (min(top, mark.top), max(bottom, mark.bottom))
                break
        else:
            lines.append([mark])
            extents.append((mark.top, mark.bottom))
    return [sorted(line, key=lambda m: m.left) for line in lines]


def _attach_fragments(line: list[Mark], stop: Event | None) -> list[Mark]:
    """The line's short marks merged into their horizontally nearest neighbours."""
    height = float(np.median([mark.height for mark in line]))
    marks = list(line)
    while len(marks) > 1:
        check_stop(stop)
        short = [m for m in marks if m.height < FRAGMENT * height]
        if not short:
            break
        fragment = min(short, key=lambda m: m.height)
        others = [m for m in marks if m is not fragment]
        nearest = min(others, key=lambda m: _gap(m.left, m.right, fragment.left, fragment.right))
        marks = [m for m in others if m is not nearest] + [nearest.merged(fragment)]
    return sorted(marks, key=lambda m: m.left)


def _gap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(start_a - end_b, start_b - end_a, 0)


def _split_touching(line: list[Mark], reading: _Reading) -> list[Mark]:
    """Each mark of the line, cut into several where it is too wide for one digit, or (with a
    judge) where it does not look like one digit and its pieces do."""
    digit_width = _digit_width(line)
    pieces = []
    for mark in line:
        check_stop(reading.stop)
        widths = mark.width / digit_width
        if reading.judge is not None and JUDGED_WIDTH <= widths <= JUDGED_MAX_WIDTH:
            pieces += _judged_cut(mark, digit_width, reading)
        elif widths < TOUCHING:
            pieces.append(mark)
        else:
            pieces += _cut(mark, max(2, round(widths)), reading.ink)
    return pieces


def _judged_cut(mark: Mark, digit_width: float, reading: _Reading) -> list[Mark]:
    """The mark whole if it looks like one digit; else cut where its pieces look most like
    digits together: among columns a CUT_STEPS-th of a digit apart, pieces PIECE_WIDTHS digit
    widths wide, the cuts with the highest sum of the log of each piece's score."""
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
    best: dict[int, tuple[float, int]] = {0: (0.0, 0)}  # bound -> (best total, previous bound)
    for (i, j), score in sorted(zip(spans, scores, strict=True)):
        if i in best and (j not in best or best[i][0] + score > best[j][0]):
            best[j] = (best[i][0] + float(score), i)
    cuts, at = [], last
    while (at := best[at][1]) > 0:
        cuts.append(bounds[at])
    return _pieces(mark, sorted(cuts))


def _cut(mark: Mark, count: int, ink: np.ndarray) -> list[Mark]:
    """`mark` cut into `count` pieces at the columns with the least ink near even splits."""
    profile = mark.ink(ink)[1:-1, 1:-1].sum(axis=0)
    step, reach = mark.width / count, max(1, round(CUT_REACH * mark.width / count))
    cuts = [0]
    for index in range(1, count):
        centre = round(index * step)
        low, high = max(cuts[-1] + 1, centre - reach), min(mark.width - 1, centre + reach)
        cuts.append(low + int(np.argmin(profile[low : high + 1])) if high >= low else centre)
    return _pieces(mark, cuts[1:])


def _pieces(mark: Mark, cuts: list[int]) -> list[Mark]:
    """`mark` cut at these columns (counted from its left edge, increasing)."""
    spans = [mark.columns(start, end) for start, end in itertools.pairwise([0, *cuts, mark.width])]
    return [piece for piece in spans if piece is not None]


def _overlap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(0, min(end_a, end_b) - max(start_a, start_b))
