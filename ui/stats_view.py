"""The statistics view: how fast each model runs here, from the history database.

    view = StatsView(history_store, worker)            # worker: a ui.bridge.BenchmarkBridge, or None
    view.benchmarkRequested.connect(worker.benchmark)  # the main window does this: a queued call
    view.load_settings = settings                      # optional: what the benchmark loads models with
    view.refresh()                                     # redraws everything from the history

Everything drawn comes from the history: reply speeds from its `stats` table,
benchmarks from its `benchmarks` table (the worker saves each result there as it
finishes). There is no second store; `refresh()` reads both again.
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from collections.abc import Callable
from datetime import datetime

from PySide6.QtCore import QEvent, QItemSelectionModel, Qt, Signal, Slot
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import (
    QAbstractItemView,
    QApplication,
    QComboBox,
    QGridLayout,
    QGroupBox,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QProgressBar,
    QPushButton,
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

from common.formatting import format_bytes, format_number
from ui.charts import SizeChart, TimeChart, epoch, is_dark, model_colors

ALL_MODELS = "All models"
STEPS_PER_MODEL = 3  # "Loading X…", "X: pp…", "X: tg…": what the statistics service reports per model
BENCH_COLUMNS = (  # header, benchmarks() key, how to show it
    ("Model", "model", str), ("Quant", "quant", str),  # Weights is the file's size in memory
    ("pp t/s", "pp_tps", format_number), ("tg t/s", "tg_tps", format_number),
    ("Weights", "weights_bytes", format_bytes), ("KV cache", "kv_bytes", format_bytes),
    ("Compute", "compute_bytes", format_bytes), ("RSS", "rss_bytes", format_bytes),
    ("Ran on", "threads", None), ("When", "created_at", lambda t: _local_time(t)),  # a lambda: defined below
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
    benchmarkRequested = Signal(object, object)  # model specs (names), LoadSettings or None

    def __init__(self, history_store, worker=None, parent=None, *, bandwidth: float | Callable[[], float] | None = None,
                 installed: Callable[[], list] | None = None):
        """`bandwidth`: bytes/s or a function giving it (default: models.speed.memory_bandwidth, cached);
        `installed`: a function listing installed models (default: models.registry.list_installed)."""
        super().__init__(parent)
        self.history = history_store
        self.worker = None
        self.load_settings = None  # what the benchmark loads models with; the main window may set it
        self._bandwidth_source = bandwidth
        self._bandwidth: float | None = None
        self._installed = installed
        self._running = 0  # models in the benchmark under way, 0 when none
        self._steps = 0
        self._theming = False
        self._build()
        self._apply_palette()
        if worker is not None:
            self.set_worker(worker)
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

        self.speed_chart = TimeChart("Generation speed of each reply", "tokens/s",
                                     "No replies yet: chat with a model and its speed appears here.")
        self.size_chart = SizeChart("Speed against model size",
                                    "No replies with a model size yet.")
        self.prompt_chart = TimeChart("Prompt processing speed", "tokens/s", "No prompt speeds yet.")
        self.ttft_chart = TimeChart("Time to first token", "ms", "No first-token times yet.")
        charts = QWidget()
        grid = QGridLayout(charts)
        grid.setContentsMargins(0, 0, 0, 0)
        grid.setSpacing(6)
        for i, chart in enumerate(self.charts()):
            grid.addWidget(chart.widget, i // 2, i % 2)

        splitter = QSplitter(Qt.Orientation.Vertical)
        splitter.setChildrenCollapsible(False)
        splitter.addWidget(charts)
        splitter.addWidget(self._build_benchmarks())
        splitter.setStretchFactor(0, 3)
        splitter.setStretchFactor(1, 2)
        splitter.setSizes([650, 350])  # proportions: the charts get about two thirds
        layout = QVBoxLayout(self)
        layout.addLayout(top)
        layout.addWidget(splitter, 1)
        self.setAccessibleName("Statistics")

    def _build_benchmarks(self) -> QWidget:
        box = QGroupBox("Benchmarks")
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
        self.model_list.itemChanged.connect(self._update_button)
        self.model_list.setItemDelegate(_CheckDelegate(self.model_list))
        self.model_list.setMaximumWidth(250)
        self.bench_button = QPushButton("&Benchmark")
        self.bench_button.setAccessibleName("Benchmark")
        self.bench_button.setAccessibleDescription("Run the benchmark on the checked models, one after another")
        self.bench_button.setToolTip("Measure prompt processing (pp) and generation (tg) of the checked models")
        self.bench_button.clicked.connect(self.start_benchmark)
        self.progress = QProgressBar()
        self.progress.setAccessibleName("Benchmark progress")
        self.progress.setTextVisible(False)
        self.progress.setMaximumHeight(10)
        self.progress.hide()
        self.status = QLabel("Check models, then press Benchmark.")
        self.status.setWordWrap(True)
        self.status.setAccessibleName("Benchmark status")
        left = QVBoxLayout()
        pick = QLabel("Mo&dels to benchmark:")
        pick.setBuddy(self.model_list)
        left.addWidget(pick)
        left.addWidget(self.model_list, 1)
        left.addWidget(self.bench_button)
        left.addWidget(self.progress)
        left.addWidget(self.status)

        self.table = QTableWidget(0, len(BENCH_COLUMNS))
        self.table.setAccessibleName("Benchmark results")
        self.table.setAccessibleDescription("One row per benchmark: prompt processing and generation speed, memory")
        self.table.setHorizontalHeaderLabels([c[0] for c in BENCH_COLUMNS])
        self.table.verticalHeader().hide()
        self.table.horizontalHeader().setAccessibleName("Benchmark columns; click one to sort by it")
        self.table.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.table.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setAlternatingRowColors(True)
        self.table.setSortingEnabled(True)
        self.table.setTabKeyNavigation(False)  # Tab leaves the table; arrows move within it
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Interactive)
        header.setStretchLastSection(True)
        self.table.setTextElideMode(Qt.TextElideMode.ElideMiddle)
        self.table.setWordWrap(False)
        self.table.sortByColumn(len(BENCH_COLUMNS) - 1, Qt.SortOrder.DescendingOrder)  # newest first
        self.table_empty = QLabel("No benchmarks yet.")
        right = QVBoxLayout()
        right.addWidget(self.table, 1)
        right.addWidget(self.table_empty)
        row = QHBoxLayout(box)
        row.addLayout(left)
        row.addLayout(right, 1)
        return box

    def charts(self) -> tuple:
        return self.speed_chart, self.size_chart, self.prompt_chart, self.ttft_chart

    # --- the worker -----------------------------------------------------------------------

    def set_worker(self, worker) -> None:
        """Show the worker's benchmark progress and results (its signals arrive queued)."""
        if self.worker is not None:
            self.worker.benchmarkProgress.disconnect(self.on_benchmark_progress)
            self.worker.benchmarkFinished.disconnect(self.on_benchmark_finished)
        self.worker = worker
        if worker is not None:
            worker.benchmarkProgress.connect(self.on_benchmark_progress)
            worker.benchmarkFinished.connect(self.on_benchmark_finished)

    def checked_models(self) -> list[str]:
        items = (self.model_list.topLevelItem(i) for i in range(self.model_list.topLevelItemCount()))
        return [it.data(0, Qt.ItemDataRole.UserRole) for it in items if it.checkState(0) == Qt.CheckState.Checked]

    @Slot()
    def start_benchmark(self) -> None:
        specs = self.checked_models()
        if not specs or self._running:
            return
        self._running, self._steps = len(specs), 0
        self.progress.setRange(0, len(specs) * STEPS_PER_MODEL)
        self.progress.setValue(0)
        self.progress.show()
        self.status.setText(f"Waiting for the engine to benchmark {_count(len(specs), 'model')}…")
        self._update_button()
        self.benchmarkRequested.emit(specs, self.load_settings)

    @Slot(str)
    def on_benchmark_progress(self, message: str) -> None:
        if self._running:
            self._steps = min(self._steps + 1, self.progress.maximum() - 1)
            self.progress.setValue(self._steps)
        self.status.setText(message)

    @Slot(dict)
    def on_benchmark_finished(self, payload: dict) -> None:
        results = payload.get("results", []) if isinstance(payload, dict) else []
        done = [r for r in results if "error" not in r]
        failed = [r for r in results if "error" in r]
        if self.worker is None or not getattr(self.worker, "saves_results", False):
            for result in done:  # nobody saved them: keep them, so the table can show them
                self.history.save_benchmark(result)
        self._running = 0
        self.progress.setValue(self.progress.maximum())
        self.progress.hide()
        text = f"Benchmarked {_count(len(done), 'model')}." if done else "No model was benchmarked."
        if failed:
            text += " " + " ".join(f"{r.get('model')}: {r.get('error')}" for r in failed)
        self.status.setText(text)
        self._update_button()
        self.refresh()

    def _update_button(self, *_) -> None:
        self.bench_button.setEnabled(not self._running and bool(self.checked_models()))
        self.model_list.setEnabled(not self._running)

    # --- drawing --------------------------------------------------------------------------

    @Slot()
    def refresh(self) -> None:
        """Redraw everything from the history database."""
        self._rows = self.history.speed_history()
        models = sorted({r["model"] for r in self._rows if r["model"]})
        self._colors = model_colors(models, self.palette())
        self._fill_filter(models)
        self._fill_legend(models)
        self._redraw_time_charts()
        self._redraw_size_chart()
        self._fill_table(self.history.benchmarks())
        self._fill_models()

    def _fill_filter(self, models: list[str]) -> None:
        current = self.model_filter.currentText() or ALL_MODELS
        self.model_filter.blockSignals(True)
        self.model_filter.clear()
        self.model_filter.addItems([ALL_MODELS, *models])
        self.model_filter.setCurrentIndex(max(0, self.model_filter.findText(current)))
        self.model_filter.blockSignals(False)

    def _fill_legend(self, models: list[str]) -> None:
        self.legend.setText("&nbsp;&nbsp;&nbsp;".join(
            f'<span style="color:{self._colors[m].name()}">&#9679;</span>&nbsp;{_html(m)}' for m in models))

    def selected_model(self) -> str | None:
        text = self.model_filter.currentText()
        return None if not text or text == ALL_MODELS else text

    @Slot()
    def _redraw_time_charts(self, *_) -> None:
        only = self.selected_model()
        for chart, key in ((self.speed_chart, "gen_tps"), (self.prompt_chart, "prompt_tps"),
                           (self.ttft_chart, "ttft_ms")):
            data: dict[str, tuple[list, list]] = defaultdict(lambda: ([], []))
            for r in self._rows:
                t, v = epoch(r["created_at"]), r[key]
                if r["model"] and (only is None or r["model"] == only) and t is not None and v is not None:
                    data[r["model"]][0].append(t)
                    data[r["model"]][1].append(v)
            chart.set_data(dict(data), self._colors)
            unit = "ms" if key == "ttft_ms" else "tokens/s"
            chart.widget.setAccessibleDescription("; ".join(
                f"{m}: median {statistics.median(ys):.1f} {unit} over {_count(len(ys), 'reply')}"
                for m, (_, ys) in sorted(data.items())) or chart.empty_text)

    def model_medians(self) -> dict[str, tuple[int | None, float]]:
        """model → (file size in bytes of its latest reply that has one, median generation tokens/s)."""
        speeds, sizes = defaultdict(list), {}
        for r in self._rows:  # oldest first: the last size seen is the latest
            if r["model"] and r["gen_tps"] is not None:
                speeds[r["model"]].append(r["gen_tps"])
            if r["model"] and r.get("size_bytes"):
                sizes[r["model"]] = r["size_bytes"]
        return {m: (sizes.get(m), statistics.median(v)) for m, v in speeds.items()}

    def _redraw_size_chart(self) -> None:
        medians = self.model_medians()
        self.size_chart.set_data({m: v for m, v in medians.items() if v[0]}, self.bandwidth(), self._colors)
        described = [f"{m}: {format_bytes(s)}, median {t:.1f} tokens/s" for m, (s, t) in sorted(medians.items()) if s]
        bw = self.bandwidth()
        if bw:
            described.append(f"memory-bandwidth limit {bw / 1e9:.0f} GB/s")
        self.size_chart.widget.setAccessibleDescription("; ".join(described))

    def bandwidth(self) -> float | None:
        """This machine's memory bandwidth in bytes/s (probed once, then cached), or None."""
        if self._bandwidth is None:
            source = self._bandwidth_source
            try:
                if source is None:
                    from models.speed import memory_bandwidth

                    source = memory_bandwidth
                self._bandwidth = float(source() if callable(source) else source)
            except Exception:  # no figure is better than no view
                self._bandwidth = 0.0
        return self._bandwidth or None

    def _fill_table(self, rows: list[dict]) -> None:
        self.table.setSortingEnabled(False)
        self.table.setRowCount(len(rows))
        for i, row in enumerate(rows):
            for j, (_, key, show) in enumerate(BENCH_COLUMNS):
                value = row.get(key)
                if show is None:  # "Ran on": the backend and thread count together
                    text = ", ".join(x for x in (row.get("backend"), value and _count(value, "thread")) if x)
                    cell = _Cell(text or "–", (row.get("backend") or "", value or 0))
                else:
                    cell = _Cell("–" if value is None else show(value), value)
                if isinstance(value, (int, float)):
                    cell.setTextAlignment(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
                if key == "model":
                    cell.setToolTip("\n".join(str(v) for v in (row.get("model"), row.get("model_file")) if v))
                if key == "model" and row.get("model") in self._colors:
                    cell.setForeground(self._colors[row["model"]])
                self.table.setItem(i, j, cell)
        self.table.setSortingEnabled(True)
        self.table_empty.setVisible(not rows)
        # Long model names are elided (the full name and file are in the tooltip), so the figures fit.
        self.table.setColumnWidth(0, min(max(self.table.sizeHintForColumn(0), 120), 170))

    def _fill_models(self) -> None:
        """The installed models, keeping what was checked."""
        checked = set(self.checked_models())
        try:
            if self._installed is not None:
                entries = self._installed()
            else:
                from models.registry import list_installed

                entries = list_installed()
        except Exception:
            entries = []
        self.model_list.blockSignals(True)
        self.model_list.clear()
        for entry in entries:
            size = _file_size(entry.path)
            note = format_bytes(size) if size is not None else (
                "on first use" if entry.source == "starter" else "missing")
            item = QTreeWidgetItem([entry.name, note])
            item.setData(0, Qt.ItemDataRole.UserRole, entry.name)
            item.setToolTip(0, f"{entry.name}\n{entry.path}")
            item.setToolTip(1, "The starter is assembled the first time it is used" if note == "on first use"
                            else "The model file is not there" if note == "missing" else entry.path)
            item.setTextAlignment(1, Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
            item.setFlags(Qt.ItemFlag.ItemIsEnabled | Qt.ItemFlag.ItemIsSelectable | Qt.ItemFlag.ItemIsUserCheckable)
            item.setCheckState(0, Qt.CheckState.Checked if entry.name in checked else Qt.CheckState.Unchecked)
            self.model_list.addTopLevelItem(item)
        if self.model_list.topLevelItemCount() and self.model_list.currentItem() is None:
            # Current (where the keyboard starts), not selected: only a check means "benchmark this".
            self.model_list.setCurrentItem(self.model_list.topLevelItem(0), 0,
                                           QItemSelectionModel.SelectionFlag.NoUpdate)
        self.model_list.blockSignals(False)
        self._update_button()

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
                if hasattr(self, "_rows"):
                    self.refresh()
            finally:
                self._theming = False


def _local_time(iso: str) -> str:
    try:
        return datetime.fromisoformat(iso).astimezone().strftime("%Y-%m-%d %H:%M")
    except (TypeError, ValueError):
        return str(iso)


def _file_size(path) -> int | None:
    try:
        return os.path.getsize(path)
    except (OSError, TypeError, ValueError):
        return None


def _count(n: int, noun: str) -> str:
    plural = noun[:-1] + "ies" if noun.endswith("y") and noun[-2] not in "aeiou" else noun + "s"
    return f"{n} {noun if n == 1 else plural}"


def _html(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")

