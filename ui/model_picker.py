"""The model picker in the toolbar: the loaded model, and its family's sizes as a switch.

    [starter · Q4_K_M ▾]  Gemma 3  ● 270M  ● 1B ↓  ● 4B ↓  ● 12B ↓

Each size carries its fit verdict (the coloured disc) and its speed on this
machine, measured once it has run, estimated before. An installed size loads
when pressed (the window's worker loads it in the background; the window stays
usable). A size that is not installed asks to download it, and loads it when the
download is done. The drop-down lists every installed model, and opens the model
manager. Fit and speed need header reads and a one-off bandwidth probe, so they
are worked out off the UI thread; the buttons show them when they arrive.
"""

from __future__ import annotations

from PySide6.QtCore import QSize, Qt, Signal
from PySide6.QtWidgets import (QButtonGroup, QComboBox, QHBoxLayout, QLabel, QMessageBox, QProgressBar,
                               QSizePolicy, QToolButton, QWidget)

from common.formatting import format_bytes, format_tps
from ui.downloads import (VERDICT_WORDS, catalogue_entry_of, compute_facts, controller_for, run_in_background, short_label, size_token, verdict_icon)

MANAGE = "\x00manage"


class ModelPicker(QWidget):
    modelRequested = Signal(str)

    def __init__(self, window):
        super().__init__(window if isinstance(window, QWidget) else None)
        self._window = window
        self.controller = controller_for(window)
        self.loaded: dict = {}
        self.facts = None
        self.family = None
        self.size_buttons: dict[str, QToolButton] = {}  # catalogue base name -> button
        self.pending_load: str | None = None
        self.pending_download: str | None = None  # a catalogue name to load once downloaded
        self.download_prompt: QMessageBox | None = None
        self.error_box: QMessageBox | None = None
        self._facts_generation = 0
        self._build()
        self.refresh_installed()
        c = self.controller
        c.progress.connect(self._download_progress)
        c.finished.connect(self._download_finished)
        c.failed.connect(self._download_failed)
        c.paused.connect(self._download_stopped)
        c.cancelled.connect(self._download_stopped)
        c.installedChanged.connect(self._installed_changed)
        worker = getattr(window, "worker", None)
        if worker is not None and hasattr(worker, "loadFailed"):
            worker.loadFailed.connect(self._load_failed)

    # --- building
    def _build(self) -> None:
        self.setAccessibleName("Model picker")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(6)

        self.combo = QComboBox()
        self.combo.setAccessibleName("Model")
        self.combo.setAccessibleDescription("The loaded model; choose another installed model to load it")
        self.combo.setToolTip("The loaded model. Choose another installed model to load it.")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(16)
        self.combo.view().setMinimumWidth(320)
        self.combo.activated.connect(self._combo_activated)
        layout.addWidget(self.combo)

        self.family_label = QLabel()
        self.family_label.setAccessibleName("Model family")
        self.family_label.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.family_label)

        self.sizes = QWidget()
        self.sizes.setAccessibleName("Sizes")
        self.sizes_layout = QHBoxLayout(self.sizes)
        self.sizes_layout.setContentsMargins(0, 0, 0, 0)
        self.sizes_layout.setSpacing(2)
        # The loaded size stands out in every theme (Fusion's dark "checked" shade is faint).
        self.sizes.setStyleSheet("QToolButton:checked { border: 2px solid palette(highlight); border-radius: 3px;"
                                 " background: palette(base); padding: 1px 3px; }")
        self.size_group = QButtonGroup(self)
        self.size_group.setExclusive(False)  # checked by hand: a press does not switch until the load is done
        layout.addWidget(self.sizes)

        self.download_bar = QProgressBar()
        self.download_bar.setAccessibleName("Download progress")
        self.download_bar.setFixedWidth(110)
        self.download_bar.setTextVisible(True)
        self.download_bar.hide()
        layout.addWidget(self.download_bar)

        self.status_label = QLabel()
        self.status_label.setAccessibleName("Model picker status")
        layout.addWidget(self.status_label)
        self.setSizePolicy(QSizePolicy.Policy.Maximum, QSizePolicy.Policy.Preferred)

    # --- the installed models
    def refresh_installed(self) -> None:
        from models import catalogue, registry

        name = self.pending_load or self.loaded.get("name")
        self.combo.blockSignals(True)
        self.combo.clear()
        for m in registry.list_installed():
            entry = catalogue.get(m.name)
            quant = m.quant or (entry.quant if entry else None)
            if m.name == self.loaded.get("name") and self.loaded.get("quant"):
                quant = self.loaded["quant"]
            self.combo.addItem(f"{m.name} · {quant}" if quant else m.name, m.name)
        if name and self.combo.findData(name) < 0:  # a file path, or a model removed since
            quant = self.loaded.get("quant") if name == self.loaded.get("name") else None
            self.combo.addItem(f"{name} · {quant}" if quant else name, name)
        if not name:
            self.combo.insertItem(0, "No model loaded", None)
        self.combo.insertSeparator(self.combo.count())
        self.combo.addItem("Manage models…", MANAGE)
        self.combo.setCurrentIndex(max(0, self.combo.findData(name) if name else 0))
        self.combo.blockSignals(False)

    def _combo_activated(self, index: int) -> None:
        data = self.combo.itemData(index)
        if data == MANAGE:
            self.refresh_installed()  # back to the loaded model
            opener = getattr(self._window, "open_model_manager", None)
            if opener is not None:
                opener()
            return
        if not data or data == self.loaded.get("name"):
            return
        self._request(data, data)

    def _request(self, name: str, what: str) -> None:
        self.pending_load = name
        self.status_label.setText(f"Loading {what}…")
        self.status_label.setToolTip(f"Loading {name}; the chat works with the current model meanwhile.")
        self.modelRequested.emit(name)

    # --- what the window calls
    def set_loaded(self, summary: dict) -> None:
        """A model finished loading: show it, its family's sizes, and work out their fit and speed."""
        self.loaded = dict(summary or {})
        self.pending_load = None
        if not self.pending_download:
            self.status_label.clear()
        self.refresh_installed()
        self._rebuild_sizes()
        self.refresh_facts()

    def refresh_facts(self) -> None:
        self._facts_generation += 1
        generation = self._facts_generation
        n_ctx = self.loaded.get("n_ctx") or (getattr(self._window, "defaults", None) or {}).get("n_ctx") or None
        run_in_background(lambda: compute_facts(n_ctx, quants=False),
                          lambda facts: self._facts_ready(generation, facts),
                          lambda exc: None, context=self)

    def _facts_ready(self, generation: int, facts) -> None:
        if generation == self._facts_generation:
            self.facts = facts
            self._update_sizes()

    # --- the size switch
    def _installed_map(self) -> dict[str, str]:
        """catalogue base name -> installed name (the default quant if that is installed): a small JSON read."""
        from models import registry

        found: dict[str, str] = {}
        for m in registry.list_installed():
            entry = catalogue_entry_of(m.name) if m.source != "local" else None
            if entry is None:
                continue
            if entry.base_name not in found or entry.quant.upper() == entry.default_quant.upper():
                found[entry.base_name] = m.name
        return found

    def _current_base(self) -> str | None:
        name = self.loaded.get("name")
        entry = catalogue_entry_of(name) if name else None
        return entry.base_name if entry else None

    def _rebuild_sizes(self) -> None:
        from models import catalogue

        name = self.loaded.get("name")
        family = catalogue.family_of(name) if name else None
        if family is not None and self.family is not None and family.id == self.family.id:
            self._update_sizes()
            return
        for button in self.size_buttons.values():
            self.size_group.removeButton(button)
            button.deleteLater()
        self.size_buttons.clear()
        self.family = family
        if family is None:
            self.family_label.clear()
            self.family_label.hide()
            self.sizes.hide()
            return
        self.family_label.setText(family.label.split(" (")[0])
        self.family_label.show()
        self.sizes.show()
        for entry in family.sizes:
            button = QToolButton()
            button.setCheckable(True)
            button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
            button.setIconSize(QSize(10, 10))
            font = button.font()
            font.setPointSizeF(font.pointSizeF() * 0.9)
            button.setFont(font)
            button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
            button.clicked.connect(lambda _checked=False, e=entry: self._size_pressed(e))
            self.size_group.addButton(button)
            self.sizes_layout.addWidget(button)
            self.size_buttons[entry.base_name] = button
        self._update_sizes()

    def _update_sizes(self) -> None:
        if self.family is None:
            return
        installed = self._installed_map()
        current = self._current_base()
        for entry in self.family.sizes:
            button = self.size_buttons.get(entry.base_name)
            if button is None:
                continue
            fig = None
            if self.facts is not None:
                inst = installed.get(entry.base_name)
                fig = self.facts.figures.get(catalogue_entry_of(inst).name) if inst and catalogue_entry_of(inst) \
                    else self.facts.figures.get(entry.name)
            token = size_token(entry)
            is_installed = entry.base_name in installed
            downloading = self.controller.is_active(entry.name)
            speed = format_tps(fig.tokens_per_s, estimate=not fig.measured) if fig and fig.tokens_per_s else ""
            mark = "" if is_installed else " ↓"
            button.setText(f"{token}{mark}\n{speed or '…'}")
            button.setIcon(verdict_icon(fig.verdict if fig else None))
            button.setChecked(entry.base_name == current)
            verdict = VERDICT_WORDS.get(fig.verdict, fig.verdict) if fig and fig.verdict else "fit not known yet"
            state = ("loaded" if entry.base_name == current else "installed" if is_installed
                     else "downloading" if downloading else "not installed")
            button.setAccessibleName(f"{short_label(entry)}: {verdict}, {speed or 'speed not known yet'}, {state}")
            size = format_bytes(entry.size_bytes, approx=entry.size_approx, unknown='size unknown')
            lines = [f"{entry.label} — {entry.quant}, {size}"]
            if fig and fig.verdict:
                lines.append(f"{verdict.capitalize()}: {fig.reason}")
            else:
                lines.append("Working out whether it fits this machine…")
            if fig and fig.tokens_per_s:
                lines.append(f"{format_tps(fig.tokens_per_s, estimate=not fig.measured)} "
                             + ("(measured on this machine)" if fig.measured else "(estimated for this machine)"))
            if entry.base_name == current:
                lines.append("Loaded now.")
            elif is_installed:
                lines.append(f"Installed as {installed[entry.base_name]}: press to switch to it.")
            elif downloading:
                lines.append("Downloading: it loads when the download is done.")
            else:
                lines.append("Not installed: press to download it.")
            button.setToolTip("\n".join(lines))

    def _size_pressed(self, entry) -> None:
        current = self._current_base()
        if entry.base_name == current:
            self._update_sizes()
            return
        installed = self._installed_map().get(entry.base_name)
        if installed:
            self._update_sizes()  # the check moves when the new model has loaded
            button = self.size_buttons.get(entry.base_name)
            if button is not None:
                button.setChecked(True)
            self._request(installed, size_token(entry))
            return
        self._update_sizes()
        if self.controller.is_active(entry.name):
            self._follow_download(entry)
            return
        self.offer_download(entry)

    # --- downloading a size that is not installed
    def offer_download(self, entry) -> QMessageBox:
        from models import fit

        fig = self.facts.figures.get(entry.name) if self.facts is not None else None
        label = short_label(entry)
        box = QMessageBox(QMessageBox.Icon.Question, "Download model",
                          f"Download {label} ({format_bytes(entry.size_bytes, approx=entry.size_approx, unknown='size unknown')})?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        details = []
        if fig and fig.verdict == fit.NO_FIT:
            details.append(f"It will not fit this machine. {fig.reason}")
        elif fig and fig.verdict == fit.FITS:
            details.append(f"It fits this machine. {fig.reason}")
        elif fig and fig.verdict:
            details.append(f"It is a tight fit. {fig.reason}")
        if fig and fig.tokens_per_s:
            details.append(f"Estimated speed here: about {format_tps(fig.tokens_per_s, estimate=True).lstrip('~')}.")
        details.append("It loads when the download is done, and you can keep chatting meanwhile. "
                       "Models… in the toolbar pauses or cancels it.")
        box.setInformativeText("\n\n".join(details))
        yes, no = box.button(QMessageBox.StandardButton.Yes), box.button(QMessageBox.StandardButton.No)
        yes.setText("Download")
        yes.setAccessibleName(f"Download {label}")
        no.setText("Not now")
        no.setAccessibleName("Do not download")
        box.setDefaultButton(no if fig and fig.verdict == fit.NO_FIT else yes)
        box.buttonClicked.connect(lambda button: self._prompt_answered(entry, button is yes))
        self.download_prompt = box
        box.open()
        return box

    def _prompt_answered(self, entry, yes: bool) -> None:
        self.download_prompt = None
        if not yes:
            return
        self.controller.start(entry.name, label=short_label(entry))
        self._follow_download(entry)
        self._update_sizes()

    def _follow_download(self, entry) -> None:
        """Show this download's progress in the bar, and load the model when it is done."""
        self.pending_download = entry.name
        self.status_label.clear()
        d = self.controller.get(entry.name)
        self.download_bar.setFormat(f"{size_token(entry)} %p%")
        if d is not None and d.total:
            self.download_bar.setRange(0, 1000)
            self.download_bar.setValue(int(1000 * d.done / d.total))
        else:
            self.download_bar.setRange(0, 0)
        self.download_bar.setAccessibleName(f"Downloading {short_label(entry)}")
        self.download_bar.setToolTip(f"Downloading {short_label(entry)}; it loads when the download is done. "
                                     "Pause or cancel it in Models….")
        self.download_bar.show()

    def _download_progress(self, name: str, done, total, rate: float, eta) -> None:
        if name != self.pending_download:
            return
        if total:
            self.download_bar.setRange(0, 1000)
            self.download_bar.setValue(int(1000 * done / total))
            self.download_bar.setAccessibleDescription(f"{format_bytes(done, unknown='size unknown')} of {format_bytes(total, unknown='size unknown')}")
        self.download_bar.show()

    def _download_finished(self, name: str) -> None:
        self._update_sizes()
        if name != self.pending_download:
            return
        self.pending_download = None
        self.download_bar.hide()
        d = self.controller.get(name)
        installed = (d.installed_as if d else None) or name
        self._request(installed, d.label if d else installed)

    def _download_failed(self, name: str, message: str) -> None:
        self._update_sizes()
        if name != self.pending_download:
            return
        self.pending_download = None
        self.download_bar.hide()
        self.status_label.clear()
        box = QMessageBox(QMessageBox.Icon.Warning, "Download failed", message, QMessageBox.StandardButton.Ok, self)
        box.button(QMessageBox.StandardButton.Ok).setAccessibleName("OK")
        self.error_box = box
        box.open()

    def _download_stopped(self, name: str) -> None:
        self._update_sizes()
        if name != self.pending_download:
            return
        d = self.controller.get(name)
        self.download_bar.hide()
        if d is not None and d.status == "paused":
            self.status_label.setText("Download paused")
            self.status_label.setToolTip("Resume it in Models… (it loads when it is done).")
        else:
            self.pending_download = None
            self.status_label.clear()

    def _installed_changed(self) -> None:
        self.refresh_installed()
        self._update_sizes()
        if self.loaded:
            self.refresh_facts()

    def _load_failed(self, _message: str) -> None:
        self.pending_load = None
        self.status_label.clear()
        self.refresh_installed()
        self._update_sizes()
