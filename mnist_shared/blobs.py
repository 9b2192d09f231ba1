"""Which blobs of a picture's ink are the digit: the ink map's last step (`ink`, step 5).

The blobs are OpenCV's connected components of the ink above BLOB_LEVEL, judged from their
statistics alone (box and area), all at once: lines crossing the picture (rule lines, a
sheet's edge) and strips along an edge (a desk, a shadow) are never the digit; the digit is
the largest blob left with the blobs near it (a 5's detached hat), and blobs of a digit's size
beside it on its line are other digits (a number sent as one digit). For a number
(`segmentation`) every blob but lines and strips is kept.
"""

from __future__ import annotations

from typing import NamedTuple

import cv2
import numpy as np

# Ink at least this strong (0..1) makes up the blobs that are sorted.
BLOB_LEVEL = 0.1
# A blob spanning this fraction of the picture's width or height while this thin (its area
# over its length, as a fraction of the shorter side) is a line, not part of a digit.
LINE_SPAN = 0.85
LINE_THICKNESS = 0.04
# A blob along this fraction of an edge it touches is a strip of desk or shadow, unless it is
# all there is (a tight crop) or the blobs clear of the edges hold less than this fraction of
# its ink.
EDGE_SPAN = 0.8
MIN_INTERIOR = 0.03
# Only the largest blobs are sorted; the rest are specks.
MAX_BLOBS = 8
# Blobs kept beside the largest: at least this fraction of its ink, within this fraction of
# its size from its box (a 5's hat, a 4's open top; not a margin mark).
MIN_PART = 0.02
PART_REACH = 0.35
# A blob with at least this share of the digit's ink and of its height, beside it on
# its line (their rows overlapping by this share of the shorter), is another digit: the picture
# holds a number, not one digit (`DigitInk.digits_beside`).
BESIDE_INK = 0.3
BESIDE_HEIGHT = 0.6
BESIDE_ROWS = 0.5

NO_DIGIT = (
    "no digit found: the picture has no ink that stands out from its background. Send a "
    "picture of one handwritten digit, dark on light or light on dark, filling a good part of it."
)


class NoDigitFound(ValueError):
    """The picture holds no ink that stands out from its background."""


class DigitInk(NamedTuple):
    ink: np.ndarray  # float32 (H, W) in [0, 1]: the digit's ink only
    # Blobs of a digit's size beside it on its line, whether kept as its parts (a digit close
    # by) or not: the other digits of a number (at most MAX_BLOBS - 1); 0 for one digit.
    digits_beside: int


def keep_the_digit(ink: np.ndarray) -> DigitInk:
    """The ink of the digit's blobs only (`ink`'s docstring, step 5), and how many digits
    stand beside it."""
    count, labels, stats, _ = cv2.connectedComponentsWithStats(
        (ink > BLOB_LEVEL).astype(np.uint8), connectivity=8
    )
    mass = np.bincount(labels.ravel(), weights=ink.ravel(), minlength=count)
    largest = np.argsort(mass[1:])[::-1][:MAX_BLOBS] + 1
    candidates = [label for label in largest if not _is_line(stats[label], ink.shape)]
    if not candidates:
        raise NoDigitFound(NO_DIGIT)
    interior = [label for label in candidates if not _hugs_an_edge(stats[label], ink.shape)]
    if interior and mass[interior[0]] >= MIN_INTERIOR * mass[candidates[0]]:
        candidates = interior  # a desk or shadow strip along an edge beside the digit
    main = candidates[0]
    kept = [main] + [
        label
        for label in candidates[1:]
        if mass[label] >= MIN_PART * mass[main] and _near(stats[label], stats[main])
    ]
    keep = np.zeros(count, bool)
    keep[kept] = True
    beside = candidates[1:]  # kept parts too: a second digit close by is kept as a part
    digits_beside = sum(_is_digit_beside(stats[label], mass[label], stats[main], mass[main])
                        for label in beside)  # fmt: skip
    return DigitInk(np.where(keep[labels], ink, 0).astype(np.float32), digits_beside)


def _is_digit_beside(stat: np.ndarray, mass: float, main: np.ndarray, main_mass: float) -> bool:
    """Whether a blob left out is another digit on the digit's line (see BESIDE_INK)."""
    top, bottom = max(stat[1], main[1]), min(stat[1] + stat[3], main[1] + main[3])
    return bool(
        mass >= BESIDE_INK * main_mass
        and stat[3] >= BESIDE_HEIGHT * main[3]
        and bottom - top >= BESIDE_ROWS * min(stat[3], main[3])
    )


def keep_the_marks(ink: np.ndarray) -> DigitInk:
    """The ink of every mark but lines crossing the picture and strips along an edge (every
    blob judged at once: a pattern of dots holds thousands)."""
    _, labels, stats, _ = cv2.connectedComponentsWithStats(
        (ink > BLOB_LEVEL).astype(np.uint8), connectivity=8
    )
    blobs = stats.T.astype(np.int64)  # rows: left, top, width, height, area
    keep = ~(_is_line(blobs, ink.shape) | _hugs_an_edge(blobs, ink.shape))
    keep[0] = False  # the background
    if not keep.any():
        raise NoDigitFound(NO_DIGIT)
    return DigitInk(np.where(keep[labels], ink, 0).astype(np.float32), 0)


def _hugs_an_edge(stat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A blob along a whole edge (a desk's or shadow's strip the closing bridged); `stat` is
    one blob's statistics or a column of them per blob (as are the answers)."""
    left, top, width, height = stat[:4]
    along_row, along_column = width >= EDGE_SPAN * shape[1], height >= EDGE_SPAN * shape[0]
    on_row = (top == 0) | (top + height == shape[0])
    on_column = (left == 0) | (left + width == shape[1])
    return (along_row & on_row) | (along_column & on_column)


def _is_line(stat: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """A thin blob crossing (nearly) the whole picture: a rule line, a fold, a sheet's edge."""
    width, height, area = stat[2:5]
    length = np.maximum(width / shape[1], height / shape[0])
    thickness = area / np.maximum(width, height) / min(shape)
    return (length >= LINE_SPAN) & (thickness < LINE_THICKNESS)


def _near(part: np.ndarray, main: np.ndarray) -> bool:
    """Whether `part`'s box lies within PART_REACH of `main`'s size from `main`'s box."""
    reach = PART_REACH * max(main[2], main[3])
    gap_x = max(main[0] - (part[0] + part[2]), part[0] - (main[0] + main[2]), 0)
    gap_y = max(main[1] - (part[1] + part[3]), part[1] - (main[1] + main[3]), 0)
    return max(gap_x, gap_y) <= reach
