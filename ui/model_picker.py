"""The model picker in the toolbar: the loaded model, and its family's sizes as a switch.

    [SmolLM2-135M-In…-Q4_1 · Q4_1 ▾]  Gemma 3  ● 270M  ● 1B ↓  ● 4B ↓  ● 12B ↓

The drop-down lists every installed model, then each remote server's models (marked
with the server's name, loaded as MODEL@REMOTE like any model), and opens the model
manager. It keeps one width: a long name is elided in the middle, the whole name is
in its tooltip. The row keeps one height whether or not a family's sizes show.

Each size carries its fit verdict (the coloured disc) and its speed on this machine,
from the library service's one table (the catalogue shows the same figure): the median
measured on a quiet CPU, else the estimate marked "~" (a reply on a busy CPU never
becomes a model's speed, `assistant.busy`). The sizes keep their width from the start,
so a click aimed at one never lands on another when the figures arrive; after replies,
once the chat is idle, the table is built again so a new quiet figure shows. Beside the
family's name, the loaded model's marks: it thinks, it sees images (icons, tooltips).
An installed size loads when pressed; one that is not installed offers a download once
the Hub has answered (offline, it says so instead), and loads when the download is
done. A failed download says why in the status line, with Retry; a finished one that
was started elsewhere offers Load now. Everything slow (the table, the Hub, remote
servers) runs off the UI thread.
"""

from __future__ import annotations

from collections.abc import Callable

from PySide6.QtCore import QSize, Qt, QTimer, Signal
from PySide6.QtGui import QStandardItemModel
from PySide6.QtWidgets import (QComboBox, QHBoxLayout, QLabel, QMessageBox, QProgressBar, QSizePolicy,
                               QStyle, QStyleOptionComboBox, QStylePainter, QToolButton, QWidget)

from assistant.library_service import HubStatus, RemoteModels
from common.formatting import format_bytes, format_tps
from models import catalogue
from models.catalogue import CatalogueEntry
from models.download_manager import DownloadInfo
from models.labels import family_name, short_label, size_token
from models.library import BASE_MODEL_LABEL, SEES_IMAGES_LABEL as SEES_IMAGES
from ui.bridge import ChatBridge
from ui.error_text import readable
from ui.icons import icon
from ui.library_bridge import LibraryBridge
from ui.library_widgets import error_text_style, verdict_icon, verdict_words
from ui.model_marks import abilities, abilities_pixmap, ability_words, ladder_text, params_text
from ui.plain_text import plain_label, plain_tooltip
from ui.workers import run_in_background

MANAGE = "\x00manage"
NAME_CHARS, COMPACT_NAME_CHARS = 24, 12  # the name box's width in characters; in a narrow window
SPEED_ROOM = "~888 tok/s"  # the widest speed a size button is sized for from the start
STATUS_WIDTH = 640  # px: the status line's longest text in the toolbar
REFIGURE_AFTER_MS = 4000  # after the last reply, once the chat is idle: measure speeds into the table again
SHORT_ROLE = Qt.ItemDataRole.UserRole + 1  # what the closed box shows: "name · quant"
TIP_ROLE = Qt.ItemDataRole.UserRole + 2  # the item's tooltip as plain text


class ElidedComboBox(QComboBox):
    """A combo box of one width that shows its current item's short text elided in the middle."""

    aboutToPopUp = Signal()

    def showPopup(self) -> None:  # noqa: N802 - Qt's name
        self.aboutToPopUp.emit()
        super().showPopup()

    def displayed_text(self) -> str:
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        rect = self.style().subControlRect(QStyle.ComplexControl.CC_ComboBox, opt,
                                           QStyle.SubControl.SC_ComboBoxEditField, self)
        full = self.currentData(SHORT_ROLE) or self.currentText()
        return self.fontMetrics().elidedText(full, Qt.TextElideMode.ElideMiddle, max(rect.width() - 4, 10))

    def paintEvent(self, _event) -> None:
        painter = QStylePainter(self)
        opt = QStyleOptionComboBox()
        self.initStyleOption(opt)
        painter.drawComplexControl(QStyle.ComplexControl.CC_ComboBox, opt)
        opt.currentText = self.displayed_text()
        painter.drawControl(QStyle.ControlElement.CE_ComboBoxLabel, opt)


