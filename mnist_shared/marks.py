"""The marks of a picture's ink, at a cost bounded by its pixels and by MAX_MARKS.

A mark is a connected component of ink (OpenCV's statistics give every component's box and
area in one pass), specks dropped, and marks stacked on each other's columns merged into one
(a 5's hat, a 7's bar drawn apart, a 4 in two strokes). Each mark holds its mask as a crop of
its own box, never of the whole picture, so that memory grows with the ink, not with the
marks times the picture.

The bounds (docs/reliability.md): past MAX_MARKS marks once specks are dropped the picture is
refused (`TooManyMarks`) before anything is merged; the merge is a worklist over numpy arrays
of the boxes (each step one vectorised comparison against every mark), so it costs at most
2 x MAX_MARKS such steps whatever order the marks merge in; `stop` is checked at every step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from threading import Event

import cv2
import numpy as np

# Marks considered in one picture once specks are dropped; a picture of a number holds a few
# per digit, a page of text or a pattern of dots thousands.
MAX_MARKS = 200
# A mark with less ink than this share of the median mark's is a speck.
SPECK = 0.08
# Marks whose column ranges overlap by this share of the narrower one are one digit ...
SAME_DIGIT_OVERLAP = 0.5
# ... when the gap between their rows is at most this share of the taller one.
SAME_DIGIT_GAP = 0.5


class TooManyMarks(ValueError):
    """The picture holds more marks (or digits) than one reading is allowed to consider."""


class WorkStopped(Exception):
    """The caller asked the work to stop: its request timed out, or its client left."""


def check_stop(stop: Event | None) -> None:
    """Raise WorkStopped if `stop` is set: called inside every loop of the reading. Each check
    also lets other threads have the GIL (`sleep(0)` releases it): the reading's steps are
    many small numpy calls that hold it, and the event loop and the inference thread would
    otherwise wait out Python's 5 ms switch interval for it again and again (a light client's
    p99 beside 64 hard pictures: 55 ms, 4 ms with the yield)."""
    if stop is not None and stop.is_set():
        raise WorkStopped
    time.sleep(0)


@dataclass
class Mark:
    left: int
    top: int
    right: int  # exclusive
    bottom: int  # exclusive
    mask: np.ndarray  # bool (height, width): the mark's pixels within its box
    # Cut from a mark that did not look like a digit into pieces not all of which do (the
    # strokes of an "A" read as "11"): segmentation's doubt, carried into every part and merge.
    doubtful: bool = False

    @property
    def width(self) -> int:
        return self.right - self.left

    @property
    def height(self) -> int:
        return self.bottom - self.top

    def ink(self, ink: np.ndarray) -> np.ndarray:
        """The mark's ink alone, cropped to its box with a one-pixel border of paper (as
        framing sees a mark: its ink, and nothing around it)."""
        crop = ink[self.top : self.bottom, self.left : self.right]
        return np.pad(np.where(self.mask, crop, 0), 1)

    def merged(self, other: Mark) -> Mark:
        """One mark of both (their boxes' union), a mask the size of that union."""
        left, top = min(self.left, other.left), min(self.top, other.top)
        right, bottom = max(self.right, other.right), max(self.bottom, other.bottom)
        mask = np.zeros((bottom - top, right - left), bool)
        for part in (self, other):
            mask[part.top - top : part.bottom - top, part.left - left : part.right - left] |= (
                part.mask
            )
        return Mark(left, top, right, bottom, mask, self.doubtful or other.doubtful)

    def columns(self, start: int, end: int) -> Mark | None:
        """The part of the mark between these columns (from its left edge), its rows trimmed
        to its ink; None if it has none."""
        mask = self.mask[:, start:end]
        rows = np.flatnonzero(mask.any(axis=1))
        if not rows.size:
            return None
        top, bottom = int(rows[0]), int(rows[-1]) + 1
        return Mark(
            self.left + start,
            self.top + top,
            self.left + end,
            self.top + bottom,
            mask[top:bottom],
            self.doubtful,
        )


def find_marks(ink: np.ndarray, level: float, stop: Event | None = None) -> list[Mark]:
    """The marks of an ink map (pixels above `level`), specks dropped and broken strokes
    merged, left to right (none when there is no ink). Raises TooManyMarks past MAX_MARKS."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (ink > level).astype(np.uint8), connectivity=8
    )
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count)[1:]
    if not len(mass):
        return []
    typical = float(np.median(mass[mass >= 0.25 * mass.max()]))
    kept = np.flatnonzero(mass >= SPECK * typical) + 1  # component labels
    if len(kept) > MAX_MARKS:
        raise TooManyMarks(
            f"the picture holds {len(kept)} separate marks once specks are dropped; a number "
            f"is read from at most {MAX_MARKS}. Send a picture of the number alone, cropped "
            "to it, not a page or a pattern."
        )
    check_stop(stop)
    groups = _stacked_groups(stats[kept, :4], stop)
    return [_group_mark(labels, stats, kept[members]) for members in groups]


def _stacked_groups(boxes: np.ndarray, stop: Event | None) -> list[list[int]]:
    """Indexes of `boxes` (x, y, width, height rows) merged while any two groups' boxes stand
    on each other's columns (SAME_DIGIT_OVERLAP) without a gap between their rows of more than
    SAME_DIGIT_GAP: a worklist, each step one vectorised test of a group against all others."""
    left, top = boxes[:, 0].astype(np.int64), boxes[:, 1].astype(np.int64)
    right, bottom = left + boxes[:, 2], top + boxes[:, 3]
    alive = np.ones(len(boxes), bool)
    members = [[index] for index in range(len(boxes))]
    pending = list(range(len(boxes)))[::-1]  # popped left to right as the boxes came
    while pending:
        check_stop(stop)
        i = pending.pop()
        if not alive[i]:
            continue
        widths, heights = right - left, bottom - top
        overlap = np.minimum(right, right[i]) - np.maximum(left, left[i])
        gap = np.maximum(np.maximum(top - bottom[i], top[i] - bottom), 0)
        joins = (
            alive
            & (overlap >= SAME_DIGIT_OVERLAP * np.minimum(widths, widths[i]))
            & (gap <= SAME_DIGIT_GAP * np.maximum(heights, heights[i]))
        )
        joins[i] = False
        if not joins.any():
            continue
        others = np.flatnonzero(joins)
        left[i], top[i] = min(left[i], left[others].min()), min(top[i], top[others].min())
        right[i] = max(right[i], right[others].max())
        bottom[i] = max(bottom[i], bottom[others].max())
        alive[others] = False
        for other in others:
            members[i] += members[other]
        pending.append(i)  # grown: it may now reach marks it did not before
    order = sorted(np.flatnonzero(alive), key=lambda index: left[index])
    return [members[index] for index in order]


def _group_mark(labels: np.ndarray, stats: np.ndarray, components: np.ndarray) -> Mark:
    """The mark made of these connected components: their boxes' union, their pixels."""
    left, top = stats[components, 0].min(), stats[components, 1].min()
    right = (stats[components, 0] + stats[components, 2]).max()
    bottom = (stats[components, 1] + stats[components, 3]).max()
    crop = labels[top:bottom, left:right]
    mask = crop == components[0] if len(components) == 1 else np.isin(crop, components)
    return Mark(int(left), int(top), int(right), int(bottom), mask)
