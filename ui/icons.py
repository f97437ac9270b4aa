"""Icons for the toolbar, the views' rail and the message actions: Phosphor glyphs.

The font and its name-to-glyph map come with the qtawesome package; they are read from its
folder here rather than through `import qtawesome`, which loads eight fonts and qtpy and
cost ~150 ms of the window's start. Each icon is drawn in the current palette's colours, so it
is made again after a theme change (the window re-applies its toolbar icons; messages are
rebuilt anyway).
"""

from __future__ import annotations

import importlib.util
import json
import logging
from functools import cache
from pathlib import Path

from PySide6.QtCore import QRect, QSize, Qt
from PySide6.QtGui import QColor, QFont, QFontDatabase, QIcon, QIconEngine, QPainter, QPalette, QPixmap
from PySide6.QtWidgets import QApplication

log = logging.getLogger(__name__)

# What each action shows: one place to change the look.
NAMES = {
    "chat": "chat-circle-text", "statistics": "chart-bar", "compare": "columns", "server": "broadcast",
    "models": "cube", "settings": "sliders-horizontal", "new": "note-pencil", "copy": "copy",
    "copied": "check", "edit": "pencil-simple", "regenerate": "arrows-clockwise", "continue": "fast-forward",
    "previous": "caret-left", "next": "caret-right", "sidebar": "list", "shortcuts": "keyboard",
    "conversation": "sliders", "dismiss": "x", "warning": "warning", "api": "code", "image": "image",
    "info": "info", "thinks": "brain", "sees": "eye", "moe": "tree-structure", "retry": "arrow-clockwise",
    "download": "download-simple", "load": "play",
}


@cache
def _glyphs() -> tuple[str, dict[str, str]] | None:
    """(font family, name -> character) of the Phosphor font qtawesome ships, or None without it."""
    spec = importlib.util.find_spec("qtawesome")
    if spec is None or spec.origin is None:
        log.warning("qtawesome is not installed: the toolbar shows text only")
        return None
    fonts = Path(spec.origin).parent / "fonts"
    try:
        ttf = sorted(fonts.glob("phosphor-*.ttf"))[-1]
        charmap = sorted(fonts.glob("phosphor-charmap-*.json"))[-1]
        names = {k: chr(int(v, 16)) for k, v in json.loads(charmap.read_text(encoding="utf-8")).items()}
    except (IndexError, OSError, ValueError) as exc:
        log.warning("cannot read the icon font in %s (%s): the toolbar shows text only", fonts, exc)
        return None
    font_id = QFontDatabase.addApplicationFont(str(ttf))
    families = QFontDatabase.applicationFontFamilies(font_id) if font_id >= 0 else []
    if not families:
        log.warning("cannot load the icon font %s: the toolbar shows text only", ttf)
        return None
    return families[0], names


class _GlyphEngine(QIconEngine):
    def __init__(self, family: str, char: str, colours: dict):
        super().__init__()
        self.family, self.char, self.colours = family, char, colours

    def paint(self, painter: QPainter, rect: QRect, mode: QIcon.Mode, state: QIcon.State) -> None:
        font = QFont(self.family)
        font.setPixelSize(max(1, round(rect.height() * 0.875)))
        painter.save()
        painter.setFont(font)
        painter.setPen(self.colours.get(mode, self.colours[QIcon.Normal]))
        painter.drawText(rect, Qt.AlignCenter, self.char)
        painter.restore()

    def pixmap(self, size: QSize, mode: QIcon.Mode, state: QIcon.State) -> QPixmap:
        pixmap = QPixmap(size)
        pixmap.fill(Qt.transparent)
        painter = QPainter(pixmap)
        self.paint(painter, QRect(0, 0, size.width(), size.height()), mode, state)
        painter.end()
        return pixmap

    def clone(self) -> QIconEngine:
        return _GlyphEngine(self.family, self.char, self.colours)


def icon(key: str) -> QIcon:
    glyphs = _glyphs()
    if glyphs is None:
        return QIcon()
    family, names = glyphs
    palette = QApplication.palette()
    colours = {QIcon.Normal: QColor(palette.color(QPalette.ButtonText)),
               QIcon.Disabled: QColor(palette.color(QPalette.Disabled, QPalette.ButtonText)),
               QIcon.Active: QColor(palette.color(QPalette.ButtonText)),
               QIcon.Selected: QColor(palette.color(QPalette.Highlight))}
    return QIcon(_GlyphEngine(family, names[NAMES[key]], colours))
