"""The main window: sidebar, conversation, input, model picker, status bar.

The window never runs the model. Requests go to the EngineWorker as queued
signals; replies come back as batched text. The history is read here through the
window's own SQLite connection, and written by the worker's.
"""

import psutil
from PySide6.QtCore import QSettings, Qt, QTimer, Signal
from PySide6.QtGui import QKeySequence, QShortcut
from PySide6.QtWidgets import (QLabel, QMainWindow, QMessageBox, QProgressBar, QSplitter,
                               QStackedWidget, QToolBar, QVBoxLayout, QWidget)

from assistant.engine.settings import GenerationSettings, LoadSettings
from common.formatting import format_bytes
from ui.chat_view import ChatView
from ui.engine_worker import EngineThread
from ui.input_box import InputBox
from ui.model_manager import ModelManager
from ui.model_picker import ModelPicker
from ui.settings_dialog import SettingsDialog, conversation_settings, load_defaults
from ui.sidebar import Sidebar


class MainWindow(QMainWindow):
    requestLoad = Signal(str, object, bool)  # spec, load settings, automatic (not asked for just now)
    requestSend = Signal(object, str, object, object)
    requestRegenerate = Signal(int, object)
    requestEdit = Signal(int, str, object)
    requestCount = Signal(object)
    requestBenchmark = Signal(object, object)

    def __init__(self, engine_factory, history, history_factory, *, settings: QSettings | None = None):
        super().__init__()
        self.setWindowTitle("Hearth — private local chat")
        self.resize(1180, 780)
        self.history = history
        self.qsettings = settings or QSettings("hearthchat", "hearthchat")
        self.defaults = load_defaults(self.qsettings)
        self.current_id: int | None = None
        self.model: dict = {}
        self.live: dict[int, str] = {}  # reply id -> text streamed so far (ahead of the database)
        self.generating = False
        self._pending_new = False  # a first message was sent; the worker will create the conversation

        self.engine_thread = EngineThread(engine_factory, history_factory)
        self.worker = self.engine_thread.worker
        self._connect_worker()
        self._build()
        self._shortcuts()
        self._ram_timer = QTimer(self, interval=1000)
        self._ram_timer.timeout.connect(self._update_status)
        self._ram_timer.start()
        for warning in getattr(history, "warnings", []) or []:
            QTimer.singleShot(0, self, lambda w=warning: QMessageBox.warning(self, "History", w))

    # --- Building
    def _build(self) -> None:
        toolbar = QToolBar("Main")
        toolbar.setMovable(False)
        toolbar.setAccessibleName("Main toolbar")
        self.addToolBar(toolbar)
        self.model_picker = self._make_model_picker()
        toolbar.addWidget(self.model_picker)
        self.load_progress = QProgressBar()
        self.load_progress.setRange(0, 0)
        self.load_progress.setMaximumWidth(120)
        self.load_progress.setAccessibleName("Loading model")
        self.load_progress.hide()
        toolbar.addWidget(self.load_progress)
        spacer = QWidget()
        spacer.setSizePolicy(spacer.sizePolicy().horizontalPolicy().Expanding, spacer.sizePolicy().verticalPolicy())
        toolbar.addWidget(spacer)
        self.chat_action = toolbar.addAction("Chat", lambda: self.show_page(0))
        self.stats_action = toolbar.addAction("Statistics", lambda: self.show_page(1))
        self.models_action = toolbar.addAction("Models…", self.open_model_manager)
        self.settings_action = toolbar.addAction("Settings…", self.open_settings)
        for action, name in ((self.chat_action, "Show chat"), (self.stats_action, "Show statistics"),
                             (self.models_action, "Open model manager"), (self.settings_action, "Open settings")):
            toolbar.widgetForAction(action).setAccessibleName(name)

        self.sidebar = Sidebar(self.history)
        self.sidebar.conversationSelected.connect(self.open_conversation)
        self.sidebar.messageSelected.connect(self.open_conversation)
        self.sidebar.newChatRequested.connect(self.new_chat)
        self.sidebar.conversationDeleted.connect(self._deleted)

        self.chat = ChatView()
        self.chat.set_stats_mode(self.defaults.get("stats_line", "always"))
        self.chat.editRequested.connect(self.edit_message)
        self.chat.regenerateRequested.connect(self.regenerate)
        self.chat.branchRequested.connect(self.switch_branch)
        self.input = InputBox()
        self.input.sendRequested.connect(self.send)
        self.input.stopRequested.connect(self.stop)
        self.input.draftChanged.connect(self._count_draft)
        chat_page = QWidget()
        chat_layout = QVBoxLayout(chat_page)
        chat_layout.setContentsMargins(0, 0, 0, 0)
        chat_layout.addWidget(self.chat, 1)
        chat_layout.addWidget(self.input)

        self.pages = QStackedWidget()
        self.pages.addWidget(chat_page)
        self.stats_view = None  # built on first show: it reads the whole history
        splitter = QSplitter()
        splitter.addWidget(self.sidebar)
        splitter.addWidget(self.pages)
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([270, 910])
        self.setCentralWidget(splitter)

        self.status_model = QLabel("No model")
        self.status_ram = QLabel()
        self.status_threads = QLabel()
        self.status_backend = QLabel()
        for label, name in ((self.status_model, "Loaded model"), (self.status_ram, "Memory used by the app"),
                            (self.status_threads, "Threads"), (self.status_backend, "Backend")):
            label.setAccessibleName(name)
            self.statusBar().addPermanentWidget(label)
        self._update_status()

    def _make_model_picker(self) -> ModelPicker:
        picker = ModelPicker(self)
        picker.modelRequested.connect(self.load_model)
        return picker

    def _shortcuts(self) -> None:
        QShortcut(QKeySequence("Ctrl+N"), self, self.new_chat)
        QShortcut(QKeySequence("Ctrl+F"), self, lambda: self.sidebar.search.setFocus())
        QShortcut(QKeySequence("Esc"), self, self.stop)
        QShortcut(QKeySequence("Ctrl+L"), self, lambda: self.input.edit.setFocus())

    def _connect_worker(self) -> None:
        w = self.worker
        self.requestLoad.connect(w.load)
        self.requestSend.connect(w.send)
        self.requestRegenerate.connect(w.regenerate)
        self.requestEdit.connect(w.edit)
        self.requestCount.connect(w.count_tokens)
        self.requestBenchmark.connect(w.benchmark)
        w.loadStarted.connect(self._load_started)
        w.loadFinished.connect(self._load_finished)
        w.loadFailed.connect(self._load_failed)
        w.replyStarted.connect(self._reply_started)
        w.replyText.connect(self._reply_text)
        w.replyFinished.connect(self._reply_finished)
        w.replyFailed.connect(self._reply_failed)
        w.tokenCount.connect(self._token_count)

    # --- Models
    def load_model(self, spec: str, load_settings: LoadSettings | None = None, *, automatic: bool = False) -> None:
        """Load a model; `automatic` for one the user did not pick just now (the last one, at start-up)."""
        self.requestLoad.emit(spec, load_settings or self._load_settings(), automatic)

    def _load_settings(self) -> LoadSettings:
        d = self.defaults
        return LoadSettings(n_ctx=d.get("n_ctx") or None, n_threads=d.get("n_threads") or None,
                            n_gpu_layers=d.get("n_gpu_layers"), chat_template=d.get("chat_template") or None)

    def _load_started(self, name: str) -> None:
        self.load_progress.show()
        self.status_model.setText(f"Loading {name}…")

    def _load_finished(self, summary: dict) -> None:
        self.load_progress.hide()
        self.model = summary
        self.model_picker.set_loaded(summary)
        self._update_status()
        self._count_draft(self.input.edit.toPlainText())

    def _load_failed(self, message: str) -> None:
        self.load_progress.hide()
        self._update_status()
        QMessageBox.warning(self, "Model", message)

    # --- Conversations
    def new_chat(self) -> None:
        self.current_id = None
        self._pending_new = False
        self.chat.clear()
        self.sidebar.select(None)
        self.show_page(0)
        self.input.edit.setFocus()
        self._count_draft(self.input.edit.toPlainText())

    def open_conversation(self, conv_id: int, message_id: int | None = None) -> None:
        self.current_id = conv_id
        self._pending_new = False
        if message_id:
            self.history.switch_branch(message_id)  # a search hit on another branch: show that branch
        conv = self.history.get_conversation(conv_id)
        self.chat.show_thread(conv, live=self.live, include=message_id)
        self.sidebar.select(conv_id)
        self.show_page(0)
        if message_id and message_id in self.chat.widgets:
            widget = self.chat.widgets[message_id]
            # With the widget as context, the timer dies with it if the view is rebuilt first.
            QTimer.singleShot(50, widget, lambda: self.chat.ensureWidgetVisible(widget))
            self.chat._follow = False
        self._count_draft(self.input.edit.toPlainText())

    def _deleted(self, conv_id: int) -> None:
        if conv_id == self.current_id:
            self.new_chat()

    def current_settings(self) -> GenerationSettings:
        conv = self.history.get_conversation(self.current_id) if self.current_id else None
        return conversation_settings(self.defaults, conv.settings if conv else None)

    # --- Sending
    def send(self, text: str) -> None:
        if self.generating or not self.model:
            if not self.model:
                QMessageBox.information(self, "Model", "The model is still loading; try again in a moment.")
                self.input.edit.setPlainText(text)
            return
        settings = self.current_settings()
        system = self.defaults.get("system_prompt") or None if self.current_id is None else None
        self._pending_new = self.current_id is None
        if self.current_id is None:
            self.chat.clear()
        self._begin()
        self.requestSend.emit(self.current_id, text, settings, system)

    def regenerate(self, reply_id: int) -> None:
        if not self.generating and self.model:
            self._begin()
            self.requestRegenerate.emit(reply_id, self.current_settings())

    def edit_message(self, message_id: int, text: str) -> None:
        if not self.generating and self.model and text.strip():
            self._begin()
            self.requestEdit.emit(message_id, text.strip(), self.current_settings())

    def switch_branch(self, message_id: int) -> None:
        self.history.switch_branch(message_id)
        self.open_conversation(self.current_id)

    def stop(self) -> None:
        if self.generating:
            self.worker.cancel()  # direct call: the worker is busy in its loop

    def _begin(self) -> None:
        self.generating = True
        self.input.set_generating(True)

    # --- Streaming replies (from the worker)
    def _reply_started(self, conv_id: int, reply_id: int) -> None:
        self.live[reply_id] = ""
        if self._pending_new:
            self.current_id = conv_id
            self._pending_new = False
            self.sidebar.refresh()
        if conv_id == self.current_id:
            self.open_conversation(conv_id)

    def _reply_text(self, conv_id: int, reply_id: int, text: str) -> None:
        self.live[reply_id] = self.live.get(reply_id, "") + text
        widget = self.chat.widgets.get(reply_id) if conv_id == self.current_id else None
        if widget is not None:
            widget.append(text)

    def _reply_finished(self, conv_id: int, reply_id: int, stats: dict) -> None:
        self.live.pop(reply_id, None)
        self.generating = False
        self.input.set_generating(False)
        if stats.get("stop_reason") in ("eos", "length", "stopped", "repetition") and self.model:
            # Only a model that has loaded and answered becomes the one reopened at start-up.
            self.qsettings.setValue("last_model", self.model.get("name"))
        if conv_id and conv_id == self.current_id:
            message = self.history.get_message(reply_id)
            widget = self.chat.widgets.get(reply_id)
            if widget is not None:
                widget.finish(message.stats or stats, message.status)
            ctx = stats.get("context") or {}
            if ctx.get("used_tokens") is not None:
                note = ctx.get("message", "") if ctx.get("applied") else ""
                self.input.show_context(ctx["used_tokens"], stats.get("n_ctx") or 0, note)
        self.sidebar.refresh()
        if self.stats_view is not None and self.pages.currentIndex() == 1:
            self.stats_view.refresh()

    def _reply_failed(self, conv_id: int, message: str) -> None:
        self.generating = False
        self.input.set_generating(False)
        self._pending_new = False
        QMessageBox.warning(self, "Reply", message)

    # --- Context meter
    def _count_draft(self, draft: str) -> None:
        if not self.model or self.generating:
            return
        messages = []
        if self.current_id:
            messages = self.history.get_conversation(self.current_id).chat_messages()
        elif self.defaults.get("system_prompt"):
            messages = [{"role": "system", "content": self.defaults["system_prompt"]}]
        messages = messages + [{"role": "user", "content": draft}]
        self.requestCount.emit(messages)

    def _token_count(self, used: int, limit: int) -> None:
        policy = self.current_settings().context_policy.value.replace("_", " ")
        note = f"when full: {policy}" if used >= limit * 0.85 else ""
        self.input.show_context(used, limit, note)

    # --- Pages and dialogs
    def show_page(self, index: int) -> None:
        if index == 1 and self.stats_view is None:
            from ui.stats_view import StatsView

            self.stats_view = StatsView(self.history, worker=self.worker)
            self.stats_view.benchmarkRequested.connect(self.worker.benchmark)
            self.pages.addWidget(self.stats_view)
        if index == 1:
            self.stats_view.refresh()
        self.pages.setCurrentIndex(index)

    def open_settings(self) -> None:
        conv = self.history.get_conversation(self.current_id) if self.current_id else None
        dialog = SettingsDialog(self.defaults, conv.settings if conv else None,
                                gpu=bool(self.model.get("gpu_offload")), parent=self)
        if dialog.exec():
            old_load = self._load_settings()
            self.defaults, per_conversation = dialog.result_settings()
            from ui.settings_dialog import save_defaults

            save_defaults(self.qsettings, self.defaults)
            if conv is not None and per_conversation is not None:
                self.history.update_conversation(conv.id, settings=per_conversation)
            self.chat.set_stats_mode(self.defaults.get("stats_line", "always"))
            self.set_theme(self.defaults.get("theme", "system"))
            if self._load_settings() != old_load and self.model:
                self.load_model(self.model["name"])

    def set_theme(self, theme: str) -> None:
        """Switch light/dark/system now, replies' code colours included."""
        from PySide6.QtWidgets import QApplication

        from ui.theme import apply_theme, repolish

        self.chat.set_dark(apply_theme(QApplication.instance(), theme))
        repolish(self)
        if self.current_id:
            self.open_conversation(self.current_id)

    def open_model_manager(self) -> None:
        ModelManager(self, parent=self).exec()

    # --- Status bar
    def _update_status(self) -> None:
        m = self.model
        if m:
            self.status_model.setText(f"{m.get('name')} · {m.get('quant')}")
            self.status_threads.setText(f"{m.get('n_threads')} threads")
            self.status_backend.setText(m.get("backend", "CPU"))
        rss = psutil.Process().memory_info().rss
        vram = (m.get("memory") or {}).get("vram_bytes") if m else None
        self.status_ram.setText(f"RAM {format_bytes(rss)}" + (f" · VRAM {format_bytes(vram)}" if vram else ""))

    # --- Closing: save the partial reply, stop the thread, leave nothing dangling
    def closeEvent(self, event) -> None:
        self._ram_timer.stop()
        self.engine_thread.stop()
        super().closeEvent(event)
