"""The model manager: the catalogue, Hub search, downloads and installed models, in one dialog.

Catalogue   families → sizes → other quants, each with its size, parameters, fit verdict,
            speed on this machine and whether it is installed; Download, Load, Delete.
Search      GGUF repos on the Hugging Face Hub and their quant files; any owner/repo:QUANT.
Downloads   progress (bytes, rate, time left), Pause/Resume and Cancel; downloads outlive the
            dialog (they belong to the window's DownloadController) and a restart.
Installed   Load, Delete (with confirmation), Import a .gguf file that is already on disk.

Everything that touches the network or the disk (search, fit figures, header reads,
deleting, importing) runs off the UI thread through `run_in_background`; errors show
in a banner in plain words, with what to do.
"""

from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QSize, Qt
from PySide6.QtGui import QFont, QPalette
from PySide6.QtWidgets import (QAbstractItemView, QDialog, QDialogButtonBox, QFileDialog, QFrame, QGridLayout,
                               QHBoxLayout, QHeaderView, QLabel, QLineEdit, QMessageBox, QProgressBar, QPushButton,
                               QScrollArea, QStyledItemDelegate, QTabWidget, QTreeWidget, QTreeWidgetItem,
                               QVBoxLayout, QWidget)

from common.formatting import format_byte_rate, format_bytes, format_eta, format_params, format_tps
from ui.downloads import (CANCELLING, DOWNLOADING, FAILED, PAUSED, PAUSING, STARTING, VERDICT_WORDS,
                          catalogue_entry_of, compute_facts, controller_for, describe_error, run_in_background,
                          short_label, verdict_icon)

ROLE = Qt.ItemDataRole.UserRole
SOURCE_WORDS = {"starter": "Built in", "hub": "Hugging Face Hub", "local": "Imported file"}


class _Padded(QStyledItemDelegate):
    """Room between columns: ResizeToContents alone packs them edge to edge."""

    def sizeHint(self, option, index):
        hint = super().sizeHint(option, index)
        return QSize(hint.width() + 18, max(hint.height(), option.fontMetrics.height() + 6))


def _tree(name: str, headers: list[str]) -> QTreeWidget:
    tree = QTreeWidget()
    tree.setItemDelegate(_Padded(tree))
    tree.setAccessibleName(name)
    tree.setColumnCount(len(headers))
    tree.setHeaderLabels(headers)
    tree.setAlternatingRowColors(True)
    tree.setUniformRowHeights(True)
    tree.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
    tree.setAllColumnsShowFocus(True)
    header = tree.header()
    header.setStretchLastSection(False)
    header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
    for i in range(1, len(headers)):
        header.setSectionResizeMode(i, QHeaderView.ResizeMode.ResizeToContents)
    return tree


def _button(text: str, name: str, slot) -> QPushButton:
    b = QPushButton(text)
    b.setAccessibleName(name)
    b.setAutoDefault(False)
    b.clicked.connect(slot)
    return b


