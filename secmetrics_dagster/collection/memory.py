"""Give memory the process has freed back to the operating system.

CPython hands large blocks to glibc's malloc, and glibc keeps what is freed in its heap for reuse instead of
returning it: after a pull that held a few export chunks at a time, the process keeps that high-water mark for
the rest of the step, and each store's own buffers (DuckDB's reader, S3 parts) come on top of it.
`malloc_trim(0)` returns the free pages, so the stores start from what is really in use. Where the C library
has no malloc_trim (musl, macOS) this does nothing.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable
from typing import Optional


@functools.lru_cache(maxsize=1)
def _malloc_trim() -> Optional[Callable[[int], int]]:
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        trim = libc.malloc_trim
    except (OSError, AttributeError):
        return None
    trim.argtypes = [ctypes.c_size_t]
    trim.restype = ctypes.c_int
    return trim


def release_free_memory() -> bool:
    """Return freed heap pages to the OS; True if the C library could be asked."""
    trim = _malloc_trim()
    if trim is None:
        return False
    trim(0)
    return True
