"""History notices above the chat: what the person must be told until they dismiss it.

A damaged history database moved aside is one (with its path); the history's other
warnings (a read-only data directory, say) show the same way for this session.
"""

from __future__ import annotations

import logging

from PySide6.QtCore import Qt
from PySide6.QtWidgets import QFrame, QHBoxLayout, QLabel, QPushButton, QVBoxLayout, QWidget

from common.errors import UserError

log = logging.getLogger(__name__)


class NoticeRow(QFrame):
    def __init__(self, text: str, on_dismiss, parent=None):
        super().__init__(parent)
        self.setObjectName("noticeRow")
        self.setAttribute(Qt.WA_StyledBackground, True)
        row = QHBoxLayout(self)
        row.setContentsMargins(12, 6, 6, 6)
        self.label = QLabel(text)
        self.label.setTextFormat(Qt.PlainText)  # paths and reasons as written
        self.label.setWordWrap(True)
        self.label.setTextInteractionFlags(Qt.TextSelectableByMouse)
        self.label.setAccessibleName("History notice")
        row.addWidget(self.label, 1)
        self.dismiss = QPushButton("Dismiss")
        self.dismiss.setAccessibleName("Dismiss this notice")
        self.dismiss.clicked.connect(on_dismiss)
        row.addWidget(self.dismiss, 0, Qt.AlignTop)


class HistoryNotices(QWidget):
    def __init__(self, history, dismiss, parent=None):
        """`history` is read; `dismiss(notice_id)` is the core's (the chat service's): the window never
        writes the history itself."""
        super().__init__(parent)
        self.history = history
        self._dismiss_notice = dismiss
        self._layout = QVBoxLayout(self)
        self._layout.setContentsMargins(8, 6, 8, 0)
        self._layout.setSpacing(4)
        self.rows: list[NoticeRow] = []
        self._session: list[str] = []  # this session's other warnings (a settings file's bad values, say)
        self.refresh()

    def refresh(self) -> None:
        for row in self.rows:
            row.hide()
            row.deleteLater()
        self.rows = []
        notices = list(self.history.notices()) if hasattr(self.history, "notices") else []
        for notice in notices:
            self._add(notice.text, lambda _=False, n=notice: self._dismiss(n))
        said = [n.text for n in notices]
        for warning in getattr(self.history, "warnings", []) or []:
            if not any(warning.startswith(text) for text in said):  # a notice's own CLI reminder: shown above
                self._add(warning, None)
        for text in self._session:
            self._add(text, None)
        self.setVisible(bool(self.rows))

    def add_session_notice(self, text: str) -> None:
        """A warning for this session only (hidden when dismissed; the next start checks again)."""
        if text in self._session:
            return
        self._session.append(text)
        self._add(text, None)
        self.setVisible(True)

    def _add(self, text: str, dismiss) -> None:
        row = NoticeRow(text, dismiss or (lambda _=False: self._hide_row(row)))
        self.rows.append(row)
        self._layout.addWidget(row)

    def _hide_row(self, row: NoticeRow) -> None:
        """A warning of this session only: hidden until the next start, when it is checked again."""
        row.hide()
        self.rows = [r for r in self.rows if r is not row]
        self._session = [t for t in self._session if t != row.label.text()]
        row.deleteLater()
        self.setVisible(bool(self.rows))

    def _dismiss(self, notice) -> None:
        try:
            self._dismiss_notice(notice.id)
        except UserError as exc:  # the notices file cannot be written: say so, keep the notice
            log.warning("cannot dismiss notice %s: %s", notice.id, exc)
            from PySide6.QtWidgets import QMessageBox

            QMessageBox.warning(self, "History", str(exc))
            return
        warnings = getattr(self.history, "warnings", None)
        if warnings:  # its reminder from this session's start goes too
            warnings[:] = [w for w in warnings if not w.startswith(notice.text)]
        self.refresh()
