"""pyqtgraph charts for the statistics view: they draw what the statistics service computed.

`TimeChart` draws one series per model over time (`assistant.stats_series.Series`):
a marker per reply with its hover text, hollow for a run on a busy CPU, a diamond for
a remote model, and a line only between the replies of one sitting. `SizeChart` draws
one point per local model (its median speed against its file size) with the
memory-bandwidth limit, tokens/s = bandwidth / model bytes, as a line, and places each
label where it covers no marker. Both follow the widget palette, light or dark, and
keep what they drew (`series`, `points`, `labels`) so tests and the accessible
description can read it back.
"""

from __future__ import annotations

import html
import itertools
import math
import textwrap
from dataclasses import dataclass

import numpy as np
import pyqtgraph as pg
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QColor, QFont, QPalette, QPolygonF

from assistant.stats_series import Series, SizePoint
from common.formatting import format_number

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
        # A sentence in lines a narrow chart holds (a TextItem does not wrap by itself).
        self._note = pg.TextItem(textwrap.fill(text, 42), color=mid, anchor=(0.5, 0.5))
        self._note.setFont(_font(10))
        self.plot.addItem(self._note)
        self._note.setPos(0.5, 0.5)


@dataclass
class SeriesItems:
    """What a TimeChart drew for one model: its line (broken at idle gaps) and its markers."""

    series: Series
    line: pg.PlotCurveItem
    markers: pg.ScatterPlotItem


class TimeChart(Chart):
    """One series per model over time: a marker per reply (hover for its figures), hollow when the CPU
    was busy, a diamond for a remote model; lines join the replies of one sitting only."""

    def __init__(self, title: str, y_label: str, empty_text: str, parent=None):
        super().__init__(title, y_label, "", axes={"bottom": pg.DateAxisItem(orientation="bottom")}, parent=parent)
        self.empty_text = empty_text
        self.series: dict[str, SeriesItems] = {}

    def set_series(self, series: tuple[Series, ...], colors: dict[str, QColor]) -> None:
        self._clear()
        self.series = {}
        series = tuple(s for s in series if s.points)
        if not series:
            self._show_empty(self.empty_text)
            return
        background = self.widget.backgroundBrush().color()
        for s in series:
            color = colors.get(s.model, self._fg)
            faint = QColor(color)
            faint.setAlphaF(0.55)  # the markers carry the figures; the line only joins one sitting's replies
            line = pg.PlotCurveItem(np.array(s.xs), np.array(s.ys), pen=pg.mkPen(faint, width=1.2),
                                    connect=np.array(s.connected, dtype=bool))
            size = (7 if len(s.points) <= MAX_SYMBOLS else 4) + (2 if s.remote else 0)  # a diamond looks smaller
            filled, hollow = pg.mkBrush(color), pg.mkBrush(background)
            markers = pg.ScatterPlotItem(
                x=s.xs, y=s.ys, data=[p.detail for p in s.points], size=size, symbol="d" if s.remote else "o",
                brush=[hollow if p.busy else filled for p in s.points],
                pen=[pg.mkPen(color, width=1.5) if p.busy else pg.mkPen(None) for p in s.points],
                hoverable=True, tip=_tip, hoverSize=size + 4, name=s.model)
            self.plot.addItem(line)
            self.plot.addItem(markers)
            self.series[s.model] = SeriesItems(s, line, markers)
        self.plot.enableAutoRange()
        # Speeds start at zero: a chart that starts at 38 makes 38 and 42 look like 1 and 5.
        top = max(max(s.ys) for s in series)
        self.plot.setYRange(0, top * 1.08 if top > 0 else 1, padding=0)
        self.plot.getViewBox().setLimits(yMin=0)


def _tip(x=None, y=None, data=None) -> str:
    """A marker's hover text: its reply's figures, worked out by the statistics service."""
    return plain_tooltip(str(data)) if data is not None else ""


