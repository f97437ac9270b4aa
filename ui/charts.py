"""pyqtgraph charts for the statistics view: they follow the widget palette, light or dark.

`TimeChart` draws one series per model against the time of each reply;
`SizeChart` draws one point per model (its median speed against its file size)
with the memory-bandwidth limit, tokens/s = bandwidth / model bytes, as a line.
Both keep what they drew in plain dicts (`series`, `points`) so tests and the
accessible description can read it back.
"""

from __future__ import annotations

import math
from datetime import datetime

import pyqtgraph as pg
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QFont, QPalette
from common.formatting import format_bytes, format_number

# Okabe-Ito, colour-blind safe; a lighter set on dark backgrounds keeps the contrast.
LIGHT_COLORS = ("#0072B2", "#D55E00", "#009E73", "#CC79A7", "#E69F00", "#56B4E9", "#8C564B", "#6B6B6B")
DARK_COLORS = ("#56B4E9", "#FF9F5A", "#3DDC97", "#F08CC8", "#F0C04C", "#A7D8F7", "#D7A28F", "#BDBDBD")
MAX_SYMBOLS = 400  # past this many replies a series is a plain line: symbols would only blur it
GB = 1e9


def is_dark(palette: QPalette) -> bool:
    return palette.color(QPalette.ColorRole.Base).lightness() < 128


def model_colors(names, palette: QPalette) -> dict[str, QColor]:
    """One colour per model, the same in every chart (by sorted name)."""
    colors = DARK_COLORS if is_dark(palette) else LIGHT_COLORS
    return {name: QColor(colors[i % len(colors)]) for i, name in enumerate(sorted(names))}


def epoch(iso: str) -> float | None:
    """An ISO 8601 time from the history as seconds since the epoch, or None."""
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError):
        return None


class Chart:
    """A titled PlotWidget that follows a QPalette."""

    def __init__(self, title: str, y_label: str, x_label: str, *, axes: dict | None = None, parent=None):
        self.widget = pg.PlotWidget(parent=parent, axisItems=axes or {})
        self.widget.setAntialiasing(True)
        self.widget.setMinimumSize(260, 180)
        self.widget.setFocusPolicy(Qt.FocusPolicy.TabFocus)  # a screen reader can land on it and read its summary
        self.plot: pg.PlotItem = self.widget.getPlotItem()
        self.plot.setMenuEnabled(False)
        self.plot.hideButtons()
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        self.plot.getViewBox().setMouseEnabled(x=True, y=False)
        self.title, self.y_label, self.x_label = title, y_label, x_label
        self.widget.setAccessibleName(title)
        self._note: pg.TextItem | None = None
        self._fg = QColor("black")
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setStyle(tickFont=_font(9), autoExpandTextSpace=True)

    def apply_palette(self, palette: QPalette) -> None:
        fg = palette.color(QPalette.ColorRole.Text)
        self._fg = fg
        mid = QColor(fg)
        mid.setAlphaF(0.6)
        self.widget.setBackground(palette.color(QPalette.ColorRole.Base))
        for side in ("left", "bottom"):
            axis = self.plot.getAxis(side)
            axis.enableAutoSIPrefix(False)  # units are in the label; "(x0.001)" only confuses
            axis.setPen(pg.mkPen(mid))
            axis.setTextPen(pg.mkPen(fg))
        self.plot.setTitle(self.title, color=fg.name(), size="10pt", bold=True)
        self.plot.setLabel("left", self.y_label, color=fg.name(), **{"font-size": "9pt"})
        self.plot.setLabel("bottom", self.x_label, color=fg.name(), **{"font-size": "9pt"})
        if self._note is not None:
            self._note.setColor(mid)

    def _clear(self) -> None:
        self.plot.clear()
        self._note = None
        self.plot.showGrid(x=True, y=True, alpha=0.25)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setStyle(showValues=True)

    def _show_empty(self, text: str) -> None:
        """No data: a sentence in the middle instead of a bare grid of meaningless ticks."""
        self.plot.showGrid(x=False, y=False)
        for side in ("left", "bottom"):
            self.plot.getAxis(side).setStyle(showValues=False)
        self.plot.setRange(xRange=(0, 1), yRange=(0, 1), padding=0)
        mid = QColor(self._fg)
        mid.setAlphaF(0.6)
        self._note = pg.TextItem(text, color=mid, anchor=(0.5, 0.5))
        self._note.setFont(_font(10))
        self.plot.addItem(self._note)
        self._note.setPos(0.5, 0.5)


class TimeChart(Chart):
    """One series per model: a figure of every saved reply against its time."""

    def __init__(self, title: str, y_label: str, empty_text: str, parent=None):
        super().__init__(title, y_label, "", axes={"bottom": pg.DateAxisItem(orientation="bottom")}, parent=parent)
        self.empty_text = empty_text
        self.series: dict[str, pg.PlotDataItem] = {}

    def set_data(self, data: dict[str, tuple[list[float], list[float]]], colors: dict[str, QColor]) -> None:
        """`data`: model → (times as epoch seconds, values), oldest first."""
        self._clear()
        self.series = {}
        data = {m: xy for m, xy in data.items() if xy[0]}
        if not data:
            self._show_empty(self.empty_text)
            return
        for model in sorted(data):
            xs, ys = data[model]
            color = colors.get(model, self._fg)
            symbols = {"symbol": "o", "symbolSize": 5, "symbolBrush": color, "symbolPen": None} \
                if len(xs) <= MAX_SYMBOLS else {}
            line = QColor(color)
            line.setAlphaF(0.55)  # the points carry the figures; the line only joins them
            item = pg.PlotDataItem(xs, ys, pen=pg.mkPen(line, width=1.2), name=model, **symbols)
            self.plot.addItem(item)
            self.series[model] = item
        self.plot.enableAutoRange()
        # Speeds start at zero: a chart that starts at 38 makes 38 and 42 look like 1 and 5.
        top = max(max(ys) for _, ys in data.values())
        self.plot.setYRange(0, top * 1.08 if top > 0 else 1, padding=0)
        self.plot.getViewBox().setLimits(yMin=0)


