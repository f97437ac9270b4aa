"""The statistics view (offscreen): it draws what the statistics service computes.

Charts from the history (hover details, lines broken at idle gaps, busy runs hollow,
remote models apart), the size chart's labels off its markers, the benchmark table
fitting the window, the Benchmark and Cancel buttons, and the bandwidth probe off the
GUI thread.
"""

import statistics
import threading
from datetime import UTC, datetime, timedelta

import pytest
from PySide6 import QtGui
from PySide6.QtCore import QEvent, QPointF, Qt
from PySide6.QtGui import QColor, QMouseEvent, QPalette, QTextDocument
from PySide6.QtWidgets import (
    QAbstractButton,
    QAbstractItemView,
    QApplication,
    QComboBox,
    QWidget,
)

from assistant.chat_service import ChatService
from assistant.history import HistoryStore
from assistant.stats_service import StatsService
from models import registry
from models.registry import InstalledModel
from tests.support.fake_engine import FakeEngine
from ui.bridge import BenchmarkBridge
from ui.stats_view import ALL_MODELS, BENCH_LEGEND, StatsView

BANDWIDTH = 20e9  # bytes/s, given: the real probe is models.speed.memory_bandwidth
GB = 1e9
START = datetime(2026, 3, 1, 9, tzinfo=UTC)

# name: (file size, quant, gen tok/s of each reply in order, prompt tok/s, ttft ms)
MODELS = {
    "gemma-3-270m": (253_060_000, "Q4_K_M", [41.0, 44.5, 39.0, 47.2, 40.1], 480.0, 95.0),
    "qwen2.5-0.5b-instruct:Q8_0": (531_000_000, "Q8_0", [22.0, 19.5, 21.1], 230.0, 180.0),
    "llama-3.2-1b-instruct:Q4_K_M": (807_000_000, "Q4_K_M", [14.0, 15.2, 13.1, 16.0], 120.0, 410.0),
}


def reply_record(name, size, quant, gen_tps, prompt_tps, ttft_ms, *, busy=0.0, remote=None):
    """A per-reply record as the engine writes it (ResponseStats.to_dict())."""
    prompt_tokens, completion_tokens = 48, 200
    return {
        "reply": "…", "model": {"name": name, "file": None if remote else f"/models/{name}.gguf", "quant": quant,
                                "size_bytes": None if remote else size, "n_params": None},
        "prompt_tokens": prompt_tokens, "cached_tokens": 0, "prompt_ms": prompt_tokens / prompt_tps * 1000,
        "prompt_tps": prompt_tps, "ttft_ms": ttft_ms, "completion_tokens": completion_tokens,
        "gen_ms": completion_tokens / gen_tps * 1000, "gen_tps": gen_tps, "total_ms": 5000.0, "stop_reason": "eos",
        "n_ctx": 4096, "n_threads": None if remote else 2,
        "memory": {"weights_bytes": None, "kv_bytes": None, "compute_bytes": None, "rss_bytes": None,
                   "rss_peak_bytes": None, "vram_bytes": None} if remote else
                  {"weights_bytes": size, "kv_bytes": 50_331_648, "compute_bytes": 10_000_000,
                   "rss_bytes": size + 400_000_000, "rss_peak_bytes": size + 450_000_000, "vram_bytes": None},
        "backend": {"kind": "remote" if remote else "cpu", "gpu_offload": False}, "context": {}, "sampling": {},
        "chat_format": "gemma",
        "transport": {"kind": "remote", "remote": remote} if remote else {"cpu_other_busy": busy},
    }


def bench_result(name, size, quant, pp, tg):
    """What the statistics service saves: run_benchmark's result plus memory."""
    return {"model": name, "file": f"/models/{name}.gguf", "quant": quant, "threads": 2, "n_ctx": 4096,
            "backend": "cpu", "pp": {"tokens": 256, "tps": pp}, "tg": {"tokens": 64, "tps": tg}, "stream": [],
            "size_bytes": size, "memory": {"weights_bytes": size, "kv_bytes": 50_331_648,
                                           "compute_bytes": 10_000_000, "rss_bytes": size + 400_000_000,
                                           "vram_bytes": None}}


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


def add_reply(store, when: datetime, stats: dict) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "…", stats=stats)
    store.conn.execute("UPDATE stats SET created_at = ? WHERE message_id = ?", (when.isoformat(), msg.id))