def plain_tooltip(text: str) -> str:
    """`text` as a tooltip shows it, line for line: Qt takes a tooltip that looks like markup for markup,
    and a model's name (from an imported history, from a server) may look like anything."""
    return "<p style='white-space:pre'>" + html.escape(text).replace("\n", "<br>") + "</p>"


class SizeChart(Chart):
    """Median generation speed against model size, on log-log axes, with the bandwidth limit.

    Each point's label is placed beside its marker, on the side where it covers no marker,
    no other label and stays inside the chart; placed again whenever the chart is resized
    or zoomed, since that is measured in pixels.
    """

    MARKER = 11  # px

    def __init__(self, title: str, empty_text: str, parent=None):
        super().__init__(title, "tokens/s (median)", "model file size (GB)",
                         axes={"left": LogAxis("left"), "bottom": LogAxis("bottom")}, parent=parent)
        self.empty_text = empty_text
        self.plot.getViewBox().setMouseEnabled(x=True, y=True)
        self.points: dict[str, pg.ScatterPlotItem] = {}
        self.labels: dict[str, pg.TextItem] = {}
        self.limit: pg.PlotDataItem | None = None
        self.limit_label: pg.TextItem | None = None
        self._label_texts: dict[str, tuple[str, str]] = {}  # model -> (name and speed, name alone)
        self.bandwidth: float | None = None
        vb = self.plot.getViewBox()
        vb.sigTransformChanged.connect(self.place_labels)  # after a resize or a zoom, once pixels are known

    def set_points(self, points: tuple[SizePoint, ...], bandwidth: float | None,
                   colors: dict[str, QColor]) -> None:
        """`points`: local models' median speed against file size; `bandwidth`: bytes/s or None."""
        self._clear()
        self.plot.setLogMode(x=False, y=False)
        self.points, self.labels, self.limit, self.limit_label = {}, {}, None, None
        self._label_texts = {}
        self.bandwidth = bandwidth
        points = tuple(p for p in points if p.size_bytes > 0 and p.gen_tps > 0)
        if not points:
            self._show_empty(self.empty_text)
            return
        self.plot.setLogMode(x=True, y=True)
        sizes = [p.size_bytes / GB for p in points]
        speeds = [p.gen_tps for p in points]
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
            # Along the line (slope -1 in log-log), above it; place_labels picks where along it.
            self.limit_label = pg.TextItem(f"memory-bandwidth limit ({bandwidth / GB:.0f} GB/s)", color=self._fg,
                                           anchor=(0, 1), rotateAxis=(1, -1))
            self.limit_label.setFont(_font(8))
            self.plot.addItem(self.limit_label)
            self._place_limit_label(lx0, lx1, ly0, ly1)
        for p in sorted(points, key=lambda p: p.model):
            color = colors.get(p.model, self._fg)
            # A bare ScatterPlotItem does not follow the plot's log mode: it gets log10 coordinates itself.
            item = pg.ScatterPlotItem(x=[math.log10(p.size_bytes / GB)], y=[math.log10(p.gen_tps)], data=[p.detail],
                                      size=self.MARKER,
                                      symbol="o", brush=pg.mkBrush(color), pen=pg.mkPen(self._fg, width=1),
                                      hoverable=True, tip=_tip, hoverSize=self.MARKER + 4, name=p.model)
            self.plot.addItem(item)
            self.points[p.model] = item
            self._label_texts[p.model] = (f"{p.model}  {format_number(p.gen_tps)} t/s", p.model)
            label = pg.TextItem(self._label_texts[p.model][0], color=color, anchor=(0, 0))
            label.setFont(_font(8))
            self.plot.addItem(label)
            label.setPos(math.log10(p.size_bytes / GB), math.log10(p.gen_tps))
            self.labels[p.model] = label
        self.plot.setRange(xRange=(lx0, lx1), yRange=(ly0, ly1), padding=0)
        self.plot.getViewBox().updateMatrix()  # places the labels (sigTransformChanged) if the range moved

    def marker_rects(self) -> dict[str, QRectF]:
        """Each marker's square in scene pixels (its outline included)."""
        vb = self.plot.getViewBox()
        half = self.MARKER / 2 + 1
        out = {}
        for model, item in self.points.items():
            x, y = item.getData()
            centre = vb.mapViewToScene(QPointF(float(x[0]), float(y[0])))
            out[model] = QRectF(centre.x() - half, centre.y() - half, 2 * half, 2 * half)
        return out

    def _place_limit_label(self, lx0: float, lx1: float, ly0: float, ly1: float,
                           markers: dict[str, QRectF] | None = None) -> None:
        """Along the limit line, below the chart's top: near its left end, or further along where that
        end would cover a marker."""
        if self.limit_label is None or not self.bandwidth:
            return
        lb = math.log10(self.bandwidth / GB)  # on the line, log tokens/s = lb - log GB
        first = max(lx0 + 0.04 * (lx1 - lx0), lb - (ly1 - 0.12 * (ly1 - ly0)))
        area = self.plot.getViewBox().sceneBoundingRect()
        best, best_cost = first, math.inf
        for share in (0.0, 0.15, 0.3, 0.45, 0.6):
            at = first + share * (lx1 - first)
            self.limit_label.setPos(at, lb - at)
            if not markers:
                return  # no pixels yet: the left end, placed again once they are known
            outline = self.limit_label.mapToScene(self.limit_label.boundingRect())
            cost = (1000 * sum(_area(QPolygonF(r).intersected(outline)) for r in markers.values())
                    + _area(outline) - _area(outline.intersected(QPolygonF(area))))
            if cost < best_cost - 1e-6:
                best, best_cost = at, cost
            if cost == 0:
                break
        self.limit_label.setPos(best, lb - best)

    def _limit_samples(self, vb) -> list[QPointF]:
        """Points every few pixels along the bandwidth-limit line, in scene pixels (none without it)."""
        if self.limit is None:
            return []
        xs, ys = self.limit.getData()  # log10 values: the item follows the plot's log mode
        corners = [vb.mapViewToScene(QPointF(float(x), float(y))) for x, y in zip(xs, ys)]
        out = []
        for a, b in itertools.pairwise(corners):
            n = max(1, int(math.dist((a.x(), a.y()), (b.x(), b.y())) / 3))
            out += [QPointF(a.x() + (b.x() - a.x()) * i / n, a.y() + (b.y() - a.y()) * i / n) for i in range(n)]
        return out

    def place_labels(self, *_) -> None:
        """Put each label beside its marker where it covers no marker, no other label and stays inside the
        chart (in scene pixels, so it holds at any size and zoom); shortened, or left out, where it cannot."""
        if not self.labels:
            return
        vb = self.plot.getViewBox()
        area = vb.sceneBoundingRect()
        markers = self.marker_rects()
        if area.width() <= 1 or area.height() <= 1 or not markers:
            return
        for item in [*self.labels.values(), *([self.limit_label] if self.limit_label is not None else [])]:
            item.updateTransform()  # their pixel scale follows the view's, which just changed
        taken: list[QPolygonF] = []
        (lx0, lx1), (ly0, ly1) = vb.viewRange()
        self._place_limit_label(lx0, lx1, ly0, ly1, markers)
        if self.limit_label is not None:  # slanted along the line: its own outline, not its bounding box
            taken.append(self.limit_label.mapToScene(self.limit_label.boundingRect()))
        line = self._limit_samples(vb)
        # Top to bottom, so a crowded cluster fans out the same way every time.
        for model in sorted(self.labels, key=lambda m: (markers[m].top(), m)):
            label = self.labels[model]
            full, short = self._label_texts[model]
            spot = None
            for text in (full, short):  # the name and its speed; if that cannot fit cleanly, the name alone
                label.setText(text)
                spot = _best_spot(label, markers[model], markers, taken, line, area)
                if spot is not None:
                    break
            # Where not even the name fits without covering a marker or a label, none is shown: the legend's
            # colour and the marker's hover text still name it.
            label.setVisible(spot is not None)
            if spot is not None:
                taken.append(QPolygonF(spot))
                label.setAnchor((0, 0))
                label.setPos(vb.mapSceneToView(spot.topLeft()))


