"""The open chat's header: its title, its system prompt, and its own settings.

The system prompt a conversation was started with is part of it; showing it here means
the person always knows what the model was told. Clicking it (or Enter on it) opens this
chat's settings with the prompt's editor in front, as LM Studio and Jan let one chat have
its own prompt; "This chat" opens the same dialog. A new chat has settings too: they are
kept by the window until its first message creates the conversation, then saved with it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QSizePolicy, QToolButton, QVBoxLayout

from assistant.preferences import SAMPLING_KEYS, THINKING_KEYS
from ui.icons import icon

NO_PROMPT = "No system prompt"


class PromptLine(QPushButton):
    """The system prompt in one elided line, as a flat button: a click or Enter edits it."""

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("systemPromptLine")
        self.setFlat(True)
        self.setCursor(Qt.CursorShape.PointingHandCursor)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setAccessibleName("System prompt")
        self.full_text = ""

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self._elide()

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(80, self.width() - 12)
        self.setText(QFontMetrics(self.font()).elidedText(self.full_text, Qt.TextElideMode.ElideRight, width))


class ConversationHeader(QFrame):
    settingsRequested = Signal()
    promptRequested = Signal()  # the system prompt line was clicked: edit it

    def __init__(self, parent=None):
        super().__init__(parent)
        self.setObjectName("conversationHeader")
        self.setAttribute(Qt.WA_StyledBackground, True)
        row = QHBoxLayout(self)
        row.setContentsMargins(16, 6, 8, 6)
        column = QVBoxLayout()
        column.setSpacing(0)
        self.title = QLabel()
        self.title.setObjectName("conversationTitle")
        self.title.setTextFormat(Qt.PlainText)
        self.title.setAccessibleName("Conversation title")
        self.title.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        self.prompt = PromptLine()
        self.prompt.clicked.connect(self.promptRequested)
        column.addWidget(self.title)
        column.addWidget(self.prompt)
        row.addLayout(column, 1)
        self.settings_button = QToolButton()
        self.settings_button.setText("This chat")
        self.settings_button.setIcon(icon("conversation"))
        self.settings_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.settings_button.setAutoRaise(True)
        self.settings_button.setAccessibleName("This chat's settings")
        self.settings_button.clicked.connect(self.settingsRequested)
        row.addWidget(self.settings_button)
        self.show_conversation(None, default_prompt="")

    def show_conversation(self, conversation, *, default_prompt: str, pending: dict | None = None) -> None:
        """A saved chat; or None for a new one, with the prompt it will start with (`default_prompt`)
        and the settings chosen for it so far (`pending`)."""
        if conversation is None:
            self.title.setText("New chat")
            prompt = default_prompt
            settings = pending or {}
            where = "this new chat (kept with it once you send its first message)"
        else:
            self.title.setText(conversation.display_title)
            prompt = conversation.system_prompt or ""
            settings = conversation.settings or {}
            where = "this chat only"
        own = [k for k in SAMPLING_KEYS + THINKING_KEYS if k in settings]
        self.prompt.set_full_text(f"System prompt: {' '.join(prompt.split())}" if prompt else NO_PROMPT)
        self.prompt.setToolTip((f"{prompt}\n\n" if prompt else "") + f"Click to edit the system prompt of {where}.")
        self.prompt.setAccessibleDescription(prompt or NO_PROMPT)
        self.settings_button.setText("This chat •" if own else "This chat")
        self.settings_button.setToolTip(
            ("This chat has its own " + ", ".join(k.replace("_", " ") for k in own) + ". " if own else "")
            + f"System prompt and settings for {where} (the toolbar's Settings are the defaults)")

    def prompt_text(self) -> str:
        return self.prompt.full_text
