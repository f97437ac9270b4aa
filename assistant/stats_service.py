"""Statistics that need work, not just a query: benchmarks over several models.

`run_benchmarks` is shared by `assistant bench -m A -m B` and the window's
Benchmark button. It runs on the chat service's engine thread (in turn with the
chat), loads each model in turn, measures pp and tg like llama-bench, saves each
result in the history, puts back the model that was loaded, and stops between
steps when asked.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from assistant.chat_service import ChatService
from assistant.engine import Engine, LoadSettings
from assistant.engine.benchmark import run_benchmark
from common.errors import UserError

log = logging.getLogger(__name__)


@dataclass
class BenchmarkRun:
    """A benchmark in progress: `cancel()` stops it between steps; `future` gives the results."""

    future: Future
    stop_requested: bool = False
    results: list[dict[str, Any]] = field(default_factory=list)

    def cancel(self) -> None:
        self.stop_requested = True


class StatsService:
    def __init__(self, chat: ChatService) -> None:
        self.chat = chat

    def run_benchmarks(self, specs: list[str], load_settings: LoadSettings | None = None, *,
                       pp_tokens: int = 256, tg_tokens: int = 64, stream_lengths: tuple[int, ...] = (),
                       repeats: int = 1, progress: Callable[[str], None] = lambda msg: None,
                       save: bool = True) -> BenchmarkRun:
        """Queue a benchmark of each model in `specs`; the future gives one result (or error) per model."""
        run = BenchmarkRun(future=Future())

        def work(engine: Engine) -> list[dict[str, Any]]:
            previous = engine.summary()
            try:
                for spec in specs:
                    if run.stop_requested:
                        break
                    progress(f"Loading {spec}…")
                    try:
                        engine.load(spec, load_settings)
                        result = run_benchmark(engine, pp_tokens=pp_tokens, tg_tokens=tg_tokens,
                                               stream_lengths=stream_lengths, repeats=repeats,
                                               progress=lambda m, s=spec: progress(f"{s}: {m}"),
                                               should_stop=lambda: run.stop_requested)
                        if save and self.chat.history is not None:
                            self.chat.save_benchmark(result)
                        run.results.append(result)
                    except UserError as exc:
                        run.results.append({"model": spec, "error": str(exc)})
            finally:
                if previous is not None and (engine.summary() is None or engine.summary().path != previous.path):
                    try:
                        engine.load(previous.spec or previous.name, load_settings)
                    except UserError as exc:
                        log.warning("could not reload %s after the benchmark: %s", previous.name, exc)
            return run.results

        inner = self.chat.run_on_engine(work)
        inner.add_done_callback(lambda f: _copy_outcome(f, run.future))
        return run


def _copy_outcome(source: Future, target: Future) -> None:
    if source.cancelled():
        target.cancel()
    elif source.exception() is not None:
        target.set_exception(source.exception())
    else:
        target.set_result(source.result())