def _best_spot(label: pg.TextItem, marker: QRectF, markers: dict[str, QRectF], taken: list[QPolygonF],
               line: list[QPointF], area: QRectF) -> QRectF | None:
    """The label's rectangle (scene pixels) beside `marker` that covers no marker, no label placed already
    and stays inside `area`, preferring one clear of the limit line and near its marker; None if none is."""
    text = label.textItem.boundingRect()
    w, h = text.width(), text.height()
    centre = marker.center()
    best, best_cost = None, math.inf
    for corner in _label_spots(marker, centre, w, h, 3.0):
        rect = QRectF(corner.x(), corner.y(), w, h)
        if (not area.contains(rect) or any(rect.intersects(r) for r in markers.values())
                or any(_area(QPolygonF(rect).intersected(r)) > 0.5 for r in taken)):
            continue
        # Text across the dashed line is harder to read (the label's own margin may touch it);
        # a label far from its marker is hard to match to it.
        cost = 5 * sum(rect.adjusted(4, 3, -4, -3).contains(p) for p in line) + 3 * _distance(rect, centre)
        if cost < best_cost - 1e-6:
            best, best_cost = rect, cost
    return best


def _label_spots(m: QRectF, c: QPointF, w: float, h: float, gap: float) -> list[QPointF]:
    """Top-left corners for a w×h label beside marker `m`, nearest first: right, left, below, above,
    the corners, then the same sides slid further along, for a crowded cluster."""
    right, left = m.right() + gap, m.left() - gap - w
    below, above = m.bottom() + gap, m.top() - gap - h
    spots = [QPointF(right, c.y() - h / 2), QPointF(left, c.y() - h / 2),
             QPointF(c.x() - w / 2, below), QPointF(c.x() - w / 2, above),
             QPointF(right, m.bottom()), QPointF(left, m.bottom()), QPointF(right, m.top() - h),
             QPointF(left, m.top() - h), QPointF(m.left(), below), QPointF(m.right() - w, below),
             QPointF(m.left(), above), QPointF(m.right() - w, above)]
    for step in (1, 2, 3):
        for sign in (1, -1):
            dy = sign * step * h
            spots += [QPointF(right, c.y() - h / 2 + dy), QPointF(left, c.y() - h / 2 + dy)]
            dy = sign * step * h  # below and above, further out
            spots += [QPointF(c.x() - w / 2, (below if sign > 0 else above) + dy)]
    return spots


