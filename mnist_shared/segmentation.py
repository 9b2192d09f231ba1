"""Every digit in a picture of a number, in reading order, each framed as `/predict` frames one.

`find_digits` reads the picture's ink as `ink.ink_map` does (paper, light, desk and shadows
removed) but keeps every mark, not only the largest, then:

1. Marks: connected components of ink; specks (tiny against the picture's typical mark),
   rule lines and strips along an edge are dropped.
2. Broken strokes: marks whose columns overlap mostly, in the same line, are one digit (a 5's
   hat, a 7's bar drawn apart, a 4 in two strokes).
3. Lines: marks whose vertical spans overlap are on one line; lines top to bottom.
4. Touching digits: a mark much wider than its line's digits are tall is cut into as many
   digits as its width holds, each cut at the column with the least ink near where an even
   split would put it.
5. Each digit's ink is framed by `preprocessing.frame_digit`, exactly as a lone digit is.

Boxes are in the upright picture's pixels (its EXIF orientation applied): x, y, width, height.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np
from PIL import ExifTags, Image

from mnist_shared.ink import BLOB_LEVEL, NoDigitFound, all_marks
from mnist_shared.preprocessing import frame_digit, reduce_for_digit

NO_NUMBER = (
    "no digit found: the picture has no ink that stands out from its background. Send a picture "
    "of a handwritten number, dark on light or light on dark."
)
# A mark with less ink than this share of the median mark's is a speck.
SPECK = 0.08
# Marks whose column ranges overlap by this share of the narrower one are one digit.
SAME_DIGIT_OVERLAP = 0.5
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
# under ONE_DIGIT is tried cut into 2 .. its width's worth + 1 pieces.
JUDGED_WIDTH = 0.8
ONE_DIGIT = 0.5
# Judged cuts are looked for every CUT_STEPS-th of a digit's width, making pieces between
# these shares of a digit's width wide.
CUT_STEPS = 5
PIECE_WIDTHS = (0.3, 1.6)

# Framed digits, uint8 (N, 28, 28) -> how much each looks like one digit, 0..1: the service's
# digit check (`service.runtime.digit_check`), which tells two touching digits from one.
Judge = Callable[[np.ndarray], np.ndarray]


@dataclass(frozen=True)
class FoundDigit:
    digit: np.ndarray  # uint8 (28, 28), framed as /predict frames one digit
    box: tuple[int, int, int, int]  # x, y, width, height in the upright picture's pixels
    line: int  # 0 for the first line of the picture, top to bottom


@dataclass
class _Mark:
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive
    mask: np.ndarray  # bool, the whole picture's shape

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def merged(self, other: _Mark) -> _Mark:
        return _Mark(
            min(self.left, other.left), min(self.top, other.top),
            max(self.right, other.right), max(self.bottom, other.bottom),
            self.mask | other.mask,
        )  # fmt: skip


def read_number(image: Image.Image, judge: Judge | None = None) -> list[FoundDigit]:
    """Every digit of a picture, as decoded by Pillow, in reading order (lines top to bottom,
    each left to right); with a `judge`, touching digits are told from one digit by it.
    Raises NoDigitFound when there is none."""
    size = upright_size(image)
    return find_digits(reduce_for_digit(image), size, judge)


def find_digits(
    reduced: Image.Image, size: tuple[int, int], judge: Judge | None = None
) -> list[FoundDigit]:
    """`read_number` of a picture already reduced by `preprocessing.reduce_for_digit`, whose
    upright size was `size` (width, height): the boxes are in those pixels."""
    try:
        ink = all_marks(reduced)
    except NoDigitFound:  # its message asks for one digit
        raise NoDigitFound(NO_NUMBER) from None
    scale_x, scale_y = size[0] / ink.shape[1], size[1] / ink.shape[0]
    marks = _merge_broken_strokes(_marks(ink))
    found = []
    for line_number, line in enumerate(_lines(marks)):
        for mark in _attach_fragments(_split_touching(line, ink, judge)):
            box = (
                round(mark.left * scale_x), round(mark.top * scale_y),
                round(mark.width * scale_x), round(mark.height * scale_y),
            )  # fmt: skip
            try:
                digit = frame_digit(np.where(mark.mask, ink, 0))
            except NoDigitFound:
                continue
            found.append(FoundDigit(digit, box, line_number))
    if not found:
        raise NoDigitFound(NO_NUMBER)
    return found


def upright_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the picture once its EXIF orientation is applied."""
    orientation = image.getexif().get(ExifTags.Base.Orientation, 1)
    width, height = image.size
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)


def _marks(ink: np.ndarray) -> list[_Mark]:
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (ink > BLOB_LEVEL).astype(np.uint8), connectivity=8
    )
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count)[1:]
    if not len(mass):
        raise NoDigitFound(NO_NUMBER)
    typical = float(np.median(mass[mass >= 0.25 * mass.max()]))
    marks = []
    for label in range(1, count):
        if mass[label - 1] < SPECK * typical:
            continue
        left, top, width, height, _ = stats[label]
        marks.append(_Mark(left, top, left + width, top + height, labels == label))
    return marks