@pytest.fixture
def filled(store):
    for i, (name, (size, quant, speeds, pp, ttft)) in enumerate(MODELS.items()):
        for j, tps in enumerate(speeds):
            # Spread the replies over days, as a real history is.
            add_reply(store, START + timedelta(days=j, hours=i), reply_record(name, size, quant, tps, pp + j, ttft + j))
    return store


@pytest.fixture
def make_view(qtbot):
    chats = []

    def make(store, *, probe=lambda: BANDWIDTH, engine=None, installed=None, size=(1100, 800)):
        chat = ChatService(engine or FakeEngine(load_delay=0), store)
        chats.append(chat)
        stats = StatsService(chat, bandwidth_probe=probe, installed=installed)
        view = StatsView(stats, BenchmarkBridge(stats))
        qtbot.addWidget(view)
        view.resize(*size)
        view.show()
        qtbot.waitUntil(lambda: stats.cached_bandwidth()[0], timeout=5000)  # the probe, off the GUI thread
        qtbot.wait(10)  # its result arrives queued
        return view

    yield make
    for chat in chats:
        chat.close()


def xy(scatter):
    x, y = scatter.getData()
    return list(x), list(y)


def shown(tooltip: str) -> str:
    """A tooltip's text as Qt shows it (markup rendered)."""
    doc = QTextDocument()
    doc.setHtml(tooltip) if QtGui.Qt.mightBeRichText(tooltip) else doc.setPlainText(tooltip)
    return doc.toPlainText().replace("\u2028", "\n")


def hover(qtbot, chart, x, y) -> str:
    """Move the mouse onto the point (x, y) in the chart's data coordinates; the tooltip it shows."""
    qtbot.wait(150)  # the axes settle their widths after the first paint, moving the plot
    vb = chart.plot.getViewBox()
    at = chart.widget.mapFromScene(vb.mapViewToScene(QPointF(x, y)))
    viewport = chart.widget.viewport()
    for pos in (QPointF(at.x() + 30, at.y() + 30), QPointF(at)):
        QApplication.sendEvent(viewport, QMouseEvent(QEvent.Type.MouseMove, pos, viewport.mapToGlobal(pos),
                                                     Qt.MouseButton.NoButton, Qt.MouseButton.NoButton,
                                                     Qt.KeyboardModifier.NoModifier))
        qtbot.wait(60)  # pyqtgraph drops mouse moves closer together than its rate limit
    return shown(vb.toolTip())


# --- the charts ------------------------------------------------------------------------------


def test_each_chart_over_time_has_one_series_per_model_in_time_order(make_view, filled):
    view = make_view(filled)
    for chart in (view.speed_chart, view.prompt_chart, view.ttft_chart):
        assert list(chart.series) == sorted(MODELS)
    for name, (_, _, speeds, pp, ttft) in MODELS.items():
        assert xy(view.speed_chart.series[name].markers)[1] == speeds
        assert xy(view.prompt_chart.series[name].markers)[1] == [pp + j for j in range(len(speeds))]
        assert xy(view.ttft_chart.series[name].markers)[1] == [ttft + j for j in range(len(speeds))]
        times = xy(view.speed_chart.series[name].markers)[0]
        assert times == sorted(times) and times[1] - times[0] == pytest.approx(86400)
    # One colour per model, the same in every chart.
    def colours(chart):
        return {n: QColor(i.markers.data["brush"][0].color()).name() for n, i in chart.series.items()}
    assert len(set(colours(view.speed_chart).values())) == 3
    for chart in (view.prompt_chart, view.ttft_chart):
        assert colours(chart) == colours(view.speed_chart)


def test_hovering_a_point_shows_its_model_time_speed_and_tokens(qtbot, make_view, filled):
    view = make_view(filled)
    xs, ys = xy(view.speed_chart.series["gemma-3-270m"].markers)
    text = hover(qtbot, view.speed_chart, xs[1], ys[1])
    when = (START + timedelta(days=1)).astimezone().strftime("%Y-%m-%d %H:%M")
    assert text.splitlines() == ["gemma-3-270m", when, "44.5 tokens/s · 200 tokens"]
    xs, ys = xy(view.ttft_chart.series["qwen2.5-0.5b-instruct:Q8_0"].markers)
    assert "180 ms to first token · 48 prompt tokens" in hover(qtbot, view.ttft_chart, xs[0], ys[0])
    # The size chart's points tell their median and how many replies it is over.
    x, y = xy(view.size_chart.points["gemma-3-270m"])
    text = hover(qtbot, view.size_chart, x[0], y[0])
    assert "gemma-3-270m" in text and "253 MB file" in text and "median 41.0 tokens/s over 5 quiet replies" in text


