"""Limits the runner puts on itself, so that one model file cannot take the machine.

- A memory ceiling (RLIMIT_AS) sized from the fit estimate: a template that builds
  gigabytes, or a header that makes llama.cpp allocate without end, fails inside
  the runner instead of swapping the machine to a halt.
- A time limit on Python work that a model file controls (chat-template rendering):
  SIGALRM interrupts a template that loops for minutes.
- The process itself: Ctrl-C in the terminal is the app's to handle (the app
  sends a cancel), and the runner dies with the app.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import signal
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager

log = logging.getLogger(__name__)


class TimeLimitExceeded(Exception):
    """Raised inside the runner's main thread when a time limit runs out."""


def harden_process() -> None:
    """Prepare the runner process: SIGINT ignored, death with the parent, few malloc arenas."""
    # The terminal sends Ctrl-C to the whole process group; the app decides what it means.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
            PR_SET_PDEATHSIG, M_ARENA_MAX = 1, -8
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # if the app dies (even SIGKILL), so does the runner
            # glibc reserves 64 MB of address space per thread's arena; with a memory ceiling on
            # the address space, a handful of arenas is enough and leaves the ceiling to real use.
            libc.mallopt(M_ARENA_MAX, 2)
        except (OSError, AttributeError):
            log.debug("prctl/mallopt are unavailable")


def set_memory_ceiling(limit_bytes: int | None) -> int | None:
    """Cap the runner's address space at `limit_bytes` (soft limit); returns the limit set, or None.

    Only on Linux, where RLIMIT_AS is enforced for every allocation, mmap included.
    """
    if not limit_bytes or not sys.platform.startswith("linux"):
        return None
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_AS)
    if hard != resource.RLIM_INFINITY:
        limit_bytes = min(limit_bytes, hard)
    try:
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, hard))
    except (ValueError, OSError) as exc:
        log.warning("could not set a memory ceiling of %d bytes: %s", limit_bytes, exc)
        return None
    return limit_bytes


@contextmanager
def time_limit(seconds: float) -> Iterator[None]:
    """Raise TimeLimitExceeded in the main thread if the block runs longer than `seconds`.

    Python code (a Jinja template's loops) is interrupted between bytecodes; a single
    C call finishes first, which is why the memory ceiling exists beside this.
    """
    if seconds <= 0 or threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGALRM"):
        yield
        return

    def expire(signum, frame):  # noqa: ARG001 - signal handler signature
        raise TimeLimitExceeded()

    previous = signal.signal(signal.SIGALRM, expire)
    signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)
