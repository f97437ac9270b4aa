"""The one worker thread that owns the Engine; the window talks to it through signals.

Every request is a queued slot call, so it runs on the worker thread in order.
Only `cancel()` is called directly from the window: the worker is busy inside the
generation loop then, and the engine's cancel is thread-safe by design.

Text is batched: the worker emits what has streamed at most every BATCH_SECONDS,
so the window repaints a few dozen times a second however fast tokens come.
"""

import time
import traceback

from PySide6.QtCore import QObject, QThread, Signal, Slot

from common.errors import UserError

BATCH_SECONDS = 0.05


class EngineWorker(QObject):
    loadStarted = Signal(str)  # the name being loaded
    loadFinished = Signal(dict)  # what is loaded now (see model_summary)
    loadFailed = Signal(str)  # a sentence for the user
    replyStarted = Signal(int, int)  # conversation id, reply message id
    replyText = Signal(int, int, str)  # conversation id, reply message id, new text
    replyFinished = Signal(int, int, dict)  # conversation id, reply message id, stats record
    replyFailed = Signal(int, str)
    tokenCount = Signal(int, int)  # tokens the draft conversation would take, context size
    benchmarkProgress = Signal(str)
    benchmarkFinished = Signal(dict)
    busyChanged = Signal(bool)

    def __init__(self, engine_factory, history_factory):
        super().__init__()
        self._engine_factory = engine_factory
        self._history_factory = history_factory
        self.engine = None
        self.history = None
        self._session = None

    # --- Lifecycle: objects that must live on the worker thread are made there.
    def _ensure(self):
        if self.engine is None:
            self.engine = self._engine_factory()
        if self.history is None:
            self.history = self._history_factory()

    def cancel(self) -> None:
        """Called from the window thread: stop the current reply within one token, or a load in progress."""
        session = self._session
        if session is not None:
            session.cancel()
        if self.engine is not None:
            self.engine.cancel()

    # --- Models
    @Slot(str, object, bool)
    def load(self, spec: str, load_settings, automatic: bool = False) -> None:
        self._ensure()
        self.loadStarted.emit(spec)
        self.busyChanged.emit(True)
        try:
            self.engine.load(spec, load_settings, automatic=automatic)
            self.loadFinished.emit(model_summary(self.engine))
        except UserError as exc:
            self.loadFailed.emit(str(exc))
            if self.engine.summary() is not None:  # the previous model was put back
                self.loadFinished.emit(model_summary(self.engine))
            elif automatic and spec != "starter":  # the last model cannot be reopened: start on the starter
                self.load("starter", None)
        except Exception as exc:  # never let a bug kill the worker thread
            traceback.print_exc()
            self.loadFailed.emit(f"The model could not be loaded: {exc}.")
        finally:
            self.busyChanged.emit(False)

    # --- Replies
    @Slot(object, str, object, object)
    def send(self, conversation_id, text: str, settings, system_prompt) -> None:
        self._run(lambda s: s.send(text), conversation_id, settings, system_prompt)

    @Slot(int, object)
    def regenerate(self, reply_id: int, settings) -> None:
        self._run(lambda s: s.regenerate(reply_id), None, settings, None, keep_prompt=True)

    @Slot(int, str, object)
    def edit(self, message_id: int, text: str, settings) -> None:
        self._run(lambda s: s.edit(message_id, text), None, settings, None, keep_prompt=True)

    def _run(self, start, conversation_id, settings, system_prompt, keep_prompt=False) -> None:
        from assistant.session import ChatSession

        self._ensure()
        if self.engine.summary() is None:
            self.replyFailed.emit(conversation_id or 0, "No model is loaded yet.")
            return
        session = ChatSession(self.engine, system_prompt=system_prompt, settings=settings, history=self.history)
        if conversation_id is not None:
            session.resume(conversation_id)
            if not keep_prompt and system_prompt is not None:
                session.system_prompt = system_prompt
        self._session = session
        self.busyChanged.emit(True)
        conv_id = reply_id = 0
        try:
            stream = start(session)
            pending, last_emit = [], time.monotonic()
            for chunk in stream:
                if not reply_id:
                    conv_id, reply_id = session.conversation_id, session.reply_id
                    self.replyStarted.emit(conv_id, reply_id)
                pending.append(chunk)
                now = time.monotonic()
                if now - last_emit >= BATCH_SECONDS:
                    self.replyText.emit(conv_id, reply_id, "".join(pending))
                    pending, last_emit = [], now
            conv_id, reply_id = session.conversation_id, session.reply_id
            if reply_id and pending:
                self.replyText.emit(conv_id, reply_id, "".join(pending))
            stats = session.last_response.stats.to_dict() if session.last_response.stats else {}
            self.replyFinished.emit(conv_id or 0, reply_id or 0, stats)
        except UserError as exc:
            self.replyFailed.emit(session.conversation_id or 0, str(exc))
        except Exception as exc:
            traceback.print_exc()
            self.replyFailed.emit(session.conversation_id or 0, f"The reply failed: {exc}.")
        finally:
            self._session = None
            self.busyChanged.emit(False)

    # --- Context meter and benchmark
    @Slot(object)
    def count_tokens(self, messages) -> None:
        self._ensure()
        summary = self.engine.summary()
        if summary is None:
            return
        try:
            self.tokenCount.emit(self.engine.count_tokens(messages), summary.n_ctx)
        except UserError:
            pass

    @Slot(object, object)
    def benchmark(self, specs, load_settings) -> None:
        """Benchmark each model in turn, then load back what was loaded before."""
        from assistant.engine.benchmark import run_benchmark

        self._ensure()
        previous = self.engine.summary().name if self.engine.summary() else None
        self.busyChanged.emit(True)
        results = []
        try:
            for spec in specs:
                self.benchmarkProgress.emit(f"Loading {spec}…")
                try:
                    self.engine.load(spec, load_settings)
                    result = run_benchmark(self.engine, pp_tokens=256, tg_tokens=64, stream_lengths=(),
                                           progress=lambda m, s=spec: self.benchmarkProgress.emit(f"{s}: {m}"))
                    result["memory"] = model_summary(self.engine)["memory"]
                    results.append(result)
                    self.history.save_benchmark(result)
                except UserError as exc:
                    results.append({"model": spec, "error": str(exc)})
        finally:
            if previous is not None:
                try:
                    self.engine.load(previous)
                    self.loadFinished.emit(model_summary(self.engine))
                except UserError as exc:
                    self.loadFailed.emit(str(exc))
            self.busyChanged.emit(False)
            self.benchmarkFinished.emit({"results": results})


def model_summary(engine) -> dict:
    """What the window shows about the loaded model: plain data, no engine objects."""
    summary = engine.summary()
    if summary is None:
        return {}
    d = summary.to_dict()
    d["backend"], d["gpu_offload"] = summary.backend.get("kind"), summary.backend.get("gpu_offload")
    return d


class EngineThread:
    """Starts the worker on its own QThread and stops it cleanly on close."""

    def __init__(self, engine_factory, history_factory):
        self.thread = QThread()
        self.thread.setObjectName("engine")
        self.worker = EngineWorker(engine_factory, history_factory)
        self.worker.moveToThread(self.thread)
        self.thread.start()

    def stop(self, timeout_ms: int = 10_000) -> bool:
        """Cancel any reply (its partial text is saved by the session), then join the thread."""
        self.worker.cancel()
        self.thread.quit()
        stopped = self.thread.wait(timeout_ms)
        if stopped and self.worker.engine is not None:
            # Free llama.cpp's model now, not during interpreter shutdown, when its
            # destructors would call back into a half-finalised Python (a crash).
            self.worker.engine.unload()
        return stopped