def _distance(rect: QRectF, point: QPointF) -> float:
    """Pixels from `point` to the nearest edge of `rect` (0 inside it)."""
    dx = max(rect.left() - point.x(), 0.0, point.x() - rect.right())
    dy = max(rect.top() - point.y(), 0.0, point.y() - rect.bottom())
    return math.hypot(dx, dy)


def _area(polygon: QPolygonF) -> float:
    """The area a polygon encloses (shoelace formula)."""
    pts = [polygon.at(i) for i in range(polygon.count())]
    return abs(sum(a.x() * b.y() - b.x() * a.y() for a, b in zip(pts, pts[1:] + pts[:1]))) / 2


class LogAxis(pg.AxisItem):
    """Log-mode ticks a person reads: 0.2, 0.5, 1, 2, 5, 10, 20 … instead of 2·10¹ crowding 3·10¹."""

    def logTickValues(self, minVal, maxVal, size, stdTicks):
        decades = range(math.floor(minVal), math.ceil(maxVal) + 1)

        def within(mults):
            return [math.log10(m) + d for d in decades for m in mults if minVal <= math.log10(m) + d <= maxVal]

        wide = maxVal - minVal > 3  # past three decades, 1-2-5 labels would crowd: decades only
        major = within((1,) if wide else (1, 2, 5))
        if len(major) < 3:
            major = within((1, 2, 3, 5, 7))  # within one decade; every multiple would crowd at 0.08 0.09 0.1
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
