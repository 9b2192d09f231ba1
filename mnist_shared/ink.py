"""Where the ink is in a picture of a digit: paper, light, desk and shadows removed.

`ink_map` turns a picture (at most a few hundred pixels a side) into ink coverage, 0 on paper
and 1 in the core of a stroke, holding only the digit. In short (docs/design.md has the why):

1. Polarity: dark ink on light paper unless the picture is mostly dark (chalk on a board).
2. The paper's light is the picture's morphological closing with a square wider than any
   stroke (OpenCV): strokes vanish from it, while what is wider stays (gradients, vignetting,
   a desk around the sheet, a hard shadow's edge). Ink is the share of the light a pixel takes
   away, so a stroke in a shadow is as strong as beside it.
3. The world beyond the frame: read as a photo, the shade at an edge (a desk, a shadow) goes
   on beyond it; read as a tight crop, the paper goes on and strokes run out of the frame.
4. Ghosts (where a dark region narrows to a point and the closing bridged it) are as dark as
   the darkest light around them, strokes are not: ghosts are dropped.
5. Noise is measured, the contrast stretched so that stroke cores reach 1 whatever the pen,
   the weak shade of a thin shadow (a pen or a finger on the sheet) dropped,
   and the digit's blobs kept: the largest with the blobs near it (a 5's detached hat), not
   lines crossing the picture (rule lines, a sheet's edge), a desk's strip along an edge,
   margin marks or specks.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import cv2
import numpy as np
from PIL import Image

from mnist_shared.blobs import (
    NO_DIGIT,
    DigitInk,
    NoDigitFound,
    keep_the_digit,
    keep_the_marks,
)

# OpenCV's worker threads cost more than they save on pictures this small (a few hundred
# pixels a side), and the service already runs one picture per thread.
cv2.setNumThreads(1)

# The paper's light is closed with a square this fraction of the picture's longer side: wider
# than a thick marker's stroke on a photo's digit ...
BACKGROUND_FRACTION = 0.3
# ... and when read as a tight crop, where a stroke can be a quarter of the picture wide.
TIGHT_FRACTION = 0.5
# A picture darker than its mid-grey over more than this share is a dark ground (light ink).
DARK_GROUND = 0.7
# Pixels darker than the paper by this fraction of the ink's contrast are in shade (a shadow
# 30% darker than the paper is).
SHADE = 0.2
# A digit whose strong ink (above STRONG, 0..1) spans this fraction of the picture's width or
# height when read as a photo was cropped tight.
TIGHT_SPAN = 0.9
STRONG = 0.75
PIXEL_MAX = 255.0
# Stretched ink under this is weak: a stroke's blurred edge, or a thin shadow's shade when it
# reaches the picture's edge without coming within SHADE_REACH (of the picture's shorter side)
# of strong ink.
WEAK_INK = 0.75
SHADE_REACH = 0.02
# Weak ink wider than this many times the strokes' half width is shade wherever it lies.
WIDER = 1.5
# A pixel within this fraction of the darkest light around it belongs to that dark region.
GHOST_BAND = 0.12
# A digit's ink must stand out from the paper by this many noise deviations and grey levels;
# faint pencil is about 80 levels, sensor noise after smoothing 1-3.
MIN_CONTRAST_SIGMAS = 8.0
MIN_CONTRAST_LEVELS = 24.0


def ink_map(image: Image.Image) -> np.ndarray:
    """float32 (H, W) in [0, 1]: 0 where there is paper, 1 in the core of the digit's strokes.
    Raises NoDigitFound when nothing stands out."""
    return digit_ink(image).ink


def digit_ink(image: Image.Image) -> DigitInk:
    """`ink_map`, and how many digits stand beside the one kept."""
    return _read_ink(image, keep_the_digit)


def all_marks(image: Image.Image) -> np.ndarray:
    """As `ink_map`, with every mark kept (a number's digits, `segmentation`), not only the
    digit's: rule lines, a sheet's edge and strips along an edge are still dropped."""
    return _read_ink(image, keep_the_marks).ink


Keep = Callable[[np.ndarray], DigitInk]


def _read_ink(image: Image.Image, keep: Keep) -> DigitInk:
    if image.mode in ("RGBA", "LA"):
        if is_transparent_canvas(image):
            alpha = np.asarray(image.getchannel("A"), dtype=np.float32)
            return DigitInk(_stretch(alpha, noise=0.0), 0)
        image = _on_its_own_paper(image.convert("RGBA"))
    gray = np.asarray(image.convert("L"), dtype=np.float32)  # ITU-R 601 luma, as grayscale
    dark = cv2.GaussianBlur(gray if _ink_is_dark(gray) else 255 - gray, (3, 3), 0)
    ink_level, paper_level = np.quantile(dark[::3, ::3], [0.02, 0.9])
    lit = float(paper_level - SHADE * (paper_level - ink_level))  # darker: ink, shadow, desk
    # Two readings: as a photo, where the shade at the edges (a desk, a shadow) goes on
    # beyond the frame; and as a tight crop, where the paper goes on and strokes run out of
    # the frame. They differ only where shade reaches an edge. A digit that spans the frame
    # as a photo (or vanishes: its strokes all ran along the edges) was cropped tight.
    plain = _Reading(float(paper_level), lit, dark_goes_on=False, square=BACKGROUND_FRACTION)
    edges = np.concatenate([dark[0], dark[-1], dark[:, 0], dark[:, -1]])
    if not (edges < lit).any():
        return _kept_ink(dark, plain, keep)
    as_cropped = plain._replace(square=TIGHT_FRACTION)  # a tight crop's strokes are wide
    try:
        photo = _stretched(dark, plain._replace(dark_goes_on=True))
        as_photo = keep(photo)  # decided on all the ink: a thin shadow's shade reaches edges
    except NoDigitFound:
        return _kept_ink(dark, as_cropped, keep)
    if _spans_the_frame(as_photo.ink):
        return _kept_ink(dark, as_cropped, keep)
    unshaded = _without_thin_shade(photo)
    return as_photo if unshaded is photo else keep(unshaded)


def _spans_the_frame(ink: np.ndarray) -> bool:
    """Whether the strong ink reaches across TIGHT_SPAN of the picture's height or width."""
    strong = ink > STRONG
    rows, columns = np.flatnonzero(strong.any(axis=1)), np.flatnonzero(strong.any(axis=0))
    if rows.size == 0:
        return False
    height, width = (
        (rows[-1] - rows[0] + 1) / ink.shape[0],
        (columns[-1] - columns[0] + 1) / ink.shape[1],
    )
    return max(height, width) >= TIGHT_SPAN


class _Reading(NamedTuple):
    """How a picture is read: what the world beyond its frame is taken to be (see
    `_beyond_the_frame`), and how wide the closing's square is."""

    paper: float  # the paper's level, which goes on beyond the frame
    lit: float  # pixels darker than this are in shade (ink, a shadow, a desk)
    dark_goes_on: bool  # beyond the edges' shade, the shade goes on
    square: float  # the closing's square, as a fraction of the picture's longer side


def _kept_ink(dark: np.ndarray, reading: _Reading, keep: Keep) -> DigitInk:
    return keep(_without_thin_shade(_stretched(dark, reading)))


def _stretched(dark: np.ndarray, reading: _Reading) -> np.ndarray:
    return _stretch(*_below_the_light(dark, reading))


def _without_thin_shade(ink: np.ndarray) -> np.ndarray:
    """The stretched ink without the shade of a thin shadow (a pen or a finger on the sheet,
    the phone's edge), which the closing took for ink, being narrower than its square: the
    shade takes a third to a half of the light where a stroke takes nearly all, and it comes
    from beyond the frame. So it is weak ink (under WEAK_INK) reaching the picture's edge
    without coming within reach of strong ink (a stroke's blurred edge does): SHADE_REACH, or
    half the strokes' width where that is more."""
    strong = (ink >= WEAK_INK).astype(np.uint8)
    if not strong.any():
        return ink
    # A wide stroke's blurred edge reaches farther: half the strokes' width at least.
    depth = cv2.distanceTransform(strong, cv2.DIST_L2, 3)[strong > 0][::4]
    half_width = float(np.quantile(depth, 0.9))
    reach = max(1, round(SHADE_REACH * min(ink.shape)), round(half_width))
    near_strokes = cv2.dilate(strong, np.ones((2 * reach + 1, 2 * reach + 1), np.uint8))
    weak = ((ink > 0) & (near_strokes == 0)).astype(np.uint8)
    count, labels = cv2.connectedComponents(weak, connectivity=8)
    if count == 1:  # no weak ink away from the strokes
        return ink
    from_outside = np.zeros(count, bool)
    from_outside[np.concatenate([labels[0], labels[-1], labels[:, 0], labels[:, -1]])] = True
    from_outside[0] = False  # the strokes and the paper
    side = 2 * max(1, round(WIDER * half_width)) + 1
    wide = cv2.morphologyEx(weak, cv2.MORPH_OPEN, np.ones((side, side), np.uint8)).astype(bool)
    return np.where(from_outside[labels] | wide, 0, ink).astype(np.float32)


def _on_its_own_paper(image: Image.Image) -> Image.Image:
    """A photo with a transparent frame or corners, laid on its own paper's colour (the median
    of its opaque pixels): what is transparent holds nothing, neither ink nor a desk."""
    pixels = np.asarray(image)
    paper = np.median(pixels[pixels[..., 3] > 127][::7, :3], axis=0)
    ground = Image.new("RGBA", image.size, (*(int(v) for v in paper), 255))
    return Image.alpha_composite(ground, image)


def is_transparent_canvas(image: Image.Image) -> bool:
    """Mostly transparent: strokes drawn on nothing (an opaque screenshot with a few
    transparent corners is a picture like any other)."""
    return bool(np.median(np.asarray(image.getchannel("A"))) < 128)


def _ink_is_dark(gray: np.ndarray) -> bool:
    """Dark pen on light paper, unless the picture is mostly dark (chalk on a board, a light
    pen on a dark screen). Not "the paper is the majority": a digit cropped tight, a desk or a
    shadow can take half the picture or more."""
    low, high = np.quantile(gray[::2, ::2], [0.001, 0.999])
    return float(np.mean(gray[::2, ::2] < (low + high) / 2)) <= DARK_GROUND


def _square(shape: tuple[int, ...], fraction: float) -> np.ndarray:
    """The closing's square: `fraction` of the longer side, odd."""
    side = max(3, round(fraction * max(shape)) | 1)
    return cv2.getStructuringElement(cv2.MORPH_RECT, (side, side))


def _below_the_light(dark: np.ndarray, reading: _Reading) -> tuple[np.ndarray, float]:
    """(ink >= 0: how much darker than the paper's light each pixel is, noise sigma)."""
    square = _square(dark.shape, reading.square)
    # A closing's dilation reaches half the square beyond the frame; the pixels past that are
    # copies of the extension's last row or column and would not change a maximum there.
    margin = square.shape[0] // 2 + 1
    # Morphology on 8 bits: OpenCV's is several times faster there than on floats.
    extended = _beyond_the_frame(np.clip(dark + 0.5, 0, 255).astype(np.uint8), margin, reading)
    closed = cv2.morphologyEx(extended, cv2.MORPH_CLOSE, square)
    inside = (slice(margin, -margin), slice(margin, -margin))
    light = closed[inside].astype(np.float32)
    # Light multiplies: ink is the share of the light it takes away (as grey levels on white
    # paper), the same in a shadow as beside it.
    ink = (light - dark) * (PIXEL_MAX / np.maximum(light, 1.0))
    # The paper's noise, from the lower fifth of the residual (every third pixel is plenty):
    # the paper may be as little of the picture as that (a digit cropped tight). Quantiles 5
    # and 20 of a normal distribution lie 0.80 deviations apart, the 20th 0.84 below its centre.
    q05, q20 = np.quantile(ink[::3, ::3], [0.05, 0.2])
    noise = float(q20 - q05) / 0.80
    # Where a dark region narrows to a point the closing bridged it: such a pixel is as dark
    # as the darkest light around it (the wide part of the same shadow or desk); a stroke's
    # is darker, or lighter than a black desk beside it.
    darkest_light = cv2.erode(closed, square)[inside].astype(np.float32)
    band = GHOST_BAND + 3 * noise / PIXEL_MAX
    ink[np.abs(dark - darkest_light) <= band * darkest_light] = 0
    return np.maximum(ink - (q20 + 0.84 * noise), 0), noise


def _beyond_the_frame(dark: np.ndarray, margin: int, reading: _Reading) -> np.ndarray:
    """The picture extended by `margin` on each side as the world beyond the frame is taken
    to be: the paper goes on, so that strokes cut by a tight crop stay strokes; with
    `dark_goes_on`, beyond an edge's shade the shade goes on too, so that the closing does
    not bridge a desk or a shadow as if it were a stroke."""
    extended = cv2.copyMakeBorder(dark, margin, margin, margin, margin, cv2.BORDER_REPLICATE)
    outside = np.ones(extended.shape, bool)
    outside[margin:-margin, margin:-margin] = False
    if reading.dark_goes_on:  # the edges' lit pixels, carried out as replicate carries values
        lit_edge = (dark >= reading.lit).astype(np.uint8)
        outside &= cv2.copyMakeBorder(
            lit_edge, margin, margin, margin, margin, cv2.BORDER_REPLICATE
        ).astype(bool)
    extended[outside] = np.maximum(extended[outside], round(reading.paper))
    return extended


def _stretch(ink: np.ndarray, noise: float) -> np.ndarray:
    """Paper -> 0, stroke cores -> 1: pencil, pen and marker all reach MNIST's intensity."""
    peak = float(ink.max())
    if peak < max(MIN_CONTRAST_SIGMAS * noise, MIN_CONTRAST_LEVELS):
        raise NoDigitFound(NO_DIGIT)
    floor = max(3 * noise, 0.15 * peak)
    core = float(np.quantile(ink[ink > floor][::4], 0.9))
    if core <= floor:
        core = peak
    return np.clip((ink - floor) / (core - floor), 0, 1)
