"""What the picker, the model manager and its pages share: fit verdicts in words and as a coloured disc,
message colours that read in light and dark themes, and their buttons and tables."""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap
from PySide6.QtWidgets import QAbstractItemView, QHeaderView, QPushButton, QStyledItemDelegate, QTreeWidget

from ui.theme import is_dark

VERDICT_WORDS = {"fits": "fits", "tight": "tight fit", "does not fit": "does not fit"}
VERDICT_COLOURS = {"fits": "#2e7d32", "tight": "#e0a000", "does not fit": "#c62828"}
# (background, border, text) of a message: light theme, dark theme
_MESSAGE_COLOURS = {
    "error": (("#fdecea", "#c62828", "#5f1111"), ("#3a1f1f", "#e57373", "#ffcdd2")),
    "info": (("#e8f5e9", "#2e7d32", "#123d16"), ("#1d3321", "#81c784", "#c8e6c9")),
    "notice": (("#fff8e1", "#e0a000", "#4e3b00"), ("#3a3220", "#ffca28", "#ffecb3")),
}
_ICONS: dict[str, QIcon] = {}


def verdict_words(verdict: str | None) -> str:
    return VERDICT_WORDS.get(verdict or "", verdict or "fit not known yet")


def verdict_icon(verdict: str | None) -> QIcon:
    """A small coloured disc: green fits, amber tight, red does not fit, grey not known yet."""
    key = verdict or ""
    if key not in _ICONS:
        pix = QPixmap(12, 12)
        pix.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pix)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(VERDICT_COLOURS.get(key, "#9e9e9e")))
        painter.drawEllipse(1, 1, 10, 10)
        painter.end()
        _ICONS[key] = QIcon(pix)
    return _ICONS[key]


def message_style(kind: str, widget=None) -> str:
    """A framed message's style sheet ("error", "info" or "notice"), in the colours of the widget's theme."""
    background, border, text = _MESSAGE_COLOURS[kind][1 if is_dark(widget) else 0]
    return (f"QFrame {{ background: {background}; border: 1px solid {border}; border-radius: 4px; }}"
            f"QLabel {{ border: none; background: transparent; color: {text}; }}")


def error_text_style(widget=None) -> str:
    """Red text that reads on the theme's own background."""
    return f"color: {'#ff8a80' if is_dark(widget) else '#c62828'};"


def button(text: str, name: str, slot) -> QPushButton:
    """A push button with an accessible name that Enter in a dialog does not press by accident."""
    b = QPushButton(text)
    b.setAccessibleName(name)
    b.setAutoDefault(False)
    b.clicked.connect(slot)
    return b


class _Padded(QStyledItemDelegate):
    """Room between columns: ResizeToContents alone packs them edge to edge."""

    def sizeHint(self, option, index):  # noqa: N802 - Qt's name
        hint = super().sizeHint(option, index)
        return QSize(hint.width() + 18, max(hint.height(), option.fontMetrics.height() + 6))


class NaturalIcons(_Padded):
    """A column whose icons are drawn at their own size (marks side by side), not squeezed into the view's."""

    def initStyleOption(self, option, index) -> None:  # noqa: N802 - Qt's name
        super().initStyleOption(option, index)
        sizes = option.icon.availableSizes() if not option.icon.isNull() else []
        if sizes:
            option.decorationSize = sizes[0]


def tree(name: str, headers: list[str], stretch: int = 0) -> QTreeWidget:
    """A table of models or servers: column `stretch` takes the room left, the others fit their contents.

    A table of names stretches its last column (a note): the names keep their whole width, and a
    window too narrow for every column scrolls sideways rather than cutting a name short."""
    view = QTreeWidget()
    view.setItemDelegate(_Padded(view))
    view.setAccessibleName(name)
    view.setColumnCount(len(headers))
    view.setHeaderLabels(headers)
    view.setAlternatingRowColors(True)
    view.setUniformRowHeights(True)
    view.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    view.setAllColumnsShowFocus(True)
    header = view.header()
    header.setStretchLastSection(False)
    for i in range(len(headers)):
        header.setSectionResizeMode(i, QHeaderView.ResizeMode.Stretch if i == stretch
                                    else QHeaderView.ResizeMode.ResizeToContents)
    return view
