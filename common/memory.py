"""Giving freed memory back to the operating system.

glibc keeps freed heap memory for reuse, and after one large allocation is freed it
raises its threshold for using mmap, so a later large buffer (a 16 MB GGUF header
read) stays on the heap and counts as resident long after it is freed. Trimming
hands it back: after a model is unloaded, the app's memory really returns.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import sys
from functools import lru_cache


@lru_cache(maxsize=1)
def _malloc_trim():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # musl and others have no malloc_trim
        return None


def trim_heap() -> None:
    """Collect garbage and return free heap memory to the OS (a no-op where that is not possible)."""
    gc.collect()
    trim = _malloc_trim()
    if trim is not None:
        trim(0)
