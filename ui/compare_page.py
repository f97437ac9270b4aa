"""The Compare page: one prompt on several models, side by side, with their figures and your verdicts.

    Models            │ Prompt  [Why is the sky blue?                     ]  [Run] [Stop]
    ☑ Gemma 3 270M    │ ┌ SmolLM2 135M ─────┐ ┌ Gemma 3 1B ───────┐
    ☑ Gemma 3 1B      │ │ answer, streaming │ │ answer, streaming │
    ☐ Gemma 3 4B ↓    │ │ 55 tok/s · 0.1 s  │ │ 12 tok/s · 0.4 s  │
    Prompt sets …     │ │ [Good enough] [Not good enough] [Best]      │
    Saved comparisons │ On your 12 comparisons, SmolLM2 135M was good enough in 9; …

The loaded model's family sizes are offered first (installed ones can be checked
at once), then every installed model, then each remote server's models. Runs go
through the core's `CompareService` (the chat service's queue: one model loaded at
a time, the window's own model put back afterwards); its events arrive here as Qt
signals. Verdicts are written to the history at once. A prompt set runs as a batch
and is reviewed one prompt at a time, with a summary table per model.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QEvent, QObject, Qt, QTimer, Signal
from PySide6.QtGui import QFont
from PySide6.QtWidgets import (
    QAbstractItemView,
    QBoxLayout,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QFrame,
    QGridLayout,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QLineEdit,
    QListWidget,
    QListWidgetItem,
    QMessageBox,
    QPlainTextEdit,
    QPushButton,
    QScrollArea,
    QSplitter,
    QTableWidget,
    QTableWidgetItem,
    QTextBrowser,
    QVBoxLayout,
    QWidget,
)

from assistant.compare import (
    AnswerDone,
    AnswerLoading,
    AnswerStarted,
    AnswerText,
    CompareRequest,
    CompareService,
    RunDone,
    RunFailed,
)
from assistant.compare_summary import (
    BUSY_NOTE,
    FIGURE_ROWS,
    PEAK_RAM_NOTE,
    SUMMARY_HEADERS,
    Cell,
    display_name,
    figures,
    format_figure,
    pair_summaries,
    summarize_models,
)
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.model_choices import ModelChoice, compare_choices, remote_choices
from common.errors import UserError
from common.formatting import format_count
from ui.icons import icon
from ui.markdown_render import MarkdownRenderer
from ui.theme import is_dark
from ui.workers import run_in_background

log = logging.getLogger(__name__)

SPEC_ROLE = Qt.ItemDataRole.UserRole
RENDER_INTERVAL_MS = 80
SAVED_SHOWN = 200
VERDICT_COLOURS = {"Good enough": ("#2e7d32", "#ffffff"), "Not good enough": ("#c62828", "#ffffff"),
                   "Best": ("#f9a825", "#1f1f1f")}
STOP_NOTES = {"length": "reply limit reached", "repetition": "stopped a loop", "context_full": "context full"}
NARROW_PAGE = 900  # px: below, the side list takes NARROW_SIDE and the answers the rest
NARROW_SIDE = 230
COLUMN_MIN_WIDTH = 280  # px: narrower, the answers stack one under another (the page scrolls down)
STACKED_MIN_HEIGHT = 380  # px: a stacked answer keeps room for its text, figures and verdicts
TWO_FIGURES_FROM = 430  # px of a column's width: two figures a row from here, else one


class _Relay(QObject):
    """The compare service calls its listener on its own thread; this re-emits on the UI thread."""

    arrived = Signal(object)


# --- One answer -------------------------------------------------------------------------------------------------


class AnswerColumn(QFrame):
    """One model's answer: its header, the text (Markdown, re-rendered while it streams), figures, verdicts."""

    verdictChosen = Signal(object, object)  # the column, "good" / "not_good" / None
    bestChosen = Signal(object, bool)  # the column, picked or not

    def __init__(self, spec: str, renderer: MarkdownRenderer, parent=None):
        super().__init__(parent)
        self.spec = spec
        self.answer_id: int | None = None
        self.text = ""
        self.stats: dict[str, Any] = {}
        self._renderer = renderer
        self.setObjectName("answerColumn")
        self.setFrameShape(QFrame.Shape.StyledPanel)
        self.setStyleSheet("#answerColumn { border: 1px solid palette(mid); border-radius: 8px; "
                           "background: palette(base); }")
        self.setMinimumWidth(COLUMN_MIN_WIDTH)
        self.setAccessibleName(f"Answer of {spec}")
        layout = QVBoxLayout(self)
        layout.setContentsMargins(10, 8, 10, 8)
        self.title = QLabel(f"<b>{html.escape(display_name(spec))}</b>")
        self.title.setAccessibleName("Model")
        self.title.setToolTip(_tip(spec))
        self.status = QLabel("waiting")
        self.status.setTextFormat(Qt.TextFormat.PlainText)
        self.status.setAccessibleName("Answer status")
        self.status.setStyleSheet("color: palette(placeholder-text);")
        head = QHBoxLayout()
        head.addWidget(self.title, 1)
        head.addWidget(self.status)
        layout.addLayout(head)
        self.body = QTextBrowser()
        self.body.setAccessibleName("Answer")
        self.body.setOpenLinks(False)
        self.body.setFrameShape(QFrame.Shape.NoFrame)
        self.body.setMinimumHeight(160)
        layout.addWidget(self.body, 1)
        self.grid = QGridLayout()
        self.grid.setHorizontalSpacing(12)
        self.grid.setVerticalSpacing(1)
        self.figure_labels: dict[str, QLabel] = {}
        self._figure_pairs: list[tuple[QLabel, QLabel]] = []
        for key, label in FIGURE_ROWS:
            name = QLabel(label)
            name.setStyleSheet("color: palette(placeholder-text);")
            value = QLabel("–")
            value.setTextFormat(Qt.TextFormat.PlainText)
            value.setAccessibleName(label)
            if key == "rss_peak_bytes":
                name.setToolTip(PEAK_RAM_NOTE)
                value.setToolTip(PEAK_RAM_NOTE)
            value.setAlignment(Qt.AlignmentFlag.AlignRight)
            self._figure_pairs.append((name, value))
            self.figure_labels[key] = value
        self.figures_per_row = 0
        self.arrange_figures(2)
        layout.addLayout(self.grid)
        buttons = QHBoxLayout()
        self.good = self._verdict_button("Good enough", "Mark good enough")
        self.not_good = self._verdict_button("Not good enough", "Mark not good enough")
        self.best = self._verdict_button("Best", "Pick as the best answer")
        self.good.clicked.connect(lambda on: self.verdictChosen.emit(self, "good" if on else None))
        self.not_good.clicked.connect(lambda on: self.verdictChosen.emit(self, "not_good" if on else None))
        self.best.clicked.connect(lambda on: self.bestChosen.emit(self, on))
        for b in (self.good, self.not_good, self.best):
            buttons.addWidget(b)
        buttons.addStretch(1)
        layout.addLayout(buttons)
        self._timer = QTimer(self, singleShot=True, interval=RENDER_INTERVAL_MS)
        self._timer.timeout.connect(self._render)
        self.set_verdict(None, False)

    def arrange_figures(self, per_row: int) -> None:
        """Two figures a row in a wide column, one in a narrow one: a figure is never cut."""
        if per_row == self.figures_per_row:
            return
        self.figures_per_row = per_row
        for name, value in self._figure_pairs:
            self.grid.removeWidget(name)
            self.grid.removeWidget(value)
        for i, (name, value) in enumerate(self._figure_pairs):
            self.grid.addWidget(name, i // per_row, (i % per_row) * 2)
            self.grid.addWidget(value, i // per_row, (i % per_row) * 2 + 1)

    def _verdict_button(self, text: str, name: str) -> QPushButton:
        button = QPushButton(text)
        button.setCheckable(True)
        # A verdict must show at a glance in either theme: Fusion's checked look is faint on dark palettes.
        colour, ink = VERDICT_COLOURS[text]
        button.setStyleSheet(f"QPushButton:checked {{ background: {colour}; color: {ink}; border: 1px solid {colour};"
                             " border-radius: 3px; padding: 3px 8px; }")
        button.setEnabled(False)
        button.setAccessibleName(name)
        return button

    def set_status(self, text: str) -> None:
        self.status.setText(text)

    def append(self, text: str) -> None:
        self.text += text
        if not self._timer.isActive():
            self._timer.start()

    def set_text(self, text: str) -> None:
        self.text = text
        self._render()

    def _render(self) -> None:
        bar = self.body.verticalScrollBar()
        at_end = bar.value() >= bar.maximum() - 4
        self.body.setHtml(self._renderer.render(self.text).html if self.text else "")
        if at_end:
            bar.setValue(bar.maximum())

    def finish(self, stats: dict[str, Any] | None, status: str, error: str | None, answer_id: int | None) -> None:
        self._timer.stop()
        self._render()
        self.stats = stats or {}
        self.answer_id = answer_id
        fig = figures(self.stats)
        for key, label in self.figure_labels.items():
            label.setText(format_figure(key, fig) if self.stats else "–")
        self.figure_labels["gen_tps"].setToolTip(BUSY_NOTE if fig.get("cpu_busy") else "")
        stop = fig.get("stop_reason")
        self.set_status({"error": "failed", "stopped": "stopped"}.get(status, "done" if stop in (None, "eos")
                        else f"done · {STOP_NOTES.get(stop, stop.replace('_', ' '))}"))
        if error:
            self.status.setToolTip(_tip(error))
            if not self.text:
                self.body.setPlainText(error)
        for b in (self.good, self.not_good, self.best):
            b.setEnabled(answer_id is not None)
            b.setToolTip("" if answer_id is not None else "Only a saved comparison takes verdicts.")

    def set_verdict(self, verdict: str | None, best: bool) -> None:
        self.good.setChecked(verdict == "good" or best)
        self.not_good.setChecked(verdict == "not_good" and not best)
        self.best.setChecked(best)

    @property
    def verdict(self) -> str | None:
        return "good" if self.good.isChecked() else "not_good" if self.not_good.isChecked() else None


# --- A new prompt set -------------------------------------------------------------------------------------------


class PromptSetDialog(QDialog):
    """Name, system prompt and prompts (separated by an empty line) of a new prompt set."""

    def __init__(self, prompt: str = "", parent=None):
        super().__init__(parent)
        self.setWindowTitle("New prompt set")
        form = QFormLayout(self)
        self.name = QLineEdit()
        self.name.setAccessibleName("Prompt set name")
        self.name.setPlaceholderText("e.g. daily work")
        self.system = QLineEdit()
        self.system.setAccessibleName("Prompt set system prompt")
        self.system.setPlaceholderText("optional")
        self.prompts = QPlainTextEdit(prompt)
        self.prompts.setAccessibleName("Prompts")
        self.prompts.setPlaceholderText("One prompt per paragraph: leave an empty line between prompts.")
        self.prompts.setMinimumSize(460, 220)
        form.addRow("Name", self.name)
        form.addRow("System prompt", self.system)
        form.addRow("Prompts", self.prompts)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Save | QDialogButtonBox.StandardButton.Cancel)
        buttons.accepted.connect(self.accept)
        buttons.rejected.connect(self.reject)
        form.addRow(buttons)

    def values(self) -> tuple[str, list[str], str | None]:
        paragraphs = [p.strip() for p in self.prompts.toPlainText().replace("\r\n", "\n").split("\n\n")]
        return self.name.text().strip(), [p for p in paragraphs if p], self.system.text().strip() or None


# --- The page ---------------------------------------------------------------------------------------------------


class ComparePage(QWidget):
    runFinished = Signal(object)  # CompareResult (tests and the window may listen)

    def __init__(self, services, *, current_model: Callable[[], dict] | None = None,
                 load_settings: Callable[[], LoadSettings | None] | None = None,
                 generation_settings: Callable[[], GenerationSettings] | None = None, parent=None):
        super().__init__(parent)
        self.history = services.history
        self.compare = CompareService(services.chat, services.history)
        self._current_model = current_model or (dict)
        self._load_settings: Callable[[], LoadSettings | None] = load_settings or (lambda: None)
        self._generation_settings = generation_settings or GenerationSettings
        self._renderer = MarkdownRenderer(dark=is_dark())
        self._relay = _Relay(self)
        self._relay.arrived.connect(self._on_event)
        self.run = None
        self.columns: list[AnswerColumn] = []
        self.models: list[str] = []  # the columns' models
        self.prompts: list[str] = []
        self.comparison_ids: list[int | None] = []
        self.cells: dict[tuple[int, int], dict[str, Any]] = {}  # (prompt, model) -> text, stats, verdict…
        self.prompt_index = 0
        self._follow_run = True
        self._checked: set[str] | None = None  # None: not chosen yet (the defaults apply)
        self._remote: list[ModelChoice] = []
        self._remote_problems: list[str] = []
        self._typed: list[str] = []
        self.summary_sentences: list[str] = []
        self._narrowed = False
        self._build()

    # --- Building
    def _build(self) -> None:
        splitter = QSplitter(Qt.Orientation.Horizontal)
        splitter.addWidget(self._build_side())
        splitter.addWidget(self._build_main())
        splitter.setStretchFactor(1, 1)
        splitter.setSizes([290, 900])
        self.splitter = splitter
        outer = QVBoxLayout(self)
        outer.setContentsMargins(0, 0, 0, 0)
        outer.addWidget(splitter)

    def _heading(self, text: str) -> QLabel:
        label = QLabel(text)
        font = label.font()
        font.setBold(True)
        label.setFont(font)
        return label

    def _build_side(self) -> QWidget:
        side = QWidget()
        layout = QVBoxLayout(side)
        layout.setContentsMargins(8, 8, 4, 8)
        layout.addWidget(self._heading("Models"))
        self.model_list = QListWidget()
        self.model_list.setAccessibleName("Models to compare")
        self.model_list.setSelectionMode(QAbstractItemView.SelectionMode.NoSelection)
        self.model_list.itemChanged.connect(self._model_checked)
        layout.addWidget(self.model_list, 2)
        add_row = QHBoxLayout()
        self.add_edit = QLineEdit()
        self.add_edit.setPlaceholderText("Another model: name, .gguf path or MODEL@REMOTE")
        self.add_edit.setAccessibleName("Add a model")
        self.add_edit.returnPressed.connect(self._add_typed_model)
        add_button = QPushButton("Add")
        add_button.setAccessibleName("Add the typed model")
        add_button.clicked.connect(self._add_typed_model)
        add_row.addWidget(self.add_edit, 1)
        add_row.addWidget(add_button)
        layout.addLayout(add_row)

        layout.addWidget(self._heading("Prompt sets"))
        sets_row = QHBoxLayout()
        self.sets_combo = QComboBox()
        self.sets_combo.setAccessibleName("Prompt set")
        self.run_set_button = QPushButton("Run set")
        self.run_set_button.setAccessibleName("Run the prompt set on the checked models")
        self.run_set_button.clicked.connect(self.run_set)
        sets_row.addWidget(self.sets_combo, 1)
        sets_row.addWidget(self.run_set_button)
        layout.addLayout(sets_row)
        set_buttons = QHBoxLayout()
        new_set = QPushButton("New set…")
        new_set.setAccessibleName("New prompt set")
        new_set.clicked.connect(self.new_set)
        self.delete_set_button = QPushButton("Delete set")
        self.delete_set_button.setAccessibleName("Delete the prompt set")
        self.delete_set_button.clicked.connect(self.delete_set)
        set_buttons.addWidget(new_set)
        set_buttons.addWidget(self.delete_set_button)
        set_buttons.addStretch(1)
        layout.addLayout(set_buttons)

        layout.addWidget(self._heading("Saved comparisons"))
        self.saved_search = QLineEdit()
        self.saved_search.setPlaceholderText("Search prompts and answers")
        self.saved_search.setAccessibleName("Search saved comparisons")
        self.saved_search.setClearButtonEnabled(True)
        self._search_timer = QTimer(self, singleShot=True, interval=200)
        self._search_timer.timeout.connect(self.refresh_saved)
        self.saved_search.textChanged.connect(self._search_timer.start)
        layout.addWidget(self.saved_search)
        self.saved_list = QListWidget()
        self.saved_list.setAccessibleName("Saved comparisons")
        self.saved_list.setWordWrap(True)
        self.saved_list.setAlternatingRowColors(True)
        self.saved_list.setSpacing(1)
        self.saved_list.itemActivated.connect(self._open_saved_item)
        self.saved_list.itemClicked.connect(self._open_saved_item)
        layout.addWidget(self.saved_list, 3)
        self.rerun_button = QPushButton("Run again on the checked models")
        self.rerun_button.setAccessibleName("Run the saved comparison again on the checked models")
        self.rerun_button.clicked.connect(self.rerun_selected)
        layout.addWidget(self.rerun_button)
        return side

    def _build_main(self) -> QWidget:
        main = QWidget()
        layout = QVBoxLayout(main)
        layout.setContentsMargins(4, 8, 8, 8)
        self.prompt_edit = QPlainTextEdit()
        self.prompt_edit.setAccessibleName("Prompt to compare")
        self.prompt_edit.setPlaceholderText("A prompt to run on every checked model, with the same settings and seed")
        self.prompt_edit.setMaximumHeight(80)
        layout.addWidget(self.prompt_edit)
        row = QHBoxLayout()
        self.system_edit = QLineEdit()
        self.system_edit.setAccessibleName("System prompt for the comparison")
        self.system_edit.setPlaceholderText("System prompt (optional)")
        row.addWidget(self.system_edit, 1)
        self.run_button = QPushButton("Run")
        self.run_button.setAccessibleName("Run the comparison")
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self.start)
        self.stop_button = QPushButton("Stop")
        self.stop_button.setAccessibleName("Stop the comparison")
        self.stop_button.setEnabled(False)
        self.stop_button.clicked.connect(self.stop)
        row.addWidget(self.run_button)
        row.addWidget(self.stop_button)
        layout.addLayout(row)
        self.status = QLabel("Check two or more models, write a prompt and press Run.")
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # sentences name models and files: never markup
        self.status.setAccessibleName("Comparison status")
        self.status.setWordWrap(True)
        self.status.setStyleSheet("color: palette(placeholder-text);")
        layout.addWidget(self.status)

        nav = QHBoxLayout()
        self.prev_button = QPushButton(icon("previous"), "")  # icons: drawn whatever fonts the system has
        self.prev_button.setAccessibleName("Previous prompt")
        self.prev_button.setToolTip("Previous prompt")
        self.prev_button.clicked.connect(lambda: self._step(-1))
        self.next_button = QPushButton(icon("next"), "")
        self.next_button.setAccessibleName("Next prompt")
        self.next_button.setToolTip("Next prompt")
        self.next_button.clicked.connect(lambda: self._step(1))
        self.prompt_label = QLabel()
        self.prompt_label.setTextFormat(Qt.TextFormat.PlainText)
        self.prompt_label.setAccessibleName("Prompt shown")
        self.prompt_label.setWordWrap(True)
        for w in (self.prev_button, self.next_button):
            w.setFixedWidth(36)
        nav.addWidget(self.prev_button)
        nav.addWidget(self.prompt_label, 1)
        nav.addWidget(self.next_button)
        self.nav = QWidget()
        self.nav.setLayout(nav)
        nav.setContentsMargins(0, 0, 0, 0)
        self.nav.hide()
        layout.addWidget(self.nav)

        self.columns_host = QWidget()
        self.columns_layout = QHBoxLayout(self.columns_host)
        self.columns_layout.setContentsMargins(0, 0, 0, 0)
        self.columns_layout.setSpacing(8)
        scroll = QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setFrameShape(QFrame.Shape.NoFrame)
        scroll.setWidget(self.columns_host)
        scroll.setAccessibleName("Answers side by side")
        # Side by side while they fit; one under another when they do not, scrolling down, never sideways.
        scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.answers_scroll = scroll
        scroll.viewport().installEventFilter(self)  # its width decides: side by side, or stacked
        layout.addWidget(scroll, 1)

        self.batch_table = QTableWidget(0, len(SUMMARY_HEADERS))
        self.batch_table.setAccessibleName("Summary per model")
        self.batch_table.setHorizontalHeaderLabels(SUMMARY_HEADERS)
        self.batch_table.verticalHeader().hide()
        self.batch_table.horizontalHeader().setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        self.batch_table.horizontalHeader().setStretchLastSection(True)
        self.batch_table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.batch_table.setMaximumHeight(130)
        self.batch_table.hide()
        layout.addWidget(self.batch_table)
        self.summary = QLabel()
        self.summary.setTextFormat(Qt.TextFormat.PlainText)
        self.summary.setAccessibleName("Summary of your comparisons")
        self.summary.setWordWrap(True)
        self.summary.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        layout.addWidget(self.summary)
        return main

    # --- Refreshing what the page offers
    def refresh(self) -> None:
        """Read the models, prompt sets and saved comparisons again (the page is shown)."""
        self.refresh_models()
        self.refresh_sets()
        self.refresh_saved()
        self.refresh_summary()
        if any(True for _ in self._remote_servers()):
            run_in_background(remote_choices, self._remote_ready, self._remote_failed, context=self)

    @staticmethod
    def _remote_failed(exc: BaseException) -> None:
        # Each server's own failure is listed by remote_choices; this is a bug in the listing itself.
        log.warning("listing the remote models for Compare failed: %s", exc, exc_info=exc)

    @staticmethod
    def _remote_servers():
        from assistant import remotes

        try:
            return remotes.list_remotes()
        except UserError as exc:
            log.warning("could not read the remote servers: %s", exc)
            return []

    def _remote_ready(self, found) -> None:
        self._remote, self._remote_problems = found
        self.refresh_models()

    def refresh_models(self) -> None:
        loaded = (self._current_model() or {}).get("spec") or (self._current_model() or {}).get("name")
        choices = compare_choices(loaded)
        if self._checked is None:
            self._checked = self._default_checks(choices, loaded)
        typed = [s for s in self._typed if s not in {c.spec for c in choices + self._remote}]
        self.model_list.blockSignals(True)
        self.model_list.clear()
        groups = (("family", "Sizes of the loaded model's family"), ("installed", "Installed"),
                  ("remote", "Remote servers"), ("typed", "Added"))
        items = [*choices, *self._remote, *(ModelChoice(s, s, "typed") for s in typed)]
        for group, title in groups:
            members = [c for c in items if c.group == group]
            if not members and not (group == "remote" and self._remote_problems):
                continue
            header = QListWidgetItem(title)
            header.setFlags(Qt.ItemFlag.NoItemFlags)
            font = QFont(header.font())
            font.setBold(True)
            header.setFont(font)
            self.model_list.addItem(header)
            for c in members:
                self.model_list.addItem(self._model_item(c, loaded))
            if group == "remote":
                for problem in self._remote_problems:
                    item = QListWidgetItem(f"  {problem}")
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                    item.setToolTip(_tip(problem))
                    self.model_list.addItem(item)
        self.model_list.blockSignals(False)

    def _model_item(self, c: ModelChoice, loaded: str | None) -> QListWidgetItem:
        text = c.label
        if c.spec and c.spec == loaded:
            text += " · loaded"
        if c.is_base:
            text += " · base model"
        item = QListWidgetItem(text)
        item.setData(SPEC_ROLE, c.spec)
        if c.spec is None:  # a family size not installed: shown, so the choice is visible
            item.setText(f"{c.label} · not installed")
            item.setFlags(Qt.ItemFlag.NoItemFlags)
            item.setToolTip("Download it from Models… to compare it.")
        else:
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(Qt.CheckState.Checked if c.spec in (self._checked or set())
                               else Qt.CheckState.Unchecked)
            item.setToolTip(_tip(c.spec + (" · continues text, does not follow instructions" if c.is_base else "")))
        return item

    @staticmethod
    def _default_checks(choices: list[ModelChoice], loaded: str | None) -> set[str]:
        """The loaded model and the smallest other installed size of its family, else the starter."""
        checked = {loaded} if loaded else set()
        family = [c for c in choices if c.group == "family" and c.spec and c.spec != loaded]
        other = min(family, key=lambda c: c.params or 0).spec if family else "starter"
        if other and other != loaded:
            checked.add(other)
        return {c for c in checked if c}

    def _add_typed_model(self) -> None:
        spec = self.add_edit.text().strip()
        if not spec:
            return
        if spec not in self._typed:
            self._typed.append(spec)
        self._checked = (self._checked or set()) | {spec}
        self.add_edit.clear()
        self.refresh_models()

    def _model_checked(self, item: QListWidgetItem) -> None:
        spec = item.data(SPEC_ROLE)
        if not spec:
            return
        self._checked = set(self._checked or set())
        if item.checkState() == Qt.CheckState.Checked:
            self._checked.add(spec)
        else:
            self._checked.discard(spec)

    def checked_models(self) -> list[str]:
        """The checked models, in the list's order."""
        out = []
        for i in range(self.model_list.count()):
            item = self.model_list.item(i)
            spec = item.data(SPEC_ROLE)
            if spec and item.checkState() == Qt.CheckState.Checked and spec not in out:
                out.append(spec)
        return out

    def set_checked(self, specs: list[str]) -> None:
        self._checked = set(specs)
        self.refresh_models()

    def refresh_sets(self) -> None:
        current = self.sets_combo.currentText()
        self.sets_combo.clear()
        try:
            sets = self.compare.prompt_sets.all()
        except UserError as exc:
            self._say(str(exc))
            sets = []
        for s in sets:
            self.sets_combo.addItem(f"{s.name} ({len(s.prompts)})", s.name)
        index = self.sets_combo.findText(current)
        if index >= 0:
            self.sets_combo.setCurrentIndex(index)
        has = bool(sets)
        self.sets_combo.setEnabled(has)
        self.delete_set_button.setEnabled(has)
        self.run_set_button.setEnabled(has and self.run is None)
        if not has:
            self.sets_combo.addItem("No prompt sets yet")

    def refresh_saved(self) -> None:
        query = self.saved_search.text().strip()
        self.saved_list.clear()
        try:
            if query:
                hits = self.history.search_comparisons(query, limit=50, highlight=("", ""))
                seen: set[int] = set()
                for h in hits:
                    if h.comparison_id in seen:
                        continue
                    seen.add(h.comparison_id)
                    where = "prompt" if h.answer_id is None else h.model
                    self._saved_item(h.comparison_id, f"{_one_line(h.prompt, 60)}\n{where}: {_one_line(h.snippet, 70)}")
                if not hits:
                    item = QListWidgetItem("No comparison matches.")
                    item.setFlags(Qt.ItemFlag.NoItemFlags)
                    self.saved_list.addItem(item)
                return
            for c in self.history.list_comparisons(limit=SAVED_SHOWN):
                marks = ", ".join(f"{display_name(a.model)}{_mark(a)}" for a in c.answers)
                where = f" · {c.prompt_set}" if c.prompt_set else ""
                self._saved_item(c.id, f"{_one_line(c.prompt, 60)}\n{marks}{where}")
        except UserError as exc:
            self._say(str(exc))

    def _saved_item(self, comparison_id: int, text: str) -> None:
        item = QListWidgetItem(text)
        item.setData(SPEC_ROLE, comparison_id)
        self.saved_list.addItem(item)

    def refresh_summary(self) -> None:
        """One sentence per pair of models (those shown first), from every saved comparison."""
        try:
            pairs = pair_summaries(self.history.list_comparisons(limit=None))
        except UserError as exc:
            self._say(str(exc))
            return
        shown = set(self.models)
        if shown:
            pairs = [p for p in pairs if p.subject in shown and p.other in shown] or pairs
        self.summary_sentences = [p.sentence for p in pairs[:3]]
        self.summary.setText("\n".join(self.summary_sentences))

    # --- Running
    def start(self) -> None:
        prompt = self.prompt_edit.toPlainText().strip()
        models = self.checked_models()
        if not prompt:
            self._say("Write a prompt first.")
            return
        if len(models) < 2:
            self._say("Check at least two models to compare.")
            return
        system = self.system_edit.text().strip() or None
        self._begin(lambda: self.compare.start(
            CompareRequest(prompts=[prompt], models=models, system_prompt=system,
                           settings=self._generation_settings(), load_settings=self._load_settings(),
                           restore_model=True), listener=self._relay.arrived.emit), models, [prompt])

    def run_set(self) -> None:
        name = self.sets_combo.currentData()
        models = self.checked_models()
        if not name:
            self._say("Make a prompt set first (New set…).")
            return
        if len(models) < 2:
            self._say("Check at least two models to compare.")
            return
        try:
            prompts = self.compare.prompt_sets.get(name).prompts
        except UserError as exc:
            self._say(str(exc))
            return
        self._begin(lambda: self.compare.start_set(
            name, models, listener=self._relay.arrived.emit, settings=self._generation_settings(),
            load_settings=self._load_settings(), restore_model=True), models, prompts)

    def rerun_selected(self) -> None:
        item = self.saved_list.currentItem()
        cid = item.data(SPEC_ROLE) if item is not None else None
        models = self.checked_models()
        if cid is None:
            self._say("Pick a saved comparison first.")
            return
        if len(models) < 2:
            self._say("Check at least two models to run it on.")
            return
        try:
            saved = self.history.get_comparison(cid)
        except UserError as exc:
            self._say(str(exc))
            return
        self.prompt_edit.setPlainText(saved.prompt)
        self.system_edit.setText(saved.system_prompt or "")
        self._begin(lambda: self.compare.rerun(cid, models, listener=self._relay.arrived.emit,
                                               load_settings=self._load_settings(), restore_model=True),
                    models, [saved.prompt])

    def _begin(self, start: Callable[[], Any], models: list[str], prompts: list[str]) -> None:
        if self.run is not None:
            return
        self._show_layout(models, prompts, [None] * len(prompts))
        self._follow_run = True
        try:
            self.run = start()
        except UserError as exc:
            self._say(str(exc))
            return
        for column in self.columns:
            column.set_status("waiting")
        self._set_running(True)
        self._say(f"Comparing {len(models)} models, one after another…")

    def stop(self) -> None:
        if self.run is not None:
            self.run.cancel()
            self._say("Stopping: what finished is kept…")

    def _set_running(self, running: bool) -> None:
        self.run_button.setEnabled(not running)
        self.rerun_button.setEnabled(not running)
        self.run_set_button.setEnabled(not running and self.sets_combo.currentData() is not None)
        self.stop_button.setEnabled(running)

    def _on_event(self, event: Any) -> None:
        if isinstance(event, RunDone):
            self._finished(event.result)
            return
        if isinstance(event, RunFailed):
            self.run = None
            self._set_running(False)
            self._say(event.sentence)
            self.refresh_saved()
            return
        key = (event.prompt_index, event.model_index)
        cell = self.cells.setdefault(key, {"text": "", "status": "waiting"})
        if isinstance(event, AnswerStarted) and self._follow_run and event.prompt_index != self.prompt_index:
            self._show_prompt(event.prompt_index)
        column = self.columns[event.model_index] if event.prompt_index == self.prompt_index else None
        n = len(self.models)
        if isinstance(event, AnswerLoading):
            cell["status"] = "loading…"
            self._say(f"Loading {display_name(event.model)} ({event.model_index + 1} of {n})…")
        elif isinstance(event, AnswerStarted):
            cell["status"] = "answering…"
            where = f", prompt {event.prompt_index + 1} of {len(self.prompts)}" if len(self.prompts) > 1 else ""
            self._say(f"{display_name(event.model)} is answering ({event.model_index + 1} of {n}{where})…")
        elif isinstance(event, AnswerText) and event.kind == "thinking":
            cell["status"] = "thinking…"  # the thinking's tokens and time show in the figures when it is done
            if column is not None:
                column.set_status("thinking…")
            return
        elif isinstance(event, AnswerText):
            cell["text"] += event.text
            if column is not None:
                column.append(event.text)
            return
        elif isinstance(event, AnswerDone):
            answer = event.answer
            if answer is None:
                cell["status"] = "not run"
            else:
                cell.update(text=answer.text, stats=answer.stats, status=answer.status, error=answer.error,
                            answer_id=answer.answer_id, verdict=None, best=False)
            if column is not None:
                self._fill(column, cell)
            return
        if column is not None:
            column.set_status(cell["status"])

    def _finished(self, result) -> None:
        self.run = None
        self.comparison_ids = list(result.comparison_ids)
        self._set_running(False)
        failed = [display_name(m) for m in result.models
                  if any(a is not None and not a.ok for a in result.column(result.models.index(m)))]
        said = "Stopped: what finished is kept." if result.cancelled else "Done."
        if failed:
            said += f" {', '.join(failed)} failed (hover its status for why)."
        if result.save_error:
            said += f" Not saved: {result.save_error}"
        elif any(self.comparison_ids):
            said += " Saved; mark each answer good enough or not."
        self._say(said)
        self.refresh_saved()
        self.refresh_summary()
        self._update_batch_table()
        self.runFinished.emit(result)

    # --- Showing comparisons (live or saved)
    def _show_layout(self, models: list[str], prompts: list[str], comparison_ids: list[int | None]) -> None:
        self.models, self.prompts, self.comparison_ids = list(models), list(prompts), list(comparison_ids)
        self.cells = {}
        self.prompt_index = 0
        self._show_prompt(0)

    def _show_prompt(self, index: int) -> None:
        self.prompt_index = index
        for column in self.columns:
            column.setParent(None)
            column.deleteLater()
        self.columns = []
        for m, spec in enumerate(self.models):
            column = AnswerColumn(spec, self._renderer)
            column.verdictChosen.connect(self._verdict)
            column.bestChosen.connect(self._best)
            cell = self.cells.get((index, m))
            if cell is not None:
                if "stats" in cell or cell.get("status") in ("error", "not run"):
                    self._fill(column, cell)
                else:
                    column.set_text(cell["text"])
                    column.set_status(cell["status"])
            self.columns_layout.addWidget(column)
            self.columns.append(column)
        self.fit_columns()
        many = len(self.prompts) > 1
        self.nav.setVisible(many)
        self.batch_table.setVisible(many)
        if self.prompts:
            prefix = f"Prompt {index + 1} of {len(self.prompts)}: " if many else ""
            self.prompt_label.setText(prefix + _one_line(self.prompts[index], 140))
        self.prev_button.setEnabled(index > 0)
        self.next_button.setEnabled(index < len(self.prompts) - 1)

    def _fill(self, column: AnswerColumn, cell: dict[str, Any]) -> None:
        column.set_text(cell.get("text", ""))
        column.finish(cell.get("stats"), cell.get("status", "complete"), cell.get("error"), cell.get("answer_id"))
        column.set_verdict(cell.get("verdict"), bool(cell.get("best")))

    def _step(self, delta: int) -> None:
        index = self.prompt_index + delta
        if 0 <= index < len(self.prompts):
            self._follow_run = False
            self._show_prompt(index)

    def _open_saved_item(self, item: QListWidgetItem) -> None:
        cid = item.data(SPEC_ROLE)
        if cid is not None and self.run is None:
            self.show_saved(cid)

    def show_saved(self, comparison_id: int) -> None:
        """Show a saved comparison (a whole batch, when it ran in one) for review."""
        try:
            first = self.history.get_comparison(comparison_id)
            group = (self.history.list_comparisons(limit=None, batch=first.batch, oldest_first=True)
                     if first.batch else [first])
        except UserError as exc:
            self._say(str(exc))
            return
        models: list[str] = []
        for c in group:
            models += [a.model for a in c.answers if a.model not in models]
        self.models, self.prompts = models, [c.prompt for c in group]
        self.comparison_ids = [c.id for c in group]
        self.cells = {}
        for p, c in enumerate(group):
            for a in c.answers:
                self.cells[(p, models.index(a.model))] = {
                    "text": a.content, "stats": a.stats or {}, "status": a.status, "error": a.error,
                    "answer_id": a.id, "verdict": a.verdict, "best": a.best}
        self.prompt_edit.setPlainText(first.prompt)
        self.system_edit.setText(first.system_prompt or "")
        self._show_prompt(next(p for p, c in enumerate(group) if c.id == comparison_id))
        self._update_batch_table()
        self.refresh_summary()
        seed = (first.settings or {}).get("seed")
        self._say(f"Saved comparison {first.id}" + (f" · seed {seed}" if seed is not None else "")
                  + (f" · prompt set {first.prompt_set}" if first.prompt_set else ""))

    # --- Verdicts
    def _verdict(self, column: AnswerColumn, verdict: str | None) -> None:
        if column.answer_id is None:
            return
        try:
            saved = self.compare.set_verdict(column.answer_id, verdict)
        except UserError as exc:
            self._say(str(exc))
            saved = None
        cell = self.cells.get((self.prompt_index, self.columns.index(column)), {})
        if saved is not None:
            cell.update(verdict=saved.verdict, best=saved.best)
        column.set_verdict(cell.get("verdict"), bool(cell.get("best")))
        self._verdicts_changed()

    def _best(self, column: AnswerColumn, picked: bool) -> None:
        cid = self.comparison_ids[self.prompt_index] if self.prompt_index < len(self.comparison_ids) else None
        if column.answer_id is None or cid is None:
            column.best.setChecked(False)
            return
        try:
            saved = self.compare.set_best(cid, column.answer_id if picked else None)
        except UserError as exc:
            self._say(str(exc))
            return
        by_id = {a.id: a for a in saved.answers}
        for m, col in enumerate(self.columns):
            a = by_id.get(col.answer_id)
            if a is not None:
                self.cells.setdefault((self.prompt_index, m), {}).update(verdict=a.verdict, best=a.best)
                col.set_verdict(a.verdict, a.best)
        self._verdicts_changed()

    def _verdicts_changed(self) -> None:
        self.refresh_summary()
        self._update_batch_table()
        self.refresh_saved()

    def _update_batch_table(self) -> None:
        if len(self.prompts) < 2:
            return
        rows = []
        for p in range(len(self.prompts)):
            row = {}
            for m, spec in enumerate(self.models):
                cell = self.cells.get((p, m))
                if cell is None or "stats" not in cell:
                    continue
                good = True if cell.get("best") or cell.get("verdict") == "good" else (
                    False if cell.get("verdict") == "not_good" else None)
                row[spec] = Cell(cell.get("stats") or {}, cell.get("status") != "error", good)
            rows.append(row)
        summary = summarize_models(rows, self.models)
        self.batch_table.setRowCount(len(summary))
        for r, model_row in enumerate(summary):
            for c, text in enumerate(model_row.cells()):
                self.batch_table.setItem(r, c, QTableWidgetItem(text))

    # --- Prompt sets
    def new_set(self) -> None:
        dialog = PromptSetDialog(self.prompt_edit.toPlainText().strip(), self)
        while dialog.exec():
            name, prompts, system = dialog.values()
            try:  # through the core, as every write to the history
                saved = self.compare.prompt_sets.save(name, prompts, system_prompt=system)
            except UserError as exc:
                QMessageBox.warning(self, "Prompt set", str(exc))
                continue
            self.refresh_sets()
            self.sets_combo.setCurrentIndex(max(0, self.sets_combo.findData(saved.name)))
            self._say(f"Saved the prompt set {saved.name} ({format_count(len(saved.prompts), 'prompt')}).")
            return

    def delete_set(self) -> None:
        name = self.sets_combo.currentData()
        if not name:
            return
        answer = QMessageBox.question(self, "Prompt set", f"Delete the prompt set {name!r}? Its saved "
                                      "comparisons stay.")
        if answer != QMessageBox.StandardButton.Yes:
            return
        try:
            self.compare.prompt_sets.delete(name)
        except UserError as exc:
            self._say(str(exc))
        self.refresh_sets()

    @property
    def stacked(self) -> bool:
        return self.columns_layout.direction() == QBoxLayout.Direction.TopToBottom

    def fit_columns(self) -> None:
        """Side by side when every answer gets its minimum width, else one under another; figures two
        a row in a wide answer, one in a narrow one."""
        width = self.answers_scroll.viewport().width()
        n = max(1, len(self.columns))
        spacing = self.columns_layout.spacing()
        side_by_side = n * COLUMN_MIN_WIDTH + (n - 1) * spacing <= width
        self.columns_layout.setDirection(QBoxLayout.Direction.LeftToRight if side_by_side
                                         else QBoxLayout.Direction.TopToBottom)
        column_width = (width - (n - 1) * spacing) // n if side_by_side else width
        for column in self.columns:
            column.setMinimumHeight(0 if side_by_side else STACKED_MIN_HEIGHT)
            column.arrange_figures(2 if column_width >= TWO_FIGURES_FROM else 1)

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        if self.width() < NARROW_PAGE and not self._narrowed:  # the side list gives the answers room
            self._narrowed = True
            self.splitter.setSizes([NARROW_SIDE, max(1, self.width() - NARROW_SIDE)])
        elif self.width() >= NARROW_PAGE and self._narrowed:
            self._narrowed = False
            self.splitter.setSizes([290, max(1, self.width() - 290)])

    def eventFilter(self, watched, event) -> bool:  # noqa: N802 - Qt's name
        if event.type() == QEvent.Type.Resize and watched is self.answers_scroll.viewport():
            self.fit_columns()
        return super().eventFilter(watched, event)

    def set_dark(self, dark: bool) -> None:
        """Answers' code colours follow the theme (the window calls this when it changes)."""
        self._renderer = MarkdownRenderer(dark=dark)
        for column in self.columns:
            column._renderer = self._renderer
            column._render()

    # --- Helpers
    def _say(self, text: str) -> None:
        self.status.setText(text)

    def column_texts(self) -> list[str]:
        return [c.text for c in self.columns]

    def closeEvent(self, event) -> None:
        if self.run is not None:
            self.run.cancel()
        super().closeEvent(event)


def _tip(text: str) -> str:
    """A tooltip that shows `text` as it is: Qt would read a name like "<b>x</b>" as markup."""
    return f"<p>{html.escape(text)}</p>"


def _one_line(text: str, limit: int) -> str:
    words = " ".join(str(text).split())
    return words if len(words) <= limit else words[: limit - 1].rstrip() + "…"


def _mark(answer) -> str:
    if answer.best:
        return " ★"
    return {"good": " ✓", "not_good": " ✗"}.get(answer.verdict or "", "")
