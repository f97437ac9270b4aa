"""Text from outside the app (model names and paths, a server's error, a Hub answer) shown as written.

Qt takes a label's text or a tooltip that looks like markup for markup: a model named
`<img src=…>` by a file, an imported history or a server would render as HTML. Labels
that show such text are set to plain text; tooltips are escaped.
"""

from __future__ import annotations

import html

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QLabel


def plain_tooltip(text: str) -> str:
    """`text` as a tooltip shows it, line for line, whatever it looks like."""
    return "<p style='white-space:pre-wrap'>" + html.escape(text).replace("\n", "<br>") + "</p>" if text else ""


def plain_label(label: QLabel) -> QLabel:
    """The label shows its text as written, never as markup."""
    label.setTextFormat(Qt.TextFormat.PlainText)
    return label