def test_lines_join_one_sitting_and_break_across_idle_gaps(make_view, store):
    for minutes in (0, 4, 9, 4 * 60, 4 * 60 + 6, 3 * 24 * 60):
        add_reply(store, START + timedelta(minutes=minutes), reply_record("gemma-3-270m", 253_060_000, "Q4_K_M",
                                                                          40.0 + minutes % 7, 480.0, 95.0))
    view = make_view(store)
    items = view.speed_chart.series["gemma-3-270m"]
    assert list(items.line.opts["connect"]) == [True, True, False, True, False, False]
    assert len(xy(items.markers)[0]) == 6  # every reply keeps its marker


def test_busy_runs_are_hollow_and_the_view_says_the_medians_leave_them_out(make_view, store):
    for i, (tps, busy) in enumerate([(41.0, 0.0), (12.0, 0.97), (44.0, 0.0)]):
        add_reply(store, START + timedelta(minutes=i), reply_record("gemma-3-270m", 253_060_000, "Q4_K_M", tps,
                                                                    480.0, 95.0, busy=busy))
    view = make_view(store)
    markers = view.speed_chart.series["gemma-3-270m"].markers
    background = view.speed_chart.widget.backgroundBrush().color()
    brushes = [b.color() for b in markers.data["brush"]]
    assert brushes[1] == background and brushes[0] != background and brushes[2] == brushes[0]
    assert markers.data["pen"][1].color() == brushes[0]  # the outline keeps the model's colour
    assert xy(view.size_chart.points["gemma-3-270m"])[1] == [pytest.approx(__import__("math").log10(42.5))]
    assert "Medians leave out 1 reply on a busy CPU (hollow markers)." in view.note.text()
    assert view.note.isVisibleTo(view) and "busy CPU" in view.legend.text()


def test_remote_models_are_marked_and_kept_off_the_size_chart(make_view, filled):
    for i in range(2):
        add_reply(filled, START + timedelta(hours=2, minutes=i),
                  reply_record("llama3:8b@lab", None, None, 60.0 + i, 900.0, 300.0, remote="lab"))
    view = make_view(filled)
    remote = view.speed_chart.series["llama3:8b@lab"]
    assert remote.series.remote and remote.markers.opts["symbol"] == "d"
    assert view.speed_chart.series["gemma-3-270m"].markers.opts["symbol"] == "o"
    assert "llama3:8b@lab" not in view.size_chart.points and set(view.size_chart.points) == set(MODELS)
    assert "llama3:8b@lab&nbsp;(remote)" in view.legend.text()
    assert "Remote models (llama3:8b@lab) are not on this chart" in view.note.text()
    assert "not on this chart" in view.size_chart.widget.accessibleDescription()


def test_the_model_filter_shows_one_model_over_time(qtbot, make_view, filled):
    view = make_view(filled)
    combo = view.model_filter
    assert [combo.itemText(i) for i in range(combo.count())] == [ALL_MODELS, *sorted(MODELS)]
    combo.setCurrentIndex(combo.findText("qwen2.5-0.5b-instruct:Q8_0"))
    for chart in (view.speed_chart, view.prompt_chart, view.ttft_chart):
        assert list(chart.series) == ["qwen2.5-0.5b-instruct:Q8_0"]
    assert xy(view.speed_chart.series["qwen2.5-0.5b-instruct:Q8_0"].markers)[1] == [22.0, 19.5, 21.1]
    assert set(view.size_chart.points) == set(MODELS)  # the comparison keeps every model
    # The choice survives a refresh, and the keyboard moves it.
    view.refresh()
    assert combo.currentText() == "qwen2.5-0.5b-instruct:Q8_0"
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    assert combo.currentText() == ALL_MODELS and set(view.speed_chart.series) == set(MODELS)


