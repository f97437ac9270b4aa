"""The window's one bridge to the core: service callbacks in, Qt signals out.

The chat service calls its listeners on its engine thread. `ChatBridge` re-emits
each event as a Qt signal; Qt queues it to the widgets on the UI thread. Widgets
get the bridge (and the services) through their constructors and never reach
into the engine.
"""

from __future__ import annotations

import logging
from typing import Any

from PySide6.QtCore import QObject, Signal

from assistant.chat_service import (ChatService, ModelFailed, ModelLoaded, ModelLoading, TurnFailed, TurnFinished,
                                    TurnHandle, TurnQueued, TurnRequest, TurnStarted, TurnText)
from assistant.engine import LoadSettings
from assistant.stats_service import BenchmarkProgress, BenchmarkRun, StatsService

log = logging.getLogger(__name__)


class ChatBridge(QObject):
    turnQueued = Signal(object)  # TurnQueued
    turnStarted = Signal(object)  # TurnStarted
    turnText = Signal(object)  # TurnText
    turnFinished = Signal(object)  # TurnFinished
    turnFailed = Signal(object)  # TurnFailed
    modelLoading = Signal(object)  # ModelLoading
    modelLoaded = Signal(object)  # ModelLoaded
    modelFailed = Signal(object)  # ModelFailed
    tokenCount = Signal(int, int)  # tokens the draft would take, the context size

    _SIGNALS = {TurnQueued: "turnQueued", TurnStarted: "turnStarted", TurnText: "turnText",
                TurnFinished: "turnFinished", TurnFailed: "turnFailed", ModelLoading: "modelLoading",
                ModelLoaded: "modelLoaded", ModelFailed: "modelFailed"}

    def __init__(self, service: ChatService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.service = service
        self._unsubscribe = service.subscribe(self._relay)

    def _relay(self, event: Any) -> None:
        name = self._SIGNALS.get(type(event))
        if name is None:
            return
        try:
            getattr(self, name).emit(event)
        except RuntimeError:  # the window is gone (shutting down)
            log.debug("dropped %s: the bridge was deleted", name)

    # --- Calls (none blocks: results come back as signals)
    def submit(self, request: TurnRequest) -> TurnHandle:
        return self.service.submit(request)

    def load(self, spec: str, settings: LoadSettings | None = None, *, automatic: bool = False) -> None:
        future = self.service.load(spec, settings, automatic=automatic)
        # The outcome arrives as modelLoaded / modelFailed; only a bug would leave an exception unseen.
        future.add_done_callback(lambda f: f.cancelled() or f.exception() is None
                                 or log.debug("load of %s: %s", spec, f.exception()))

    def count_draft(self, messages: list[dict]) -> None:
        self.service.count_tokens_later(messages, lambda used, n_ctx: self._emit_count(used, n_ctx))

    def _emit_count(self, used: int, n_ctx: int) -> None:
        try:
            self.tokenCount.emit(used, n_ctx)
        except RuntimeError:
            pass

    def cancel(self, request_id: int) -> None:
        self.service.cancel(request_id)

    def close(self) -> None:
        self._unsubscribe()


class BenchmarkBridge(QObject):
    """A benchmark of several models through the statistics service, with progress as signals.

    One run at a time; `cancel()` stops it between steps. `benchmarkFinished` carries
    {"results": [...], "cancelled": bool, "warnings": [sentences]}; each result is saved in the
    history already (a warning says when one could not be).
    """

    benchmarkStarted = Signal(int)  # models in the run
    benchmarkProgress = Signal(object)  # BenchmarkProgress (str() gives its sentence)
    benchmarkFinished = Signal(dict)
    saves_results = True

    def __init__(self, stats: StatsService, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.stats = stats
        self.run: BenchmarkRun | None = None

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.future.done()

    def benchmark(self, specs: list[str], load_settings: LoadSettings | None = None) -> bool:
        """Start a benchmark of `specs`; False (and nothing started) while another one runs."""
        if self.running or not specs:
            return False
        self.benchmarkStarted.emit(len(specs))
        self.run = self.stats.run_benchmarks(list(specs), load_settings, progress=self._progress)
        run = self.run
        run.future.add_done_callback(lambda f: self._finished(run, f))
        return True

    def cancel(self) -> None:
        if self.run is not None:
            self.run.cancel()

    def _progress(self, progress: BenchmarkProgress) -> None:
        try:
            self.benchmarkProgress.emit(progress)
        except RuntimeError:  # the window is gone (shutting down)
            log.debug("dropped benchmark progress: the bridge was deleted")

    def _finished(self, run: BenchmarkRun, future) -> None:
        if future.exception() is not None:
            log.error("the benchmark failed", exc_info=future.exception())
            results = [*run.results, {"model": "benchmark", "error": str(future.exception())}]
        else:
            results = future.result()
        try:
            self.benchmarkFinished.emit({"results": results, "cancelled": run.cancelled,
                                         "warnings": list(run.warnings)})
        except RuntimeError:
            log.debug("dropped the benchmark's outcome: the bridge was deleted")
