"""The conversation list, newest first, with a search box over titles and messages.

Search results are grouped by conversation: one row each, its title above the matching
snippets with the match highlighted. The list picks up conversations other processes save
(the CLI, the API server) by checking the history's newest change every few seconds.
"""

import dataclasses
import html
import logging
import re
from pathlib import Path

from PySide6.QtCore import QSize, QStandardPaths, Qt, QTimer, Signal
from PySide6.QtGui import QPalette
from PySide6.QtWidgets import (
    QCheckBox,
    QFileDialog,
    QInputDialog,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMenu,
    QMessageBox,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from common.errors import UserError
from ui.icons import icon

log = logging.getLogger(__name__)
PAGE = 200  # rows fetched at a time; more load as the list scrolls
SEARCH_HITS = 100  # messages searched for one query; grouped into far fewer rows
SNIPPETS_PER_ROW = 2
WATCH_MS = 3000  # how often the list checks for conversations saved elsewhere
# Markers the search puts around a match: private-use characters no escaping touches.
MARK_OPEN, MARK_CLOSE = "\ue000", "\ue001"


class Sidebar(QWidget):
    conversationSelected = Signal(int)
    messageSelected = Signal(int, int)  # conversation id, message id (a search hit)
    newChatRequested = Signal()
    conversationDeleted = Signal(int)
    conversationRenamed = Signal(int)
    notify = Signal(str)  # a confirmation for the status bar

    def __init__(self, history, chat, parent=None):
        """`history` is read; renames and deletions go through `chat`, the chat service."""
        super().__init__(parent)
        self.history = history
        self.chat = chat
        self.setObjectName("sidebar")
        self.setMinimumWidth(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(8, 8, 8, 8)
        layout.setSpacing(6)
        self.new_button = QPushButton("New chat")
        self.new_button.setObjectName("newChatButton")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.newChatRequested)
        layout.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations (Ctrl+F)")
        self.search.setAccessibleName("Search conversations")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)
        self.search_thinking = QCheckBox("Search thinking too")
        self.search_thinking.setAccessibleName("Search reasoning models' thinking too")
        self.search_thinking.setToolTip("Also find words in how reasoning models thought before they answered")
        self.search_thinking.toggled.connect(lambda _: self.refresh() if self.search.text().strip() else None)
        layout.addWidget(self.search_thinking)
        self.list = QListWidget()
        self.list.setObjectName("conversationList")
        self.list.setAccessibleName("Conversations")
        self.list.setWordWrap(True)
        self.list.setTextElideMode(Qt.ElideRight)
        self.list.setHorizontalScrollBarPolicy(Qt.ScrollBarAlwaysOff)
        self.list.setContextMenuPolicy(Qt.CustomContextMenu)
        self.list.customContextMenuRequested.connect(self._menu)
        self.list.itemActivated.connect(self._activated)
        self.list.itemClicked.connect(self._activated)
        self.list.verticalScrollBar().valueChanged.connect(self._maybe_load_more)
        layout.addWidget(self.list, 1)
        self._search_timer = QTimer(self, singleShot=True, interval=200)
        self._search_timer.timeout.connect(self.refresh)
        self.search.textChanged.connect(lambda _: self._search_timer.start())
        self._loaded = 0
        self.current_id: int | None = None
        self._seen = None
        self.apply_icons()
        self.refresh()
        self._watch = QTimer(self, interval=WATCH_MS)
        self._watch.timeout.connect(self._check_for_changes)
        self._watch.start()

    def apply_icons(self) -> None:
        self.new_button.setIcon(icon("new"))

    def stop_watching(self) -> None:
        self._watch.stop()

    # --- Filling the list
    def refresh(self) -> None:
        self.list.clear()
        self._loaded = 0
        self._seen = self._fingerprint()
        query = self.search.text().strip()
        if query:
            self._show_search(query)
            return
        self._load_more()

    def _show_search(self, query: str) -> None:
        groups: dict[int, list] = {}
        for hit in self.history.search(query, limit=SEARCH_HITS, highlight=(MARK_OPEN, MARK_CLOSE),
                                       thinking=self.search_thinking.isChecked()):
            if hit.in_thinking:  # said, so a match nobody sees in the answer is not a puzzle
                hit = dataclasses.replace(hit, snippet="(thinking) " + hit.snippet)
            groups.setdefault(hit.conversation_id, []).append(hit)  # best-ranked conversation first
        for conv_id, hits in groups.items():
            title = hits[0].title or "Untitled"  # may carry the search's markers: a match in the title
            if MARK_OPEN not in title:
                title = _mark_words(title, query)
            snippets = []
            for hit in hits:  # a title hit repeats the first message: each text once
                plain = " ".join(_plain(hit.snippet or "").split())
                if plain and plain != " ".join(_plain(title).split()) and plain not in map(_plain, snippets):
                    snippets.append(hit.snippet)
            snippets = snippets[:SNIPPETS_PER_ROW]
            # The label below draws the row; the item itself has no text to draw (a selected row's style
            # would paint it over the label), only its accessible text for screen readers.
            item = QListWidgetItem()
            item.setData(Qt.AccessibleTextRole, f"{_plain(title)}\n" + "\n".join(_plain(s) for s in snippets))
            item.setData(Qt.UserRole, (conv_id, next((h.message_id for h in hits if h.message_id), None)))
            more = f"{len(hits)} matches" if len(hits) > 1 else ""
            label = QLabel(_search_row_html(title, snippets, more, self.palette()))
            label.setObjectName("searchResult")
            label.setTextFormat(Qt.RichText)
            label.setWordWrap(True)
            label.setAttribute(Qt.WA_TransparentForMouseEvents)  # clicks reach the list's item
            label.setContentsMargins(6, 4, 6, 4)
            item.setToolTip(html.escape(_plain(snippets[0]) if snippets else _plain(title)))
            self.list.addItem(item)
            self.list.setItemWidget(item, label)
            self._fit_row(item, label)
        if not self.list.count():
            item = QListWidgetItem("No matches")
            item.setFlags(Qt.NoItemFlags)
            self.list.addItem(item)

    def _fit_row(self, item: QListWidgetItem, label: QLabel) -> None:
        width = max(160, self.list.viewport().width() - 8)
        # The row's style-sheet padding (6 px each side) narrows and shortens the label: room for both.
        item.setSizeHint(QSize(width, label.heightForWidth(width - 16) + 16))

    def resizeEvent(self, event) -> None:
        """Search rows wrap to the new width."""
        super().resizeEvent(event)
        for i in range(self.list.count()):
            item = self.list.item(i)
            label = self.list.itemWidget(item)
            if isinstance(label, QLabel):
                self._fit_row(item, label)

    def _load_more(self) -> None:
        rows = self.history.list_conversations(limit=PAGE, offset=self._loaded)
        for conv in rows:
            item = QListWidgetItem(conv.display_title)
            item.setData(Qt.UserRole, (conv.id, None))
            when = conv.updated_at[:16].replace("T", " ")
            if getattr(conv, "source", None) == "api":
                item.setIcon(icon("api"))
                item.setToolTip(f"Saved by the local API server · {conv.model or ''} · {when}")
            else:
                item.setToolTip(f"{conv.model or ''} · {when}")
            self.list.addItem(item)
            if conv.id == self.current_id:
                item.setSelected(True)
        self._loaded += len(rows)

    def _maybe_load_more(self, value: int) -> None:
        bar = self.list.verticalScrollBar()
        if not self.search.text().strip() and value >= bar.maximum() - 4 and self._loaded % PAGE == 0 and self._loaded:
            self._load_more()

    # --- Changes made by other processes
    def _fingerprint(self):
        """How many conversations there are and which changed last: cheap, and enough to notice a change."""
        try:
            newest = self.history.list_conversations(limit=1)
            return self.history.count_conversations(), [(c.id, c.updated_at, c.title) for c in newest]
        except UserError as exc:  # the history is busy or unreadable for a moment: try again next time
            log.info("cannot check the history for changes: %s", exc)
            return self._seen

    def _check_for_changes(self) -> None:
        if self.search.text().strip() or not self.isVisible():
            return
        seen = self._fingerprint()
        if seen != self._seen:
            value = self.list.verticalScrollBar().value()
            self.refresh()
            self.list.verticalScrollBar().setValue(value)

    def showEvent(self, event) -> None:
        """Back from another view: what other processes saved meanwhile shows at once."""
        super().showEvent(event)
        if self._seen is not None:
            self._check_for_changes()

    def select(self, conversation_id: int | None) -> None:
        self.current_id = conversation_id
        for i in range(self.list.count()):
            data = self.list.item(i).data(Qt.UserRole)
            self.list.item(i).setSelected(bool(data) and data[0] == conversation_id)

    def _activated(self, item: QListWidgetItem) -> None:
        data = item.data(Qt.UserRole)
        if not data:
            return
        conv_id, message_id = data
        if message_id:
            self.messageSelected.emit(conv_id, message_id)
        else:
            self.conversationSelected.emit(conv_id)

    # --- Rename, export, delete
    def _menu(self, pos) -> None:
        item = self.list.itemAt(pos)
        if not item or not item.data(Qt.UserRole):
            return
        conv_id = item.data(Qt.UserRole)[0]
        menu = QMenu(self)
        menu.addAction("Rename…", lambda: self.rename(conv_id))
        menu.addAction("Export as Markdown…", lambda: self.export(conv_id, "md"))
        menu.addAction("Export as JSON…", lambda: self.export(conv_id, "json"))
        menu.addSeparator()
        menu.addAction("Delete…", lambda: self.delete(conv_id))
        menu.exec(self.list.mapToGlobal(pos))

    def keyPressEvent(self, event):
        """F2 renames and Delete deletes the selected conversation, as in a file manager."""
        item = self.list.currentItem()
        data = item.data(Qt.UserRole) if item else None
        if data and event.key() == Qt.Key_F2:
            self.rename(data[0])
        elif data and event.key() == Qt.Key_Delete:
            self.delete(data[0])
        else:
            super().keyPressEvent(event)

    def make_rename_dialog(self, title: str) -> QInputDialog:
        dialog = QInputDialog(self)
        dialog.setWindowTitle("Rename conversation")
        dialog.setLabelText("New title:")
        dialog.setTextValue(title)
        dialog.setAccessibleName("Rename conversation")
        dialog.resize(460, dialog.sizeHint().height())  # room for the whole title
        return dialog

    def ask_title(self, title: str) -> tuple[str, bool]:
        dialog = self.make_rename_dialog(title)
        ok = bool(dialog.exec())
        text = dialog.textValue()
        dialog.deleteLater()
        return text, ok

    def rename(self, conv_id: int) -> None:
        conv = self.history.get_conversation(conv_id)
        title, ok = self.ask_title(conv.title or "")
        if ok and title.strip():
            self.chat.rename(conv_id, title.strip())
            self.refresh()
            self.conversationRenamed.emit(conv_id)  # the open chat's header shows the new title
            self.notify.emit("Conversation renamed")

    def default_export_path(self, conv_id: int, fmt: str) -> Path:
        """In the Documents folder, named after the conversation's title."""
        conv = self.history.get_conversation(conv_id)
        folder = QStandardPaths.writableLocation(QStandardPaths.DocumentsLocation) or str(Path.home())
        return Path(folder) / f"{_file_name(conv.display_title, conv_id)}.{fmt}"

    def export(self, conv_id: int, fmt: str, path: str | None = None, images: str = "embed") -> str | None:
        """Export one conversation. Its images: in a JSON file (`images` "embed") or as files in a folder beside
        it ("files", the second choice of the save dialog); a Markdown file always links files beside it."""
        from assistant.history.image_export import write_export

        asked = path is None
        if path is None:
            filters = (["Markdown, images beside it (*.md)"] if fmt == "md" else
                       ["JSON, images inside it (*.json)", "JSON, images as files beside it (*.json)"])
            path, chosen = QFileDialog.getSaveFileName(self, "Export conversation",
                                                       str(self.default_export_path(conv_id, fmt)), ";;".join(filters))
            images = "files" if "as files" in (chosen or "") else images
        if not path:
            return None
        try:  # never over a FIFO, socket or device; a folder gets the file inside it
            written = write_export(self.history, path, fmt, [conv_id], images=images,
                                   name_in_folder=self.default_export_path(conv_id, fmt).name)
        except UserError as exc:
            sentence = str(exc)
            log.warning("%s", sentence)
            if asked:
                QMessageBox.warning(self, "Export", sentence)
            self.notify.emit(sentence)
            return None
        path = str(written.path)
        extra = f", its images in {written.images_folder.name}" if written.images_folder else ""
        self.notify.emit(f"Exported to {path}{extra}")
        return path

    def confirm_delete(self, title: str) -> bool:
        return _confirm_box(self, title)

    def delete(self, conv_id: int, confirm: bool = True) -> bool:
        conv = self.history.get_conversation(conv_id)
        if confirm and not self.confirm_delete(conv.display_title):
            return False
        self.chat.delete(conv_id)
        self.conversationDeleted.emit(conv_id)
        self.refresh()
        self.notify.emit("Conversation deleted")
        return True