def test_the_size_chart_has_one_point_per_model_at_its_median_and_the_bandwidth_limit(make_view, filled):
    view = make_view(filled)
    chart = view.size_chart
    assert set(chart.points) == set(MODELS)
    for name, (size, _, speeds, _, _) in MODELS.items():
        x, y = xy(chart.points[name])
        assert 10 ** x[0] == pytest.approx(size / GB) and 10 ** y[0] == pytest.approx(statistics.median(speeds))
        assert name in chart.labels[name].toPlainText()
    # The limit: tokens/s = bandwidth / model bytes, across the range of the points.
    assert chart.limit is not None and chart.bandwidth == BANDWIDTH
    xs, ys_ = chart.limit.getOriginalDataset()
    for x, y in zip(xs, ys_, strict=True):
        assert y == pytest.approx(BANDWIDTH / (x * GB))
    assert min(xs) < 0.253 and max(xs) > 0.807
    assert "20 GB/s" in chart.limit_label.toPlainText()
    assert "gemma-3-270m: 253 MB, median 41.0 tokens/s" in chart.widget.accessibleDescription()


def labels_clear_of_markers(chart) -> list[str]:
    """Check that no shown label covers a marker or another label or leaves the chart; the models labelled."""
    markers = chart.marker_rects()
    labels = {m: label.sceneBoundingRect() for m, label in chart.labels.items() if label.isVisible()}
    area = chart.plot.getViewBox().sceneBoundingRect()
    for model, rect in labels.items():
        for other, marker in markers.items():
            assert not rect.intersects(marker), f"{model}'s label covers {other}'s marker"
        for other, rect2 in labels.items():
            assert other == model or not rect.intersects(rect2), f"{model}'s label covers {other}'s label"
        assert area.contains(rect), f"{model}'s label leaves the chart"
    return sorted(labels)


def test_labels_stay_off_the_markers_even_when_points_crowd(qtbot, make_view, store):
    # Four models close together in size and speed, where labels below or beside each point would collide.
    crowd = {"alpha-model-q4": (300e6, 30.0), "beta-model-q4": (320e6, 28.0), "gamma-model-q5": (345e6, 26.5),
             "delta-model-q8": (700e6, 14.0)}
    for i, (name, (size, tps)) in enumerate(crowd.items()):
        add_reply(store, START + timedelta(minutes=i), reply_record(name, int(size), "Q4_0", tps, 400.0, 90.0))
    view = make_view(store, size=(1400, 860))
    qtbot.wait(50)
    assert labels_clear_of_markers(view.size_chart) == sorted(crowd)  # room for every label, in full
    assert all("t/s" in label.toPlainText() for label in view.size_chart.labels.values())
    # Placed again at another size (pixels, not data units); where a cluster leaves no room, a label is
    # shortened to the name or left out, never drawn over a marker or another label.
    view.resize(900, 700)
    qtbot.waitUntil(lambda: view.size_chart.widget.width() < 500, timeout=2000)
    qtbot.wait(50)
    assert len(labels_clear_of_markers(view.size_chart)) >= 3


def test_the_bandwidth_probe_runs_once_and_never_on_the_gui_thread(qtbot, make_view, filled):
    threads = []

    def probe():
        threads.append(threading.current_thread())
        return BANDWIDTH

    view = make_view(filled, probe=probe)
    qtbot.waitUntil(lambda: view.size_chart.limit is not None, timeout=5000)
    view.refresh()
    view.refresh()
    assert len(threads) == 1 and threads[0] is not threading.main_thread()
    assert QApplication.instance().thread() is not None and view.bandwidth == BANDWIDTH


def test_without_a_bandwidth_figure_the_points_still_show(make_view, filled, caplog):
    def no_probe():
        raise OSError("no probe")

    view = make_view(filled, probe=no_probe)
    assert view.size_chart.limit is None and set(view.size_chart.points) == set(MODELS)
    assert "no memory-bandwidth figure" in caplog.text


def test_an_empty_history_says_so(make_view, store):
    view = make_view(store)
    for chart in view.charts():
        assert chart._note is not None and chart._note.toPlainText()
    assert view.speed_chart.series == {} and view.size_chart.points == {}
    assert view.table.rowCount() == 0 and view.table_empty.isVisibleTo(view)
    assert [view.model_filter.itemText(i) for i in range(view.model_filter.count())] == [ALL_MODELS]
    assert not view.note.isVisibleTo(view)


