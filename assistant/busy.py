"""One rule for a speed measured while other programs held the CPU, for every view that shows one.

    is_busy(stats_record)           # a reply's record: True when its speed is below the model's
    run_is_busy(0.9, n_threads=2)   # a measured busy fraction and the threads the run used

A run measures the share of all cores' time that other programs used meanwhile
(`transport.cpu_other_busy` in a reply's record, `cpu_other_busy` in a benchmark's);
`models.speed.is_quiet` decides whether the run still had the cores it asked for. A
figure from a busy run is shown, marked "busy CPU" (`BUSY_MARK`), and never becomes a
model's speed: the statistics' medians, the picker's chips, the model list, Compare's
summaries and the benchmark table leave it out. A remote reply is never busy here: its
speed is the server's.
"""

from __future__ import annotations

import math
import os
from typing import Any

from models.speed import is_quiet

BUSY_MARK = "busy CPU"
BUSY_NOTE = ("busy CPU: other programs used the CPU during that run, so its speed is below what this machine "
             "gives; it is not used as the model's speed")
BUSY_TIP = BUSY_NOTE[0].upper() + BUSY_NOTE[1:]  # the same, as a tooltip's sentence


def _share(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return min(1.0, max(0.0, float(value)))


def run_is_busy(cpu_other_busy: Any, n_threads: Any = None, n_cores: int | None = None) -> bool:
    """Whether a run with this busy fraction lacked the cores it needed. Not measured: not busy.
    Threads not known: as if the run used every core (the strict reading)."""
    share = _share(cpu_other_busy)
    if share is None:
        return False
    cores = n_cores or os.cpu_count() or 1
    threads = n_threads if isinstance(n_threads, int) and not isinstance(n_threads, bool) and n_threads > 0 else cores
    return not is_quiet(share, threads, cores)


def is_busy(stats: dict[str, Any] | None, n_cores: int | None = None) -> bool:
    """Whether a reply's statistics record was measured on a busy CPU (a remote reply never is)."""
    if not isinstance(stats, dict):
        return False
    transport = stats.get("transport")
    if not isinstance(transport, dict) or transport.get("kind") == "remote":
        return False
    return run_is_busy(transport.get("cpu_other_busy"), stats.get("n_threads"), n_cores)


def benchmark_is_busy(result: dict[str, Any] | None, n_cores: int | None = None) -> bool:
    """Whether a benchmark (run_benchmark's result, or a saved row's record) ran on a busy CPU."""
    if not isinstance(result, dict):
        return False
    return run_is_busy(result.get("cpu_other_busy"), result.get("threads"), n_cores)
