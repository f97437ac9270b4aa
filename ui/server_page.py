"""The "Local server" page: the loaded model for other apps, through the OpenAI API, switched on here.

It shows the URL and the API key (copyable), an on/off switch, whether API
conversations are kept in the history, and a live log of requests (client, model,
tokens, tok/s). The server itself is `assistant.server.ServerController` on the
window's own services, so API clients and the window share the loaded model and
one queue. Starting and stopping run off the GUI thread; the request log arrives
through a queued signal.

From the window the server always asks for its key: editors and scripts need one
anyway, and another user of this machine cannot then use the model.
"""

from __future__ import annotations

import dataclasses
import logging
from datetime import datetime

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import (QAbstractItemView, QCheckBox, QFormLayout, QHBoxLayout, QHeaderView, QLabel, QLineEdit,
                               QPushButton, QSpinBox, QTableWidget, QTableWidgetItem, QVBoxLayout, QWidget)

from assistant.server import RequestLog, RequestRecord, ServerConfig, ServerController, new_api_key
from assistant.server.config import saved_settings, save_settings
from common.errors import UserError
from common.formatting import format_tps
from ui.workers import run_in_background

log = logging.getLogger(__name__)
MAX_ROWS = 200
COLUMNS = ("Time", "Client", "Model", "Tokens", "tok/s", "Status")


class _LogRelay(QObject):
    """Request-log callbacks (on the server's thread) in, a queued signal on the GUI thread out."""

    changed = Signal(object)  # a copy of the RequestRecord

    def relay(self, record: RequestRecord) -> None:
        try:
            self.changed.emit(dataclasses.replace(record))
        except RuntimeError:  # the page is gone
            pass