def test_a_model_name_that_looks_like_markup_shows_as_written(qtbot, make_view, store):
    name = "<b>bold</b><img src=x>&amp;"
    add_reply(store, START, reply_record(name, 253_060_000, "Q4_K_M", 41.0, 480.0, 95.0))
    store.save_benchmark(bench_result(name, 253_060_000, "Q4_K_M", 500.0, 50.0))
    view = make_view(store)
    xs, ys = xy(view.speed_chart.series[name].markers)
    assert hover(qtbot, view.speed_chart, xs[0], ys[0]).splitlines()[0] == name
    assert shown(view.table.item(0, 0).toolTip()).splitlines()[0] == name and view.table.item(0, 0).text() == name
    legend = QTextDocument()
    legend.setHtml(view.legend.text())
    assert name in legend.toPlainText()
    assert view.size_chart.labels[name].toPlainText().startswith(name)


# --- the benchmark table ---------------------------------------------------------------------


def test_the_benchmark_table_shows_saved_benchmarks_newest_first_and_explains_pp_and_tg(make_view, filled):
    filled.save_benchmark(bench_result("gemma-3-270m", 253_060_000, "Q4_K_M", 512.3, 52.8))
    filled.save_benchmark(bench_result("llama-3.2-1b-instruct:Q4_K_M", 807_000_000, "Q4_K_M", 131.0, 17.4))
    view = make_view(filled)
    table = view.table
    headers = [table.horizontalHeaderItem(i).text() for i in range(table.columnCount())]
    rows = [{h: table.item(r, c).text() for c, h in enumerate(headers)} for r in range(table.rowCount())]
    assert [r["Model"] for r in rows] == ["llama-3.2-1b-instruct:Q4_K_M", "gemma-3-270m"]
    assert (rows[1]["pp t/s"], rows[1]["tg t/s"], rows[1]["Weights"], rows[1]["KV cache"]) == (
        "512", "52.8", "253 MB", "50.3 MB")
    assert rows[1]["Ran on"] == "cpu, 2 threads" and rows[1]["RSS"] == "653 MB"
    assert not view.table_empty.isVisibleTo(view)
    # pp and tg are explained: header tooltips, cell tooltips with the token counts, a one-line legend.
    pp, tg = headers.index("pp t/s"), headers.index("tg t/s")
    assert "prompt processing" in table.horizontalHeaderItem(pp).toolTip()
    assert "text generation" in table.horizontalHeaderItem(tg).toolTip()
    assert table.item(1, pp).toolTip() == "256-token prompt read at 512 tokens/s"
    assert view.bench_legend.text() == BENCH_LEGEND and view.bench_legend.isVisibleTo(view)
    # Sorting by a figure sorts by its value, not its text.
    table.sortByColumn(tg, Qt.SortOrder.AscendingOrder)
    assert [table.item(r, 0).text() for r in range(2)] == ["llama-3.2-1b-instruct:Q4_K_M", "gemma-3-270m"]


def test_the_benchmark_table_fits_a_1400_px_window_without_cutting_figures(qtbot, tmp_path, filled, monkeypatch):
    from models import speed
    from tests.support.window import open_window

    probed_on = []
    monkeypatch.setattr(speed, "memory_bandwidth",
                        lambda force=False: probed_on.append(threading.current_thread()) or BANDWIDTH)
    long_name = "bartowski/Qwen2.5-Coder-32B-Instruct-abliterated-GGUF:Q4_K_M"
    filled.save_benchmark(bench_result(long_name, 19_851_000_000, "Q4_K_M", 12.3, 2.1))
    filled.save_benchmark(bench_result("gemma-3-270m", 253_060_000, "Q4_K_M", 512.3, 52.8))
    window = open_window(qtbot, tmp_path, FakeEngine(), db=tmp_path / "history.db")
    try:
        window.resize(1400, 900)
        window.show()
        window.show_page(1)
        view = window.stats_view
        qtbot.waitUntil(lambda: view.size_chart.limit is not None, timeout=5000)
        table = view.table
        qtbot.waitUntil(lambda: table.viewport().width() > 0, timeout=2000)
        header = table.horizontalHeader()
        assert header.length() <= table.viewport().width() and not table.horizontalScrollBar().isVisible()
        for j in range(1, table.columnCount()):  # every figure and header is whole
            assert header.sectionSize(j) >= table.sizeHintForColumn(j), table.horizontalHeaderItem(j).text()
        # The long name is elided in its middle, never cut; the tooltip has all of it.
        row = next(r for r in range(table.rowCount()) if table.item(r, 0).text() == long_name)
        assert header.sectionSize(0) >= 100 and table.textElideMode() == Qt.TextElideMode.ElideMiddle
        assert long_name in shown(table.item(row, 0).toolTip())
        assert probed_on and all(t is not threading.main_thread() for t in probed_on)
    finally:
        window.close()


