"""Large blocks go back to the operating system when freed.

glibc's malloc serves a block above its mmap threshold with a mapping of its own, returned on
free; but the threshold rises to the size of any such block freed (up to 32 MB), after which
a decoder's buffers come from the heap and stay in the process when freed. Decoding HEIF and
AVIF pictures of a few megapixels left the worker 50-100 MB larger for good (docs/reliability.md:
not a leak, it stops growing, and `malloc_trim` gives it all back). A fixed threshold keeps
large blocks mapped and returned.
"""

from __future__ import annotations

import ctypes
import ctypes.util

# glibc's mallopt parameter for the mmap threshold, and the threshold: a megabyte, above any
# request's small buffers (a batch of digits is 25 KB), below a decoded picture's.
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD_BYTES = 1024 * 1024


def return_large_blocks() -> bool:
    """Fix malloc's mmap threshold (glibc only); whether it was set."""
    name = ctypes.util.find_library("c")
    if name is None:
        return False
    try:
        mallopt = ctypes.CDLL(name).mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return False
    return bool(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES))