class ServerPage(QWidget):
    stateChanged = Signal(bool)  # serving or not
    requestLogged = Signal(object)  # each start and end of a request (a RequestRecord copy), after the table

    def __init__(self, services, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setAccessibleName("Local server")
        self.services = services
        self.store = services.settings
        self.request_log = RequestLog()
        self.controller: ServerController | None = None
        self.busy = False  # a start or stop in progress
        self._restart_after_stop = False  # a new key while serving: start again once stopped
        self._rows: dict[int, int] = {}  # record id -> table row
        self._active: set[int] = set()  # records still running
        self._relay = _LogRelay(self)
        self._relay.changed.connect(self._record_changed)
        self._unsubscribe = self.request_log.subscribe(self._relay.relay)
        settings = saved_settings(self.store)
        if not settings["api_key"]:
            settings = save_settings(self.store, api_key=new_api_key())
        self._build(settings)
        self.status_label = QLabel()  # the window puts it in its status bar
        self.status_label.setAccessibleName("Local server status")
        self._show_state()
        if settings["enabled"]:  # on when the window last closed: on again
            self.set_serving(True)

    # --- Building
    def _build(self, settings: dict) -> None:
        layout = QVBoxLayout(self)
        title = QLabel("<b>Local server</b> — editors, scripts and agents use the loaded model through the "
                       "OpenAI API, on this machine only.")
        title.setWordWrap(True)
        layout.addWidget(title)

        self.switch = QCheckBox("Serve the loaded model to other apps")
        self.switch.setAccessibleName("Local server on or off")
        self.switch.toggled.connect(self.set_serving)
        layout.addWidget(self.switch)

        form = QFormLayout()
        self.port = QSpinBox()
        self.port.setRange(1024, 65535)
        self.port.setValue(int(settings["port"]))
        self.port.setAccessibleName("Port")
        self.port.valueChanged.connect(lambda value: save_settings(self.store, port=value))
        # Five digits and the arrows: a port does not need the window's width.
        self.port.setMaximumWidth(self.port.fontMetrics().horizontalAdvance("65535") + 56)
        port_row = _row(self.port)
        port_row.layout().addStretch(1)
        form.addRow("Port", port_row)

        self.url = QLineEdit()
        self.url.setReadOnly(True)
        self.url.setAccessibleName("Server URL")
        self.copy_url = QPushButton("Copy")
        self.copy_url.setAccessibleName("Copy the server URL")
        self.copy_url.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.url.text()))
        form.addRow("URL", _row(self.url, self.copy_url))

        self.key = QLineEdit(settings["api_key"])
        self.key.setReadOnly(True)
        self.key.setEchoMode(QLineEdit.EchoMode.Password)
        self.key.setAccessibleName("API key")
        self.show_key = QPushButton("Show")
        self.show_key.setCheckable(True)
        self.show_key.setAccessibleName("Show the API key")
        self.show_key.toggled.connect(self._toggle_key)
        self.copy_key = QPushButton("Copy")
        self.copy_key.setAccessibleName("Copy the API key")
        self.copy_key.clicked.connect(lambda: QGuiApplication.clipboard().setText(self.key.text()))
        self.new_key = QPushButton("New key")
        self.new_key.setAccessibleName("Make a new API key")
        self.new_key.setToolTip("Clients using the old key are refused from the next start of the server")
        self.new_key.clicked.connect(self._new_key)
        form.addRow("API key", _row(self.key, self.show_key, self.copy_key, self.new_key))
        layout.addLayout(form)

        self.save_history = QCheckBox("Keep API conversations in the history (marked as from the API)")
        self.save_history.setAccessibleName("Keep API conversations in the history")
        self.save_history.setChecked(bool(settings["save_conversations"]))
        self.save_history.toggled.connect(lambda on: save_settings(self.store, save_conversations=on))
        layout.addWidget(self.save_history)

        self.state = QLabel()
        self.state.setWordWrap(True)
        self.state.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.state.setAccessibleName("Server state")
        layout.addWidget(self.state)

        self.table = QTableWidget(0, len(COLUMNS))
        self.table.setHorizontalHeaderLabels(COLUMNS)
        self.table.setAccessibleName("Requests")
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setSectionResizeMode(len(COLUMNS) - 1, QHeaderView.ResizeMode.Stretch)
        layout.addWidget(self.table, 1)

    def _toggle_key(self, shown: bool) -> None:
        self.key.setEchoMode(QLineEdit.EchoMode.Normal if shown else QLineEdit.EchoMode.Password)
        self.show_key.setText("Hide" if shown else "Show")

    def _new_key(self) -> None:
        key = new_api_key()
        save_settings(self.store, api_key=key)
        self.key.setText(key)
        if self.serving:  # the running server checks the old key: restart it with the new one
            self.set_serving(False)
            self._restart_after_stop = True

    # --- Serving
    @property
    def serving(self) -> bool:
        return self.controller is not None and self.controller.running

    def set_serving(self, on: bool) -> None:
        """Switch the server on or off (off the GUI thread); the switch and the state follow."""
        if self.switch.isChecked() != on:
            self.switch.blockSignals(True)
            self.switch.setChecked(on)
            self.switch.blockSignals(False)
        if self.busy or on == self.serving:
            return
        self.busy = True
        self.switch.setEnabled(False)
        if on:
            config = ServerConfig(port=self.port.value(), api_key=self.key.text())
            self.controller = ServerController(self.services, config, request_log=self.request_log)
            self.state.setText("Starting…")
            run_in_background(self.controller.start, self._started, self._failed, context=self)
        else:
            self.state.setText("Stopping…")
            controller = self.controller
            run_in_background(lambda: controller.stop() if controller else None, self._stopped, self._failed,
                              context=self)

    def _started(self, url: str) -> None:
        self.busy = False
        self.switch.setEnabled(True)
        save_settings(self.store, enabled=True)
        self._show_state()
        self.stateChanged.emit(True)
        if self.switch.isChecked() is False:  # switched off meanwhile
            self.set_serving(False)

    def _stopped(self, _result=None) -> None:
        self.busy = False
        self.switch.setEnabled(True)
        if not self.switch.isChecked():
            save_settings(self.store, enabled=False)
        self._active.clear()
        self._show_state()
        self.stateChanged.emit(False)
        if self._restart_after_stop:
            self._restart_after_stop = False
            self.set_serving(True)
        elif self.switch.isChecked():  # switched on again meanwhile
            self.set_serving(True)

    def _failed(self, exc: BaseException) -> None:
        self.busy = False
        self.controller = None
        self.switch.blockSignals(True)
        self.switch.setChecked(False)
        self.switch.blockSignals(False)
        self.switch.setEnabled(True)
        self._show_state(str(exc) if isinstance(exc, UserError) else f"The server failed: {exc}")
        self.stateChanged.emit(False)

    def shutdown(self) -> None:
        """Stop serving now, on this thread (the window is closing); the setting stays as the user left it."""
        self._unsubscribe()
        if self.controller is not None:
            self.controller.stop()

    # --- Showing
    def _show_state(self, problem: str | None = None) -> None:
        if self.serving:
            assert self.controller is not None
            self.url.setText(self.controller.url)
            active = len(self._active)
            busy = f" · {active} request{'s' if active != 1 else ''} in progress" if active else ""
            self.state.setText(f"On at {self.controller.url}: give clients this URL as their base URL and the key "
                               f"as their API key.{busy}")
            self.status_label.setText(f"Server on{busy}")
        else:
            self.url.setText(ServerConfig(port=self.port.value()).base_url())
            self.state.setText(problem or "Off.")
            self.status_label.setText("Server off" if problem is None else "Server failed")
        self.port.setEnabled(not self.serving)

    def _record_changed(self, record: RequestRecord) -> None:
        if record.status is None:
            self._active.add(record.id)
        else:
            self._active.discard(record.id)
        row = self._rows.get(record.id)
        if row is None:
            if self.table.rowCount() >= MAX_ROWS:
                self.table.removeRow(0)
                self._rows = {rid: r - 1 for rid, r in self._rows.items() if r > 0}
            row = self.table.rowCount()
            self.table.insertRow(row)
            self._rows[record.id] = row
        tps = format_tps(record.gen_tps, unit=False) if record.gen_tps else ""
        tokens = "" if record.completion_tokens is None else str(record.completion_tokens)
        status = {"running": "streaming…" if record.stream else "working…", "done": "done",
                  "cancelled": "client went away"}.get(record.state, f"{record.status}: {record.error or 'failed'}")
        values = (datetime.fromtimestamp(record.started_at).strftime("%H:%M:%S"), record.client, record.model or "",
                  tokens, tps, status)
        for column, value in enumerate(values):
            item = QTableWidgetItem(value)
            if column == len(values) - 1 and record.error:
                item.setToolTip(record.error)
            self.table.setItem(row, column, item)
        self.table.scrollToBottom()
        self._show_state()
        self.requestLogged.emit(record)


def _row(*widgets: QWidget) -> QWidget:
    box = QWidget()
    layout = QHBoxLayout(box)
    layout.setContentsMargins(0, 0, 0, 0)
    for i, widget in enumerate(widgets):
        layout.addWidget(widget, 1 if i == 0 else 0)
    return box