class SizeChart(Chart):
    """Median generation speed against model size, on log-log axes, with the bandwidth limit."""

    def __init__(self, title: str, empty_text: str, parent=None):
        super().__init__(title, "tokens/s (median)", "model file size (GB)",
                         axes={"left": LogAxis("left"), "bottom": LogAxis("bottom")}, parent=parent)
        self.empty_text = empty_text
        self.plot.getViewBox().setMouseEnabled(x=True, y=True)
        self.points: dict[str, pg.PlotDataItem] = {}
        self.labels: dict[str, pg.TextItem] = {}
        self.limit: pg.PlotDataItem | None = None
        self.limit_label: pg.TextItem | None = None
        self.bandwidth: float | None = None

    def set_data(self, medians: dict[str, tuple[int, float]], bandwidth: float | None,
                 colors: dict[str, QColor]) -> None:
        """`medians`: model → (file size in bytes, median tokens/s); `bandwidth`: bytes/s or None."""
        self._clear()
        self.plot.setLogMode(x=False, y=False)
        self.points, self.labels, self.limit, self.limit_label = {}, {}, None, None
        self.bandwidth = bandwidth
        medians = {m: (s, t) for m, (s, t) in medians.items() if s and s > 0 and t and t > 0}
        if not medians:
            self._show_empty(self.empty_text)
            return
        self.plot.setLogMode(x=True, y=True)
        sizes = [s / GB for s, _ in medians.values()]
        speeds = [t for _, t in medians.values()]
        lo, hi = min(sizes) / 2, max(sizes) * 2
        y_lo = min(speeds) / 3
        y_hi = max(speeds + ([bandwidth / (lo * GB)] if bandwidth else [])) * 1.5
        y_hi = min(y_hi, max(speeds) * 30)  # a tiny model's limit would squash every real point to the floor
        lx0, lx1, ly0, ly1 = math.log10(lo), math.log10(hi), math.log10(y_lo), math.log10(y_hi)
        if bandwidth:
            xs = [lo * (hi / lo) ** (i / 40) for i in range(41)]
            self.limit = pg.PlotDataItem(xs, [bandwidth / (x * GB) for x in xs], name="memory-bandwidth limit",
                                         pen=pg.mkPen(self._fg, width=1.5, style=Qt.PenStyle.DashLine))
            self.plot.addItem(self.limit)
            # Along the line (slope -1 in log-log), above it, near its left end but below the top.
            lb = math.log10(bandwidth / GB)  # log tokens/s = lb - log GB
            at = max(lx0 + 0.04 * (lx1 - lx0), lb - (ly1 - 0.12 * (ly1 - ly0)))
            self.limit_label = pg.TextItem(f"memory-bandwidth limit ({bandwidth / GB:.0f} GB/s)", color=self._fg,
                                           anchor=(0, 1), rotateAxis=(1, -1))
            self.limit_label.setFont(_font(8))
            self.plot.addItem(self.limit_label)
            self.limit_label.setPos(at, lb - at)
        for model in sorted(medians):
            size, tps = medians[model]
            color = colors.get(model, self._fg)
            item = pg.PlotDataItem([size / GB], [tps], pen=None, symbol="o", symbolSize=11,
                                   symbolBrush=color, symbolPen=pg.mkPen(self._fg, width=1), name=model)
            self.plot.addItem(item)
            self.points[model] = item
            x = math.log10(size / GB)
            right_half = x > (lx0 + lx1) / 2
            # Below the point (the limit line runs above it), on the side towards the middle so no edge cuts it.
            label = pg.TextItem(f"{model}  {format_number(tps)} t/s", color=color,
                                anchor=(1, -0.2) if right_half else (0, -0.2))
            label.setFont(_font(8))
            self.plot.addItem(label)
            label.setPos(x, math.log10(tps))
            self.labels[model] = label
        self.plot.setRange(xRange=(lx0, lx1), yRange=(ly0, ly1), padding=0)


class LogAxis(pg.AxisItem):
    """Log-mode ticks a person reads: 0.2, 0.5, 1, 2, 5, 10, 20 … instead of 2·10¹ crowding 3·10¹."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        decades = range(math.floor(minVal), math.ceil(maxVal) + 1)

        def within(mults):
            return [math.log10(m) + d for d in decades for m in mults if minVal <= math.log10(m) + d <= maxVal]

        wide = maxVal - minVal > 3  # past three decades, 1-2-5 labels would crowd: decades only
        major = within((1,) if wide else (1, 2, 5))
        if len(major) < 3:
            major = within((1, 1.5, 2, 3, 4, 5, 6, 7, 8, 9))
        minor = [v for v in within((2, 5) if wide else range(1, 10)) if all(abs(v - m) > 1e-9 for m in major)]
        return [(None, major), (None, minor)]

    def logTickStrings(self, values, scale, spacing):
        labelled = {round(v, 9) for v in self.logTickValues(*self.range_log(), 0, [])[0][1]}
        return [_number(10 ** v) if round(v, 9) in labelled else "" for v in values]

    def range_log(self) -> tuple[float, float]:
        lo, hi = self.range
        return min(lo, hi), max(lo, hi)


def _number(x: float) -> str:
    return f"{x:.3g}" if x < 1000 else f"{x:,.0f}"


def _font(points: int) -> QFont:
    font = QFont()
    font.setPointSize(points)
    return font
