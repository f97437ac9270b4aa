"""A reasoning model's thinking, folded above its answer.

    ▸ Thinking… 312 tokens · 6.1 s          (while it streams)
    ▸ Thought for 6.1 s · 312 tokens        (when it is done)

Clicking the header unfolds the thinking as plain text (a model's thinking is not
rendered as Markdown: it is notes, and may hold half-written markup); its own copy
button copies the thinking alone. While it streams, the counts are this window's
(tokens from the runner's batches, seconds from the first piece); when the reply is
done they are the record's.
"""

from __future__ import annotations

import time

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout

from ui.icons import icon

TICK_MS = 250  # the live seconds move on by themselves while the model thinks


def _seconds(ms: float) -> str:
    s = ms / 1000
    return f"{s:.1f} s" if s < 60 else f"{int(s // 60)} min {int(s % 60)} s"


def _tokens(n: int) -> str:
    return f"{n:,} token{'' if n == 1 else 's'}"


class ThinkingBlock(QFrame):
    notify = Signal(str)  # "Thinking copied" for the status bar

    def __init__(self, text: str = "", stats: dict | None = None, *, streaming: bool = False, parent=None):
        super().__init__(parent)
        self.setObjectName("thinkingBlock")
        self.text = text
        self.tokens = 0  # live count while streaming
        self._started = time.monotonic() if streaming else None
        self.streaming = streaming
        self.stats: dict = stats or {}
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 4)
        layout.setSpacing(2)
        row = QHBoxLayout()
        row.setSpacing(2)
        self.toggle = QToolButton(self)
        self.toggle.setObjectName("thinkingToggle")
        self.toggle.setCheckable(True)
        self.toggle.setAutoRaise(True)
        self.toggle.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.toggle.setArrowType(Qt.ArrowType.RightArrow)
        self.toggle.toggled.connect(self._fold)
        self.toggle.setToolTip("Show or hide how the model thought before it answered")
        row.addWidget(self.toggle)
        self.copy_button = QToolButton(self)
        self.copy_button.setIcon(icon("copy"))
        self.copy_button.setAutoRaise(True)
        self.copy_button.setObjectName("messageAction")
        self.copy_button.setAccessibleName("Copy the thinking")
        self.copy_button.setToolTip("Copy the thinking")
        self.copy_button.clicked.connect(self.copy)
        row.addWidget(self.copy_button)  # beside its header: the message's own copy button copies the answer
        row.addStretch(1)
        layout.addLayout(row)
        self.body = QLabel(self)
        self.body.setObjectName("thinkingText")
        self.body.setTextFormat(Qt.TextFormat.PlainText)  # notes, not Markdown; never markup
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse
                                          | Qt.TextInteractionFlag.TextSelectableByKeyboard)
        policy = QSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Minimum)
        policy.setHeightForWidth(True)
        self.body.setSizePolicy(policy)
        self.body.setAccessibleName("The model's thinking")
        self.body.setVisible(False)
        layout.addWidget(self.body)
        self._tick = QTimer(self, interval=TICK_MS)
        self._tick.timeout.connect(self._update_header)
        if streaming:
            self._tick.start()
        self._update_header()
        self._show_text()

    # --- What it says
    @property
    def expanded(self) -> bool:
        return self.toggle.isChecked()

    def header(self) -> str:
        return self.toggle.text()

    def _update_header(self) -> None:
        if self.streaming:
            elapsed = (time.monotonic() - self._started) * 1000 if self._started is not None else 0.0
            parts = [_tokens(self.tokens)] if self.tokens else []
            parts.append(_seconds(elapsed))
            text = "Thinking… " + " · ".join(parts)
        else:
            tokens = self.stats.get("thinking_tokens")
            ms = self.stats.get("thinking_ms")
            parts = []
            if isinstance(ms, (int, float)) and ms > 0:
                parts.append(f"Thought for {_seconds(ms)}")
            else:
                parts.append("Thought")
            if isinstance(tokens, int) and tokens > 0:
                parts.append(_tokens(tokens))
            text = " · ".join(parts)
            if self.stats.get("thinking_unfinished"):
                text += " (unfinished)"
        self.toggle.setText(text)
        self.toggle.setAccessibleName(text + (", shown" if self.expanded else ", folded"))

    def _show_text(self) -> None:
        if self.expanded:
            self.body.setText(self.text)

    # --- Streaming
    def append(self, text: str, tokens: int | None = None) -> None:
        if self._started is None:
            self._started = time.monotonic()
        self.text += text
        if tokens:
            self.tokens = tokens
        self._show_text()
        self._update_header()

    def finish(self, stats: dict | None) -> None:
        self.streaming = False
        self._tick.stop()
        self.stats = stats or {}
        if isinstance(self.stats.get("thinking"), str) and self.stats["thinking"]:
            self.text = self.stats["thinking"]  # the record's: what was saved
        self._update_header()
        self._show_text()

    # --- Actions
    def _fold(self, open_: bool) -> None:
        self.toggle.setArrowType(Qt.ArrowType.DownArrow if open_ else Qt.ArrowType.RightArrow)
        self.body.setVisible(open_)
        self._show_text()
        self._update_header()

    def set_expanded(self, open_: bool) -> None:
        self.toggle.setChecked(open_)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.text.strip())
        self.notify.emit("Thinking copied to the clipboard")
