"""The statistics view: how fast each model runs here. It draws; the statistics service computes.

    view = StatsView(services.stats, BenchmarkBridge(services.stats), load_settings=window_load_settings)
    view.refresh()      # redraws everything from a fresh snapshot of the history

The charts' series, medians and hover texts come from `StatsService.snapshot()`;
the memory-bandwidth figure from `StatsService.memory_bandwidth()`, called once
off the GUI thread (the size chart is drawn without its limit line until it
arrives); benchmarks run through the bridge, which the Cancel button stops
between steps.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime
from typing import Any

from PySide6.QtCore import QEvent, QItemSelectionModel, Qt, Slot
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QFrame,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
    QScrollArea,
    QSplitter,
    QStyle,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTableWidget,
    QTableWidgetItem,
    QTreeWidget,
    QTreeWidgetItem,
    QVBoxLayout,
    QWidget,
)

from assistant.busy import BUSY_MARK, BUSY_TIP, benchmark_is_busy
from assistant.stats_series import METRICS, StatsSnapshot
from common.errors import UserError
from common.formatting import format_byte_rate, format_bytes, format_count, format_number
from ui.charts import SizeChart, TimeChart, is_dark, model_colors, plain_tooltip
from ui.icons import icon
from ui.workers import run_in_background

log = logging.getLogger(__name__)

ALL_MODELS = "All models"
CHART_MIN_HEIGHT = 210  # px: a chart below this is a sliver; the page scrolls instead
ONE_CHART_A_ROW_BELOW = 820  # px of the view's width: narrower, the charts stack one a row
PP_TIP = ("pp: prompt processing. Tokens per second while the model reads a prompt in one go, as llama-bench's "
          "pp measures it: how long a long prompt waits before the reply starts.")
TG_TIP = ("tg: text generation. Tokens per second while the model writes, one token after another, as "
          "llama-bench's tg measures it: how fast a reply streams.")
BENCH_LEGEND = "pp = prompt processing (reading the prompt), tg = text generation (writing the reply), " \
               "both in tokens per second; higher is faster. Hover a header for more."
# header, benchmarks() key, how to show it (None: written out in _fill_table), tooltip
BENCH_COLUMNS: tuple[tuple[str, str, Callable[[Any], str] | None, str], ...] = (
    ("Model", "model", str, "The model benchmarked (hover a name for all of it and its file)"),
    ("Quant", "quant", str, "How its weights are stored (quantization)"),
    ("pp t/s", "pp_tps", format_number, PP_TIP),
    ("tg t/s", "tg_tps", format_number, TG_TIP),
    ("Weights", "weights_bytes", format_bytes, "Memory the model's weights take"),
    ("KV cache", "kv_bytes", format_bytes, "Memory the context (the KV cache) takes"),
    ("Compute", "compute_bytes", format_bytes, "llama.cpp's working memory"),
    ("RSS", "rss_bytes", format_bytes, "All the memory the model's process held"),
    ("Ran on", "threads", None, "The backend and the number of CPU threads"),
    ("When", "created_at", None, "When it ran (local time)"),
)


class _Cell(QTableWidgetItem):
    """A read-only cell that sorts by its value, not its text ("9.5" before "10.2")."""

    def __init__(self, text: str, key):
        super().__init__(text)
        self.key = key
        self.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable)

    def __lt__(self, other):
        a, b = self.key, getattr(other, "key", None)
        if a is None or b is None:
            return a is None and b is not None
        try:
            return a < b
        except TypeError:
            return str(a) < str(b)


class _CheckDelegate(QStyledItemDelegate):
    """Outlines check boxes on dark palettes, where Fusion draws an unchecked box invisible (dark on dark)."""

    def paint(self, painter, option, index) -> None:
        super().paint(painter, option, index)
        if index.data(Qt.ItemDataRole.CheckStateRole) is None or not is_dark(option.palette):
            return
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        style = opt.widget.style() if opt.widget is not None else QApplication.style()
        rect = style.subElementRect(QStyle.SubElement.SE_ItemViewItemCheckIndicator, opt, opt.widget)
        color = QColor(option.palette.color(QPalette.ColorRole.Text))
        color.setAlphaF(0.6)
        painter.save()
        painter.setPen(color)
        painter.setBrush(Qt.BrushStyle.NoBrush)
        painter.drawRect(rect.adjusted(1, 1, -2, -2))
        painter.restore()


class StatsView(QWidget):
    def __init__(self, stats, benchmarks=None, parent=None, *, load_settings: Callable[[], object] | None = None):
        """`stats`: the StatsService; `benchmarks`: a ui.bridge.BenchmarkBridge (None: no Benchmark button);
        `load_settings`: gives the LoadSettings benchmarks load models with (None: the engine's defaults)."""
        super().__init__(parent)
        self.stats = stats
        self.benchmarks = benchmarks
        self._load_settings = load_settings
        self.snapshot: StatsSnapshot | None = None
        self.bandwidth: float | None = None
        self._bandwidth_asked = False
        self._running = False
        self._theming = False
        self._colors: dict[str, QColor] = {}
        self._build()
        self._apply_palette()
        if benchmarks is not None:
            benchmarks.benchmarkStarted.connect(self.on_benchmark_started)
            benchmarks.benchmarkProgress.connect(self.on_benchmark_progress)
            benchmarks.benchmarkFinished.connect(self.on_benchmark_finished)
        self.refresh()

    # --- building -------------------------------------------------------------------------

    def _build(self) -> None:
        self.model_filter = QComboBox()
        self.model_filter.setAccessibleName("Model shown in the charts over time")
        self.model_filter.setToolTip("Show one model's replies over time, or all of them")
        self.model_filter.setMinimumContentsLength(26)
        self.model_filter.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
        filter_label = QLabel("&Model:")
        filter_label.setBuddy(self.model_filter)
        self.model_filter.currentIndexChanged.connect(self._redraw_time_charts)
        self.legend = QLabel()
        self.legend.setTextFormat(Qt.TextFormat.RichText)
        self.legend.setWordWrap(True)
        self.legend.setAccessibleName("Model colours")
        self.refresh_button = QPushButton("&Refresh")
        self.refresh_button.setAccessibleName("Refresh statistics")
        self.refresh_button.setToolTip("Redraw the charts from the chat history")
        self.refresh_button.clicked.connect(self.refresh)
        top = QHBoxLayout()
        top.addWidget(filter_label)
        top.addWidget(self.model_filter)
        top.addSpacing(12)
        top.addWidget(self.legend, 1)
        top.addWidget(self.refresh_button)
        self.note = QLabel()  # what the medians leave out, and why
        self.note.setTextFormat(Qt.TextFormat.PlainText)
        self.note.setWordWrap(True)
        self.note.setAccessibleName("What the medians leave out")
        self.thinking = QLabel()  # reasoning models: the share of tokens and the time they spend thinking
        self.thinking.setTextFormat(Qt.TextFormat.PlainText)
        self.thinking.setWordWrap(True)
        self.thinking.setAccessibleName("Thinking of reasoning models")
        self.thinking.setToolTip("Tokens a reasoning model spent thinking before it answered, as a share of all "
                                 "the tokens it generated, and how long a reply thought")
        self.verdicts = QLabel()  # what the saved comparisons say, a sentence per pair of models
        self.verdicts.setTextFormat(Qt.TextFormat.PlainText)  # model names are text, never markup
        self.verdicts.setWordWrap(True)
        self.verdicts.setAccessibleName("What your comparisons say")
        self.verdicts.setToolTip("From the answers you marked good enough on the Compare page")
        self.drafting = QLabel()  # per model and draft: acceptance, speed with and without drafting
        self.drafting.setTextFormat(Qt.TextFormat.PlainText)
        self.drafting.setWordWrap(True)
        self.drafting.setAccessibleName("What drafting does for each model")
        self.drafting.setToolTip("Speculative decoding: a smaller model (or prompt lookup) drafts, the model checks")

        self.speed_chart = TimeChart(METRICS["gen_tps"].title, "tokens/s",
                                     "No replies yet: chat with a model and its speed appears here.")
        self.size_chart = SizeChart("Speed against model size (this machine)", "No replies with a model size yet.")
        self.prompt_chart = TimeChart(METRICS["prompt_tps"].title, "tokens/s", "No prompt speeds yet.")
        self.ttft_chart = TimeChart(METRICS["ttft_ms"].title, "ms", "No first-token times yet.")
        for chart in self.charts():
            chart.widget.setMinimumHeight(CHART_MIN_HEIGHT)
        self.charts_box = QWidget()
        self.charts_grid = QGridLayout(self.charts_box)
        self.charts_grid.setContentsMargins(0, 0, 0, 0)
        self.charts_grid.setSpacing(6)
        self.chart_columns = 0
        self._lay_out_charts(2)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(self.charts_box)
        splitter.addWidget(self._build_benchmarks())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([650, 350])  # proportions: the charts get about two thirds
        # A short window keeps every chart readable: below their minimum height the page scrolls.
        self.scroll = QScrollArea()
        self.scroll.setWidgetResizable(True)
        self.scroll.setFrameShape(QFrame.Shape.NoFrame)
        self.scroll.setHorizontalScrollBarPolicy(Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        self.scroll.setWidget(splitter)
        self.scroll.setAccessibleName("Charts and benchmarks")
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(self.note)
        layout.addWidget(self.thinking)
        layout.addWidget(self.verdicts)
        layout.addWidget(self.drafting)
        layout.addWidget(self.scroll, 1)
        self.setAccessibleName("Statistics")

    def _lay_out_charts(self, columns: int) -> None:
        """Two charts a row in a wide window, one in a narrow one (each keeps its title whole)."""
        if columns == self.chart_columns:
            return
        self.chart_columns = columns
        for chart in self.charts():
            self.charts_grid.removeWidget(chart.widget)
        for i, chart in enumerate(self.charts()):
            self.charts_grid.addWidget(chart.widget, i // columns, i % columns)
        rows = (len(self.charts()) + columns - 1) // columns
        self.charts_box.setMinimumHeight(rows * CHART_MIN_HEIGHT + (rows - 1) * self.charts_grid.spacing())

    def resizeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        super().resizeEvent(event)
        self._lay_out_charts(1 if self.width() < ONE_CHART_A_ROW_BELOW else 2)

    def _build_benchmarks(self) -> QWidget:
        box = QGroupBox("Benchmarks")
        box.setMinimumHeight(220)  # the list and a few rows of results, however short the window
        self.model_list = QTreeWidget()
        self.model_list.setAccessibleName("Models to benchmark")
        self.model_list.setAccessibleDescription("Check the models to benchmark; Space checks the current one")
        self.model_list.setHeaderLabels(["Installed model", "Size"])
        self.model_list.setRootIsDecorated(False)
        self.model_list.header().setAccessibleName("Installed model columns")
        self.model_list.setUniformRowHeights(True)
        self.model_list.setSelectionMode(QAbstractItemView.SelectionMode.SingleSelection)
        self.model_list.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.model_list.header().setStretchLastSection(False)
        self.model_list.header().setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        self.model_list.header().setSectionResizeMode(1, QHeaderView.ResizeMode.ResizeToContents)
        self.model_list.itemChanged.connect(self._update_buttons)
        self.model_list.setItemDelegate(_CheckDelegate(self.model_list))
        self.model_list.setMaximumWidth(240)
        self.bench_button = QPushButton("&Benchmark")
        self.bench_button.setAccessibleName("Benchmark")
        self.bench_button.setAccessibleDescription("Run the benchmark on the checked models, one after another")
        self.bench_button.setToolTip("Measure prompt processing (pp) and text generation (tg) of the checked models")
        self.bench_button.clicked.connect(self.start_benchmark)
        self.cancel_button = QPushButton("&Cancel")
        self.cancel_button.setAccessibleName("Cancel the benchmark")
        self.cancel_button.setToolTip("Stop the benchmark after the step under way; finished models are kept")
        self.cancel_button.clicked.connect(self.cancel_benchmark)
        self.cancel_button.hide()
        buttons = QHBoxLayout()
        buttons.addWidget(self.bench_button, 1)
        buttons.addWidget(self.cancel_button, 1)
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Benchmark progress")
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.progress.hide()
        self.status = QLabel("Check models, then press Benchmark." if self.benchmarks is not None
                             else "Benchmarks need the engine.")
        self.status.setTextFormat(Qt.TextFormat.PlainText)  # model names and errors are not markup
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Benchmark status")
        left = QVBoxLayout()
        pick = QLabel("Mo&dels to benchmark:")
        pick.setBuddy(self.model_list)
        left.addWidget(pick)
        left.addWidget(self.model_list, 1)
        left.addLayout(buttons)
        left.addWidget(self.progress)
        left.addWidget(self.status)

        self.table = QTableWidget(0, len(BENCH_COLUMNS))
        self.table.setAccessibleName("Benchmark results")
        self.table.setAccessibleDescription("One row per benchmark: prompt processing (pp) and text generation (tg) "
                                            "speed in tokens per second, and memory")
        for j, (title, _, _, tip) in enumerate(BENCH_COLUMNS):
            item = QTableWidgetItem(title)
            item.setToolTip(tip)
            self.table.setHorizontalHeaderItem(j, item)
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setAccessibleName("Benchmark columns; click one to sort by it")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setSortingEnabled(True)
        self.table.setTabKeyNavigation(False)  # Tab leaves the table; arrows move within it
        header = self.table.horizontalHeader()
        # The figures take what they need; the model's name takes the rest, elided in the middle
        # (its tooltip has all of it), so the table fits its width without scrolling sideways.
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        header.setStretchLastSection(False)
        header.setMinimumSectionSize(40)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
        self.table.sortByColumn(len(BENCH_COLUMNS) - 1, Qt.SortOrder.DescendingOrder)  # newest first
        self.table_empty = QLabel("No benchmarks yet.")
        self.bench_legend = QLabel(BENCH_LEGEND)
        self.bench_legend.setWordWrap(True)
        self.bench_legend.setAccessibleName("What pp and tg mean")
        right = QVBoxLayout()
        right.addWidget(self.table, 1)
        right.addWidget(self.table_empty)
        right.addWidget(self.bench_legend)
        row = QHBoxLayout(box)
        row.addLayout(left)
        row.addLayout(right, 1)
        return box

    def charts(self) -> tuple:
        return self.speed_chart, self.size_chart, self.prompt_chart, self.ttft_chart

    # --- benchmarks -----------------------------------------------------------------------

    def checked_models(self) -> list[str]:
        items = (self.model_list.topLevelItem(i) for i in range(self.model_list.topLevelItemCount()))
        return [it.data(0, Qt.ItemDataRole.UserRole) for it in items
                if it is not None and it.checkState(0) == Qt.CheckState.Checked]

    @Slot()
    def start_benchmark(self) -> None:
        specs = self.checked_models()
        if not specs or self._running or self.benchmarks is None:
            return
        settings = self._load_settings() if self._load_settings is not None else None
        self.benchmarks.benchmark(specs, settings)  # benchmarkStarted arrives before this returns

    @Slot()
    def cancel_benchmark(self) -> None:
        if self._running and self.benchmarks is not None:
            self.benchmarks.cancel()
            self.cancel_button.setEnabled(False)
            self.status.setText("Stopping after the step under way…")

    @Slot(int)
    def on_benchmark_started(self, models: int) -> None:
        self._running = True
        self.progress.setRange(0, 0)  # busy until the first step says how many there are
        self.progress.show()
        self.cancel_button.setEnabled(True)
        self.cancel_button.show()
        self.status.setText(f"Waiting for the engine to benchmark {_count(models, 'model')}…")
        self._update_buttons()

    @Slot(object)
    def on_benchmark_progress(self, progress) -> None:
        if not self._running:
            return
        steps = getattr(progress, "steps", 0)
        if steps:
            self.progress.setRange(0, steps)
            self.progress.setValue(getattr(progress, "step", 0))
        if self.cancel_button.isEnabled():  # else it says it is stopping
            self.status.setText(str(progress))

    @Slot(dict)
    def on_benchmark_finished(self, payload: dict) -> None:
        results = payload.get("results", []) if isinstance(payload, dict) else []
        done = [r for r in results if "error" not in r]
        failed = [r for r in results if "error" in r]
        self._running = False
        self.progress.hide()
        self.cancel_button.hide()
        if payload.get("cancelled"):
            text = f"Cancelled; benchmarked {_count(len(done), 'model')} before it stopped."
        else:
            text = f"Benchmarked {_count(len(done), 'model')}." if done else "No model was benchmarked."
        if failed:
            text += " " + " ".join(f"{r.get('model')}: {r.get('error')}" for r in failed)
        warnings = payload.get("warnings") or []
        if warnings:
            text += " " + " ".join(str(w) for w in warnings)
        self.status.setText(text)
        self._update_buttons()
        self.refresh()

    def _update_buttons(self, *_) -> None:
        self.bench_button.setEnabled(self.benchmarks is not None and not self._running
                                     and bool(self.checked_models()))
        self.model_list.setEnabled(not self._running)

    # --- drawing --------------------------------------------------------------------------

    @Slot()
    def refresh(self) -> None:
        """Redraw everything from a fresh snapshot of the history."""
        shown = self.selected_model()
        self.snapshot = self.stats.snapshot(shown)
        models = list(self.snapshot.models)
        self._colors = model_colors(models, self.palette())
        self._fill_filter(models)
        if self.selected_model() != shown:  # the model shown has no replies any more: all of them
            self.snapshot = self.stats.snapshot(self.selected_model())
        self._fill_legend()
        self.note.setText(self._snap().size_note())
        self.note.setVisible(bool(self.note.text()))
        self.thinking.setText(self._snap().thinking_note())
        self.thinking.setVisible(bool(self.thinking.text()))
        self._fill_verdicts()
        self._fill_drafting()
        self._draw_time_charts()
        self._ask_bandwidth()
        self._draw_size_chart()
        self._fill_table(self.stats.benchmarks())
        self._fill_models()

    def _fill_verdicts(self) -> None:
        try:
            sentences = [s.sentence for s in self.stats.verdict_summaries(limit=3)]
        except UserError as exc:  # a history that cannot be read just now: the charts say so already
            log.warning("comparison summaries: %s", exc)
            sentences = []
        self.verdicts.setText("\n".join(sentences))
        self.verdicts.setVisible(bool(sentences))

    def _fill_drafting(self) -> None:
        try:
            sentences = [p.sentence for p in self.stats.draft_pairs(limit=3)]
        except UserError as exc:
            log.warning("drafting figures: %s", exc)
            sentences = []
        self.drafting.setText("\n".join(sentences))
        self.drafting.setVisible(bool(sentences))

    def _fill_filter(self, models: list[str]) -> None:
        current = self.model_filter.currentText() or ALL_MODELS
        self.model_filter.blockSignals(True)
        self.model_filter.clear()
        self.model_filter.addItems([ALL_MODELS, *models])
        self.model_filter.setCurrentIndex(max(0, self.model_filter.findText(current)))
        self.model_filter.blockSignals(False)

    def _snap(self) -> StatsSnapshot:
        assert self.snapshot is not None, "refresh() reads a snapshot before anything is drawn"
        return self.snapshot

    def _fill_legend(self) -> None:
        snap = self._snap()
        parts = []
        for m in snap.models:
            remote = m in snap.remote_models
            mark = "&#9670;" if remote else "&#9679;"  # a diamond for a remote model, as on the charts
            parts.append(f'<span style="color:{self._colors[m].name()}">{mark}</span>&nbsp;{_html(m)}'
                         + ("&nbsp;(remote)" if remote else ""))
        if snap.busy_replies:
            parts.append("&#9675;&nbsp;busy CPU")
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(parts))

    def selected_model(self) -> str | None:
        text = self.model_filter.currentText()
        return None if not text or text == ALL_MODELS else text

    @Slot()
    def _redraw_time_charts(self, *_) -> None:
        self.snapshot = self.stats.snapshot(self.selected_model())
        self._draw_time_charts()

    def _draw_time_charts(self) -> None:
        for chart, key in ((self.speed_chart, "gen_tps"), (self.prompt_chart, "prompt_tps"),
                           (self.ttft_chart, "ttft_ms")):
            chart.set_series(self._snap().series[key], self._colors)
            chart.widget.setAccessibleDescription(self._snap().describe(key) or chart.empty_text)

    def _ask_bandwidth(self) -> None:
        """The bandwidth probe takes about a second: it runs once, off the GUI thread, through the service."""
        known, figure = self.stats.cached_bandwidth()
        if known:
            self.bandwidth = figure
        elif not self._bandwidth_asked:
            self._bandwidth_asked = True
            run_in_background(self.stats.memory_bandwidth, self._bandwidth_measured, self._bandwidth_failed,
                              context=self)

    def _bandwidth_measured(self, figure: float | None) -> None:
        self.bandwidth = figure
        if self.snapshot is not None:
            self._draw_size_chart()

    def _bandwidth_failed(self, exc: Exception) -> None:
        log.warning("no memory-bandwidth figure for the size chart: %s", exc)

    def _draw_size_chart(self) -> None:
        snap = self._snap()
        self.size_chart.empty_text = snap.size_empty  # none yet, or every one on a busy CPU
        self.size_chart.set_points(snap.size_points, self.bandwidth, self._colors)
        described = [f"{p.model}: {format_bytes(p.size_bytes)}, median {p.gen_tps:.1f} tokens/s"
                     for p in snap.size_points]
        if self.bandwidth:
            described.append(f"memory-bandwidth limit {format_byte_rate(self.bandwidth)}")
        described.extend(snap.left_off_size_chart)
        self.size_chart.widget.setAccessibleDescription("; ".join(described) or self.size_chart.empty_text)

    def _fill_table(self, rows: list[dict]) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            busy = benchmark_is_busy(row.get("record"))
            for j, (_, key, show, _) in enumerate(BENCH_COLUMNS):
                value = row.get(key)
                if key == "threads":  # "Ran on": the backend and thread count together
                    text = ", ".join(x for x in (row.get("backend"), value and _count(value, "thread"),
                                                 BUSY_MARK if busy else None) if x)
                    cell = _Cell(text or "–", (row.get("backend") or "", value or 0))
                    if busy:
                        cell.setToolTip(BUSY_TIP)
                elif key == "created_at":
                    cell = _Cell(_local_time(value), value)
                elif show is not None:
                    cell = _Cell("–" if value is None else show(value), value)
                else:
                    cell = _Cell("–" if value is None else str(value), value)
                if isinstance(value, (int, float)) and key not in ("threads",):
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if key == "pp_tps" and row.get("pp_tokens"):
                    cell.setToolTip(f"{row['pp_tokens']}-token prompt read at {cell.text()} tokens/s")
                elif key == "tg_tps" and row.get("tg_tokens"):
                    cell.setToolTip(f"{row['tg_tokens']} tokens written at {cell.text()} tokens/s")
                if busy and key in ("pp_tps", "tg_tps") and value is not None:
                    # Shown, marked: below what this machine gives, so never read as the model's speed.
                    cell.setText(f"{cell.text()} ({BUSY_MARK})")
                    cell.setIcon(icon("warning"))
                    cell.setToolTip(f"{cell.toolTip()}\n{BUSY_TIP}".strip())
                if key == "model":
                    cell.setToolTip(plain_tooltip("\n".join(str(v) for v in (row.get("model"), row.get("model_file"))
                                                            if v)))
                    if row.get("model") in self._colors:
                        cell.setForeground(self._colors[row["model"]])
                self.table.setItem(i, j, cell)
        self.table.setSortingEnabled(True)
        self.table_empty.setVisible(not rows)

    def refresh_models(self) -> None:
        """The installed models again (the library says the list changed), keeping what was checked."""
        self._fill_models()

    def _fill_models(self) -> None:
        """The installed models, keeping what was checked."""
        checked = set(self.checked_models())
        try:
            candidates = self.stats.benchmark_candidates()
        except (OSError, ValueError) as exc:  # the list of installed models could not be read
            log.warning("no models to offer for benchmarks: %s", exc)
            candidates = []
        self.model_list.blockSignals(True)
        self.model_list.clear()
        for c in candidates:
            note = format_bytes(c.size_bytes) if c.size_bytes is not None else c.note
            item = QTreeWidgetItem([c.name, note])
            item.setData(0, Qt.ItemDataRole.UserRole, c.name)
            item.setToolTip(0, plain_tooltip(f"{c.name}\n{c.path}"))
            item.setToolTip(1, "The starter is assembled the first time it is used" if c.note == "on first use"
                            else "The model file is not there" if c.note == "missing" else plain_tooltip(c.path))
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Checked if c.name in checked else Qt.CheckState.Unchecked)
            self.model_list.addTopLevelItem(item)
        first = self.model_list.topLevelItem(0)
        if first is not None and self.model_list.currentItem() is None:
            # Current (where the keyboard starts), not selected: only a check means "benchmark this".
            self.model_list.setCurrentItem(first, 0, QItemSelectionModel.SelectionFlag.NoUpdate)
        self.model_list.blockSignals(False)
        self._update_buttons()

    # --- theme ----------------------------------------------------------------------------

    def _apply_palette(self) -> None:
        for chart in self.charts():
            chart.apply_palette(self.palette())

    def changeEvent(self, event) -> None:
        super().changeEvent(event)
        if event.type() in (QEvent.Type.PaletteChange, QEvent.Type.ApplicationPaletteChange) and not self._theming:
            self._theming = True  # redrawing must not recurse through its own palette events
            try:
                self._apply_palette()
                if self.snapshot is not None:
                    self.refresh()
            finally:
                self._theming = False


def _local_time(iso) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso) if iso is not None else "–"


_count = format_count


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
