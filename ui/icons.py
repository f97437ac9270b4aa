"""Icons for the toolbar and the message actions, drawn from qtawesome's Phosphor font.

Each icon is drawn in the current palette's text colour, so it is made again after a
theme change (the window re-applies its toolbar icons; messages are rebuilt anyway).
"""

from __future__ import annotations

import qtawesome
from PySide6.QtGui import QIcon, QPalette
from PySide6.QtWidgets import QApplication

# What each action shows: one place to change the look.
NAMES = {
    "chat": "chat-circle-text", "statistics": "chart-bar", "compare": "columns", "server": "broadcast",
    "models": "cube", "settings": "sliders-horizontal", "new": "note-pencil", "copy": "copy",
    "copied": "check", "edit": "pencil-simple", "regenerate": "arrows-clockwise", "continue": "fast-forward",
    "previous": "caret-left", "next": "caret-right", "sidebar": "list", "shortcuts": "keyboard",
    "conversation": "sliders", "dismiss": "x", "warning": "warning", "api": "code",
}


def icon(key: str) -> QIcon:
    palette = QApplication.palette()
    colour = palette.color(QPalette.ButtonText)
    disabled = palette.color(QPalette.Disabled, QPalette.ButtonText)
    return qtawesome.icon(f"ph.{NAMES[key]}", color=colour, color_disabled=disabled,
                          color_active=palette.color(QPalette.Highlight))