def _confirm_box(parent, title: str) -> bool:
    box = QMessageBox(QMessageBox.Warning, "Delete conversation",
                      f"Delete “{title}” and all its messages?\nThis cannot be undone.", parent=parent)
    box.setTextFormat(Qt.PlainText)  # a title is shown as written
    delete = box.addButton("Delete", QMessageBox.DestructiveRole)
    box.addButton(QMessageBox.Cancel)
    box.setDefaultButton(QMessageBox.Cancel)  # Enter does not delete by accident
    box.exec()
    return box.clickedButton() is delete


def _plain(snippet: str) -> str:
    return snippet.replace(MARK_OPEN, "").replace(MARK_CLOSE, "")


def _mark_words(text: str, query: str) -> str:
    """The query's words marked in `text` (a title the search did not mark), ignoring case."""
    words = sorted({w for w in query.split() if w}, key=len, reverse=True)
    if not words:
        return text
    pattern = re.compile("|".join(re.escape(w) for w in words), re.IGNORECASE)
    return pattern.sub(lambda m: f"{MARK_OPEN}{m.group(0)}{MARK_CLOSE}", text)


def _marked_html(snippet: str, palette: QPalette) -> str:
    """The user's text escaped; only the search's own markers become highlights."""
    text = html.escape(" ".join(snippet.split()))
    back, fore = palette.color(QPalette.Highlight).name(), palette.color(QPalette.HighlightedText).name()
    return (text.replace(MARK_OPEN, f"<span style='background-color:{back}; color:{fore}'>")
            .replace(MARK_CLOSE, "</span>"))


def _search_row_html(title: str, snippets: list[str], more: str, palette: QPalette) -> str:
    """Title first and bold; the snippets below in a quieter colour, their matches highlighted."""
    quiet = palette.color(QPalette.PlaceholderText).name()
    text = palette.color(QPalette.Text).name()
    lines = "".join(f"<div style='margin-top:2px; color:{text}'>{_marked_html(s, palette)}</div>" for s in snippets)
    count = f"<div style='font-size:small; color:{quiet}'>{more}</div>" if more else ""
    return f"<div style='font-weight:600; color:{text}'>{_marked_html(title, palette)}</div>{lines}{count}"


def _file_name(title: str, conv_id: int) -> str:
    """A file name from a title: letters, digits, spaces and -_. only, never empty, never a path."""
    name = re.sub(r"[^\w\s.-]", "", title, flags=re.UNICODE).strip(" .")
    name = re.sub(r"\s+", " ", name)[:80].strip()
    return name or f"conversation-{conv_id}"