class ElidedLabel(QLabel):
    """Plain text in at most two lines (the toolbar's height), in the room it is given, cut with … where
    it does not fit: a long message never pushes the picker off the toolbar."""

    LINES = 2

    def __init__(self, parent: QWidget | None = None):
        super().__init__(parent)
        plain_label(self)
        self.full_text = ""
        self.setWordWrap(True)
        self.setSizePolicy(QSizePolicy.Policy.Ignored, QSizePolicy.Policy.Preferred)
        self.setMinimumWidth(40)

    def set_full_text(self, text: str) -> None:
        self.full_text = text
        self._elide()

    def sizeHint(self) -> QSize:  # noqa: N802 - Qt's name
        hint = super().sizeHint()
        return QSize(min(self.fontMetrics().horizontalAdvance(self.full_text) + 8, STATUS_WIDTH), hint.height())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._elide()

    def _fits(self, text: str, width: int) -> bool:
        rect = self.fontMetrics().boundingRect(0, 0, width, 10_000, Qt.TextFlag.TextWordWrap, text)
        return rect.height() <= self.LINES * self.fontMetrics().lineSpacing() + 1

    def _elide(self) -> None:
        text, width = self.full_text, max(20, self.width())
        if not self._fits(text, width):
            lo, hi = 0, len(text)  # the longest start of the text that fits with "…"
            while lo < hi:
                mid = (lo + hi + 1) // 2
                lo, hi = (mid, hi) if self._fits(text[:mid].rstrip() + "…", width) else (lo, mid - 1)
            text = text[:lo].rstrip() + "…"
        self.setText(text)