def _merge_broken_strokes(marks: list[_Mark]) -> list[_Mark]:
    """Marks stacked on each other's columns (and not on separate lines) as one."""
    merged = sorted(marks, key=lambda mark: mark.left)
    changed = True
    while changed:
        changed = False
        for i, first in enumerate(merged):
            for j in range(i + 1, len(merged)):
                second = merged[j]
                if _overlap(first.left, first.right, second.left, second.right) >= (
                    SAME_DIGIT_OVERLAP * min(first.width, second.width)
                ) and _vertically_close(first, second):
                    merged[i] = first.merged(second)
                    del merged[j]
                    changed = True
                    break
            if changed:
                break
    return merged


def _vertically_close(first: _Mark, second: _Mark) -> bool:
    gap = max(first.top - second.bottom, second.top - first.bottom, 0)
    return gap <= 0.5 * max(first.height, second.height)


def _lines(marks: list[_Mark]) -> list[list[_Mark]]:
    """Marks grouped into lines (row ranges overlapping), top to bottom, each left to right."""
    lines: list[list[_Mark]] = []
    for mark in sorted(marks, key=lambda m: (m.top + m.bottom) / 2):
        for line in lines:
            top, bottom = min(m.top for m in line), max(m.bottom for m in line)
            if _overlap(top, bottom, mark.top, mark.bottom) >= SAME_LINE_OVERLAP * min(
                mark.height, bottom - top
            ):
                line.append(mark)
                break
        else:
            lines.append([mark])
    return [sorted(line, key=lambda m: m.left) for line in lines]


def _attach_fragments(line: list[_Mark]) -> list[_Mark]:
    """The line's short marks merged into their horizontally nearest neighbours."""
    height = float(np.median([mark.height for mark in line]))
    marks = list(line)
    while len(marks) > 1:
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


def _split_touching(line: list[_Mark], ink: np.ndarray, judge: Judge | None) -> list[_Mark]:
    """Each mark of the line, cut into several where it is too wide for one digit, or (with a
    judge) where it does not look like one digit and its pieces do."""
    height = float(np.median([mark.height for mark in line]))
    digit_width = DIGIT_ASPECT * height
    pieces = []
    for mark in line:
        if judge is not None and mark.width >= JUDGED_WIDTH * digit_width:
            pieces += _judged_cut(mark, digit_width, ink, judge)
        elif mark.width < TOUCHING * digit_width:
            pieces.append(mark)
        else:
            pieces += _cut(mark, max(2, round(mark.width / digit_width)), ink)
    return pieces


def _judged_cut(mark: _Mark, digit_width: float, ink: np.ndarray, judge: Judge) -> list[_Mark]:
    """The mark whole if it looks like one digit; else cut where its pieces look most like
    digits together: among columns a CUT_STEPS-th of a digit apart, pieces PIECE_WIDTHS digit
    widths wide, the cuts with the highest sum of the log of each piece's score."""
    whole = judge(_framed(mark, ink)[None])[0]
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
    frames = [_framed(_span(mark, bounds[i], bounds[j]), ink) for i, j in spans]
    if not frames:
        return [mark]
    spans.append((0, last))  # the whole mark, judged above
    scores = np.log(np.maximum(np.append(judge(np.stack(frames)), whole), 1e-6))
    best: dict[int, tuple[float, int]] = {0: (0.0, 0)}  # bound -> (best total, previous bound)
    for (i, j), score in sorted(zip(spans, scores, strict=True)):
        if i in best and (j not in best or best[i][0] + score > best[j][0]):
            best[j] = (best[i][0] + float(score), i)
    cuts, at = [], last
    while (at := best[at][1]) > 0:
        cuts.append(bounds[at])
    return _pieces(mark, sorted(cuts))


def _framed(mark: _Mark | None, ink: np.ndarray) -> np.ndarray:
    if mark is None:
        return np.zeros((28, 28), np.uint8)
    try:
        return frame_digit(np.where(mark.mask, ink, 0))
    except NoDigitFound:
        return np.zeros((28, 28), np.uint8)


def _cut(mark: _Mark, count: int, ink: np.ndarray) -> list[_Mark]:
    """`mark` cut into `count` pieces at the columns with the least ink near even splits."""
    profile = np.where(mark.mask, ink, 0)[:, mark.left : mark.right].sum(axis=0)
    step, reach = mark.width / count, max(1, round(CUT_REACH * mark.width / count))
    cuts = [0]
    for index in range(1, count):
        centre = round(index * step)
        low, high = max(cuts[-1] + 1, centre - reach), min(mark.width - 1, centre + reach)
        cuts.append(low + int(np.argmin(profile[low : high + 1])) if high >= low else centre)
    return _pieces(mark, cuts[1:])


def _pieces(mark: _Mark, cuts: list[int]) -> list[_Mark]:
    """`mark` cut at these columns (counted from its left edge, increasing)."""
    spans = [_span(mark, start, end) for start, end in itertools.pairwise([0, *cuts, mark.width])]
    return [piece for piece in spans if piece is not None]


def _span(mark: _Mark, start: int, end: int) -> _Mark | None:
    """The part of `mark` between these columns (from its left edge); None if it has no ink."""
    columns = np.zeros_like(mark.mask)
    columns[:, mark.left + start : mark.left + end] = True
    mask = mark.mask & columns
    rows = np.flatnonzero(mask.any(axis=1))
    if not rows.size:
        return None
    return _Mark(mark.left + start, rows[0], mark.left + end, rows[-1] + 1, mask)


def _overlap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(0, min(end_a, end_b) - max(start_a, start_b))
