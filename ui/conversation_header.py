"""The open chat's header: its title, its system prompt, and its own settings.

The system prompt a conversation was started with is part of it; showing it here means
the person always knows what the model was told, and "This chat" opens the settings
that belong to this conversation only (the toolbar's Settings are the defaults).
"""

from __future__ import annotations

from PySide6.QtCore import Qt, Signal
from PySide6.QtGui import QFontMetrics
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QSizePolicy, QToolButton, QVBoxLayout

from assistant.preferences import SAMPLING_KEYS, THINKING_KEYS
from ui.icons import icon


class ConversationHeader(QFrame):
    settingsRequested = Signal()

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
        self.prompt = QLabel()
        self.prompt.setObjectName("systemPromptLine")
        self.prompt.setTextFormat(Qt.PlainText)
        self.prompt.setAccessibleName("System prompt")
        self.prompt.setSizePolicy(QSizePolicy.Ignored, QSizePolicy.Preferred)
        column.addWidget(self.title)
        column.addWidget(self.prompt)
        row.addLayout(column, 1)
        self.settings_button = QToolButton()
        self.settings_button.setText("This chat")
        self.settings_button.setIcon(icon("conversation"))
        self.settings_button.setToolButtonStyle(Qt.ToolButtonTextBesideIcon)
        self.settings_button.setAutoRaise(True)
        self.settings_button.setAccessibleName("This chat's settings")
        self.settings_button.setToolTip("Settings for this chat only (the toolbar's Settings are the defaults)")
        self.settings_button.clicked.connect(self.settingsRequested)
        row.addWidget(self.settings_button)
        self._prompt_text = ""
        self.show_conversation(None, default_prompt="")

    def show_conversation(self, conversation, *, default_prompt: str) -> None:
        """A saved chat, or None for a new one (which will get the default system prompt)."""
        if conversation is None:
            self.title.setText("New chat")
            prompt = default_prompt
            self.settings_button.setEnabled(False)
            own = []
        else:
            self.title.setText(conversation.display_title)
            prompt = conversation.system_prompt or ""
            self.settings_button.setEnabled(True)
            own = [k for k in SAMPLING_KEYS + THINKING_KEYS if k in (conversation.settings or {})]
        self._prompt_text = f"System prompt: {' '.join(prompt.split())}" if prompt else "No system prompt"
        self.prompt.setToolTip(prompt)
        self.settings_button.setText("This chat •" if own else "This chat")
        self.settings_button.setToolTip(
            ("This chat has its own " + ", ".join(k.replace("_", " ") for k in own) + ". " if own else "")
            + "Settings for this chat only (the toolbar's Settings are the defaults)")
        self._elide()

    def resizeEvent(self, event):
        super().resizeEvent(event)
        self._elide()

    def _elide(self) -> None:
        width = max(80, self.prompt.width())
        self.prompt.setText(QFontMetrics(self.prompt.font()).elidedText(self._prompt_text, Qt.ElideRight, width))

    def prompt_text(self) -> str:
        return self._prompt_text
