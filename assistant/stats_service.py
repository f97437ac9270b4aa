"""The statistics service: what the statistics view shows, and benchmarks over several models.

    stats = StatsService(chat)                      # AppServices builds it once per process
    snapshot = stats.snapshot(only=None)            # charts' series and per-model medians (assistant.stats_series)
    stats.memory_bandwidth()                        # bytes/s: probed once (blocking, ~1 s), then cached
    run = stats.run_benchmarks(["starter", "tiny"], progress=print)
    run.cancel()                                    # stops between steps; run.future gives what finished

`run_benchmarks` is shared by `assistant bench -m A -m B` and the window's Benchmark
button. It runs on the chat service's engine thread (in turn with the chat), loads
each model in turn, measures pp and tg like llama-bench, saves each result in the
history, and puts back the model that was loaded. Each result carries `cpu_other_busy`,
the share of the CPU other programs used meanwhile, so that every view marks a
benchmark on a busy CPU as such (`assistant.busy.benchmark_is_busy`).

Nothing here imports Qt: the window calls `memory_bandwidth` off its GUI thread
(`ui.workers.run_in_background`) and reads `cached_bandwidth` on it.
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.chat_service import ChatService
from assistant.compare_summary import PairSummary, pair_summaries
from assistant.draft_stats import DraftPair, draft_pairs
from assistant.engine import Engine, LoadSettings
from assistant.engine.benchmark import run_benchmark
from assistant.stats_series import StatsSnapshot, build_snapshot
from common.errors import UserError

log = logging.getLogger(__name__)


class BenchmarkCancelled(Exception):
    """Raised inside a benchmark between two steps once `BenchmarkRun.cancel()` was asked for."""


@dataclass(frozen=True)
class BenchmarkProgress:
    """One step of a benchmark begins: loading a model, or one of its measurements."""

    model: str
    message: str  # for people: "Loading tiny…", "tiny: pp256"
    step: int  # steps done before this one, over the whole run
    steps: int  # steps in the whole run

    def __str__(self) -> str:
        return self.message


@dataclass
class BenchmarkRun:
    """A benchmark in progress: `cancel()` stops it between steps; `future` gives the results so far.

    The future's result is one dict per model reached: run_benchmark's result (saved in the
    history), or {"model", "error"}. A model cut short by a cancel is left out, not saved.
    """

    future: Future
    stop_requested: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)  # sentences: what went wrong beside the figures
    _queued: Future | None = None

    def cancel(self) -> None:
        self.stop_requested = True
        if self._queued is not None:
            self._queued.cancel()  # still waiting behind a reply: it never starts

    @property
    def cancelled(self) -> bool:
        return self.stop_requested


@dataclass(frozen=True)
class BenchmarkCandidate:
    """An installed model the benchmark can run, with what to show beside its name."""

    name: str
    path: str
    size_bytes: int | None  # None: no file (yet)
    note: str  # "" when the file is there; else why not ("on first use", "missing")


class StatsService:
    def __init__(self, chat: ChatService, history: Any = None, *,
                 installed: Callable[[], list] | None = None,
                 bandwidth_probe: Callable[[], float] | None = None) -> None:
        """`history` defaults to the chat service's; `installed` lists installed models
        (default models.registry.list_installed); `bandwidth_probe` gives bytes/s
        (default models.speed.memory_bandwidth, which keeps its figure a day on disk)."""
        self.chat = chat
        self._history = history
        self._installed = installed
        self._probe = bandwidth_probe
        self._bandwidth: float | None = None
        self._bandwidth_known = False
        self._bandwidth_lock = threading.Lock()

    @property
    def history(self) -> Any:
        return self._history if self._history is not None else self.chat.history

    # --- figures from the history -------------------------------------------------------------

    def snapshot(self, only: str | None = None) -> StatsSnapshot:
        """Series and medians for the charts, from the history; `only`: one model over time."""
        history = self.history
        return build_snapshot(history.speed_history() if history is not None else [], only)

    def benchmarks(self) -> list[dict[str, Any]]:
        """Saved benchmarks, newest first (the history's rows)."""
        history = self.history
        return history.benchmarks() if history is not None else []

    def verdict_summaries(self, limit: int = 5) -> list[PairSummary]:
        """What the saved comparisons say, one summary per pair of models, the most compared first:
        "On your 12 comparisons, SmolLM2 135M was good enough in 9; it is 3.1× faster and …"."""
        history = self.history
        if history is None or not hasattr(history, "list_comparisons"):
            return []
        return pair_summaries(history.list_comparisons(limit=None))[:limit]

    def draft_pairs(self, limit: int = 5) -> list[DraftPair]:
        """Per model and draft: acceptance, and the speed with and without drafting (the history's replies)."""
        history = self.history
        if history is None or not hasattr(history, "draft_history"):
            return []
        return draft_pairs(history.draft_history())[:limit]

    def benchmark_candidates(self) -> list[BenchmarkCandidate]:
        """The installed models, each with its file's size or why it has none."""
        if self._installed is not None:
            entries = self._installed()
        else:
            from models.registry import list_installed

            entries = list_installed()
        out = []
        for entry in entries:
            try:
                size: int | None = Path(entry.path).stat().st_size
            except (OSError, TypeError, ValueError):
                size = None
            note = "" if size is not None else "on first use" if entry.source == "starter" else "missing"
            out.append(BenchmarkCandidate(entry.name, str(entry.path), size, note))
        return out

    # --- memory bandwidth ---------------------------------------------------------------------

    def cached_bandwidth(self) -> tuple[bool, float | None]:
        """(known, bytes/s): whether the figure was measured yet, and the figure (None if the probe failed).
        Never probes: safe on a GUI thread."""
        return self._bandwidth_known, self._bandwidth

    def memory_bandwidth(self) -> float | None:
        """This machine's memory bandwidth in bytes/s, or None if it cannot be measured.

        Blocks for the probe (about a second) the first time in a process, unless the
        figure is on disk from today; then cached. Call it off any GUI thread.
        """
        with self._bandwidth_lock:
            if not self._bandwidth_known:
                self._bandwidth = self._measure_bandwidth()
                self._bandwidth_known = True
            return self._bandwidth

    def _measure_bandwidth(self) -> float | None:
        probe = self._probe
        if probe is None:
            from models import speed

            probe = speed.memory_bandwidth  # looked up now: one place to replace it
        try:
            figure = float(probe())
        except (OSError, MemoryError, ValueError, TypeError, UserError) as exc:
            log.warning("no memory-bandwidth figure: %s", exc)
            return None
        return figure if figure > 0 else None

    # --- benchmarks ---------------------------------------------------------------------------

    def run_benchmarks(self, specs: list[str], load_settings: LoadSettings | None = None, *,
                       pp_tokens: int = 256, tg_tokens: int = 64, stream_lengths: tuple[int, ...] = (),
                       repeats: int = 1, progress: Callable[[BenchmarkProgress], None] = lambda p: None,
                       save: bool = True) -> BenchmarkRun:
        """Queue a benchmark of each model in `specs`; the run's future gives one result (or error) per model.

        `progress` is called on the engine thread as each step begins.
        """
        run = BenchmarkRun(future=Future())
        specs = list(specs)
        per_model = 3 + len(stream_lengths) * max(1, repeats)  # load, pp, tg, each stream pair
        total = per_model * len(specs)

        def work(engine: Engine) -> list[dict[str, Any]]:
            previous = engine.summary()
            try:
                for index, spec in enumerate(specs):
                    done_before = index * per_model
                    steps_here = 0

                    def step(message: str, spec: str = spec, base: int = done_before) -> None:
                        nonlocal steps_here
                        if run.stop_requested:
                            raise BenchmarkCancelled
                        progress(BenchmarkProgress(spec, message, min(base + steps_here, total - 1), total))
                        steps_here += 1
                        if run.stop_requested:
                            raise BenchmarkCancelled

                    try:
                        step(f"Loading {spec}…")
                        engine.load(spec, load_settings)
                        load = _load_meter(engine)
                        result = run_benchmark(engine, pp_tokens=pp_tokens, tg_tokens=tg_tokens,
                                               stream_lengths=stream_lengths, repeats=repeats,
                                               progress=functools.partial(_prefixed, step, spec),
                                               should_stop=lambda: run.stop_requested)
                        if load is not None:  # other programs' share of the CPU meanwhile (assistant.busy)
                            result["cpu_other_busy"] = round(load.busy_fraction(), 3)
                        if run.stop_requested:  # the last stream runs were skipped: not a whole result
                            raise BenchmarkCancelled
                    except BenchmarkCancelled:
                        log.info("benchmark cancelled before %s finished", spec)
                        break
                    except UserError as exc:
                        run.results.append({"model": spec, "error": str(exc)})
                        continue
                    if save and self.history is not None:
                        try:
                            self.chat.save_benchmark(result)
                        except UserError as exc:  # a full disk, a read-only history: the figures still count
                            log.warning("the benchmark of %s was not saved: %s", spec, exc)
                            run.warnings.append(f"The result for {spec} was not saved: {exc}")
                    run.results.append(result)
            finally:
                _put_back(engine, previous, load_settings)
            return run.results

        run._queued = self.chat.run_on_engine(work)
        run._queued.add_done_callback(lambda f: _copy_outcome(f, run))
        return run


def _load_meter(engine: Engine) -> Any:
    """A meter of other programs' CPU use from now on, counting the model's runner as the benchmark's own."""
    from models.speed import CpuLoadMeter

    summary = engine.summary()
    pid = getattr(summary, "pid", None)
    try:
        return CpuLoadMeter(also=(pid,) if isinstance(pid, int) else ())
    except (OSError, ImportError) as exc:  # no CPU counters here: the result is simply not marked
        log.info("no CPU load figure for the benchmark: %s", exc)
        return None


def _prefixed(step: Callable[[str], None], spec: str, message: str) -> None:
    step(f"{spec}: {message}")


def _put_back(engine: Engine, previous, load_settings: LoadSettings | None) -> None:
    """Load again the model that was loaded before the benchmark (none: leave the last one)."""
    now = engine.summary()
    if previous is None or (now is not None and now.path == previous.path):
        return
    try:
        engine.load(previous.spec or previous.name, load_settings)
    except UserError as exc:
        log.warning("could not reload %s after the benchmark: %s", previous.name, exc)


def _copy_outcome(source: Future, run: BenchmarkRun) -> None:
    target = run.future
    if source.cancelled():  # cancelled while it waited its turn: nothing ran
        target.set_result(list(run.results))
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())