# --- running benchmarks ----------------------------------------------------------------------


def test_benchmark_button_runs_the_checked_models_through_the_bridge(qtbot, make_view, store):
    registry.register(InstalledModel(name="gemma-3-1b", path="/nowhere/gemma-3-1b.gguf", source="hub"))
    registry.register(InstalledModel(name="qwen2.5-0.5b", path="/nowhere/qwen.gguf", source="hub"))
    view = make_view(store)
    names = [view.model_list.topLevelItem(i).text(0) for i in range(view.model_list.topLevelItemCount())]
    assert names == [registry.starter_entry().name, "gemma3-270m-base", "gemma-3-1b", "qwen2.5-0.5b"]
    assert view.model_list.topLevelItem(1).text(1) == "on first use"  # the built-in Gemma is assembled when used
    assert view.model_list.topLevelItem(2).text(1) == "missing"
    assert not view.bench_button.isEnabled()  # nothing checked yet

    # The keyboard checks models: Space on the current row.
    view.model_list.setFocus()
    qtbot.keyClick(view.model_list, Qt.Key.Key_Space)  # the starter
    for _ in range(3):
        qtbot.keyClick(view.model_list, Qt.Key.Key_Down)
    qtbot.keyClick(view.model_list, Qt.Key.Key_Space)  # qwen
    assert view.checked_models() == [registry.starter_entry().name, "qwen2.5-0.5b"]
    assert view.bench_button.isEnabled() and not view.cancel_button.isVisibleTo(view)

    bridge = view.benchmarks
    with qtbot.waitSignal(bridge.benchmarkFinished, timeout=10_000) as done:
        qtbot.mouseClick(view.bench_button, Qt.MouseButton.LeftButton)
        assert not view.bench_button.isEnabled() and view.progress.isVisibleTo(view)
        assert view.cancel_button.isVisibleTo(view) and view.cancel_button.isEnabled()
    # The fake engine is no model on this machine: each model is an error row, said in the status.
    assert [r["model"] for r in done.args[0]["results"]] == [registry.starter_entry().name, "qwen2.5-0.5b"]
    assert "No model was benchmarked." in view.status.text() and "Only a model on this machine" in view.status.text()
    assert view.bench_button.isEnabled() and not view.progress.isVisibleTo(view)
    assert not view.cancel_button.isVisibleTo(view)
    assert view.checked_models() == [registry.starter_entry().name, "qwen2.5-0.5b"]  # kept across the refresh


def test_the_charts_follow_the_palette(make_view, filled):
    view = make_view(filled)
    light = view.palette().color(QPalette.ColorRole.Base)
    assert view.speed_chart.widget.backgroundBrush().color() == light
    dark = QPalette(QColor("#353535"), QColor("#353535"))
    dark.setColor(QPalette.ColorRole.Base, QColor("#1e1e1e"))
    dark.setColor(QPalette.ColorRole.Text, QColor("#e6e6e6"))
    view.setPalette(dark)
    for chart in view.charts():
        assert chart.widget.backgroundBrush().color() == QColor("#1e1e1e")  # never pyqtgraph's black
        assert chart.plot.getAxis("left").textPen().color() == QColor("#e6e6e6")
    assert set(view.speed_chart.series) == set(MODELS)  # redrawn, with the dark set of colours


