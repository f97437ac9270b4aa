"""The conversation: one widget per message, Markdown replies, stats under each reply.

Streaming text is appended to a buffer and re-rendered on a short timer, so a
reply arriving at full speed costs a few renders a second, not one per token.
"""

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtGui import QGuiApplication, QTextCursor
from PySide6.QtWidgets import (
    QFrame,
    QHBoxLayout,
    QLabel,
    QPushButton,
    QScrollArea,
    QSizePolicy,
    QToolButton,
    QVBoxLayout,
    QWidget,
)

from assistant.busy import BUSY_MARK, is_busy
from assistant.stats_format import (STOPPED_WHILE_THINKING, format_images_line, format_stats_line,
                                    model_label)
from common.formatting import format_bytes, format_count, format_tps
from ui.icons import icon
from ui.input_box import MessageEdit
from ui.markdown_render import MarkdownRenderer
from ui.thinking_block import ThinkingBlock

RENDER_INTERVAL_MS = 80
COLUMN_MARGIN = 12  # px above the first message and below the last
PAGE = 80  # messages built at a time: a 500-message thread opens at once, older pages on request
STATUS_NOTES = {"stopped": "stopped", "interrupted": "interrupted: the app closed before this reply finished",
                "error": "error", "streaming": "…"}


def stats_tooltip(stats: dict) -> str:
    """The full record, for hovering over the stats line."""
    if not stats:
        return ""
    mem = stats.get("memory") or {}
    ctx = stats.get("context") or {}
    backend = stats.get("backend") or {}

    def ms(v):
        return f"{v / 1000:.2f} s" if isinstance(v, (int, float)) else "–"

    def rate(v):
        return format_tps(v, precise=True, unknown="–")

    rows = [
        ("Model", f"{model_label(stats.get('model') or {})} {(stats.get('model') or {}).get('quant') or ''}"),
        ("Generation", f"{rate(stats.get('gen_tps'))} · {stats.get('completion_tokens', 0)} tokens in {ms(stats.get('gen_ms'))}"),
        ("Prompt", f"{rate(stats.get('prompt_tps'))} · {stats.get('prompt_tokens', 0)} tokens, "
                   f"{stats.get('cached_tokens', 0)} cached · {ms(stats.get('prompt_ms'))}"),
        ("First token", ms(stats.get("ttft_ms"))),
        ("Total", ms(stats.get("total_ms"))),
        ("Weights", format_bytes(mem.get("weights_bytes") or 0)),
        ("KV cache", format_bytes(mem.get("kv_bytes") or 0)),
        ("Compute", format_bytes(mem.get("compute_bytes") or 0)),
        ("RSS (peak)", f"{format_bytes(mem.get('rss_bytes') or 0)} ({format_bytes(mem.get('rss_peak_bytes') or 0)})"),
        ("VRAM", format_bytes(mem["vram_bytes"]) if mem.get("vram_bytes") is not None else "no GPU"),
        ("Stop reason", str(stats.get("stop_reason", "–")).replace("_", " ")),
        ("Threads", str(stats.get("n_threads", "–"))),
        ("Context", f"{ctx.get('used_tokens', '–')} / {stats.get('n_ctx', '–')} tokens · policy "
                    f"{str(ctx.get('policy', '–')).replace('_', ' ')}"
                    + (f" · dropped {ctx['dropped_messages']} messages" if ctx.get("dropped_messages") else "")),
        ("Backend", f"{backend.get('kind', '–')} · llama-cpp-python {backend.get('llama_cpp_python', '')}"),
    ]
    if mem.get("projector_bytes"):
        rows.insert(8, ("Image projector", format_bytes(mem["projector_bytes"])))
    if format_images_line(stats):
        rows.insert(3, ("Images", format_images_line(stats)))
    if stats.get("thinking_tokens"):  # a reasoning model: what its thinking took, apart from the answer
        rows.insert(2, ("Thinking", f"{stats['thinking_tokens']} tokens in {ms(stats.get('thinking_ms'))}, then "
                                    f"{stats.get('answer_tokens', 0)} answer tokens"
                                    + (" · closed at the budget" if stats.get("thinking_closed_by_budget") else "")))
    share = (stats.get("transport") or {}).get("cpu_other_busy") if isinstance(stats.get("transport"), dict) else None
    if isinstance(share, (int, float)) and not isinstance(share, bool):
        verdict = (f"{BUSY_MARK}: not this model's speed, left out of its figures" if is_busy(stats)
                   else "quiet: this model's speed")
        rows.append(("Other programs", f"{share:.0%} of the CPU · {verdict}"))
    body = "".join(f"<tr><td><b>{k}</b></td><td>&nbsp;{v}</td></tr>" for k, v in rows)
    return f"<table>{body}</table>"


