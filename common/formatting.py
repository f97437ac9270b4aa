"""One way to print every figure the app shows: bytes, rates, durations, parameter counts.

The window, the command line and exports all call these, so a model reads
"4.9 GB" everywhere. Decimal units (GB = 10^9 bytes), as file managers and task
managers show sizes; "kB" as SI writes it.
"""

from __future__ import annotations

import math

UNKNOWN = "?"


def _finite(n: float | int | None) -> bool:
    return isinstance(n, (int, float)) and not isinstance(n, bool) and math.isfinite(n)


def format_bytes(n: float | int | None, *, approx: bool = False, unknown: str = UNKNOWN) -> str:
    """253 MB, 4.9 GB, 50.3 MB: one decimal below 100, whole numbers above."""
    if not _finite(n) or n is None or n <= 0:
        return unknown if not (_finite(n) and n == 0) else "0 B"
    prefix = "~" if approx else ""
    for unit, scale in (("TB", 1e12), ("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if n >= scale * 0.9995:
            value = n / scale
            return f"{prefix}{value:.1f} {unit}" if value < 99.95 else f"{prefix}{value:.0f} {unit}"
    return f"{prefix}{n:.0f} B"


def format_byte_rate(bytes_per_s: float | None, *, unknown: str = "") -> str:
    """A download speed: 12 MB/s."""
    if not _finite(bytes_per_s) or bytes_per_s is None or bytes_per_s <= 0:
        return unknown
    return f"{format_bytes(bytes_per_s)}/s"


def format_number(value: float | None, *, unknown: str = UNKNOWN) -> str:
    """A speed or similar figure: 412, 41.2, 8.2, 0.53."""
    if not _finite(value) or value is None:
        return unknown
    if abs(value) >= 100:
        return f"{value:.0f}"
    return f"{value:.2f}" if abs(value) < 1 else f"{value:.1f}"


def format_tps(tps: float | None, *, estimate: bool = False, unit: bool = True, unknown: str = UNKNOWN,
               precise: bool = False) -> str:
    """Tokens per second: "41 tok/s" measured, "~41 tok/s" estimated; `precise` for one reply's
    own record, "41.2 tok/s", where the decimal tells two runs of the same model apart."""
    if not _finite(tps) or tps is None or tps <= 0:
        return unknown
    value = f"{tps:.1f}" if precise or tps < 10 else f"{tps:.0f}"
    return ("~" if estimate else "") + value + (" tok/s" if unit else "")


def format_count(n: int, noun: str, plural: str | None = None) -> str:
    """A count and its noun, in the plural when it is not one: "1 repo", "3 repos", "2 replies"."""
    if n == 1:
        return f"{n} {noun}"
    if plural is None:
        plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2:-1] not in "aeiou" else noun + "s"
    return f"{n} {plural}"


def format_params(n: int | float | None, *, unknown: str = UNKNOWN) -> str:
    """Parameter counts as people say them: 135M, 1.2B, 8B."""
    if not _finite(n) or n is None or n <= 0:
        return unknown
    if n >= 0.95e9:
        value = n / 1e9
        return f"{value:.0f}B" if value >= 9.95 or abs(value - round(value)) < 0.05 else f"{value:.1f}B"
    return f"{n / 1e6:.0f}M"


def format_context(n: int | None, *, unknown: str = UNKNOWN) -> str:
    """A context length: 4k, 128k, 2000."""
    if not n:
        return unknown
    return f"{n // 1024}k" if n >= 1024 and n % 1024 == 0 else str(n)


def format_duration(seconds: float | None, *, unknown: str = UNKNOWN) -> str:
    """0.21 s, 4.5 s, 2 min 05 s, 1 h 10 min."""
    if not _finite(seconds) or seconds is None or seconds < 0:
        return unknown
    if seconds < 10:
        return f"{seconds:.2f} s" if seconds < 1 else f"{seconds:.1f} s"
    s = int(round(seconds))
    if s < 60:
        return f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s // 3600} h {(s % 3600) // 60} min"


def format_eta(seconds: float | None) -> str:
    """Time left of a download: "12 s left", "4 min 10 s left"; '' when unknown."""
    if not _finite(seconds) or seconds is None or seconds < 0:
        return ""
    s = int(round(seconds))
    if s < 60:
        return f"{s} s left"
    if s < 3600:
        return f"{s // 60} min {s % 60:02d} s left" if s < 600 else f"{round(s / 60)} min left"
    return f"{format_duration(float(s))} left"
