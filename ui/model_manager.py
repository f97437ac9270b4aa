"""The model manager: the catalogue, Hub search, downloads, installed models and remote servers, in one dialog.

Catalogue       families (each with its ladder of sizes, "0.8B · 2B · 4B · 9B"; older families last)
                → sizes → other quants, each with its size, parameters (a mixture of experts: "21B,
                3.6B active"), what it can do (thinks, sees images: icons), fit verdict, speed on
                this machine and whether it is installed; Download, Load, Delete.
Search          GGUF repos on the Hugging Face Hub and their quant files; any owner/repo:QUANT.
Downloads       progress, Pause/Resume and Cancel (`ui.downloads`); downloads outlive the dialog
                and a restart (they belong to the library service).
Installed       Load, Delete (with confirmation), Import a .gguf file already on disk (it is
                named after the model inside it).
Remote servers  add, remove, test a connection (`ui.remote_servers`).

Its collaborators come through the constructor: the library bridge (the service and its
events) and a function that loads a model (the window's, through the chat bridge).
Everything slow (the Hub, the disk, the fit and speed table) runs off the UI thread;
fit and speed come from the service's one table, so they match the picker's: a speed
measured on a quiet CPU, else the estimate marked "~" (a reply on a busy CPU never counts).
Names are never cut: the tables give them their whole width (the note column takes what is
left, and a narrow window scrolls sideways), and each has its tooltip. Offline, the dialog
says so at the top and offers no download. Messages use colours that read in light and dark
themes; a failed download says why once, on its row; a finished one offers Load now.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from PySide6.QtCore import Qt
from PySide6.QtGui import QFont, QGuiApplication, QPalette
from PySide6.QtWidgets import (QDialog, QDialogButtonBox, QFileDialog, QFrame, QHBoxLayout, QLabel, QLineEdit,
                               QMessageBox, QTabWidget, QTreeWidgetItem, QVBoxLayout, QWidget)

from assistant.library_service import HubStatus
from common.errors import UserError
from common.formatting import format_bytes, format_count, format_tps
from models import catalogue, fit
from models import download_manager as dm
from models.catalogue import CatalogueEntry
from models.labels import short_label
from models.library import BASE_MODEL_LABEL, SEES_IMAGES_LABEL
from ui.downloads import DownloadsPage
from ui.library_bridge import LibraryBridge
from ui.library_widgets import NaturalIcons, button, message_style, tree, verdict_icon, verdict_words
from ui.model_marks import abilities_icon, ability_words, ladder_text, params_text
from ui.plain_text import plain_label, plain_tooltip
from ui.remote_servers import RemoteServersPage
from ui.workers import run_in_background

ROLE = Qt.ItemDataRole.UserRole
SOURCE_WORDS = {"starter": "Built in", "hub": "Hugging Face Hub", "local": "Imported file"}
CATALOGUE_TAB, SEARCH_TAB, DOWNLOADS_TAB, INSTALLED_TAB, REMOTES_TAB = range(5)
DEFAULT_SIZE = (1240, 760)  # room for every column with whole names; never past the screen
MEASURED_TIP = "Measured on this machine, on a quiet CPU (a reply while other programs held the CPU does not count)"
ESTIMATED_TIP = "Estimated for this machine (~): no reply on a quiet CPU yet"
CAT_MODEL, CAT_QUANT, CAT_SIZE, CAT_PARAMS, CAT_CAN, CAT_FIT, CAT_SPEED, CAT_STATUS, CAT_NOTE = range(9)


class ModelManager(QDialog):
    def __init__(self, library: LibraryBridge, load_model: Callable[[str], None], parent: QWidget | None = None):
        super().__init__(parent)
        self.library, self.service = library, library.service
        self._load_model = load_model
        self.table = self.service.cached_table()
        self.index = self.service.index()
        self.hub: HubStatus | None = self.service.cached_hub_status()
        self.prompt: QMessageBox | None = None  # the question open now (delete, a download that will not fit)
        self.catalogue_items: dict[str, QTreeWidgetItem] = {}  # catalogue name -> size or quant item
        self.search_hits: list = []
        self._fit_generation = 0
        self.setWindowTitle("Models")
        self.setAccessibleName("Model manager")
        # The window makes a new dialog each time: a closed one goes, and stops following the library.
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        screen = (parent.screen() if parent is not None else None) or QGuiApplication.primaryScreen()
        room = screen.availableGeometry() if screen is not None else None
        self.resize(min(DEFAULT_SIZE[0], room.width() - 40) if room else DEFAULT_SIZE[0],
                    min(DEFAULT_SIZE[1], room.height() - 40) if room else DEFAULT_SIZE[1])
        self._build()
        library.downloadChanged.connect(self._download_changed)
        library.downloadProgress.connect(self._download_changed)
        library.downloadPaused.connect(self._download_changed)
        library.downloadFailed.connect(self._download_changed)
        library.downloadRemoved.connect(self._download_changed)
        library.downloadFinished.connect(self._download_finished)
        library.installedChanged.connect(self._installed_changed)
        library.tableReady.connect(self._table_ready)
        self._fill_installed()
        self._update_catalogue()
        self._show_hub()
        if self.table is not None:
            self.machine_label.setText(self._machine_text())
        self.service.request_table(fresh=True)  # free memory changes: size everything up again now
        self.check_hub()

    # --- building
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.machine_label = plain_label(QLabel("Working out what fits this machine…"))
        self.machine_label.setWordWrap(True)
        self.machine_label.setAccessibleName("This machine")
        layout.addWidget(self.machine_label)

        self.hub_line, self.hub_label, self.hub_button = self._framed_line(
            "Hub status", button("Check a&gain", "Check whether the Hub answers now", lambda: self.check_hub(True)))
        layout.addWidget(self.hub_line)
        self.banner, self.message, self.dismiss_button = self._framed_line(
            "Message", button("Dismiss", "Dismiss message", self.clear_message))
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        # A message's own action (Load now, after a download), before Dismiss.
        self.message_action = button("Load now", "Load the downloaded model now", self._message_action)
        self.message_action.hide()
        self.banner.layout().insertWidget(1, self.message_action, 0, Qt.AlignmentFlag.AlignTop)
        self._message_run = None
        layout.addWidget(self.banner)

        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Model manager sections")
        self.tabs.addTab(self._build_catalogue(), "&Catalogue")
        self.tabs.addTab(self._build_search(), "&Search the Hub")
        self.downloads = DownloadsPage(self.library)
        self.downloads.countChanged.connect(self._downloads_counted)
        self.tabs.addTab(self.downloads, "D&ownloads")
        self.tabs.addTab(self._build_installed(), "&Installed")
        self.remotes = RemoteServersPage(self.library)
        self.tabs.addTab(self.remotes, "&Remote servers")
        self._downloads_counted(len(self.downloads.rows))
        layout.addWidget(self.tabs, 1)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setAccessibleName("Close")
        close.setAutoDefault(False)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    @staticmethod
    def _framed_line(name: str, action) -> tuple[QFrame, QLabel, object]:
        """A hidden frame with a wrapped label and a button beside it: for messages and the Hub's state."""
        frame = QFrame()
        frame.setAccessibleName(name)
        row = QHBoxLayout(frame)
        row.setContentsMargins(10, 6, 6, 6)
        label = plain_label(QLabel())
        label.setWordWrap(True)
        label.setAccessibleName(name)
        row.addWidget(label, 1)
        row.addWidget(action, 0, Qt.AlignmentFlag.AlignTop)
        frame.hide()
        return frame, label, action

    def _build_catalogue(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        intro = QLabel("Curated models, in families of sizes. Bigger is smarter and slower; expand a size "
                       "for its other quants (more bits: closer to the original, bigger and slower).")
        intro.setWordWrap(True)
        v.addWidget(intro)
        self.catalogue = tree("Catalogue", ["Model", "Quant", "Size", "Parameters", "Can", "Fit", "Speed", "Status",
                                            "Note"], stretch=CAT_NOTE)
        self.catalogue.setItemDelegateForColumn(CAT_CAN, NaturalIcons(self.catalogue))
        self.catalogue.headerItem().setToolTip(CAT_CAN, "What the model does beyond text: thinks before it answers, "
                                                        "sees images")
        self.catalogue.itemSelectionChanged.connect(self._catalogue_selection)
        self.catalogue.itemActivated.connect(lambda item, _col: self._catalogue_default_action(item))
        v.addWidget(self.catalogue, 1)
        bold = QFont(self.catalogue.font())
        bold.setBold(True)
        # Today's families first; those a 2026 user would not pick first after them.
        for family in sorted(catalogue.families(), key=lambda f: any(e.older for e in f.sizes)):
            older = any(e.older for e in family.sizes)
            ladder = ladder_text(family)
            top = QTreeWidgetItem([f"{family.label}   {ladder}" + ("   (older)" if older else "")])
            top.setFont(0, bold)
            top.setToolTip(0, plain_tooltip(f"{family.label}: {ladder}"
                                            + (f"\nLicence: {family.licence}" if family.licence else "")
                                            + ("\nAn older family: listed after today's." if older else "")))
            top.setData(0, ROLE, None)
            self.catalogue.addTopLevelItem(top)
            top.setFirstColumnSpanned(True)
            for entry in family.sizes:
                item = self._catalogue_item(entry, entry.label, format_bytes(entry.size_bytes, approx=entry.size_approx,
                                                                             unknown="size unknown"))
                top.addChild(item)
                for q in entry.quants:
                    other = entry.with_quant(q)
                    if other is not None and other.name != entry.name:
                        item.addChild(self._catalogue_item(other, f"{short_label(entry)} {other.quant}", "…"))
            top.setExpanded(True)
        row = QHBoxLayout()
        self.selection_label = plain_label(QLabel("Select a model."))
        self.selection_label.setAccessibleName("Selected model")
        self.selection_label.setWordWrap(True)
        row.addWidget(self.selection_label, 1)
        self.download_button = button("&Download", "Download the selected model", self.download_selected)
        self.load_button = button("&Load", "Load the selected model", self.load_selected)
        self.delete_button = button("De&lete…", "Delete the selected model", self.delete_selected)
        for b in (self.download_button, self.load_button, self.delete_button):
            b.setEnabled(False)
            row.addWidget(b)
        v.addLayout(row)
        return page

    def _catalogue_item(self, entry: CatalogueEntry, label: str, size: str) -> QTreeWidgetItem:
        note = "base model" if entry.is_base else ""
        can = ability_words(entry)
        item = QTreeWidgetItem([label, entry.quant, size, params_text(entry), can, "…", "…", "", note])
        item.setData(0, ROLE, entry)
        item.setToolTip(CAT_MODEL, plain_tooltip(f"{entry.label}: {BASE_MODEL_LABEL}" if entry.is_base else entry.label))
        if entry.is_moe:
            item.setToolTip(CAT_PARAMS, plain_tooltip(
                f"A mixture of experts: {params_text(entry)}. Each token reads only the active ones, so it runs "
                "about as fast as a model of that size, and needs the memory of the whole."))
        if can:
            item.setIcon(CAT_CAN, abilities_icon(entry))
            item.setToolTip(CAT_CAN, plain_tooltip(f"It {can.replace(' · ', ' and ')}."))
        if note:
            item.setToolTip(CAT_NOTE, BASE_MODEL_LABEL)
        self.catalogue_items[entry.name] = item
        return item

    def _build_search(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        row = QHBoxLayout()
        self.search_edit = QLineEdit()
        self.search_edit.setPlaceholderText("Search GGUF models on the Hugging Face Hub, e.g. qwen coder")
        self.search_edit.setAccessibleName("Search the Hugging Face Hub")
        self.search_edit.setClearButtonEnabled(True)
        self.search_edit.returnPressed.connect(self.search)
        row.addWidget(self.search_edit, 1)
        self.search_button = button("Searc&h", "Search", self.search)
        row.addWidget(self.search_button)
        v.addLayout(row)
        self.search_status = plain_label(QLabel("Results show each repo's quant files; pick one to download it."))
        self.search_status.setAccessibleName("Search status")
        self.search_status.setWordWrap(True)
        v.addWidget(self.search_status)
        self.results = tree("Search results", ["Model", "Quant", "Size", "Downloads", "Note"], stretch=4)
        self.results.itemSelectionChanged.connect(self._result_selection)
        self.results.itemActivated.connect(lambda item, _col: self.download_named())
        v.addWidget(self.results, 1)
        self.result_fit = plain_label(QLabel())
        self.result_fit.setAccessibleName("Fit of the selected file")
        self.result_fit.setWordWrap(True)
        v.addWidget(self.result_fit)
        row = QHBoxLayout()
        name_label = QLabel("&Name:")
        row.addWidget(name_label)
        self.name_edit = QLineEdit()
        self.name_edit.setPlaceholderText("owner/repo:QUANT, owner/repo/file.gguf, or a catalogue name")
        self.name_edit.setAccessibleName("Model to download")
        self.name_edit.returnPressed.connect(self.download_named)
        name_label.setBuddy(self.name_edit)
        row.addWidget(self.name_edit, 1)
        self.pull_button = button("Do&wnload", "Download the named model", self.download_named)
        row.addWidget(self.pull_button)
        v.addLayout(row)
        return page

    def _build_installed(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        self.installed = tree("Installed models", ["Name", "Model", "Source", "Quant", "Size", "Fit", "Speed", "Note"],
                              stretch=7)
        self.installed.setRootIsDecorated(False)
        self.installed.setItemDelegateForColumn(1, NaturalIcons(self.installed))
        self.installed.itemSelectionChanged.connect(self._installed_selection)
        self.installed.itemActivated.connect(lambda item, _col: self.load_installed())
        v.addWidget(self.installed, 1)
        self.installed_path = plain_label(QLabel())
        self.installed_path.setAccessibleName("File of the selected model")
        self.installed_path.setWordWrap(True)
        self.installed_path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.installed_path)
        row = QHBoxLayout()
        self.import_button = button("&Import a .gguf file…", "Import a GGUF file from disk", self.import_file)
        row.addWidget(self.import_button)
        row.addStretch(1)
        self.installed_load_button = button("&Load", "Load the selected installed model", self.load_installed)
        self.installed_delete_button = button("De&lete…", "Delete the selected installed model",
                                              self.delete_installed)
        for b in (self.installed_load_button, self.installed_delete_button):
            b.setEnabled(False)
            row.addWidget(b)
        v.addLayout(row)
        return page

    # --- messages
    def show_message(self, text: str, error: bool = True, action: tuple[str, str, object] | None = None) -> None:
        """A message above the tabs; `action`: (button text, accessible name, what it does)."""
        self.message.setText(text)
        self.banner.setStyleSheet(message_style("error" if error else "info", self))
        self._message_run = action[2] if action else None
        self.message_action.setVisible(action is not None)
        if action:
            self.message_action.setText(action[0])
            self.message_action.setAccessibleName(action[1])
        self.banner.show()

    def clear_message(self) -> None:
        self.message.clear()
        self._message_run = None
        self.message_action.hide()
        self.banner.hide()

    def _message_action(self) -> None:
        run = self._message_run
        self.clear_message()
        if callable(run):
            run()

    def _ask(self, title: str, text: str, informative: str, yes_text: str, on_yes) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setTextFormat(Qt.TextFormat.PlainText)  # names and paths as written
        box.setInformativeText(informative)
        yes, no = box.button(QMessageBox.StandardButton.Yes), box.button(QMessageBox.StandardButton.No)
        yes.setText(yes_text)
        yes.setAccessibleName(yes_text.replace("&", ""))
        no.setText("Keep it" if "Delete" in yes_text else "Cancel")
        no.setAccessibleName(no.text())
        box.setDefaultButton(QMessageBox.StandardButton.No)

        def answered(clicked):
            self.prompt = None
            if clicked is yes:
                on_yes()

        box.buttonClicked.connect(answered)
        self.prompt = box
        box.open()
        return box

    # --- the Hub: downloads and search are offered only when it answers
    def check_hub(self, fresh: bool = False) -> None:
        run_in_background(lambda: self.service.hub_status(fresh), self._hub_checked,
                          lambda exc: self._hub_checked(HubStatus(False, str(exc), 0.0)), context=self)

    def _hub_checked(self, status: HubStatus) -> None:
        self.hub = status
        self._show_hub()

    def _offline(self) -> bool:
        return self.hub is not None and not self.hub.online

    def _why_offline(self) -> str:
        return self.hub.sentence if self.hub is not None else ""

    def _show_hub(self) -> None:
        offline = self._offline()
        if offline:
            self.hub_label.setText(f"Offline: downloads and Hub search are off. {self._why_offline()}")
            self.hub_line.setStyleSheet(message_style("notice", self))
        self.hub_line.setVisible(offline)
        why = "The Hugging Face Hub cannot be reached now (see the top of this window)." if offline else ""
        for b in (self.pull_button, self.search_button):
            b.setEnabled(not offline)
            b.setToolTip(why)
        self.download_button.setToolTip(why)
        self._catalogue_selection()

    # --- figures
    def _machine_text(self) -> str:
        return (f"{self.table.machine} ~ marks an estimate; a plain figure was measured here."
                if self.table is not None else "Working out what fits this machine…")

    def _table_ready(self, table) -> None:
        self.table = table
        self.machine_label.setText(self._machine_text())
        self._fill_installed()
        self._update_catalogue()

    def _installed_changed(self, index) -> None:
        self.index = index
        self._fill_installed()
        self._update_catalogue()

    def refresh(self) -> None:
        """Read the installed list again (another process may have changed it); the table follows."""
        self.service.refresh_installed()

    def _installed_as(self, entry: CatalogueEntry) -> str | None:
        return self.index.installed_as(entry)

    def _update_catalogue(self) -> None:
        loaded = self.service.loaded_name()
        for name, item in self.catalogue_items.items():
            entry = item.data(0, ROLE)
            fig = self.table.figure(name) if self.table is not None else None
            installed = self._installed_as(entry)
            if fig is not None:
                parent = item.parent()
                if parent is not None and parent.data(0, ROLE) is not None:  # another quant
                    item.setText(CAT_SIZE, format_bytes(fig.size_bytes, approx=fig.size_approx,
                                                        unknown="size unknown"))
                item.setText(CAT_FIT, verdict_words(fig.verdict) if fig.verdict else "?")
                item.setIcon(CAT_FIT, verdict_icon(fig.verdict))
                item.setToolTip(CAT_FIT, plain_tooltip(fig.reason or fig.problem or ""))
                item.setText(CAT_SPEED, format_tps(fig.tokens_per_s, estimate=not fig.measured)
                             if fig.tokens_per_s else "?")
                item.setToolTip(CAT_SPEED, MEASURED_TIP if fig.measured else ESTIMATED_TIP)
            self._set_status(item, entry, installed, loaded)
        self._catalogue_selection()

    def _set_status(self, item: QTreeWidgetItem, entry: CatalogueEntry, installed: str | None,
                    loaded: str | None) -> None:
        d = self.library.downloads.get(entry.name)
        if installed:
            text = "Built in" if entry.is_starter else "Installed"
            if installed == loaded:
                text += ", loaded"
        elif d is not None and d.status == dm.QUEUED:
            text = "Queued"
        elif d is not None and d.active:
            text = f"Downloading {100 * d.done / d.total:.0f}%" if d.total and d.done else "Downloading…"
        elif d is not None and d.status == dm.PAUSED:
            text = f"Paused at {100 * d.done / d.total:.0f}%" if d.total else "Paused"
        elif d is not None and d.status == dm.FAILED:
            text = "Download failed"
        else:
            text = "Not installed"
        item.setText(CAT_STATUS, text)
        role = QPalette.ColorRole.PlaceholderText if text == "Not installed" else QPalette.ColorRole.Text
        item.setForeground(CAT_STATUS, self.catalogue.palette().brush(role))

    # --- catalogue actions
    def _selected_entry(self) -> CatalogueEntry | None:
        items = self.catalogue.selectedItems()
        return items[0].data(0, ROLE) if items else None

    def _catalogue_selection(self) -> None:
        entry = self._selected_entry()
        if entry is None:
            self.selection_label.setText("Select a size (or one of its quants) to download, load or delete it.")
            for b in (self.download_button, self.load_button, self.delete_button):
                b.setEnabled(False)
            return
        installed = self._installed_as(entry)
        active = self.library.downloads.is_active(entry.name)
        loaded = installed is not None and installed == self.service.loaded_name()
        fig = self.table.figure(entry.name) if self.table is not None else None
        size_bytes = entry.size_bytes or (fig.size_bytes if fig else None)
        size = format_bytes(size_bytes, approx=not entry.size_bytes or entry.size_approx, unknown="size unknown") \
            if size_bytes else "size shown once downloaded"
        d = self.library.downloads.get(entry.name)
        state = ("loaded now" if loaded else f"installed as {installed}" if installed
                 else "downloading" if active else "download stopped; Download resumes it" if d is not None and d.stopped
                 else "not installed; downloads are off while the Hub cannot be reached" if self._offline()
                 else "not installed")
        base = f" It is a {BASE_MODEL_LABEL}." if entry.is_base else ""
        self.selection_label.setText(f"{short_label(entry)} {entry.quant} ({size}): {state}.{base}")
        self.download_button.setEnabled(not installed and not active and not entry.is_starter and not self._offline())
        self.load_button.setEnabled(bool(installed) and not loaded)
        self.delete_button.setEnabled(bool(installed) and not entry.is_starter)

    def _catalogue_default_action(self, item: QTreeWidgetItem) -> None:
        entry = item.data(0, ROLE)
        if entry is None:
            item.setExpanded(not item.isExpanded())
        elif self._installed_as(entry):
            self.load_selected()
        elif self.download_button.isEnabled():
            self.download_selected()

    def download_selected(self) -> None:
        entry = self._selected_entry()
        if entry is None or self._installed_as(entry) or entry.is_starter or self._offline():
            return
        fig = self.table.figure(entry.name) if self.table is not None else None
        if fig is not None and fig.verdict == fit.NO_FIT:
            self._ask("Download model", f"{short_label(entry)} {entry.quant} will not fit this machine.",
                      f"{fig.reason}\n\nDownload it anyway?", "&Download anyway",
                      lambda: self.start_download(entry.name))
            return
        self.start_download(entry.name)

    def start_download(self, name: str) -> None:
        self.clear_message()
        try:
            self.library.downloads.start(name)
        except UserError as exc:
            self.show_message(dm.describe_error(exc))
            return
        self.tabs.setCurrentIndex(DOWNLOADS_TAB)

    def load_selected(self) -> None:
        entry = self._selected_entry()
        name = self._installed_as(entry) if entry is not None else None
        if name:
            self._load(name)

    def delete_selected(self) -> None:
        entry = self._selected_entry()
        name = self._installed_as(entry) if entry is not None else None
        if name:
            self.confirm_delete(name)

    # --- loading and deleting
    def _load(self, name: str) -> None:
        self._load_model(name)
        self.accept()

    def confirm_delete(self, name: str) -> QMessageBox | None:
        found = self.index.get(name)
        if found is None:
            self.refresh()
            return None
        m = found.model
        if m.is_builtin:
            self.show_message("The built-in models cannot be deleted.")
            return None
        if self.service.is_loaded(name):
            self.show_message(f"{name} is loaded now. Load another model first, then delete this one.")
            return None
        row = self.table.row(name) if self.table is not None else None
        if m.source == "hub":
            size = f" ({format_bytes(row.size_bytes)})" if row and row.size_bytes else ""
            informative = f"Its file{size} is deleted from the Hugging Face cache. You can download it again later."
        else:
            informative = f"It is removed from this list; the file {m.path} stays where it is."
        return self._ask("Delete model", f"Delete {name}?", informative, "&Delete", lambda: self._delete(name))

    def _delete(self, name: str) -> None:
        run_in_background(lambda: self.service.remove(name), lambda removal: self.show_message(removal.sentence,
                                                                                              error=False),
                          lambda exc: self.show_message(dm.describe_error(exc)), context=self)

    # --- installed tab
    def _fill_installed(self) -> None:
        selected = self._selected_installed()
        self.installed.clear()
        rows = {r.name: r for r in (self.table.rows if self.table is not None else ()) if r.installed}
        loaded = self.service.loaded_name()
        for indexed in self.index.models.values():
            m, entry = indexed.model, indexed.entry
            r = rows.get(m.name)
            label = entry.label if entry else (m.repo or Path(m.path).name)
            quant = (r.quant if r else None) or m.quant or (entry.quant if entry else "")
            if r is None:
                size = fit_text = speed = "…"
            elif r.problem:
                size, fit_text, speed = "?", "unusable", "?"
            else:
                size = format_bytes(r.size_bytes, unknown="size unknown")
                fit_text = verdict_words(r.verdict)
                speed = format_tps(r.tokens_per_s, estimate=not r.speed_measured) if r.tokens_per_s else "?"
            is_base = r.is_base if r is not None else bool(entry and entry.is_base)
            sees = r.sees_images if r is not None else bool(m.projector or (entry and entry.sees_images))
            item = QTreeWidgetItem([m.name + (" (loaded)" if m.name == loaded else ""), label,
                                    SOURCE_WORDS.get(m.source, m.source), quant or "", size, fit_text, speed,
                                    "; ".join(x for x in (SEES_IMAGES_LABEL if sees else "",
                                                          "base model" if is_base else "") if x)])
            if is_base:
                item.setToolTip(7, BASE_MODEL_LABEL)
            item.setData(0, ROLE, m.name)
            if r is not None:
                item.setIcon(5, verdict_icon(r.verdict))
                item.setToolTip(5, plain_tooltip(r.problem or r.fit_reason or ""))
                item.setToolTip(6, MEASURED_TIP if r.speed_measured else ESTIMATED_TIP)
            item.setToolTip(0, plain_tooltip(f"{m.name}\n{m.path}"))
            can = ability_words(entry)
            item.setToolTip(1, plain_tooltip(label + (f"\nIt {can.replace(' · ', ' and ')}." if can else "")))
            if can:
                item.setIcon(1, abilities_icon(entry))
            self.installed.addTopLevelItem(item)
            if m.name == selected:
                item.setSelected(True)
                self.installed.setCurrentItem(item)
        self._installed_selection()

    def _selected_installed(self) -> str | None:
        items = self.installed.selectedItems() if hasattr(self, "installed") else []
        return items[0].data(0, ROLE) if items else None

    def _installed_selection(self) -> None:
        name = self._selected_installed()
        found = self.index.get(name) if name else None
        self.installed_load_button.setEnabled(name is not None and found is not None and not self.service.is_loaded(name))
        self.installed_delete_button.setEnabled(found is not None and not found.model.is_builtin)
        if found is None:
            self.installed_path.setText("Select a model to load or delete it. Import adds a .gguf file that is "
                                        "already on this computer (it is not copied; it is named after the model "
                                        "inside it).")
        else:
            m = found.model
            where = "assembled on first use" if m.is_builtin and not Path(m.path).exists() else m.path
            self.installed_path.setText(f"File: {where}")

    def load_installed(self) -> None:
        name = self._selected_installed()
        if name and not self.service.is_loaded(name):
            self._load(name)

    def delete_installed(self) -> None:
        name = self._selected_installed()
        if name:
            self.confirm_delete(name)

    def import_file(self) -> None:
        path, _ = QFileDialog.getOpenFileName(self, "Import a GGUF model", str(Path.home()),
                                              "GGUF models (*.gguf);;All files (*)")
        if path:
            self.import_path(path)

    def import_path(self, path: str) -> None:
        self.clear_message()

        def done(m) -> None:
            self.show_message(f"Imported {m.name}. The file stays where it is (it is not copied); "
                              "load it from this list.", error=False)
            self.tabs.setCurrentIndex(INSTALLED_TAB)

        run_in_background(lambda: self.service.import_file(path), done,
                          lambda exc: self.show_message(dm.describe_error(exc)), context=self)

    # --- Hub search
    def search(self) -> None:
        query = self.search_edit.text().strip()
        if not query:
            self.search_status.setText("Type a few words of a model's name, such as “llama 3b” or “qwen coder”.")
            return
        if self._offline():
            self.search_status.setText(self._why_offline())
            return
        self.clear_message()
        self.search_button.setEnabled(False)
        self.search_status.setText(f"Searching the Hub for “{query}”…")
        self.results.clear()

        def done(hits) -> None:
            self.search_button.setEnabled(not self._offline())
            self._show_hits(query, hits)

        def failed(exc) -> None:  # said once, in the search's own status line
            self.search_button.setEnabled(True)
            self.search_status.setText(dm.describe_error(exc).split("\n")[0])
            self.search_status.setToolTip(plain_tooltip(str(exc)))
            self.check_hub(fresh=True)

        run_in_background(lambda: self.service.search(query), done, failed, context=self)

    def _show_hits(self, query: str, hits) -> None:
        self.search_hits = hits
        self.results.clear()
        if not hits:
            self.search_status.setText(f"No GGUF models on the Hub match “{query}”.")
            return
        self.search_status.setText(f"{format_count(len(hits), 'repo')} {'matches' if len(hits) == 1 else 'match'} "
                                   f"“{query}”. Pick a file, then Download.")
        for h in hits:
            note = "Gated: needs a Hugging Face token and accepted terms" if h.gated else ""
            top = QTreeWidgetItem([h.repo_id, "", "", f"{h.downloads:,}" if h.downloads is not None else "", note])
            top.setData(0, ROLE, h.repo_id)
            top.setToolTip(0, plain_tooltip(h.repo_id))
            self.results.addTopLevelItem(top)
            if h.error:
                top.setText(4, h.error)
                top.setToolTip(4, plain_tooltip(h.error))
            seen = set()
            for f in h.files:
                quant = f.quant or ""
                name = f"{h.repo_id}:{quant}" if quant and quant not in seen else f"{h.repo_id}/{f.path}"
                seen.add(quant)
                parts = f" in {f.shard[1]} parts (cannot be downloaded yet)" if f.shard and f.shard[1] > 1 else ""
                child = QTreeWidgetItem([f.path, quant, format_bytes(f.size, unknown="size unknown"), "",
                                         parts.strip()])
                child.setData(0, ROLE, name)
                child.setToolTip(0, plain_tooltip(f"{h.repo_id}/{f.path}"))
                top.addChild(child)
            top.setExpanded(len(hits) <= 3)

    def _result_selection(self) -> None:
        items = self.results.selectedItems()
        name = items[0].data(0, ROLE) if items else None
        if not name:
            return
        self.name_edit.setText(name)
        if items[0].parent() is None:
            self.result_fit.setText("The repo's Q4_K_M file (or the nearest 4-bit one) is downloaded; "
                                    "expand it to pick another quant.")
            return
        self._fit_generation += 1
        generation = self._fit_generation
        self.result_fit.setText(f"Reading the header of {name} to size it up…")

        def done(report) -> None:
            if generation != self._fit_generation:
                return
            v = report.verdict
            speed = (format_tps(report.speed.tokens_per_s, estimate=not report.speed.measured) if report.speed
                     else "speed unknown")
            self.result_fit.setText(f"{verdict_words(v.verdict).capitalize()}, {speed}: {v.reason}")

        def failed(exc) -> None:
            if generation == self._fit_generation:
                self.result_fit.setText(f"No fit estimate: {dm.describe_error(exc).splitlines()[0]}")

        run_in_background(lambda: self.service.fit_report(name), done, failed, context=self)

    def download_named(self) -> None:
        name = self.name_edit.text().strip()
        if not name:
            self.show_message("Type a model name to download, such as owner/repo:Q4_K_M, or pick a search result.")
            return
        if self._offline():
            self.show_message(f"Downloads are off: {self._why_offline()}")
            return
        self.start_download(name)  # a name of the wrong form is refused at once, in the banner

    # --- downloads
    def _download_changed(self, info: dm.DownloadInfo) -> None:
        item = self.catalogue_items.get(info.name)
        if item is not None:
            entry = item.data(0, ROLE)
            self._set_status(item, entry, self._installed_as(entry), self.service.loaded_name())
            if self._selected_entry() is entry:
                self._catalogue_selection()

    def _download_finished(self, info: dm.DownloadInfo) -> None:
        name = info.installed_as or info.name
        self.show_message(f"{info.label} is downloaded and installed as {name}.", error=False,
                          action=("Load &now", f"Load {info.label} now", lambda: self._load(name)))
        self._download_changed(info)

    def _downloads_counted(self, total: int) -> None:
        self.tabs.setTabText(DOWNLOADS_TAB, f"D&ownloads ({total})" if total else "D&ownloads")