def test_every_control_has_an_accessible_name_and_the_keyboard_reaches_it(qtbot, make_view, filled):
    view = make_view(filled)
    # A widget with a focus proxy (a chart's viewport) hands its focus to the proxy, which is checked.
    focusable = [w for w in view.findChildren(QWidget)
                 if w.focusPolicy() & Qt.FocusPolicy.TabFocus and w.isVisibleTo(view) and w.focusProxy() is None]
    interactive = [w for w in view.findChildren(QWidget)
                   if isinstance(w, (QAbstractButton, QComboBox, QAbstractItemView)) and w.isVisibleTo(view)]
    interactive.append(view.cancel_button)  # shown while a benchmark runs
    assert {view.model_filter, view.refresh_button, view.model_list, view.bench_button, view.table} <= set(interactive)
    for w in set(focusable) | set(interactive):
        assert w.accessibleName(), f"{type(w).__name__} {w.objectName()!r} has no accessible name"
    for chart in view.charts():
        assert chart.widget in focusable and chart.widget.accessibleDescription()

    # Tab goes round every control (the Benchmark button is disabled until a model is checked).
    view.activateWindow()
    qtbot.waitUntil(view.isActiveWindow, timeout=2000)
    view.model_filter.setFocus()
    seen = []
    for _ in range(len(focusable) + 2):
        seen.append(QApplication.focusWidget())
        qtbot.keyClick(QApplication.focusWidget(), Qt.Key.Key_Tab)
    expected = {view.model_filter, view.refresh_button, view.model_list, view.table,
                *(c.widget for c in view.charts())}
    assert expected <= set(seen)


# --- with the real engine --------------------------------------------------------------------


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    from tests.support.tiny_gguf import write_tiny_llama

    folder = tmp_path_factory.mktemp("tiny-models")
    return [write_tiny_llama(folder / f"tiny-{i}.gguf", n_layers=2 + i, seed=i) for i in range(3)]


def check(view, name):
    item = next(view.model_list.topLevelItem(i) for i in range(view.model_list.topLevelItemCount())
                if view.model_list.topLevelItem(i).text(0) == name)
    item.setCheckState(0, Qt.CheckState.Checked)


@pytest.mark.llama_cpp
def test_benchmark_runs_through_the_statistics_service_and_fills_the_table(qtbot, make_view, store, tiny_models):
    from assistant.engine import LocalEngine

    registry.register(InstalledModel(name="tiny", path=str(tiny_models[0]), source="local"))
    view = make_view(store, engine=LocalEngine())
    check(view, "tiny")
    progress = []
    view.benchmarks.benchmarkProgress.connect(progress.append)
    with qtbot.waitSignal(view.benchmarks.benchmarkFinished, timeout=60_000) as done:
        qtbot.mouseClick(view.bench_button, Qt.MouseButton.LeftButton)
    [result] = done.args[0]["results"]
    assert "error" not in result, result
    qtbot.waitUntil(lambda: view.table.rowCount() == 1, timeout=5000)
    assert view.table.item(0, 0).text() == "tiny"
    assert str(progress[0]) == "Loading tiny…" and any("pp256" in str(p) for p in progress)
    assert [p.step for p in progress] == [0, 1, 2] and progress[0].steps == 3
    [saved] = store.benchmarks()  # saved once, by the service
    assert saved["model"] == "tiny" and saved["tg_tokens"] == 64 and saved["tg_tps"] > 0
    assert saved["size_bytes"] == tiny_models[0].stat().st_size and saved["weights_bytes"] > 0
    assert view.bench_button.isEnabled() and "Benchmarked 1 model." in view.status.text()


@pytest.mark.llama_cpp
def test_the_cancel_button_stops_a_running_benchmark_between_steps(qtbot, make_view, store, tiny_models):
    from assistant.engine import LocalEngine

    for i, path in enumerate(tiny_models):
        registry.register(InstalledModel(name=f"tiny-{i}", path=str(path), source="local"))
    view = make_view(store, engine=LocalEngine())
    for i in range(3):
        check(view, f"tiny-{i}")
    bridge = view.benchmarks
    finished = []
    bridge.benchmarkFinished.connect(finished.append)
    with qtbot.waitSignal(bridge.benchmarkProgress, timeout=30_000):
        qtbot.mouseClick(view.bench_button, Qt.MouseButton.LeftButton)
    qtbot.mouseClick(view.cancel_button, Qt.MouseButton.LeftButton)
    assert not view.cancel_button.isEnabled() and "Stopping" in view.status.text()
    qtbot.waitUntil(lambda: bool(finished), timeout=60_000)
    [payload] = finished
    assert payload["cancelled"] and len(payload["results"]) < 3
    assert len(store.benchmarks()) == len(payload["results"]) < 3  # the model cut short is not saved
    qtbot.waitUntil(lambda: view.status.text().startswith("Cancelled"), timeout=2000)
    assert not view.cancel_button.isVisibleTo(view) and not view.progress.isVisibleTo(view)
    assert view.bench_button.isEnabled()


