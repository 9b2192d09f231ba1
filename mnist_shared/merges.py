"""Joining marks that are one digit broken in two: a thin pen's stroke that did not close (a 0
open at the top read as "61"), a 9's tail lifted off its loop ("91"), a 4 drawn in two strokes.

Marks stacked on each other's columns are joined before (`marks.find_marks`); these stand side
by side. With the service's digit check as the judge, two neighbours on a line, close together
and no wider together than a digit can be, are one digit when the pair looks more like one
digit than the two look like one each: the pair's score beats the product of theirs (as
`cuts.judged_cut` weighs cuts, the other way round). Two digits written close score low
together (the check learnt several digits written together as not one digit).

Every pair is judged in one call of the judge (its batches check `stop`); the work is bounded
by the line's marks (`marks.MAX_MARKS`), and `stop` is checked before each framing.
"""

from __future__ import annotations

import numpy as np

from mnist_shared.cuts import CONVINCING, Reading
from mnist_shared.marks import Mark, check_stop

# Neighbours at most this share of the line's digit height apart, and together at most this
# many digit widths wide, may be one digit (a wide 0 or 4 is about 1.3 digit widths).
MERGE_GAP = 0.25
MERGE_WIDTH = 1.5


def merge_broken(
    line: list[Mark], digit_width: float, height: float, reading: Reading
) -> list[Mark]:
    """The line's marks (left to right), neighbours that are one digit broken in two joined."""
    if reading.judge is None or len(line) < 2:
        return line
    pairs = [
        index
        for index in range(len(line) - 1)
        if _close(line[index], line[index + 1], digit_width, height)
    ]
    if not pairs:
        return line
    frames = []
    for mark in [*line, *(line[index].merged(line[index + 1]) for index in pairs)]:
        check_stop(reading.stop)  # a line holds at most MAX_MARKS marks: 2 framings each
        frames.append(reading.framed(mark))
    scores = np.log(np.maximum(reading.scores(np.stack(frames)), 1e-6))
    singles, joined = scores[: len(line)], scores[len(line) :]
    gains = {
        index: float(together - singles[index] - singles[index + 1])
        for index, together in zip(pairs, joined, strict=True)
        if together >= np.log(CONVINCING)
    }
    return _joined(line, gains)


def _close(left: Mark, right: Mark, digit_width: float, height: float) -> bool:
    gap = right.left - left.right
    return gap <= MERGE_GAP * height and (
        max(left.right, right.right) - left.left <= MERGE_WIDTH * digit_width
    )


def _joined(line: list[Mark], gains: dict[int, float]) -> list[Mark]:
    """`line` with the pairs of positive gain joined, the best first; a mark joins once."""
    taken: set[int] = set()
    for index, gain in sorted(gains.items(), key=lambda item: -item[1]):
        if gain > 0 and not {index, index + 1} & taken:
            taken |= {index, index + 1}
    marks, index = [], 0
    while index < len(line):
        if index in taken:
            marks.append(line[index].merged(line[index + 1]))
            index += 2
        else:
            marks.append(line[index])
            index += 1
    return marks