class DownloadRow(QFrame):
    """One download: its name, a progress bar, bytes · rate · time left, Pause/Resume and Cancel."""

    def __init__(self, controller, name: str):
        super().__init__()
        self.controller, self.name = controller, name
        self.setFrameShape(QFrame.Shape.StyledPanel)
        grid = QGridLayout(self)
        grid.setContentsMargins(10, 8, 10, 8)
        grid.setHorizontalSpacing(8)
        self.title = QLabel()
        font = self.title.font()
        font.setBold(True)
        self.title.setFont(font)
        self.state = QLabel()
        self.pause_button = _button("Pause", "Pause", self._pause_or_resume)
        self.cancel_button = _button("Cancel", "Cancel", lambda: self.controller.cancel(self.name))
        self.bar = QProgressBar()
        self.bar.setRange(0, 1000)
        self.detail = QLabel()
        self.detail.setWordWrap(True)
        self.detail.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        grid.addWidget(self.title, 0, 0)
        grid.addWidget(self.state, 0, 1, Qt.AlignmentFlag.AlignRight)
        grid.addWidget(self.pause_button, 0, 2)
        grid.addWidget(self.cancel_button, 0, 3)
        grid.addWidget(self.bar, 1, 0, 1, 4)
        grid.addWidget(self.detail, 2, 0, 1, 4)
        grid.setColumnStretch(0, 1)
        self.update_from(controller.get(name))

    def _pause_or_resume(self) -> None:
        d = self.controller.get(self.name)
        if d is None:
            return
        if d.status in (STARTING, DOWNLOADING):
            self.controller.pause(self.name)
        else:
            self.controller.resume(self.name)

    def update_from(self, d) -> None:
        if d is None:
            return
        self.title.setText(d.label)
        self.title.setToolTip(d.name)
        if d.total:
            self.bar.setRange(0, 1000)
            self.bar.setValue(int(1000 * min(d.done, d.total) / d.total))
            self.bar.setFormat(f"{100 * d.done / d.total:.0f}%")
        elif d.status in (STARTING, DOWNLOADING):
            self.bar.setRange(0, 0)  # busy: the size is not known yet
        else:
            self.bar.setRange(0, 1000)
            self.bar.setValue(0)
            self.bar.setFormat("")
        amount = f"{format_bytes(d.done, unknown='size unknown')} of {format_bytes(d.total, unknown='size unknown')}" if d.total else (
            f"{format_bytes(d.done, unknown='size unknown')} downloaded" if d.done else "")
        words = {STARTING: "Starting…", DOWNLOADING: "Downloading", PAUSING: "Pausing…", PAUSED: "Paused",
                 CANCELLING: "Cancelling…", FAILED: "Failed"}
        self.state.setText(words.get(d.status, d.status))
        self.detail.setStyleSheet("")
        if d.status == DOWNLOADING:
            parts = [amount, format_byte_rate(d.rate), format_eta(d.eta)]
            self.detail.setText(" · ".join(p for p in parts if p))
        elif d.status == STARTING:
            resuming = f"Resuming from {format_bytes(d.done, unknown='size unknown')}…"
            self.detail.setText(resuming if d.done else "Asking the Hub for the file…")
        elif d.status == PAUSED:
            why = "Found in the download folder after a restart. " if d.found_in_cache else ""
            kept = f"{amount} kept. " if amount else ""
            self.detail.setText(f"{why}{kept}Resume continues from there.")
        elif d.status == FAILED:
            from ui.theme import is_dark

            self.detail.setText(d.message)
            self.detail.setStyleSheet(f"color: {'#ff8a80' if is_dark(self) else '#c62828'};")
        else:
            self.detail.setText(amount)
        running = d.status in (STARTING, DOWNLOADING)
        self.pause_button.setText("Pause" if running else ("Retry" if d.status == FAILED else "Resume"))
        self.pause_button.setAccessibleName(f"{self.pause_button.text()} download of {d.label}")
        self.pause_button.setEnabled(d.status in (STARTING, DOWNLOADING, PAUSED, FAILED))
        self.cancel_button.setEnabled(d.status != CANCELLING)
        self.cancel_button.setAccessibleName(f"Cancel download of {d.label} and delete the part downloaded")
        self.bar.setAccessibleName(f"Download progress of {d.label}")
        self.setAccessibleName(f"Download of {d.label}")