class ModelPicker(QWidget):
    modelRequested = Signal(str)  # a spec to load: an installed name, or MODEL@REMOTE
    sizesChanged = Signal()  # another family's sizes: the picker's width changed (the window fits its toolbar)

    def __init__(self, library: LibraryBridge, chat: ChatBridge, open_manager: Callable[[], None],
                 parent: QWidget | None = None):
        super().__init__(parent)
        self.library, self.service = library, library.service
        self._open_manager = open_manager
        self.loaded: dict = {}
        self.table = self.service.cached_table()
        self.remote: RemoteModels = RemoteModels()
        self.family: catalogue.Family | None = None
        self.size_buttons: dict[str, QToolButton] = {}  # catalogue base name -> button
        self.pending_load: str | None = None
        self.pending_download: str | None = None  # a catalogue name to load once downloaded
        self.download_prompt: QMessageBox | None = None
        self._action = None  # what the status line's button does now (Retry, Load now)
        self.chat = chat
        self._refigure = QTimer(self, singleShot=True, interval=REFIGURE_AFTER_MS)
        self._refigure.timeout.connect(self._refigure_when_idle)
        self._build()
        self.refresh_installed()
        library.downloadProgress.connect(self._download_progress)
        library.downloadFinished.connect(self._download_finished)
        library.downloadFailed.connect(self._download_failed)
        library.downloadPaused.connect(self._download_stopped)
        library.downloadCancelled.connect(self._download_stopped)
        library.installedChanged.connect(self._installed_changed)
        library.tableReady.connect(self._table_ready)
        library.remotesChanged.connect(self._remotes_changed)
        chat.modelLoaded.connect(self._model_loaded)
        chat.modelFailed.connect(self._load_failed)
        chat.turnFinished.connect(lambda _event: self._refigure.start())
        self.refresh_remote_models()

    # --- building
    def _build(self) -> None:
        self.setAccessibleName("Model picker")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(4, 0, 4, 0)
        layout.setSpacing(6)

        self.combo = ElidedComboBox()
        self.combo.setAccessibleName("Model")
        self.combo.setAccessibleDescription("The loaded model; choose another installed or remote model to load it")
        self.combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        self.combo.setMinimumContentsLength(NAME_CHARS)  # one width, whatever the name: long names are elided
        self.combo.view().setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.combo.view().setMinimumWidth(420)
        self.combo.activated.connect(self._combo_activated)
        self.combo.aboutToPopUp.connect(self.refresh_remote_models)  # the service keeps the list a minute
        self.combo.currentIndexChanged.connect(lambda _i: self._combo_tooltip())
        layout.addWidget(self.combo)

        self.family_label = plain_label(QLabel())
        self.family_label.setAccessibleName("Model family")
        self.family_label.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.family_label)
        self.marks = QLabel()  # the loaded model's abilities as icons: it thinks, it sees images
        self.marks.setAccessibleName("What the loaded model can do")
        self.marks.hide()
        layout.addWidget(self.marks)

        self.sizes = QWidget()
        self.sizes.setAccessibleName("Sizes")
        self.sizes_layout = QHBoxLayout(self.sizes)
        self.sizes_layout.setContentsMargins(0, 0, 0, 0)
        self.sizes_layout.setSpacing(2)
        # The loaded size stands out in every theme (Fusion's dark "checked" shade is faint).
        # The toolbar's roomy padding is for its labelled buttons; the sizes keep a slim one, so a family of
        # four still fits a 900 px window beside the name box.
        self.sizes.setStyleSheet("QToolButton { padding: 1px 4px; border: 2px solid transparent; border-radius: 3px; }"
                                 "QToolButton:checked { border: 2px solid palette(highlight);"
                                 " background: palette(base); }")
        # No QButtonGroup: Qt takes Tab away from every button of a group but the checked one, and then
        # the other sizes could not be reached by keyboard. Each is checked by hand (when its load is done).
        layout.addWidget(self.sizes)

        self.download_bar = QProgressBar()
        self.download_bar.setAccessibleName("Download progress")
        self.download_bar.setFixedWidth(110)
        self.download_bar.setTextVisible(True)
        self.download_bar.hide()
        layout.addWidget(self.download_bar)

        self.status_label = ElidedLabel()
        self.status_label.setAccessibleName("Model picker status")
        layout.addWidget(self.status_label, 1)
        self.action_button = QToolButton()  # Retry a failed download, Load a finished one
        self.action_button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        self.action_button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.action_button.clicked.connect(self._act)
        self.action_button.hide()
        layout.addWidget(self.action_button)
        # The status line takes the toolbar's room left over (elided to it): a long message never pushes
        # the picker itself off the toolbar.
        self.setSizePolicy(QSizePolicy.Policy.Expanding, QSizePolicy.Policy.Fixed)
        # One height, with or without the two-line size buttons: the toolbar never jumps.
        self.setFixedHeight(max(self._size_button("12B ↓\n~100 tok/s").sizeHint().height(),
                                self.combo.sizeHint().height()) + 2)

    def _size_button(self, text: str = "") -> QToolButton:
        button = QToolButton()
        button.setCheckable(True)
        button.setToolButtonStyle(Qt.ToolButtonStyle.ToolButtonTextBesideIcon)
        button.setIconSize(QSize(10, 10))
        font = button.font()
        font.setPointSizeF(font.pointSizeF() * 0.9)
        button.setFont(font)
        button.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        button.setIcon(verdict_icon(None))
        button.setText(text)
        return button

    # --- the drop-down: installed models, then remote ones
    def _is_base(self, name: str) -> bool:
        row = self.table.row(name) if self.table is not None else None
        if row is not None:
            return row.is_base
        found = self.service.index().get(name)
        return bool(found and found.entry and found.entry.is_base)

    def _sees_images(self, name: str) -> bool:
        row = self.table.row(name) if self.table is not None else None
        if row is not None:
            return row.sees_images
        found = self.service.index().get(name)
        return bool(found and (found.model.projector or (found.entry and found.entry.sees_images)))

    def _add_item(self, text: str, short: str, data, tooltip: str) -> None:
        self.combo.addItem(text, data)
        i = self.combo.count() - 1
        self.combo.setItemData(i, short, SHORT_ROLE)
        self.combo.setItemData(i, plain_tooltip(tooltip), Qt.ItemDataRole.ToolTipRole)
        self.combo.setItemData(i, tooltip, TIP_ROLE)

    def refresh_installed(self) -> None:
        name = self.pending_load or self.loaded.get("name")
        self.combo.blockSignals(True)
        self.combo.clear()
        for indexed in self.service.index().models.values():
            m, entry = indexed.model, indexed.entry
            quant = m.quant or (entry.quant if entry else None)
            if m.name == self.loaded.get("name") and self.loaded.get("quant"):
                quant = self.loaded["quant"]
            short = f"{m.name} · {quant}" if quant else m.name
            base = self._is_base(m.name)
            marks = [x for x in (SEES_IMAGES if self._sees_images(m.name) else "", BASE_MODEL_LABEL if base else "")
                     if x]
            self._add_item(" — ".join([short, *marks]), short, m.name, "\n".join([m.name, *marks]))
        if self.remote.models or self.remote.problems:
            self.combo.insertSeparator(self.combo.count())
        for r in self.remote.models:
            self._add_item(f"{r.model} — on {r.remote} ({r.host})", f"{r.model} · on {r.remote}", r.spec,
                           f"{r.model} on the remote server {r.remote} ({r.host})")
        model = self.combo.model()
        for remote, why in self.remote.problems:
            self._add_item(f"{remote}: its models cannot be listed", remote, None, readable(why))
            if isinstance(model, QStandardItemModel):
                model.item(self.combo.count() - 1).setEnabled(False)
        if name and self.combo.findData(name) < 0:  # a file path, a remote model not listed yet, or one removed
            quant = self.loaded.get("quant") if name == self.loaded.get("name") else None
            short = f"{name} · {quant}" if quant else name
            self._add_item(short, short, name, name)
        if not name:
            self.combo.insertItem(0, "No model loaded", None)
        self.combo.insertSeparator(self.combo.count())
        self._add_item("Manage models…", "Manage models…", MANAGE, "Download, import, delete models; remote servers")
        self.combo.setCurrentIndex(max(0, self.combo.findData(name) if name else 0))
        self.combo.blockSignals(False)
        self._combo_tooltip()

    def _combo_tooltip(self) -> None:
        tip = self.combo.currentData(TIP_ROLE) or self.combo.currentText()
        self.combo.setToolTip(plain_tooltip(f"{tip}\nChoose another installed or remote model to load it."))

    def refresh_remote_models(self, fresh: bool = False) -> None:
        def done(found: RemoteModels) -> None:
            if found != self.remote:
                self.remote = found
                self.refresh_installed()

        run_in_background(lambda: self.service.remote_models(fresh), done, context=self)

    def _combo_activated(self, index: int) -> None:
        data = self.combo.itemData(index)
        if data == MANAGE:
            self.refresh_installed()  # back to the loaded model
            self._open_manager()
            return
        if not data or data == self.loaded.get("name"):
            return
        self._request(data, self.combo.itemData(index, SHORT_ROLE) or data)

    def _request(self, name: str, what: str) -> None:
        self.pending_load = name
        self._say(f"Loading {what}…", f"Loading {name}; the chat works with the current model meanwhile.")
        self.modelRequested.emit(name)

    def _say(self, text: str = "", tooltip: str = "", error: bool = False) -> None:
        self._offer(None)
        # One line in the toolbar, cut to the room there is; whole in the tooltip and the accessible text.
        self.status_label.set_full_text(text)
        if text and tooltip and not tooltip.startswith(text):
            tooltip = f"{text}\n\n{tooltip}"
        self.status_label.setAccessibleDescription(text)
        self.status_label.setToolTip(plain_tooltip(tooltip))
        self.status_label.setStyleSheet(error_text_style(self) if error else "")

    # --- what is loaded (the chat bridge says)
    def set_loaded(self, summary: dict) -> None:
        """A model finished loading: show it and its family's sizes; the table is sized for it."""
        self.loaded = dict(summary or {})
        self.pending_load = None
        if not self.pending_download:
            self._say()
        self.refresh_installed()
        self._rebuild_sizes()
        if self.table is None:
            self.service.request_table()  # later loads: the service rebuilds it itself

    def _model_loaded(self, event) -> None:
        self.set_loaded(event.summary.to_dict())

    def _remotes_changed(self, _servers) -> None:
        self.refresh_remote_models(fresh=True)

    def _load_failed(self, event) -> None:
        if event.summary is not None:  # the previous model was put back
            self.set_loaded(event.summary.to_dict())
            return
        self.pending_load = None
        self._say()
        self.refresh_installed()
        self._update_sizes()

    def _table_ready(self, table) -> None:
        self.table = table
        self.refresh_installed()  # base models are known from their files' headers now
        self._update_sizes()

    def _installed_changed(self, _index) -> None:
        self.refresh_installed()
        self._update_sizes()

    # --- the size switch
    def _current_base(self) -> str | None:
        name = self.loaded.get("name")
        entry = self.service.index().catalogue_entry(name) if name else None
        return entry.base_name if entry else None

    def _rebuild_sizes(self) -> None:
        name = self.loaded.get("name")
        entry = self.service.index().catalogue_entry(name) if name and self.loaded.get("kind") != "remote" else None
        family = catalogue.family_of(entry) if entry else None
        if family is None or self.family is None or family.id != self.family.id:
            for button in self.size_buttons.values():
                button.deleteLater()
            self.size_buttons.clear()
            self.family = family
            for size in family.sizes if family else ():
                button = self._size_button()
                button.clicked.connect(lambda _checked=False, e=size: self._size_pressed(e))
                self.sizes_layout.addWidget(button)
                self.size_buttons[size.base_name] = button
                self._reserve_width(button, size)
        self.sizes.setVisible(family is not None)
        self._show_family_label()
        self._show_marks(entry)
        self._update_sizes()
        self.sizesChanged.emit()

    def set_compact(self, compact: bool) -> None:
        """A narrow window: the name box takes less room (the name elided, whole in its tooltip) and the family's
        name goes (each size's tooltip says it), so the picker, its sizes included, stays on the toolbar."""
        self.compact = compact
        self.combo.setMinimumContentsLength(COMPACT_NAME_CHARS if compact else NAME_CHARS)
        self.combo.setFixedWidth(self.combo.sizeHint().width())  # its minimum size hint is cached: set it so
        self.family_label.setVisible(not compact)

    def full_width(self) -> int:
        """The picker's width when not compact (what fit_toolbar weighs against the window's)."""
        hint = self.sizeHint().width()
        if not getattr(self, "compact", False):
            return hint
        name = self.combo.fontMetrics().horizontalAdvance("x") * (NAME_CHARS - COMPACT_NAME_CHARS)
        return hint + name + self.family_label.sizeHint().width() + self.layout().spacing()

    @staticmethod
    def _reserve_width(button: QToolButton, entry: CatalogueEntry) -> None:
        """The button's final width from the start, for its widest text: the figures arrive later and never
        widen it (measured with the style sheets applied: they add padding and borders)."""
        text = button.text()
        button.setMinimumWidth(0)
        button.setText(f"{size_token(entry)} ↓\n{SPEED_ROOM}")
        button.ensurePolished()
        button.setMinimumWidth(button.sizeHint().width())
        button.setText(text)

    def _show_marks(self, entry: CatalogueEntry | None) -> None:
        """The loaded model's abilities as icons beside its family's name; their words in the tooltip."""
        self._marks_entry = entry
        found = abilities(entry)
        self.marks.setVisible(bool(found))
        if found:
            self.marks.setPixmap(abilities_pixmap(entry))
            words = ability_words(entry)
            self.marks.setToolTip(f"{short_label(entry)} {words.replace(' · ', ' and ')}." if entry else words)
            self.marks.setAccessibleDescription(words)

    def apply_icons(self) -> None:
        """Icons in the palette's colours, drawn again after a theme change (and the sizes' widths for its
        style sheet)."""
        self._show_marks(getattr(self, "_marks_entry", None))
        for entry in self.family.sizes if self.family is not None else ():
            button = self.size_buttons.get(entry.base_name)
            if button is not None:
                self._reserve_width(button, entry)
        if self._action is not None:
            self.action_button.setIcon(icon(self._action[0]))

    # --- the status line's button: Retry a failed download, Load one that finished
    def _offer(self, kind: str | None, text: str = "", name: str = "", run=None) -> None:
        self._action = (kind, run) if kind else None
        self.action_button.setVisible(kind is not None)
        if kind:
            self.action_button.setText(text)
            self.action_button.setIcon(icon(kind))
            self.action_button.setAccessibleName(name)
            self.action_button.setToolTip(name)

    def _act(self) -> None:
        action, self._action = self._action, None
        self.action_button.hide()
        self._say()
        if action is not None:
            action[1]()

    def _refigure_when_idle(self) -> None:
        """After replies, once the chat is idle: build the table again, so a speed measured on a quiet CPU
        shows (building it while a reply runs would slow that reply and be measured as busy)."""
        if self.chat.service.busy():
            self._refigure.start()
            return
        self.service.request_table()

    def _show_family_label(self) -> None:
        """The family's name; or, without one, what the loaded model is (and a base model says so)."""
        remote = self.loaded.get("remote") or {}
        base = bool(self.loaded.get("is_base")) or (bool(self.loaded) and self._is_base(self.loaded.get("name", "")))
        if self.family is not None:
            text = family_name(self.family.sizes[0])
        elif remote:
            text = f"on {remote.get('name')} ({remote.get('host')})"
        elif self.loaded:
            found = self.service.index().get(self.loaded.get("name", ""))
            text = ("imported file" if found is None or found.model.source == "local"
                    else f"from {found.model.repo}" if found.model.repo else "not in the catalogue")
        else:
            text = ""
        if base:
            text = f"{text} · base model" if text else "base model"
        self.family_label.setText(text)
        ladder = f"{family_name(self.family.sizes[0])}: {ladder_text(self.family)}" if self.family is not None else ""
        self.family_label.setToolTip(plain_tooltip("\n".join(x for x in (ladder, BASE_MODEL_LABEL if base else "") if x)))
        self.family_label.setAccessibleDescription(BASE_MODEL_LABEL if base else "")

    def _update_sizes(self) -> None:
        if self.family is None:
            return
        index = self.service.index()
        current = self._current_base()
        hub = self.service.cached_hub_status()
        for entry in self.family.sizes:
            button = self.size_buttons.get(entry.base_name)
            if button is None:
                continue
            fig = self.table.size_figure(entry, index) if self.table is not None else None
            installed = index.installed_size(entry)
            downloading = self.library.downloads.is_active(entry.name)
            speed = format_tps(fig.tokens_per_s, estimate=not fig.measured) if fig and fig.tokens_per_s else ""
            button.setText(f"{size_token(entry)}{'' if installed else ' ↓'}\n{speed or '…'}")
            button.setIcon(verdict_icon(fig.verdict if fig else None))
            button.setChecked(entry.base_name == current)
            verdict = verdict_words(fig.verdict if fig else None)
            state = ("loaded" if entry.base_name == current else "installed" if installed
                     else "downloading" if downloading else "not installed")
            marks = ability_words(entry)
            button.setAccessibleName(f"{short_label(entry)}: {verdict}, {speed or 'speed not known yet'}, {state}"
                                     + (f", {marks}" if marks else ""))
            size = format_bytes(entry.size_bytes, approx=entry.size_approx, unknown="size unknown")
            lines = [f"{entry.label} — {entry.quant}, {size}, {params_text(entry)} parameters"]
            if marks:
                lines.append(f"It {marks.replace(' · ', ' and ')}.")
            if entry.is_base:
                lines.append(BASE_MODEL_LABEL.capitalize())
            lines.append(f"{verdict.capitalize()}: {fig.reason}" if fig and fig.verdict
                         else "Working out whether it fits this machine…")
            if fig and fig.tokens_per_s:
                lines.append(f"{speed} " + ("(measured on this machine, on a quiet CPU)" if fig.measured
                                            else "(estimated for this machine; a reply on a busy CPU "
                                                 "does not count as its speed)"))
            if entry.base_name == current:
                lines.append("Loaded now.")
            elif installed:
                lines.append(f"Installed as {installed}: press to switch to it.")
            elif downloading:
                lines.append("Downloading: it loads when the download is done.")
            elif hub is not None and not hub.online:
                lines.append(f"Not installed, and downloads are off now: {hub.sentence}")
            else:
                lines.append("Not installed: press to download it.")
            button.setToolTip(plain_tooltip("\n".join(lines)))

    def _size_pressed(self, entry: CatalogueEntry) -> None:
        self._update_sizes()
        if entry.base_name == self._current_base():
            return
        installed = self.service.index().installed_size(entry)
        if installed:
            button = self.size_buttons.get(entry.base_name)
            if button is not None:
                button.setChecked(True)  # the check moves for good when the new model has loaded
            self._request(installed, size_token(entry))
            return
        if self.library.downloads.is_active(entry.name):
            self._follow_download(entry)
            return
        self._say("Asking the Hub…", "Downloads need the Hugging Face Hub: checking that it answers.")
        run_in_background(self.service.hub_status, lambda status: self._hub_answered(entry, status),
                          lambda exc: self._hub_answered(entry, HubStatus(False, str(exc), 0.0)), context=self)

    def _hub_answered(self, entry: CatalogueEntry, status: HubStatus) -> None:
        self._say()
        self._update_sizes()
        self.offer_download(entry, status)

    # --- downloading a size that is not installed
    def offer_download(self, entry: CatalogueEntry, status: HubStatus) -> QMessageBox:
        """Ask to download `entry`; offline, say so instead (and offer nothing)."""
        from models import fit

        label = short_label(entry)
        size = format_bytes(entry.size_bytes, approx=entry.size_approx, unknown="size unknown")
        if not status.online:
            box = QMessageBox(QMessageBox.Icon.Information, "Download model",
                              f"{label} ({size}) is not installed, and it cannot be downloaded now.",
                              QMessageBox.StandardButton.Ok, self)
            box.setInformativeText(f"{status.sentence}\n\nThe models already installed work offline.")
            box.button(QMessageBox.StandardButton.Ok).setAccessibleName("OK")
            box.finished.connect(lambda _result: setattr(self, "download_prompt", None))
            self.download_prompt = box
            box.open()
            return box
        fig = self.table.figure(entry.name) if self.table is not None else None
        box = QMessageBox(QMessageBox.Icon.Question, "Download model", f"Download {label} ({size})?",
                          QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No, self)
        details = []
        if entry.is_base:
            details.append(f"It is a {BASE_MODEL_LABEL}.")
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
        box.setDefaultButton(QMessageBox.StandardButton.No if fig and fig.verdict == fit.NO_FIT
                             else QMessageBox.StandardButton.Yes)
        box.buttonClicked.connect(lambda clicked: self._prompt_answered(entry, clicked is yes))
        self.download_prompt = box
        box.open()
        return box

    def _prompt_answered(self, entry: CatalogueEntry, yes: bool) -> None:
        self.download_prompt = None
        if not yes:
            return
        self.library.downloads.start(entry.name)
        self._follow_download(entry)
        self._update_sizes()

    def _follow_download(self, entry: CatalogueEntry) -> None:
        """Show this download's progress in the bar, and load the model when it is done."""
        self.pending_download = entry.name
        self._say()
        d = self.library.downloads.get(entry.name)
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

    def _download_progress(self, d: DownloadInfo) -> None:
        if d.name != self.pending_download:
            return
        if d.total:
            self.download_bar.setRange(0, 1000)
            self.download_bar.setValue(int(1000 * d.done / d.total))
            self.download_bar.setAccessibleDescription(f"{format_bytes(d.done)} of {format_bytes(d.total)}")
        self.download_bar.show()

    def _download_finished(self, d: DownloadInfo) -> None:
        self._update_sizes()
        if d.name != self.pending_download:
            # Started elsewhere (the model manager): say so, and offer to load it.
            name = d.installed_as or d.name
            self._say(f"Downloaded {d.label}", f"{d.label} is installed as {name}.")
            self._offer("load", "Load now", f"Load {d.label} now", lambda: self._request(name, d.label))
            return
        self.pending_download = None
        self.download_bar.hide()
        self._request(d.installed_as or d.name, d.label)

    def _download_failed(self, d: DownloadInfo) -> None:
        """Said once, here, in a line with its reason, and Retry (the manager's Downloads page has it too)."""
        self._update_sizes()
        if d.name != self.pending_download:
            return
        self.pending_download = None
        self.download_bar.hide()
        reason = " ".join(readable(d.message or "no reason was given").split())
        first = reason.split(". ")[0].rstrip(".")  # the reason's first sentence; the tooltip has all of it
        self._say(f"Download of {d.label} failed: {first[:1].lower() + first[1:]}.",
                  f"{readable(d.message)}\n\nRetry starts it again.", error=True)

        def retry() -> None:
            self.library.downloads.resume(d.name)
            entry = catalogue.get(d.name)
            if entry is not None:
                self._follow_download(entry)

        self._offer("retry", "Retry", f"Retry the download of {d.label}", retry)

    def _download_stopped(self, d: DownloadInfo) -> None:
        self._update_sizes()
        if d.name != self.pending_download:
            return
        self.download_bar.hide()
        if d.status == "paused":
            self._say("Download paused", "Resume it in Models… (it loads when it is done).")
        else:
            self.pending_download = None
            self._say()
