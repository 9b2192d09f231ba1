"""Small pictures that cost a careless reader a lot: the shapes of issue 34's attacks, for the
tests and `benchmarks/hostile.py`.

- `dot_grid`: 1-px dots every few pixels (thousands of marks in a few hundred bytes of PNG),
  optionally with columns of short bars one pixel apart, which merge into their column one at
  a time (a cascade: each merge makes the next one possible).
- `many_small_digits`: rows of tiny rings, each a plausible digit on its own.
- `wide_strokes` / `zigzag_stroke`: strokes as wide as many digits that look like none, so
  that the digit check is asked about every way of cutting them.
- `tile_bomb_tiff` / `strip_bomb_tiff`: a TIFF whose million tiles or strips all point at one
  block of bytes: a few MB that declare an ordinary picture and cost a decoder a loop of a
  million steps.
"""

from __future__ import annotations

import io
import struct

import cv2
import numpy as np
from PIL import Image

PAPER, INK = 255, 0


def dot_grid(side: int, spacing: int = 3, bar_columns: int = 0, dot: int = 1) -> bytes:
    """PNG, `side` x `side`: a `dot` x `dot` square every `spacing` pixels, and `bar_columns`
    of the dots' columns replaced by 1x3 bars with a one-pixel gap between them (each merges
    with its column's others one at a time)."""
    pixels = np.full((side, side), PAPER, np.uint8)
    for dy in range(dot):
        for dx in range(dot):
            pixels[1 + dy :: spacing, 1 + dx :: spacing] = INK
    dot_columns = range(1, side - dot, spacing)
    for column in range(bar_columns):
        x = dot_columns[(column + 1) * len(dot_columns) // (bar_columns + 1)]
        pixels[:, x : x + dot] = PAPER
        for top in range(0, side - 3, 4):
            pixels[top : top + 3, x] = INK
    return _png(pixels)


def many_small_digits(side: int, cell: int = 16) -> bytes:
    """PNG, `side` x `side`: a ring with 2-px strokes (a tiny 0) in every `cell`-wide,
    twice as tall square: the rows far enough apart not to be read as one digit's parts."""
    ring = np.full((2 * cell, cell), PAPER, np.uint8)
    cv2.ellipse(ring, (cell // 2, cell), (cell // 3, cell // 2), 0, 0, 360, INK, 2)
    return _png(np.tile(ring, (side // (2 * cell), side // cell)))


def wide_strokes(count: int, digit_widths: float = 10, height: int = 12) -> bytes:
    """PNG, 320x320: `count` zigzag strokes side by side, each as wide as `digit_widths`
    digits of its `height` (about 0.2 s of judged cuts a picture for three of ten)."""
    pixels = np.full((320, 320), PAPER, np.uint8)
    x, width = 4, int(digit_widths * 0.65 * height)
    for _ in range(count):
        points = [[x + k, 100 + (0 if k % 6 < 3 else height - 2)] for k in range(0, width, 2)]
        cv2.polylines(pixels, [np.array(points, np.int32)], False, INK, 2)
        x += width + 6
    return _png(pixels, bilevel=False)


def zigzag_stroke() -> bytes:
    """PNG, 320x120: one thick zigzag across the picture, touching digits that are none."""
    pixels = np.full((120, 320), PAPER, np.uint8)
    points = [[10 + k, 30 if k % 24 < 12 else 90] for k in range(0, 300, 6)]
    cv2.polylines(pixels, [np.array(points, np.int32)], False, INK, 4)
    return _png(pixels, bilevel=False)


def tile_bomb_tiff(side: int = 4000, tile: int = 4) -> bytes:
    """An uncompressed 8-bit grey TIFF of `side` x `side` pixels in `tile` x `tile` tiles,
    every tile's offset pointing at one block: (side / tile)^2 tiles in 8 bytes each."""
    tiles = (side // tile) ** 2
    return _tiff(side, side, tiles, tile * tile, {322: tile, 323: tile}, (324, 325))


def strip_bomb_tiff(width: int = 16, height: int = 1_000_000) -> bytes:
    """An uncompressed 8-bit grey TIFF of one-row strips, every strip pointing at one block."""
    return _tiff(width, height, height, width, {278: 1}, (273, 279))


def _tiff(
    width: int,
    height: int,
    blocks: int,
    block_bytes: int,
    layout: dict[int, int],
    offsets_and_counts: tuple[int, int],
) -> bytes:
    """Little-endian TIFF whose `blocks` offsets all point at one block of `block_bytes`."""
    offsets_tag, counts_tag = offsets_and_counts
    entries = {256: width, 257: height, 258: 8, 259: 1, 262: 1, 277: 1, **layout}
    count = len(entries) + 2
    ifd_at = 8
    block_at = ifd_at + 2 + 12 * count + 4
    offsets_at = block_at + block_bytes
    counts_at = offsets_at + 4 * blocks
    fields = [(tag, 4, 1, value) for tag, value in entries.items()]
    fields += [(offsets_tag, 4, blocks, offsets_at), (counts_tag, 4, blocks, counts_at)]
    header = b"II*\x00" + struct.pack("<I", ifd_at)
    ifd = struct.pack("<H", count) + b"".join(
        struct.pack("<HHII", tag, kind, number, value)
        for tag, kind, number, value in sorted(fields)
    )
    ifd += struct.pack("<I", 0)
    block = bytes([PAPER]) * block_bytes
    offsets = np.full(blocks, block_at, "<u4").tobytes()
    counts = np.full(blocks, block_bytes, "<u4").tobytes()
    return header + ifd + block + offsets + counts


def _png(pixels: np.ndarray, bilevel: bool = True) -> bytes:
    buffer = io.BytesIO()
    image = Image.fromarray(pixels)
    (image.convert("1") if bilevel else image).save(buffer, "PNG", optimize=bilevel)
    return buffer.getvalue()
