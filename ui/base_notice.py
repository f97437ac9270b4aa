"""The one-line notice above the message box while a base model is loaded.

    (i) Gemma 3 270M is a base model: it continues text, it does not follow instructions.
        [Switch to SmolLM2 135M]  [ ] Text completion

The (i) is drawn as an icon (ui/icons.py), never as a character a font may lack.

A base model asked a question repeats it or loops; the notice says why, switches
to an instruction-tuned model in one click, and offers text completion instead
(the window then sends the text to be continued as it is, with no chat template).
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import QCheckBox, QFrame, QHBoxLayout, QLabel, QPushButton

from assistant.model_choices import instruct_alternative, label_of
from ui.icons import icon


class BaseModelNotice(QFrame):
    switchRequested = Signal(str)  # the instruction-tuned model to load
    completionToggled = Signal(bool)

    def __init__(self, parent=None, *, before_hiding: Callable[[], None] | None = None):
        """`before_hiding`: called just before the notice goes (the chat view keeps its place)."""
        super().__init__(parent)
        self._before_hiding = before_hiding
        self.setObjectName("baseModelNotice")
        self.setAccessibleName("Base model notice")
        self.setAttribute(Qt.WA_StyledBackground, True)  # the theme's style sheet draws the notice
        row = QHBoxLayout(self)
        row.setContentsMargins(10, 4, 8, 4)
        self.info_icon = QLabel()
        self.info_icon.setObjectName("baseModelIcon")
        self.info_icon.setAccessibleName("Information")
        self.apply_icons()
        row.addWidget(self.info_icon)
        self.label = QLabel()
        self.label.setWordWrap(True)  # a narrow window wraps it: its width never widens the chat page
        self.label.setAccessibleName("Base model")
        row.addWidget(self.label, 1)
        self.switch_button = QPushButton()
        self.switch_button.setAccessibleName("Switch to an instruction-tuned model")
        self.switch_button.clicked.connect(lambda: self.target and self.switchRequested.emit(self.target))
        row.addWidget(self.switch_button)
        self.completion = QCheckBox("Text completion")
        self.completion.setAccessibleName("Text completion mode")
        self.completion.setToolTip("Send your text as it is, without a chat template: the model continues it. "
                                   "Each continuation is saved as its own conversation.")
        self.completion.toggled.connect(self.completionToggled.emit)
        row.addWidget(self.completion)
        self.target: str | None = None
        self.hide()

    def apply_icons(self) -> None:
        """The info mark in the palette's colours (drawn again after a theme change)."""
        self.info_icon.setPixmap(icon("info").pixmap(QSize(16, 16)))

    @property
    def completion_mode(self) -> bool:
        """The window sends text-completion turns: the notice is up and text completion is on."""
        return not self.isHidden() and self.completion.isChecked()

    def show_for(self, model: dict) -> None:
        """Show the notice for a loaded base model; hide it (and leave text completion) for any other."""
        if not model or not model.get("is_base"):
            self.completion.setChecked(False)
            if not self.isHidden() and self._before_hiding is not None:
                self._before_hiding()
            self.hide()
            return
        name = model.get("name") or ""
        self.label.setText(f"<b>{_html(label_of(name) or name)}</b> is a base model: it continues text, it does "
                           "not follow instructions.")
        self.target = instruct_alternative(model.get("spec") or name)
        self.switch_button.setVisible(self.target is not None)
        if self.target:
            self.switch_button.setText(f"Switch to {label_of(self.target)}")
        self.show()


def _html(text: str) -> str:
    import html

    return html.escape(text)
