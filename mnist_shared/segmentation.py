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
   split would put it. With a judge, where its pieces look most like digits; a mark that did
   not look like a digit and whose best pieces do not all look like one either (the strokes of
   an "A") gives digits marked `doubtful`, which the service flags as not digits (`cuts`).
4. Broken digits: with a judge, neighbours close together that look more like one digit
   together than like one each are joined (`merges`: a thin pen's 0 open at the top, a 9's
   tail lifted off its loop).
5. Each digit's ink is framed by `preprocessing.frame_digit`, exactly as a lone digit is.

Boxes are in the upright picture's pixels (its EXIF orientation applied): x, y, width, height.

The cost is bounded by the picture's pixels and by `max_digits` (docs/reliability.md): at most
MAX_MARKS marks are considered, the digits a line's marks would make are counted before any is
cut (past `max_digits`: TooManyMarks), a judged cut tries at most JUDGED_SPANS pieces, and
`stop` (an Event) is checked in every loop, so that a request that times out stops at once.
"""

from __future__ import annotations

from dataclasses import dataclass
from threading import Event

import numpy as np
from PIL import ExifTags, Image

from mnist_shared.blobs import BLOB_LEVEL
from mnist_shared.cuts import JUDGED_MAX_WIDTH, JUDGED_WIDTH, Judge, Reading, cut_evenly, judged_cut
from mnist_shared.ink import NoDigitFound, all_marks
from mnist_shared.marks import Mark, TooManyMarks, check_stop, find_marks
from mnist_shared.merges import merge_broken
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


@dataclass(frozen=True)
class FoundDigit:
    digit: np.ndarray  # uint8 (28, 28), framed as /predict frames one digit
    box: tuple[int, int, int, int]  # x, y, width, height in the upright picture's pixels
    line: int  # 0 for the first line of the picture, top to bottom
    # Cut from a mark that did not look like a digit, whose pieces did not all look like one
    # either (the judge's verdict on the cut; the service flags such a digit as not one).
    doubtful: bool = False


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
    reading, lines = Reading(ink, judge, stop), _lines(marks)
    _check_digit_count(lines, max_digits)
    scale_x, scale_y = size[0] / ink.shape[1], size[1] / ink.shape[0]
    found = []
    for line_number, line in enumerate(lines):
        for mark in _whole_digits(line, reading):
            check_stop(stop)
            box = (
                round(mark.left * scale_x), round(mark.top * scale_y),
                round(mark.width * scale_x), round(mark.height * scale_y),
            )  # fmt: skip
            try:
                digit = frame_digit(mark.ink(ink))
            except NoDigitFound:
                continue
            found.append(FoundDigit(digit, box, line_number, mark.doubtful))
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


def _whole_digits(line: list[Mark], reading: Reading) -> list[Mark]:
    """The line's marks as digits: wide ones cut, fragments attached, broken ones joined."""
    marks = _attach_fragments(_split_touching(line, reading), reading.stop)
    height = float(np.median([mark.height for mark in line]))
    return merge_broken(marks, _digit_width(line), height, reading)


def _gap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(start_a - end_b, start_b - end_a, 0)


def _split_touching(line: list[Mark], reading: Reading) -> list[Mark]:
    """Each mark of the line, cut into several where it is too wide for one digit, or (with a
    judge) where it does not look like one digit and its pieces do."""
    digit_width = _digit_width(line)
    pieces = []
    for mark in line:
        check_stop(reading.stop)
        widths = mark.width / digit_width
        if reading.judge is not None and JUDGED_WIDTH <= widths <= JUDGED_MAX_WIDTH:
            pieces += judged_cut(mark, digit_width, reading)
        elif widths < TOUCHING:
            pieces.append(mark)
        else:
            pieces += cut_evenly(mark, max(2, round(widths)), reading.ink)
    return pieces


def _overlap(start_a: int, end_a: int, start_b: int, end_b: int) -> int:
    return max(0, min(end_a, end_b) - max(start_a, start_b))