class ModelManager(QDialog):
    def __init__(self, window, parent=None):
        super().__init__(parent)
        self._window = window
        self.controller = controller_for(window)
        self.facts = None
        self.prompt: QMessageBox | None = None  # the question open now (delete, a download that will not fit)
        self.download_rows: dict[str, DownloadRow] = {}
        self.catalogue_items: dict[str, QTreeWidgetItem] = {}  # catalogue name -> size or quant item
        self.installed_map: dict[tuple[str, str], str] = {}  # (catalogue base, QUANT) -> installed name
        self.search_hits: list = []
        self._facts_generation = 0
        self._fit_generation = 0
        self.setWindowTitle("Models")
        self.setAccessibleName("Model manager")
        # The window makes a new dialog each time: a closed one goes, and stops following the downloads.
        self.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose)
        self.resize(980, 640)
        self._build()
        c = self.controller
        c.added.connect(self._download_added)
        c.changed.connect(self._download_changed)
        c.progress.connect(self._download_progress)
        c.removed.connect(self._download_removed)
        c.failed.connect(self._download_failed)
        c.finished.connect(self._download_finished)
        c.installedChanged.connect(self.refresh)
        for d in c.downloads():
            self._download_added(d.name)
        self.refresh()

    # --- building
    def _build(self) -> None:
        layout = QVBoxLayout(self)
        self.machine_label = QLabel("Working out what fits this machine…")
        self.machine_label.setWordWrap(True)
        self.machine_label.setAccessibleName("This machine")
        layout.addWidget(self.machine_label)

        self.banner = QFrame()
        self.banner.setAccessibleName("Message")
        banner_layout = QHBoxLayout(self.banner)
        banner_layout.setContentsMargins(10, 6, 6, 6)
        self.message = QLabel()
        self.message.setWordWrap(True)
        self.message.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.message.setAccessibleName("Message")
        banner_layout.addWidget(self.message, 1)
        self.dismiss_button = _button("Dismiss", "Dismiss message", self.clear_message)
        banner_layout.addWidget(self.dismiss_button, 0, Qt.AlignmentFlag.AlignTop)
        self.banner.hide()
        layout.addWidget(self.banner)

        self.tabs = QTabWidget()
        self.tabs.setAccessibleName("Model manager sections")
        self.tabs.addTab(self._build_catalogue(), "&Catalogue")
        self.tabs.addTab(self._build_search(), "&Search the Hub")
        self.tabs.addTab(self._build_downloads(), "D&ownloads")
        self.tabs.addTab(self._build_installed(), "&Installed")
        layout.addWidget(self.tabs, 1)

        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        close = buttons.button(QDialogButtonBox.StandardButton.Close)
        close.setAccessibleName("Close")
        close.setAutoDefault(False)
        buttons.rejected.connect(self.reject)
        layout.addWidget(buttons)

    def _build_catalogue(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        intro = QLabel("Curated models, in families of sizes. Bigger is smarter and slower; expand a size "
                       "for its other quants (more bits: closer to the original, bigger and slower).")
        intro.setWordWrap(True)
        v.addWidget(intro)
        self.catalogue = _tree("Catalogue", ["Model", "Quant", "Size", "Parameters", "Fit", "Speed", "Status"])
        self.catalogue.itemSelectionChanged.connect(self._catalogue_selection)
        self.catalogue.itemActivated.connect(lambda item, _col: self._catalogue_default_action(item))
        v.addWidget(self.catalogue, 1)
        bold = QFont(self.catalogue.font())
        bold.setBold(True)
        from models import catalogue

        for family in catalogue.families():
            top = QTreeWidgetItem([family.label])
            top.setFont(0, bold)
            top.setToolTip(0, f"Licence: {family.licence}" if family.licence else family.label)
            top.setData(0, ROLE, None)
            self.catalogue.addTopLevelItem(top)
            top.setFirstColumnSpanned(True)
            for entry in family.sizes:
                item = QTreeWidgetItem([entry.label, entry.quant, format_bytes(entry.size_bytes, approx=entry.size_approx, unknown='size unknown'),
                                        format_params(entry.params), "…", "…", ""])
                item.setData(0, ROLE, entry)
                top.addChild(item)
                self.catalogue_items[entry.name] = item
                for q in entry.quants:
                    other = entry.with_quant(q)
                    if other is None or other.name == entry.name:
                        continue
                    child = QTreeWidgetItem([f"{short_label(entry)} {other.quant}", other.quant, "…",
                                             format_params(entry.params), "…", "…", ""])
                    child.setData(0, ROLE, other)
                    item.addChild(child)
                    self.catalogue_items[other.name] = child
            top.setExpanded(True)
        row = QHBoxLayout()
        self.selection_label = QLabel("Select a model.")
        self.selection_label.setAccessibleName("Selected model")
        self.selection_label.setWordWrap(True)
        row.addWidget(self.selection_label, 1)
        self.download_button = _button("&Download", "Download the selected model", self.download_selected)
        self.load_button = _button("&Load", "Load the selected model", self.load_selected)
        self.delete_button = _button("De&lete…", "Delete the selected model", self.delete_selected)
        for b in (self.download_button, self.load_button, self.delete_button):
            b.setEnabled(False)
            row.addWidget(b)
        v.addLayout(row)
        return page

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
        self.search_button = _button("Searc&h", "Search", self.search)
        row.addWidget(self.search_button)
        v.addLayout(row)
        self.search_status = QLabel("Results show each repo's quant files; pick one to download it.")
        self.search_status.setAccessibleName("Search status")
        self.search_status.setWordWrap(True)
        v.addWidget(self.search_status)
        self.results = _tree("Search results", ["Model", "Quant", "Size", "Downloads", "Note"])
        self.results.itemSelectionChanged.connect(self._result_selection)
        self.results.itemActivated.connect(lambda item, _col: self.download_named())
        v.addWidget(self.results, 1)
        self.result_fit = QLabel()
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
        self.pull_button = _button("Do&wnload", "Download the named model", self.download_named)
        row.addWidget(self.pull_button)
        v.addLayout(row)
        return page

    def _build_downloads(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        self.downloads_empty = QLabel("No downloads. Pick a model in the Catalogue or Search tab to download it; "
                                      "a download keeps going when this window is closed, and one that was "
                                      "stopped resumes where it left off.")
        self.downloads_empty.setWordWrap(True)
        v.addWidget(self.downloads_empty)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setAccessibleName("Downloads")
        holder = QWidget()
        self.downloads_layout = QVBoxLayout(holder)
        self.downloads_layout.setContentsMargins(0, 0, 0, 0)
        self.downloads_layout.addStretch(1)
        scroll.setWidget(holder)
        v.addWidget(scroll, 1)
        return page

    def _build_installed(self) -> QWidget:
        page = QWidget()
        v = QVBoxLayout(page)
        self.installed = _tree("Installed models", ["Name", "Model", "Source", "Quant", "Size", "Fit", "Speed"])
        self.installed.setRootIsDecorated(False)
        self.installed.itemSelectionChanged.connect(self._installed_selection)
        self.installed.itemActivated.connect(lambda item, _col: self.load_installed())
        v.addWidget(self.installed, 1)
        self.installed_path = QLabel()
        self.installed_path.setAccessibleName("File of the selected model")
        self.installed_path.setWordWrap(True)
        self.installed_path.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        v.addWidget(self.installed_path)
        row = QHBoxLayout()
        self.import_button = _button("&Import a .gguf file…", "Import a GGUF file from disk", self.import_file)
        row.addWidget(self.import_button)
        row.addStretch(1)
        self.installed_load_button = _button("&Load", "Load the selected installed model", self.load_installed)
        self.installed_delete_button = _button("De&lete…", "Delete the selected installed model",
                                               self.delete_installed)
        for b in (self.installed_load_button, self.installed_delete_button):
            b.setEnabled(False)
            row.addWidget(b)
        v.addLayout(row)
        return page

    # --- messages
    def show_message(self, text: str, error: bool = True) -> None:
        self.message.setText(text)
        colours = ("#fdecea", "#c62828", "#5f1111") if error else ("#e8f5e9", "#2e7d32", "#123d16")
        self.banner.setStyleSheet(
            f"QFrame {{ background: {colours[0]}; border: 1px solid {colours[1]}; border-radius: 4px; }}"
            f"QLabel {{ border: none; color: {colours[2]}; }}"
        )
        self.banner.show()

    def clear_message(self) -> None:
        self.message.clear()
        self.banner.hide()

    def _ask(self, title: str, text: str, informative: str, yes_text: str, on_yes) -> QMessageBox:
        box = QMessageBox(QMessageBox.Icon.Question, title, text,
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        box.setInformativeText(informative)
        yes, no = box.button(QMessageBox.StandardButton.Yes), box.button(QMessageBox.StandardButton.No)
        yes.setText(yes_text)
        yes.setAccessibleName(yes_text.replace("&", ""))
        no.setText("Keep it" if "Delete" in yes_text else "Cancel")
        no.setAccessibleName(no.text())
        box.setDefaultButton(no)

        def answered(button):
            self.prompt = None
            if button is yes:
                on_yes()

        box.buttonClicked.connect(answered)
        self.prompt = box
        box.open()
        return box

    # --- figures
    def _n_ctx(self) -> int | None:
        w = self._window
        model = getattr(w, "model", None) or {}
        return model.get("n_ctx") or (getattr(w, "defaults", None) or {}).get("n_ctx") or None

    def _loaded_name(self) -> str | None:
        return (getattr(self._window, "model", None) or {}).get("name")

    def refresh(self) -> None:
        """What is installed (a small JSON read, now), then fit and speed for everything (off the UI thread)."""
        from models import registry

        self.installed_map = {}
        self._registry = registry.list_installed()
        for m in self._registry:
            entry = catalogue_entry_of(m.name) if m.source != "local" else None
            if entry is not None:
                self.installed_map.setdefault((entry.base_name, entry.quant.upper()), m.name)
        self._fill_installed()
        self._update_catalogue()
        self._facts_generation += 1
        generation = self._facts_generation
        n_ctx = self._n_ctx()
        run_in_background(lambda: compute_facts(n_ctx), lambda facts: self._facts_ready(generation, facts),
                          lambda exc: self.show_message(describe_error(exc)), context=self)

    def _facts_ready(self, generation: int, facts) -> None:
        if generation != self._facts_generation:
            return
        self.facts = facts
        self.machine_label.setText(facts.machine)
        self._fill_installed()
        self._update_catalogue()

    def _installed_name_for(self, entry) -> str | None:
        return self.installed_map.get((entry.base_name, entry.quant.upper()))

    def _update_catalogue(self) -> None:
        loaded = self._loaded_name()
        for name, item in self.catalogue_items.items():
            entry = item.data(0, ROLE)
            fig = self.facts.figures.get(name) if self.facts else None
            installed = self._installed_name_for(entry)
            if fig is not None:
                if item.parent() is not None and item.parent().data(0, ROLE) is not None:  # another quant
                    item.setText(2, format_bytes(fig.size_bytes, approx=fig.size_approx and not installed, unknown='size unknown'))
                verdict = VERDICT_WORDS.get(fig.verdict, fig.verdict) if fig.verdict else "?"
                item.setText(4, verdict)
                item.setIcon(4, verdict_icon(fig.verdict))
                item.setToolTip(4, fig.reason or fig.problem or "")
                item.setText(5, format_tps(fig.tokens_per_s, estimate=not fig.measured) if fig.tokens_per_s else "?")
                item.setToolTip(5, "Measured on this machine" if fig.measured else "Estimated for this machine")
            self._set_status(item, entry, installed, loaded)
        self._catalogue_selection()

    def _set_status(self, item, entry, installed, loaded) -> None:
        d = self.controller.get(entry.name)
        if installed:
            text = "Built in" if entry.is_starter else "Installed"
            if installed == loaded:
                text += ", loaded"
        elif d is not None and d.active:
            text = f"Downloading {100 * d.done / d.total:.0f}%" if d.total and d.done else "Downloading…"
        elif d is not None and d.status == PAUSED:
            text = f"Paused at {100 * d.done / d.total:.0f}%" if d.total else "Paused"
        elif d is not None and d.status == FAILED:
            text = "Download failed"
        else:
            text = "Not installed"
        item.setText(6, text)
        role = QPalette.ColorRole.PlaceholderText if text == "Not installed" else QPalette.ColorRole.Text
        item.setForeground(6, self.catalogue.palette().brush(role))

    # --- catalogue actions
    def _selected_entry(self):
        items = self.catalogue.selectedItems()
        return items[0].data(0, ROLE) if items else None

    def _catalogue_selection(self) -> None:
        entry = self._selected_entry()
        if entry is None:
            self.selection_label.setText("Select a size (or one of its quants) to download, load or delete it.")
            for b in (self.download_button, self.load_button, self.delete_button):
                b.setEnabled(False)
            return
        installed = self._installed_name_for(entry)
        active = self.controller.is_active(entry.name)
        loaded = installed is not None and installed == self._loaded_name()
        size = format_bytes(entry.size_bytes, approx=entry.size_approx, unknown='size unknown') if entry.size_bytes else "size shown once downloaded"
        if self.facts and entry.name in self.facts.figures and not entry.size_bytes:
            fig = self.facts.figures[entry.name]
            size = format_bytes(fig.size_bytes, approx=True, unknown='size unknown')
        d = self.controller.get(entry.name)
        paused = d is not None and d.status in (PAUSED, FAILED)
        state = ("loaded now" if loaded else f"installed as {installed}" if installed
                 else "downloading" if active else "download stopped; Download resumes it" if paused
                 else "not installed")
        self.selection_label.setText(f"{short_label(entry)} {entry.quant} ({size}): {state}.")
        self.download_button.setEnabled(not installed and not active and not entry.is_starter)
        self.load_button.setEnabled(bool(installed) and not loaded)
        self.delete_button.setEnabled(bool(installed) and not entry.is_starter)

    def _catalogue_default_action(self, item) -> None:
        entry = item.data(0, ROLE)
        if entry is None:
            item.setExpanded(not item.isExpanded())
        elif self._installed_name_for(entry):
            self.load_selected()
        else:
            self.download_selected()

    def download_selected(self) -> None:
        from models import fit

        entry = self._selected_entry()
        if entry is None or self._installed_name_for(entry) or entry.is_starter:
            return
        fig = self.facts.figures.get(entry.name) if self.facts else None
        if fig is not None and fig.verdict == fit.NO_FIT:
            self._ask("Download model", f"{short_label(entry)} {entry.quant} will not fit this machine.",
                      f"{fig.reason}\n\nDownload it anyway?", "&Download anyway",
                      lambda: self.start_download(entry.name, f"{short_label(entry)} {entry.quant}"))
            return
        self.start_download(entry.name, f"{short_label(entry)} {entry.quant}")

    def start_download(self, name: str, label: str | None = None) -> None:
        self.clear_message()
        self.controller.start(name, label=label)
        self.tabs.setCurrentIndex(2)

    def load_selected(self) -> None:
        entry = self._selected_entry()
        name = self._installed_name_for(entry) if entry is not None else None
        if name:
            self._load(name)

    def delete_selected(self) -> None:
        entry = self._selected_entry()
        name = self._installed_name_for(entry) if entry is not None else None
        if name:
            self.confirm_delete(name)

    # --- loading and deleting
    def _load(self, name: str) -> None:
        loader = getattr(self._window, "load_model", None)
        if loader is None:
            return
        loader(name)
        self.accept()

    def confirm_delete(self, name: str) -> QMessageBox | None:
        from models import registry

        m = registry.get(name)
        if m is None:
            self.refresh()
            return None
        if m.source == "starter":
            self.show_message("The starter model is built in and cannot be deleted.")
            return None
        if name == self._loaded_name():
            self.show_message(f"{name} is loaded now. Load another model first, then delete this one.")
            return None
        row = self.facts.row(name) if self.facts else None
        if m.source == "hub":
            size = f" ({format_bytes(row.size_bytes, unknown='size unknown')})" if row and row.size_bytes else ""
            informative = (f"Its file{size} is deleted from the Hugging Face cache. "
                           "You can download it again later.")
        else:
            informative = f"It is removed from this list; the file {m.path} stays where it is."
        return self._ask("Delete model", f"Delete {name}?", informative, "&Delete", lambda: self._delete(name))

    def _delete(self, name: str) -> None:
        from models import library

        def done(result):
            entry, freed = result
            if entry.source == "hub":
                self.show_message(f"Deleted {entry.name} and freed {format_bytes(freed, unknown='size unknown')}." if freed else
                                  f"Deleted {entry.name}; its file is still used by another installed name.",
                                  error=False)
            else:
                self.show_message(f"Removed {entry.name} from the list; its file was left where it is.", error=False)
            self.controller.notify_installed_changed()

        run_in_background(lambda: library.remove(name), done, lambda exc: self.show_message(describe_error(exc)),
                          context=self)

    # --- installed tab
    def _fill_installed(self) -> None:
        selected = self._selected_installed()
        self.installed.clear()
        rows = {r.name: r for r in (self.facts.rows if self.facts else ()) if r.installed}
        loaded = self._loaded_name()
        for m in self._registry:
            r = rows.get(m.name)
            entry = catalogue_entry_of(m.name) if m.source != "local" else None
            label = entry.label if entry else (m.repo or Path(m.path).name)
            quant = (r.quant if r else None) or m.quant or (entry.quant if entry else "")
            if r is None:
                size = fit_text = speed = "…"
            elif r.problem:
                size, fit_text, speed = "?", "unusable", "?"
            else:
                size = format_bytes(r.size_bytes, unknown='size unknown')
                fit_text = VERDICT_WORDS.get(r.verdict, r.verdict or "?")
                speed = format_tps(r.tokens_per_s, estimate=not r.speed_measured) if r.tokens_per_s else "?"
            name = m.name + (" (loaded)" if m.name == loaded else "")
            item = QTreeWidgetItem([name, label, SOURCE_WORDS.get(m.source, m.source), quant or "", size,
                                    fit_text, speed])
            item.setData(0, ROLE, m.name)
            if r is not None:
                item.setIcon(5, verdict_icon(r.verdict))
                item.setToolTip(5, r.problem or r.fit_reason or "")
                item.setToolTip(6, "Measured on this machine" if r.speed_measured else "Estimated for this machine")
            item.setToolTip(0, m.path)
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
        m = next((m for m in self._registry if m.name == name), None) if name else None
        loaded = name is not None and name == self._loaded_name()
        self.installed_load_button.setEnabled(m is not None and not loaded)
        self.installed_delete_button.setEnabled(m is not None and m.source != "starter")
        if m is None:
            self.installed_path.setText("Select a model to load or delete it. Import adds a .gguf file that is "
                                        "already on this computer (it is not copied).")
        else:
            where = "assembled on first use" if m.source == "starter" and not Path(m.path).exists() else m.path
            self.installed_path.setText(f"File: {where}")

    def load_installed(self) -> None:
        name = self._selected_installed()
        if name and name != self._loaded_name():
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
        from models import library

        self.clear_message()

        def work():
            return library.import_file(path, _import_name(Path(path)))

        def done(m):
            self.show_message(f"Imported {m.name}. The file stays where it is (it is not copied); "
                              "load it from this list.", error=False)
            self.controller.notify_installed_changed()
            self.tabs.setCurrentIndex(3)

        run_in_background(work, done, lambda exc: self.show_message(describe_error(exc)), context=self)

    # --- Hub search
    def search(self) -> None:
        from models import hub

        query = self.search_edit.text().strip()
        if not query:
            self.search_status.setText(
                "Type a few words of a model's name, such as “llama 3b” or “qwen coder”.")
            return
        self.clear_message()
        self.search_button.setEnabled(False)
        self.search_status.setText(f"Searching the Hub for “{query}”…")
        self.results.clear()

        def done(hits):
            self.search_button.setEnabled(True)
            self._show_hits(query, hits)

        def failed(exc):
            self.search_button.setEnabled(True)
            message = describe_error(exc)
            self.search_status.setText(message.split("\n")[0])
            self.show_message(message)

        run_in_background(lambda: hub.search(query, limit=20), done, failed, context=self)

    def _show_hits(self, query: str, hits) -> None:
        self.search_hits = hits
        self.results.clear()
        if not hits:
            self.search_status.setText(f"No GGUF models on the Hub match “{query}”.")
            return
        self.search_status.setText(f"{len(hits)} repos match “{query}”. Pick a file, then Download.")
        for h in hits:
            note = "Gated: needs a Hugging Face token and accepted terms" if h.gated else ""
            top = QTreeWidgetItem([h.repo_id, "", "", f"{h.downloads:,}" if h.downloads is not None else "", note])
            top.setData(0, ROLE, h.repo_id)
            self.results.addTopLevelItem(top)
            if h.error:
                top.setText(4, h.error)
                top.setToolTip(4, h.error)
            seen = set()
            for f in h.files:
                quant = f.quant or ""
                name = f"{h.repo_id}:{quant}" if quant and quant not in seen else f"{h.repo_id}/{f.path}"
                seen.add(quant)
                parts = f" in {f.shard[1]} parts (cannot be downloaded yet)" if f.shard and f.shard[1] > 1 else ""
                child = QTreeWidgetItem([f.path, quant, format_bytes(f.size, unknown='size unknown'), "", parts.strip()])
                child.setData(0, ROLE, name)
                top.addChild(child)
            top.setExpanded(len(hits) <= 3)

    def _result_selection(self) -> None:
        from models import library

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
        n_ctx = self._n_ctx()
        self.result_fit.setText(f"Reading the header of {name} to size it up…")

        def done(report):
            if generation != self._fit_generation:
                return
            v = report.verdict
            speed = format_tps(report.speed.tokens_per_s, estimate=not report.speed.measured) if report.speed else "speed unknown"
            self.result_fit.setText(f"{VERDICT_WORDS.get(v.verdict, v.verdict).capitalize()}, {speed}: {v.reason}")

        def failed(exc):
            if generation == self._fit_generation:
                self.result_fit.setText(f"No fit estimate: {describe_error(exc).splitlines()[0]}")

        run_in_background(lambda: library.fit_report(name, n_ctx), done, failed, context=self)

    def download_named(self) -> None:
        from models import library

        name = self.name_edit.text().strip()
        if not name:
            self.show_message("Type a model name to download, such as owner/repo:Q4_K_M, or pick a search result.")
            return
        try:
            target = library.pull_target(name)  # checks the name's form; no network
        except Exception as exc:  # a UserError with its own words
            self.show_message(describe_error(exc))
            return
        entry = target.entry
        label = f"{short_label(entry)} {entry.quant}" if entry is not None else None
        self.start_download(name, label)

    # --- downloads tab
    def _download_added(self, name: str) -> None:
        if name in self.download_rows:
            return
        row = DownloadRow(self.controller, name)
        self.download_rows[name] = row
        self.downloads_layout.insertWidget(self.downloads_layout.count() - 1, row)
        self._downloads_changed()

    def _download_changed(self, name: str) -> None:
        row = self.download_rows.get(name)
        if row is not None:
            row.update_from(self.controller.get(name))
        self._catalogue_status(name)
        self._downloads_changed()

    def _download_progress(self, name: str, *_figures) -> None:
        row = self.download_rows.get(name)
        if row is not None:
            row.update_from(self.controller.get(name))
        self._catalogue_status(name)

    def _catalogue_status(self, name: str) -> None:
        item = self.catalogue_items.get(name)
        if item is not None:
            entry = item.data(0, ROLE)
            self._set_status(item, entry, self._installed_name_for(entry), self._loaded_name())
            if self._selected_entry() is entry:
                self._catalogue_selection()

    def _download_removed(self, name: str) -> None:
        row = self.download_rows.pop(name, None)
        if row is not None:
            row.hide()
            self.downloads_layout.removeWidget(row)
            row.deleteLater()
        self._catalogue_status(name)
        self._downloads_changed()

    def _download_failed(self, name: str, message: str) -> None:
        d = self.controller.get(name)
        self.show_message(f"{d.label if d else name}: {message}")

    def _download_finished(self, name: str) -> None:
        d = self.controller.get(name)
        installed = d.installed_as if d else name
        self.show_message(f"{d.label if d else name} is downloaded and installed as {installed}. "
                          "Load it from the Catalogue or Installed tab.", error=False)

    def _downloads_changed(self) -> None:
        total = len(self.controller.downloads())
        self.downloads_empty.setVisible(total == 0)
        self.tabs.setTabText(2, f"D&ownloads ({total})" if total else "D&ownloads")


def _import_name(path: Path) -> str:
    """The file's name without .gguf, unless a catalogue or Hub name, or another file's, already has it."""
    from models import catalogue, hub, registry

    stem = path.stem
    name = stem
    if name == "starter" or catalogue.get(name) is not None or hub.parse_ref(name):
        name = f"{stem}-local"
    n = 2
    base = name
    while True:
        existing = registry.get(name)
        if existing is None or Path(existing.path).resolve() == path.resolve():
            return name
        name = f"{base}-{n}"
        n += 1
