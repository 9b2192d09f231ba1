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


def read_number(image: Image.Image) -> list[FoundDigit]:
    """Every digit of a picture, as decoded by Pillow, in reading order (lines top to bottom,
    each left to right). Raises NoDigitFound when there is none."""
    size = upright_size(image)
    return find_digits(reduce_for_digit(image), size)


def find_digits(reduced: Image.Image, size: tuple[int, int]) -> list[FoundDigit]:
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
        for mark in _attach_fragments(_split_touching(line, ink)):
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


def _split_touching(line: list[_Mark], ink: np.ndarray) -> list[_Mark]:
    """Each mark of the line, cut into several where it is too wide for one digit."""
    height = float(np.median([mark.height for mark in line]))
    digit_width = DIGIT_ASPECT * height
    pieces = []
    for mark in line:
        if mark.width < TOUCHING * digit_width:
            pieces.append(mark)
            continue
        pieces += _cut(mark, max(2, round(mark.width / digit_width)), ink)
    return pieces


def _cut(mark: _Mark, count: int, ink: np.ndarray) -> list[_Mark]:
    """`mark` cut into `count` pieces at the columns with the least ink near even splits."""
    profile = np.where(mark.mask, ink, 0)[:, mark.left : mark.right].sum(axis=0)
    step, reach = mark.width / count, max(1, round(CUT_REACH * mark.width / count))
    cuts = [0]
    for index in range(1, count):
        centre = round(index * step)
        low, high = max(cuts[-1] + 1, centre - reach), min(mark.width - 1, centre + reach)
        cuts.append(low + int(np.argmin(profile[low : high + 1])) if high >= low else centre)
    cuts.append(mark.width)
    pieces = []
    for start, end in itertools.pairwise(cuts):
        columns = np.zeros_like(mark.mask)
        columns[:, mark.left + start : mark.left + end] = True
        mask = mark.mask & columns
        rows = np.flatnonzero(mask.any(axis=1))
        if rows.size:
            pieces.append(_Mark(mark.left + start, rows[0], mark.left + end, rows[-1] + 1, mask))
    return pieces


def _overlap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(0, min(end_a, end_b) - max(start_a, start_b))