def test_the_view_sums_up_saved_comparisons_per_pair(make_view, store):
    from tests.test_compare_history import _pair

    view = make_view(store)
    assert view.verdicts.isHidden()  # no comparisons yet: nothing to say
    for i in range(4):
        _, (small, _big) = _pair(store, f"task {i}")
        store.set_verdict(small, "good" if i < 3 else "not_good")
    view.refresh()
    assert not view.verdicts.isHidden()
    assert view.verdicts.text() == ("On your 4 comparisons, SmolLM2 135M was good enough in 3; it is 3.0× faster "
                                    "and needs 0.3× the memory of Gemma 3 1B.")


# --- a busy CPU, and a short window (issue 21) -----------------------------------------------------------------


def test_a_benchmark_on_a_busy_cpu_is_marked_busy_in_its_row(make_view, store):
    from ui.stats_view import BENCH_COLUMNS

    busy = bench_result("gemma-3-270m", 253_060_000, "Q4_K_M", 210.0, 12.5) | {"cpu_other_busy": 0.95}
    quiet = bench_result("llama-3.2-1b-instruct:Q4_K_M", 807_000_000, "Q4_K_M", 131.0, 17.4) | {"cpu_other_busy": 0.0}
    store.save_benchmark(busy)
    store.save_benchmark(quiet)
    view = make_view(store)
    columns = [key for _, key, _, _ in BENCH_COLUMNS]
    rows = {view.table.item(r, 0).text(): r for r in range(view.table.rowCount())}

    def cell(model, key):
        return view.table.item(rows[model], columns.index(key))

    assert cell("gemma-3-270m", "tg_tps").text() == "12.5 (busy CPU)"
    assert cell("gemma-3-270m", "pp_tps").text() == "210 (busy CPU)"
    assert "busy CPU" in cell("gemma-3-270m", "threads").text()
    assert "other programs used the CPU" in cell("gemma-3-270m", "tg_tps").toolTip()
    assert not cell("gemma-3-270m", "tg_tps").icon().isNull()  # a drawn mark, not a character
    assert cell("llama-3.2-1b-instruct:Q4_K_M", "tg_tps").text() == "17.4"
    assert "busy" not in cell("llama-3.2-1b-instruct:Q4_K_M", "threads").text()


def test_the_size_chart_says_when_every_reply_ran_on_a_busy_cpu(make_view, store):
    from assistant.stats_series import ALL_BUSY, NO_SIZES

    view = make_view(store)
    assert view.size_chart._note.toPlainText().replace("\n", " ") == NO_SIZES  # no reply at all yet
    for i in range(2):
        add_reply(store, START + timedelta(minutes=i), reply_record("gemma-3-270m", 253_060_000, "Q4_K_M", 9.0,
                                                                    400.0, 90.0, busy=0.95))
    view.refresh()
    assert view.size_chart.points == {}
    assert view.size_chart._note.toPlainText().replace("\n", " ") == ALL_BUSY  # not "no replies yet"
    assert "busy CPU" in view.size_chart.widget.accessibleDescription()


def test_at_700_by_500_the_charts_keep_their_height_and_the_page_scrolls(qtbot, make_view, filled):
    from ui.stats_view import CHART_MIN_HEIGHT

    view = make_view(filled, size=(615, 450))  # the view's share of a 700x500 window (the rail takes the rest)
    qtbot.wait(50)
    assert view.chart_columns == 1  # one chart a row: each title has the view's width
    for chart in view.charts():
        assert chart.widget.height() >= CHART_MIN_HEIGHT
        title = chart.plot.titleLabel
        assert title.item.boundingRect().width() <= chart.widget.width()  # the title is not cut
    assert view.scroll.verticalScrollBar().maximum() > 0  # the rest is a scroll away
    view.scroll.verticalScrollBar().setValue(view.scroll.verticalScrollBar().maximum())
    qtbot.wait(20)
    assert view.table.isVisible() and view.table.height() >= 60  # the benchmarks are reachable, not a sliver
    view.resize(1300, 800)
    qtbot.wait(50)
    assert view.chart_columns == 2
