"""The model manager's Remote servers page: OpenAI-compatible servers on other machines.

Add one (a name, its address, an API key if it needs one), remove one, and test the
connection: the server's models (as MODEL@NAME, the way the picker lists and loads
them) and a measured round trip. Keys go to the OS keyring, or a file only the user
can read (`assistant.remotes`); they are never shown again. Every call goes through
the library service off the UI thread: a server that does not answer never freezes
the window, and what went wrong is one sentence under the list (an OS error in words,
not "[Errno 111]"). A server just added that does not answer is not kept silently: a
question says why and offers to keep it (for when it is switched on) or remove it.
"""

from __future__ import annotations

from PySide6.QtCore import Qt
from PySide6.QtWidgets import (QFormLayout, QHBoxLayout, QLabel, QLineEdit, QMessageBox, QTreeWidgetItem, QVBoxLayout,
                               QWidget)

from assistant.library_service import ConnectionTest
from ui.library_bridge import LibraryBridge
from ui.error_text import readable
from ui.library_widgets import button, error_text_style, tree
from ui.plain_text import plain_label, plain_tooltip
from ui.workers import run_in_background


class RemoteServersPage(QWidget):
    def __init__(self, library: LibraryBridge, parent: QWidget | None = None):
        super().__init__(parent)
        self.library, self.service = library, library.service
        self.prompt: QMessageBox | None = None
        v = QVBoxLayout(self)
        intro = QLabel("Chat with models served by a bigger machine: llama-server, vLLM, Ollama, LM Studio or "
                       "another Hearth, over the OpenAI API. Their models appear in the model picker as "
                       "MODEL@NAME, beside the local ones.")
        intro.setWordWrap(True)
        v.addWidget(intro)
        self.servers = tree("Remote servers", ["Name", "Address", "API key"])
        self.servers.setRootIsDecorated(False)
        self.servers.itemSelectionChanged.connect(self._selection)
        v.addWidget(self.servers, 1)
        self.result = plain_label(QLabel("Select a server to test its connection or remove it."))
        self.result.setAccessibleName("Connection test result")
        self.result.setWordWrap(True)
        v.addWidget(self.result)
        row = QHBoxLayout()
        row.addStretch(1)
        self.test_button = button("&Test connection", "Test the connection to the selected server", self.test)
        self.remove_button = button("Re&move…", "Remove the selected server and its key", self.confirm_remove)
        for b in (self.test_button, self.remove_button):
            b.setEnabled(False)
            row.addWidget(b)
        v.addLayout(row)

        form = QFormLayout()
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("a short name, e.g. gpu-box")
        self.name_edit.setAccessibleName("Name of the new server")
        self.url_edit = QLineEdit()
        self.url_edit.setPlaceholderText("http://192.168.1.20:8080 (the /v1 is optional)")
        self.url_edit.setAccessibleName("Address of the new server")
        self.key_edit = QLineEdit()
        self.key_edit.setEchoMode(QLineEdit.EchoMode.Password)
        self.key_edit.setPlaceholderText("only if the server needs one")
        self.key_edit.setAccessibleName("API key of the new server")
        form.addRow("N&ame:", self.name_edit)
        form.addRow("A&ddress:", self.url_edit)
        form.addRow("API &key:", self.key_edit)
        v.addLayout(form)
        add_row = QHBoxLayout()
        add_row.addStretch(1)
        self.add_button = button("&Add server", "Add the remote server", self.add)
        add_row.addWidget(self.add_button)
        v.addLayout(add_row)
        self.url_edit.returnPressed.connect(self.add)
        library.remotesChanged.connect(self.show_servers)
        self.show_servers(self.service.remote_servers())

    def show_servers(self, servers) -> None:
        selected = self.selected()
        self.servers.clear()
        for s in servers:
            item = QTreeWidgetItem([s.name, s.url, "stored" if s.has_key else "none"])
            item.setToolTip(0, plain_tooltip(f"{s.name}: {s.url}"))
            self.servers.addTopLevelItem(item)
            if s.name == selected:
                self.servers.setCurrentItem(item)
        self._selection()

    def selected(self) -> str | None:
        items = self.servers.selectedItems()
        return items[0].text(0) if items else None

    def _selection(self) -> None:
        chosen = self.selected() is not None
        self.test_button.setEnabled(chosen)
        self.remove_button.setEnabled(chosen)

    def _say(self, text: str, error: bool = False) -> None:
        self.result.setText(readable(text))
        self.result.setStyleSheet(error_text_style(self) if error else "")

    # --- actions (each off the UI thread)
    def add(self) -> None:
        name, url, key = self.name_edit.text().strip(), self.url_edit.text().strip(), self.key_edit.text()
        if not name or not url:
            self._say("Give the server a name and its address.", error=True)
            return
        self.add_button.setEnabled(False)
        self._say(f"Adding {name} and connecting to it…")

        def added(server) -> None:
            self.add_button.setEnabled(True)
            for edit in (self.name_edit, self.url_edit, self.key_edit):
                edit.clear()
            self._select(server.name)
            self.test(just_added=True)

        def failed(exc) -> None:
            self.add_button.setEnabled(True)
            self._say(str(exc), error=True)

        run_in_background(lambda: self.service.add_remote(name, url, key or None), added, failed, context=self)

    def _select(self, name: str) -> None:
        for i in range(self.servers.topLevelItemCount()):
            item = self.servers.topLevelItem(i)
            if item is not None and item.text(0) == name:
                self.servers.setCurrentItem(item)

    def test(self, just_added: bool = False) -> None:
        name = self.selected()
        if not name:
            return
        self.test_button.setEnabled(False)
        self._say(f"Connecting to {name}…")

        def done(result: ConnectionTest) -> None:
            self.test_button.setEnabled(self.selected() is not None)
            self._say(result.sentence)

        def failed(exc) -> None:
            self.test_button.setEnabled(self.selected() is not None)
            self._say(str(exc), error=True)
            if just_added:
                self.ask_keep(name, str(exc))

        run_in_background(lambda: self.service.test_remote(name), done, failed, context=self)

    def ask_keep(self, name: str, why: str) -> QMessageBox:
        """A server just added does not answer: keep it (it may be switched off now) or remove it."""
        box = QMessageBox(QMessageBox.Icon.Warning, "Remote server", f"{name} does not answer.",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setTextFormat(Qt.TextFormat.PlainText)  # a name and an address, as written
        box.setInformativeText(f"{readable(why)}\n\nKeep it if the server is only switched off now: its models "
                               "are listed once it answers. Remove it if the address is wrong.")
        keep, remove = box.button(QMessageBox.StandardButton.Yes), box.button(QMessageBox.StandardButton.No)
        keep.setText("&Keep it")
        keep.setAccessibleName(f"Keep {name}")
        remove.setText("&Remove it")
        remove.setAccessibleName(f"Remove {name}")
        box.setDefaultButton(QMessageBox.StandardButton.Yes)

        def answered(clicked) -> None:
            self.prompt = None
            if clicked is remove:
                self._remove(name)
            else:
                self._say(f"Kept {name}; it does not answer yet. {readable(why)}", error=True)

        box.buttonClicked.connect(answered)
        self.prompt = box
        box.open()
        return box

    def _remove(self, name: str) -> None:
        run_in_background(lambda: self.service.remove_remote(name), lambda _none: self._say(f"Removed {name} and its key."),
                          lambda exc: self._say(str(exc), error=True), context=self)

    def confirm_remove(self) -> QMessageBox | None:
        name = self.selected()
        if not name:
            return None
        box = QMessageBox(QMessageBox.Icon.Question, "Remove server", f"Remove {name}?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setInformativeText("Its address and its API key are forgotten; nothing on the server changes.")
        yes = box.button(QMessageBox.StandardButton.Yes)
        yes.setText("&Remove")
        yes.setAccessibleName("Remove")
        box.button(QMessageBox.StandardButton.No).setText("Keep it")
        box.button(QMessageBox.StandardButton.No).setAccessibleName("Keep it")
        box.setDefaultButton(QMessageBox.StandardButton.No)

        def answered(clicked) -> None:
            self.prompt = None
            if clicked is yes:
                self._remove(name)

        box.buttonClicked.connect(answered)
        self.prompt = box
        box.open()
        return box
