"""How the window names a catalogue model's shape and abilities: one place for the picker and the catalogue.

    params_text(entry)      "21B, 3.6B active" (a mixture of experts), "4B"
    ladder_text(family)     "0.8B · 2B · 4B · 9B": a family's sizes, smallest first
    ability_words(entry)    "thinks · sees images"
    abilities_icon(entry)   the same as icons drawn side by side (ui/icons.py), for a table cell or a label

Marks are icons with words in their tooltips and accessible names, never characters a
font may lack.
"""

from __future__ import annotations

from PySide6.QtCore import QPoint, QSize, Qt
from PySide6.QtGui import QIcon, QPainter, QPixmap

from common.formatting import format_params
from models.catalogue import CatalogueEntry, Family
from models.labels import size_token
from ui.icons import icon

MARK_SIZE = 14  # px, one mark
THINKS = "thinks before it answers"
SEES = "sees images"


def params_text(entry: CatalogueEntry) -> str:
    """Parameters as people say them; a mixture of experts with the ones each token uses."""
    total = format_params(entry.params)
    if entry.is_moe and entry.active_params:
        return f"{total}, {format_params(entry.active_params)} active"
    return total


def ladder_text(family: Family) -> str:
    """The family's sizes, smallest first: "0.8B · 2B · 4B · 9B"."""
    return " · ".join(size_token(e) for e in family.sizes)


def abilities(entry: CatalogueEntry | None) -> list[tuple[str, str]]:
    """(icon key, words) for what the model does beyond text: thinking, images."""
    if entry is None:
        return []
    found = []
    if entry.thinking:
        found.append(("thinks", THINKS))
    if entry.sees_images:
        found.append(("sees", SEES))
    return found


def ability_words(entry: CatalogueEntry | None) -> str:
    return " · ".join(words for _, words in abilities(entry))


def abilities_icon(entry: CatalogueEntry | None, size: int = MARK_SIZE) -> QIcon:
    """The marks side by side in one icon (empty when the model has none)."""
    marks = abilities(entry)
    if not marks:
        return QIcon()
    gap = 3
    pixmap = QPixmap(len(marks) * size + (len(marks) - 1) * gap, size)
    pixmap.fill(Qt.GlobalColor.transparent)
    painter = QPainter(pixmap)
    for i, (key, _) in enumerate(marks):
        painter.drawPixmap(QPoint(i * (size + gap), 0), icon(key).pixmap(QSize(size, size)))
    painter.end()
    return QIcon(pixmap)


def abilities_pixmap(entry: CatalogueEntry | None, size: int = MARK_SIZE) -> QPixmap:
    marks = abilities(entry)
    if not marks:
        return QPixmap()
    return abilities_icon(entry, size).pixmap(QSize(len(marks) * size + (len(marks) - 1) * 3, size))
