"""The conversation list, newest first, with a search box over titles and messages."""

import html

from PySide6.QtCore import Qt, QTimer, Signal
from PySide6.QtWidgets import (QFileDialog, QInputDialog, QLineEdit, QListWidget, QListWidgetItem, QMenu,
                               QMessageBox, QPushButton, QVBoxLayout, QWidget)

PAGE = 200  # rows fetched at a time; more load as the list scrolls


class Sidebar(QWidget):
    conversationSelected = Signal(int)
    messageSelected = Signal(int, int)  # conversation id, message id (a search hit)
    newChatRequested = Signal()
    conversationDeleted = Signal(int)

    def __init__(self, history, chat, parent=None):
        """`history` is read; renames and deletions go through `chat`, the chat service."""
        super().__init__(parent)
        self.history = history
        self.chat = chat
        self.setMinimumWidth(220)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        self.new_button = QPushButton("New chat")
        self.new_button.setAccessibleName("New chat")
        self.new_button.setToolTip("New chat (Ctrl+N)")
        self.new_button.clicked.connect(self.newChatRequested)
        layout.addWidget(self.new_button)
        self.search = QLineEdit()
        self.search.setPlaceholderText("Search conversations (Ctrl+F)")
        self.search.setAccessibleName("Search conversations")
        self.search.setClearButtonEnabled(True)
        layout.addWidget(self.search)
        self.list = QListWidget()
        self.list.setAccessibleName("Conversations")
        self.list.setWordWrap(True)
        self.list.setStyleSheet("QListWidget::item { padding: 5px 4px; }")
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
        self.refresh()

    # --- Filling the list
    def refresh(self) -> None:
        self.list.clear()
        self._loaded = 0
        query = self.search.text().strip()
        if query:
            for hit in self.history.search(query, limit=50, highlight=("<b>", "</b>")):
                # The snippet is the user's own text: escape it, then restore only our markers.
                snippet = html.escape(hit.snippet or "").replace("&lt;b&gt;", "<b>").replace("&lt;/b&gt;", "</b>")
                item = QListWidgetItem(f"{hit.title}\n{_strip_tags(snippet)}")
                item.setData(Qt.UserRole, (hit.conversation_id, hit.message_id))
                item.setToolTip(snippet)
                self.list.addItem(item)
            if not self.list.count():
                item = QListWidgetItem("No matches")
                item.setFlags(Qt.NoItemFlags)
                self.list.addItem(item)
            return
        self._load_more()

    def _load_more(self) -> None:
        rows = self.history.list_conversations(limit=PAGE, offset=self._loaded)
        for conv in rows:
            item = QListWidgetItem(conv.display_title)
            item.setData(Qt.UserRole, (conv.id, None))
            item.setToolTip(f"{conv.model or ''} · {conv.updated_at[:16].replace('T', ' ')}")
            self.list.addItem(item)
            if conv.id == self.current_id:
                item.setSelected(True)
        self._loaded += len(rows)

    def _maybe_load_more(self, value: int) -> None:
        bar = self.list.verticalScrollBar()
        if not self.search.text().strip() and value >= bar.maximum() - 4 and self._loaded % PAGE == 0 and self._loaded:
            self._load_more()

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

    def rename(self, conv_id: int) -> None:
        conv = self.history.get_conversation(conv_id)
        title, ok = QInputDialog.getText(self, "Rename conversation", "Title:", text=conv.title or "")
        if ok and title.strip():
            self.chat.rename(conv_id, title.strip())
            self.refresh()

    def export(self, conv_id: int, fmt: str, path: str | None = None) -> str | None:
        if path is None:
            suffix = "Markdown (*.md)" if fmt == "md" else "JSON (*.json)"
            path, _ = QFileDialog.getSaveFileName(self, "Export conversation", f"conversation-{conv_id}.{fmt}", suffix)
        if not path:
            return None
        import json

        data = (self.history.export_markdown([conv_id]) if fmt == "md"
                else json.dumps(self.history.export_json([conv_id]), ensure_ascii=False, indent=2))
        with open(path, "w", encoding="utf-8") as f:
            f.write(data)
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
        return True


def _confirm_box(parent, title: str) -> bool:
    box = QMessageBox(QMessageBox.Warning, "Delete conversation",
                      f"Delete “{title}” and all its messages?\nThis cannot be undone.", parent=parent)
    delete = box.addButton("Delete", QMessageBox.DestructiveRole)
    box.addButton(QMessageBox.Cancel)
    box.setDefaultButton(QMessageBox.Cancel)  # Enter does not delete by accident
    box.exec()
    return box.clickedButton() is delete


def _strip_tags(text: str) -> str:
    return text.replace("<b>", "").replace("</b>", "").replace("&amp;", "&").replace("&lt;", "<").replace("&gt;", ">")
