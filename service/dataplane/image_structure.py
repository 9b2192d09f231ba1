"""A cheap walk over an encoded image's structure before Pillow reads it, bounding the work
its decoding can cost beyond what its declared size says.

A progressive JPEG may carry any number of scans, and libjpeg walks every 8x8 block of the
declared picture for each (500 empty refinement scans, 16 KB, cost 8.5 s at 4000x4000); Pillow
reads JPEG markers and PNG chunks in Python, one at a time (a million empty segments, 4 MB,
cost 5 s). Real files have a handful: phones write 10-20 JPEG segments and 1 or 10 scans, a
16 MB PNG some 2,000 IDAT chunks. The walk only reads segment lengths, in C where it searches.
A TIFF's strips or tiles are each a step of Pillow's Python loop, on opening and on decoding
(a million 4x4 tiles all pointing at one block of bytes, 8 MB, cost 4.5 s); their number is
read from the first directory's tags before Pillow opens it.
"""

from __future__ import annotations

import re
import struct

from service.errors import BadRequest

# libjpeg's progressive script has 10 scans (6 for greyscale); 32 leaves room for other
# encoders' scripts while bounding a 16-megapixel picture's scans to about half a second.
MAX_JPEG_SCANS = 32
# Marker segments of one JPEG besides its scans (tables, EXIF, ICC profile chunks, XMP).
MAX_JPEG_SEGMENTS = 256
# PNG chunks: a 16 MB picture written in libpng's 8 KB IDAT chunks has about 2,000.
MAX_PNG_CHUNKS = 8192
# TIFF strips or tiles of the first page (about 4 us each in Pillow): libtiff's default strips
# of 8 KB give a 16-megapixel RGB scan some 6,000, a 1000x16000 picture in one-row strips 16,000.
MAX_TIFF_BLOCKS = 16384
# Entries of a TIFF directory: a scan has 15-30 tags.
MAX_TIFF_TAGS = 1024

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_JPEG_SIGNATURE = b"\xff\xd8"
# In entropy-coded data a 0xFF byte is followed by 0x00 (a stuffed byte) or RSTn (0xD0-0xD7);
# any other byte after it (fill bytes 0xFF aside) begins the next marker.
_NEXT_MARKER = re.compile(rb"\xff(?=[^\x00\xd0-\xd7\xff])")
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})  # TEM, RSTn: markers without a length
_SOS, _EOI = 0xDA, 0xD9
# Classic TIFF ('*': 4-byte offsets, 12-byte entries) and BigTIFF ('+': 8-byte, 20-byte).
_TIFF_SIGNATURES = {b"II*\x00": "<", b"MM\x00*": ">", b"II+\x00": "<", b"MM\x00+": ">"}
_STRIP_OFFSETS, _TILE_OFFSETS = 273, 324


def check_structure(data: bytes, label: str) -> None:
    """BadRequest when `data` is a JPEG, PNG or TIFF with more scans, segments, chunks, strips
    or tiles than any real picture has. Other formats, and what the walk cannot follow, are
    left to Pillow."""
    if data.startswith(_JPEG_SIGNATURE):
        _check_jpeg(data, label)
    elif data.startswith(_PNG_SIGNATURE):
        _check_png(data, label)
    elif data[:4] in _TIFF_SIGNATURES:
        _check_tiff(data, label)


def _check_jpeg(data: bytes, label: str) -> None:
    scans = segments = 0
    position = 2
    while position + 4 <= len(data) and data[position] == 0xFF:
        marker = data[position + 1]
        if marker == 0xFF:  # a fill byte before a marker
            position += 1
            continue
        if marker == _EOI:  # the picture ends (an MPO's further pictures are not decoded)
            return
        segments += 1
        if segments > MAX_JPEG_SEGMENTS:
            raise _refused(label, f"more than {MAX_JPEG_SEGMENTS} JPEG marker segments")
        if marker in _STANDALONE:
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        position += 2 + length
        if marker == _SOS:
            scans += 1
            if scans > MAX_JPEG_SCANS:
                raise _refused(label, f"more than {MAX_JPEG_SCANS} JPEG scans")
            found = _NEXT_MARKER.search(data, position)
            if found is None:
                return
            position = found.start()


def _check_png(data: bytes, label: str) -> None:
    position = len(_PNG_SIGNATURE)
    for _ in range(MAX_PNG_CHUNKS):
        if position + 8 > len(data):
            return
        length, kind = struct.unpack_from(">I4s", data, position)
        if kind == b"IEND":
            return
        position += 12 + length  # length, type, data, CRC
    raise _refused(label, f"more than {MAX_PNG_CHUNKS} PNG chunks")


def _check_tiff(data: bytes, label: str) -> None:
    """The first directory's strip or tile count (the length of its offsets tag)."""
    order = _TIFF_SIGNATURES[data[:4]]
    big = data[2:4] in (b"+\x00", b"\x00+")
    offset_format, count_format, entry = ("Q", "Q", 20) if big else ("I", "H", 12)
    first = 8 if big else 4
    if len(data) < first + 8:
        return  # Pillow says what is wrong with it
    (directory,) = struct.unpack_from(order + offset_format, data, first)
    if directory + 8 > len(data):
        return
    (tags,) = struct.unpack_from(order + count_format, data, directory)
    if tags > MAX_TIFF_TAGS:
        raise _refused(label, f"{tags} TIFF tags in its first directory")
    start = directory + (8 if big else 2)
    for position in range(start, min(start + tags * entry, len(data) - entry + 1), entry):
        tag, _, count = struct.unpack_from(order + "HH" + offset_format, data, position)
        if tag in (_STRIP_OFFSETS, _TILE_OFFSETS) and count > MAX_TIFF_BLOCKS:
            kind = "strips" if tag == _STRIP_OFFSETS else "tiles"
            raise _refused(label, f"{count} TIFF {kind} (more than {MAX_TIFF_BLOCKS})")


def _refused(label: str, what: str) -> BadRequest:
    return BadRequest(
        f"{label} holds {what}, which no camera, scanner or editor writes and which would cost "
        "seconds to decode. Save it again as a plain (baseline) JPEG or PNG."
    )
