"""The message box: Enter sends, Shift+Enter adds a line, Tab moves on; shows context use as you type."""

from PySide6.QtCore import QEvent, Qt, QTimer, Signal
from PySide6.QtWidgets import QHBoxLayout, QLabel, QPlainTextEdit, QPushButton, QToolButton, QVBoxLayout, QWidget

from ui.icons import icon


class MessageEdit(QPlainTextEdit):
    """Enter sends, Shift+Enter adds a line; Tab and Shift+Tab move focus (a message has no use for tabs)."""

    submitted = Signal()
    cancelled = Signal()  # Esc, where the box takes it (the inline editor); the message box leaves it to Stop

    def __init__(self, *args, esc_cancels: bool = False, **kwargs):
        super().__init__(*args, **kwargs)
        self.setTabChangesFocus(True)
        self._esc_cancels = esc_cancels
        self.image_sink = None  # an AttachmentTray: pasted or dropped images go there, not into the text

    def canInsertFromMimeData(self, source):
        if self.image_sink is not None and self.image_sink.can_take(source):
            return True
        return super().canInsertFromMimeData(source)

    def insertFromMimeData(self, source):
        if self.image_sink is not None and self.image_sink.can_take(source) and self.image_sink.add_mime(source):
            return
        super().insertFromMimeData(source)

    def event(self, event):
        # Esc is the window's Stop shortcut; the inline editor claims it first to close itself.
        if (self._esc_cancels and event.type() == QEvent.ShortcutOverride
                and event.key() == Qt.Key_Escape):
            event.accept()
            return True
        return super().event(event)

    def keyPressEvent(self, event):
        if event.key() in (Qt.Key_Return, Qt.Key_Enter) and not (event.modifiers() & Qt.ShiftModifier):
            self.submitted.emit()
            return
        if self._esc_cancels and event.key() == Qt.Key_Escape:
            self.cancelled.emit()
            return
        super().keyPressEvent(event)


class InputBox(QWidget):
    sendRequested = Signal(str)
    stopRequested = Signal()
    draftChanged = Signal(str)  # debounced: the window asks the engine for a token count

    def __init__(self, parent=None):
        super().__init__(parent)
        from ui.image_attachments import AttachmentTray

        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 4, 8, 8)
        self.tray = AttachmentTray(self)
        self.tray.changed.connect(lambda: self._draft_timer.start())
        layout.addWidget(self.tray)
        row = QHBoxLayout()
        self.attach_button = QToolButton()
        self.attach_button.setObjectName("attachButton")
        self.attach_button.setIcon(icon("image"))
        self.attach_button.setToolTip("Attach images (or paste or drop them here)")
        self.attach_button.setAccessibleName("Attach images")
        self.attach_button.setAutoRaise(True)
        self.attach_button.clicked.connect(self.tray.choose_files)
        row.addWidget(self.attach_button)
        self.setAcceptDrops(True)
        self.edit = MessageEdit()
        self.edit.image_sink = self.tray
        self.edit.setPlaceholderText("Message (Enter to send, Shift+Enter for a new line)")
        self.edit.setAccessibleName("Message")
        self.edit.submitted.connect(self._submit)
        self.edit.textChanged.connect(self._fit_height)
        self._fit_height()
        row.addWidget(self.edit, 1)
        self.button = QPushButton("Send")
        self.button.setObjectName("sendButton")
        self.button.setAccessibleName("Send message")
        self.button.setMinimumWidth(72)
        self.button.clicked.connect(self._button)
        row.addWidget(self.button)
        layout.addLayout(row)
        self.context_label = QLabel("")
        self.context_label.setAccessibleName("Context use")
        self.context_label.setStyleSheet("color: palette(placeholder-text); font-size: 11px;")
        layout.addWidget(self.context_label)
        self.generating = False
        self._draft_timer = QTimer(self, singleShot=True, interval=250)
        self._draft_timer.timeout.connect(lambda: self.draftChanged.emit(self.edit.toPlainText()))
        self.edit.textChanged.connect(self._draft_timer.start)

    def _fit_height(self) -> None:
        """Two lines when empty, growing with the text up to eight: a short window keeps room for the chat."""
        metrics = self.edit.fontMetrics()
        lines = max(2, min(8, self.edit.document().blockCount()))
        margins = self.edit.contentsMargins()
        height = lines * metrics.lineSpacing() + 2 * int(self.edit.document().documentMargin()) \
            + margins.top() + margins.bottom() + 8
        self.edit.setFixedHeight(height)

    def _submit(self) -> None:
        if self.generating:
            return
        if self.tray.checking:
            self.tray.say("The images are still being checked; send again in a moment.")
            return
        text = self.edit.toPlainText().strip()
        if text or self.tray.images:
            self.edit.clear()
            self._draft_timer.stop()  # the sent text's count comes with its reply: no draft to count
            self.sendRequested.emit(text)

    # --- Images dropped anywhere on the message box
    def dragEnterEvent(self, event):
        if self.tray.can_take(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dragEnterEvent(event)

    def dropEvent(self, event):
        if self.tray.can_take(event.mimeData()) and self.tray.add_mime(event.mimeData()):
            event.acceptProposedAction()
        else:
            super().dropEvent(event)

    def _button(self) -> None:
        if self.generating:
            self.stopRequested.emit()
        else:
            self._submit()

    def set_generating(self, generating: bool) -> None:
        self.generating = generating
        self.button.setText("Stop" if generating else "Send")
        self.button.setAccessibleName("Stop generating" if generating else "Send message")
        self.button.setToolTip("Stop (Esc)" if generating else "Send (Enter)")

    def show_context(self, used: int, limit: int, note: str = "") -> None:
        pct = used / limit * 100 if limit else 0
        text = f"Context: {used:,} / {limit:,} tokens ({pct:.0f}%)"
        if note:
            text += f" · {note}"
        colour = "#d9534f" if pct >= 100 else ("#e0a800" if pct >= 85 else "")
        self.context_label.setStyleSheet(
            f"color: {colour or 'palette(placeholder-text)'}; font-size: 11px;")
        self.context_label.setText(text)