def _wrapping_policy() -> QSizePolicy:
    """Width from the column (Ignored: a long line wraps instead of widening the view); height from
    the width (a new size policy drops QLabel's height-for-width, and the view then keeps blank space)."""
    policy = QSizePolicy(QSizePolicy.Ignored, QSizePolicy.Minimum)
    policy.setHeightForWidth(True)
    return policy


class MessageWidget(QFrame):
    editRequested = Signal(int, str)  # message id, new text
    regenerateRequested = Signal(int)
    continueRequested = Signal(int)  # a stopped reply, to go on with
    branchRequested = Signal(int)  # the sibling message id to show
    notify = Signal(str)  # a short confirmation for the status bar ("Copied")
    editorOpened = Signal()

    def __init__(self, message, renderer: MarkdownRenderer, *, stats_mode: str = "always",
                 siblings: list[int] | None = None, parent=None, image_reader=None):
        super().__init__(parent)
        self.message_id = message.id
        self.role = message.role
        self.text = message.content or ""
        self.status = message.status
        self.stats = message.stats or {}
        self.thinking = getattr(message, "thinking", None) or ""  # a reasoning model's, folded above the answer
        self.thinking_block: ThinkingBlock | None = None
        self._renderer = renderer
        self._code_blocks: list[str] = []
        self._stats_mode = stats_mode
        self._render_timer = QTimer(self, singleShot=True, interval=RENDER_INTERVAL_MS)
        self._render_timer.timeout.connect(self._render)
        self.setObjectName("userMessage" if self.role == "user" else "replyMessage")
        self.setFrameShape(QFrame.NoFrame)
        self.setAttribute(Qt.WA_StyledBackground, True)  # the theme's sheet draws the message block

        layout = QVBoxLayout(self)
        layout.setContentsMargins(14, 8, 10, 10)
        layout.setSpacing(4)
        header = QHBoxLayout()
        header.setSpacing(2)
        who = QLabel("You" if self.role == "user" else "Assistant")
        who.setObjectName("messageAuthor")
        header.addWidget(who)
        header.addStretch(1)
        self.branch_label = QLabel()
        self.branch_label.setObjectName("branchLabel")
        self._siblings = siblings or [self.message_id]
        if len(self._siblings) > 1:
            pos = self._siblings.index(self.message_id)
            prev_btn = self._tool("previous", "Previous version",
                                  lambda: self.branchRequested.emit(self._siblings[pos - 1]))
            next_btn = self._tool("next", "Next version", lambda: self.branchRequested.emit(self._siblings[pos + 1]))
            prev_btn.setEnabled(pos > 0)
            next_btn.setEnabled(pos < len(self._siblings) - 1)
            self.branch_label.setText(f"{pos + 1}/{len(self._siblings)}")
            self.branch_label.setAccessibleName(f"Version {pos + 1} of {len(self._siblings)}")
            header.addWidget(prev_btn)
            header.addWidget(self.branch_label)
            header.addWidget(next_btn)
        self.copy_button = self._tool("copy", "Copy message", self._copy_all)
        header.addWidget(self.copy_button)
        self.continue_button = None
        if self.role == "user":
            header.addWidget(self._tool("edit", "Edit and send again", self._start_edit))
        elif self.role == "assistant":
            # Shown only for a reply that was cut short (stopped, interrupted or at its token limit).
            self.continue_button = self._tool("continue", "Continue this reply",
                                              lambda: self.continueRequested.emit(self.message_id))
            header.addWidget(self.continue_button)
            header.addWidget(self._tool("regenerate", "Regenerate reply",
                                        lambda: self.regenerateRequested.emit(self.message_id)))
        layout.addLayout(header)
        self.images = None
        if getattr(message, "images", None):  # thumbnails, drawn by the image check; a click shows one larger
            from ui.image_attachments import ImageStrip

            self.images = ImageStrip(message.images, image_reader, self)
            layout.addWidget(self.images)

        self.body = QLabel()
        self.body.setObjectName("messageBody")
        self.body.setTextFormat(Qt.RichText)
        self.body.setWordWrap(True)
        self.body.setTextInteractionFlags(Qt.TextSelectableByMouse | Qt.LinksAccessibleByMouse
                                          | Qt.TextSelectableByKeyboard)
        # Ignored across: the column's width decides, so a long line wraps instead of widening the view.
        self.body.setSizePolicy(_wrapping_policy())
        self.body.setMinimumWidth(120)
        self.body.linkActivated.connect(self._link)
        self.body.setAccessibleName("Message text")
        layout.addWidget(self.body)
        if self.role == "assistant" and self.thinking:
            self._thinking_block(streaming=self.status == "streaming")

        self.editor = None
        self.stats_label = QLabel()
        self.stats_label.setObjectName("statsLine")
        self.stats_label.setAccessibleName("Reply statistics")
        self.stats_label.setWordWrap(True)
        self.stats_label.setSizePolicy(_wrapping_policy())
        layout.addWidget(self.stats_label)
        self._render()
        self._update_stats()

    def _tool(self, key, name, slot) -> QToolButton:
        button = QToolButton(self)
        button.setIcon(icon(key))
        button.setAccessibleName(name)
        button.setToolTip(name)
        button.setAutoRaise(True)
        button.setObjectName("messageAction")
        button.clicked.connect(slot)
        return button

    # --- Streaming
    def append(self, text: str) -> None:
        self.text += text
        if not self._render_timer.isActive():
            self._render_timer.start()

    def append_thinking(self, text: str, tokens: int | None = None) -> None:
        block = self._thinking_block(streaming=True)
        self.thinking += text
        block.append(text, tokens)

    def _thinking_block(self, *, streaming: bool) -> ThinkingBlock:
        if self.thinking_block is None:
            self.thinking_block = ThinkingBlock(self.thinking, self.stats, streaming=streaming, parent=self)
            self.thinking_block.notify.connect(self.notify)
            layout = self.layout()
            layout.insertWidget(layout.indexOf(self.body), self.thinking_block)
        return self.thinking_block

    def finish(self, stats: dict, status: str, thinking: str | None = None) -> None:
        self.stats, self.status = stats or {}, status
        self.thinking = thinking or self.stats.get("thinking") or self.thinking
        if self.thinking and self.role == "assistant":
            self._thinking_block(streaming=False).finish({**self.stats, "thinking": self.thinking})
        self._render_timer.stop()
        self._render()
        self._update_stats()

    # --- Drawing
    def _render(self) -> None:
        if self.role == "user":
            import html

            self.body.setText(f"<p style='white-space: pre-wrap'>{html.escape(self.text)}</p>")
            return
        text = self.text or ("…" if self.status == "streaming" else "")
        if not text and self.thinking:  # it thought and never answered: say why, not an empty bubble
            text = f"*{STOPPED_WHILE_THINKING}*"
        rendered = self._renderer.render(text)
        self._code_blocks = rendered.code_blocks
        self.body.setText(rendered.html)

    def set_stats_mode(self, mode: str) -> None:
        self._stats_mode = mode
        self._update_stats()

    @property
    def can_continue(self) -> bool:
        """A reply cut short: stopped by the user, by the app closing, or at its token limit."""
        return (self.role == "assistant" and bool(self.text)
                and (self.status in ("stopped", "interrupted") or self.stats.get("stop_reason") == "length"))

    def _update_stats(self) -> None:
        if self.continue_button is not None:
            self.continue_button.setVisible(self.can_continue)
        note = STATUS_NOTES.get(self.status or "", "")
        line = format_stats_line(self.stats) if self.stats else ""
        if self.stats.get("error"):
            note = f"error: {self.stats['error']}"
        if note and note.split(":")[0] in line:  # the stats line already says so
            note = ""
        text = " · ".join(x for x in (line, note) if x)
        images = format_images_line(self.stats) if self.stats else ""
        if images:  # what the images cost: "2 images · 512 tokens · 0.9 s to encode"
            text = "\n".join(x for x in (text, images) if x)
        self.stats_label.setText(text)
        self.stats_label.setToolTip(stats_tooltip(self.stats))
        visible = self.role == "assistant" and bool(text) and self._stats_mode != "never"
        self.stats_label.setVisible(visible and (self._stats_mode == "always" or self.underMouse()))

    def enterEvent(self, event):
        if self._stats_mode == "hover":
            self._update_stats()
        super().enterEvent(event)

    def leaveEvent(self, event):
        if self._stats_mode == "hover":
            self.stats_label.setVisible(False)
        super().leaveEvent(event)

    # --- Actions
    def _link(self, href: str) -> None:
        if href.startswith("copy:"):
            n = int(href.split(":", 1)[1])
            if 0 <= n < len(self._code_blocks):
                QGuiApplication.clipboard().setText(self._code_blocks[n])
                self.notify.emit("Code copied to the clipboard")

    def _copy_all(self) -> None:
        QGuiApplication.clipboard().setText(self.text)
        # Said twice: on the button itself for a moment, and in the status bar.
        self.copy_button.setIcon(icon("copied"))
        self.copy_button.setToolTip("Copied")
        QTimer.singleShot(1500, self.copy_button, self._copy_reset)
        self.notify.emit("Message copied to the clipboard")

    def _copy_reset(self) -> None:
        self.copy_button.setIcon(icon("copy"))
        self.copy_button.setToolTip("Copy message")

    def _start_edit(self) -> None:
        if self.editor is not None:
            return
        self.editor = MessageEdit(self.text, self, esc_cancels=True)
        self.editor.setAccessibleName("Edit message")
        self.editor.setPlaceholderText("Enter to send, Shift+Enter for a new line, Esc to cancel")
        self.editor.setMinimumHeight(72)
        self.editor.setMaximumHeight(200)
        row = QHBoxLayout()
        send = QPushButton("Send", self)
        send.setAccessibleName("Send edited message")
        cancel = QPushButton("Cancel", self)
        cancel.setAccessibleName("Cancel editing")
        row.addStretch(1)
        row.addWidget(cancel)
        row.addWidget(send)
        box = QWidget(self)
        box_layout = QVBoxLayout(box)
        box_layout.setContentsMargins(0, 0, 0, 0)
        box_layout.addWidget(self.editor)
        box_layout.addLayout(row)
        self.layout().insertWidget(2, box)
        self.body.hide()
        self.editor.setFocus()
        self.editor.moveCursor(QTextCursor.End)

        def close_editor():
            box.hide()
            box.deleteLater()
            self.editor = None
            self.body.show()

        def submit():
            text = self.editor.toPlainText() if self.editor is not None else ""
            if text.strip():
                close_editor()
                self.editRequested.emit(self.message_id, text)

        self.editor.submitted.connect(submit)
        self.editor.cancelled.connect(close_editor)
        send.clicked.connect(submit)
        cancel.clicked.connect(close_editor)
        self.editorOpened.emit()


class _Column(QWidget):
    """The messages' column. Its height comes from its width (height-for-width) alone: the minimum
    height Qt computes at the narrowest width would otherwise leave blank space under the newest message."""

    def minimumSizeHint(self):
        hint = super().minimumSizeHint()
        hint.setHeight(0)
        return hint


class ChatView(QScrollArea):
    """A scrolling column of MessageWidgets for one conversation.

    The view follows a reply as it streams until the reply's first line reaches the top; from
    there the reader reads down at their own pace. After a reply, a branch switch or an edit it
    shows the start of the newest message."""

    editRequested = Signal(int, str)
    regenerateRequested = Signal(int)
    continueRequested = Signal(int)
    branchRequested = Signal(int)
    notify = Signal(str)

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setWidgetResizable(True)
        self.setAccessibleName("Conversation")
        self.setObjectName("chatView")
        self.setFrameShape(QFrame.NoFrame)
        self.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)  # messages wrap to the width instead
        self._inner = _Column()
        self._inner.setObjectName("chatColumn")
        self._layout = QVBoxLayout(self._inner)
        self._layout.setContentsMargins(16, COLUMN_MARGIN, 16, COLUMN_MARGIN)
        self._layout.setSpacing(10)
        self._layout.addStretch(1)
        self.setWidget(self._inner)
        self.renderer = MarkdownRenderer()
        self.stats_mode = "always"
        self.image_reader = None  # ref -> ImageAttachment: a message's image from the history (thumbnails)
        self.widgets: dict[int, MessageWidget] = {}
        self._follow = True
        self.verticalScrollBar().rangeChanged.connect(self._keep_in_view)
        self.verticalScrollBar().valueChanged.connect(self._track_follow)
        self.empty_label = QLabel("Ask anything. Replies are generated on this computer; nothing leaves it.")
        self.empty_label.setObjectName("emptyChat")
        self.empty_label.setAlignment(Qt.AlignCenter)
        self.empty_label.setWordWrap(True)
        self._layout.insertWidget(0, self.empty_label)
        self.more_button = QPushButton()
        self.more_button.setAccessibleName("Show earlier messages")
        self.more_button.clicked.connect(self.show_earlier)
        self.more_button.hide()
        self._layout.insertWidget(0, self.more_button)
        self._conversation = None
        self._thread: list = []
        self._shown_from = 0
        self._anchor_from_bottom: int | None = None
        self._held: int | None = None  # a scroll position kept while the view grows (hold_position)
        self._scrolling = False  # the view moves itself: not a reader's scroll

    def set_dark(self, dark: bool) -> None:
        self.renderer = MarkdownRenderer(dark=dark)

    def hold_position(self) -> None:
        """Something under the view is about to go (the base-model notice): the view grows at its bottom.
        What is on screen stays where it is (a button you were about to press does not slide away) until
        the next message or thread; the column keeps room below it instead."""
        self._held = self.verticalScrollBar().value()

    def _release(self) -> None:
        if self._held is not None:
            self._held = None
            self._room_below(0)

    def _room_below(self, extra: int) -> None:
        """Blank room under the last message (the messages themselves keep their heights)."""
        m = self._layout.contentsMargins()
        self._layout.setContentsMargins(m.left(), m.top(), m.right(), COLUMN_MARGIN + extra)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self._held is not None:
            self._room_below(0)
            natural = self._inner.heightForWidth(self.viewport().width())
            self._room_below(max(0, self._held + self.viewport().height() - natural))
            self._keep_in_view(0, self.verticalScrollBar().maximum())

    def clear(self) -> None:
        self._release()
        for w in self.widgets.values():
            # Out of the layout now; deleteLater alone waits for the event loop to come round.
            self._layout.removeWidget(w)
            w.hide()
            w.deleteLater()
        self.widgets.clear()
        self.empty_label.show()
        self.more_button.hide()
        self._shown_from = 0
        self._anchor_from_bottom = None
        self._follow = True

    def show_thread(self, conversation, live: dict[int, str] | None = None, include: int | None = None,
                    live_thinking: dict[int, str] | None = None) -> None:
        """Show the visible branch of a conversation: its last PAGE messages (and back to
        `include`, a search hit, if that is older). `live` holds text of replies still streaming,
        `live_thinking` their thinking."""
        self.clear()
        live = live or {}
        self._conversation = conversation
        self._thread = [m for m in conversation.thread if m.role != "system"]
        for message in self._thread:
            if message.id in live:
                message.content = live[message.id]
            if live_thinking and live_thinking.get(message.id):
                message.thinking = live_thinking[message.id]
        start = max(0, len(self._thread) - PAGE)
        if include is not None:
            start = min(start, next((i for i, m in enumerate(self._thread) if m.id == include), start))
        self._shown_from = start
        for message in self._thread[start:]:
            self.add_message(message, [m.id for m in conversation.siblings(message.id)])
        self._update_more_button()
        self._follow = True
        self.show_newest()

    def show_earlier(self) -> None:
        """Build the previous page of messages above the ones shown, keeping the view still."""
        if not self._shown_from:
            return
        start = max(0, self._shown_from - PAGE)
        bar = self.verticalScrollBar()
        self._anchor_from_bottom = bar.maximum() - bar.value()
        self._follow = False
        for offset, message in enumerate(self._thread[start:self._shown_from]):
            widget = self._make_widget(message, [m.id for m in self._conversation.siblings(message.id)])
            self._layout.insertWidget(2 + offset, widget)  # after the button and the empty label
        self._shown_from = start
        self._update_more_button()
        QTimer.singleShot(250, self, self._drop_anchor)  # once the new rows are laid out

    def _drop_anchor(self) -> None:
        self._anchor_from_bottom = None

    def _update_more_button(self) -> None:
        self.more_button.setText(f"Show {format_count(self._shown_from, 'earlier message')}")
        self.more_button.setVisible(self._shown_from > 0)

    def add_message(self, message, siblings=None) -> MessageWidget:
        self._release()
        widget = self._make_widget(message, siblings)
        self._layout.insertWidget(self._layout.count() - 1, widget)
        return widget

    def _make_widget(self, message, siblings) -> MessageWidget:
        self.empty_label.hide()
        widget = MessageWidget(message, self.renderer, stats_mode=self.stats_mode, siblings=siblings,
                               image_reader=self.image_reader)
        widget.editRequested.connect(self.editRequested)
        widget.regenerateRequested.connect(self.regenerateRequested)
        widget.continueRequested.connect(self.continueRequested)
        widget.branchRequested.connect(self.branchRequested)
        widget.notify.connect(self.notify)
        widget.editorOpened.connect(self._show_editor)
        self.widgets[message.id] = widget
        return widget

    def set_stats_mode(self, mode: str) -> None:
        self.stats_mode = mode
        for w in self.widgets.values():
            w.set_stats_mode(mode)

    # --- Where the view stands
    def newest(self) -> MessageWidget | None:
        return next(reversed(self.widgets.values()), None) if self.widgets else None

    def _target(self, maximum: int) -> int:
        """The bottom, but never past the first line of the newest message."""
        newest = self.newest()
        if newest is None or not newest.isVisible():
            return maximum
        return max(0, min(maximum, newest.y() - self._layout.spacing()))

    def show_newest(self) -> None:
        """Show the start of the newest message, now and once the layout has settled."""
        self._follow = True
        self._keep_in_view(0, self.verticalScrollBar().maximum())
        QTimer.singleShot(0, self, lambda: self._follow and self._keep_in_view(0, self.verticalScrollBar().maximum()))

    def _show_editor(self) -> None:
        """The inline editor opens in full: its message's header at the top if it does not fit below."""
        widget = self.sender()
        self._follow = False

        def reveal():
            if widget is not None and widget.isVisible():
                self.ensureWidgetVisible(widget, 0, 8)
                if widget.y() < self.verticalScrollBar().value():
                    self.verticalScrollBar().setValue(widget.y() - 8)

        QTimer.singleShot(0, widget, reveal)

    # Follow the stream only while the user is at the target: scrolling up to read stops it.
    def _track_follow(self, value: int) -> None:
        if not self._scrolling:
            self._follow = value >= self._target(self.verticalScrollBar().maximum()) - 24

    def _keep_in_view(self, _min: int, maximum: int) -> None:
        bar = self.verticalScrollBar()
        self._scrolling = True
        try:
            if self._held is not None:  # the view grew under a reader: what they see stays put
                bar.setValue(self._held)
            elif self._anchor_from_bottom is not None:  # older messages were added above
                bar.setValue(maximum - self._anchor_from_bottom)
            elif self._follow:
                bar.setValue(self._target(maximum))
        finally:
            self._scrolling = False
