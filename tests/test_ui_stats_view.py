"""The statistics view (offscreen): charts from the history, the filter, the benchmark table and button."""

import statistics
from datetime import datetime, timedelta, timezone

import pytest
from PySide6.QtCore import Qt
from PySide6.QtGui import QColor, QPalette
from PySide6.QtWidgets import QAbstractButton, QAbstractItemView, QApplication, QComboBox, QWidget

from assistant.history import HistoryStore
from models import registry
from models.registry import InstalledModel
from ui.stats_view import ALL_MODELS, StatsView

BANDWIDTH = 20e9  # bytes/s, given: the real probe is models.speed.memory_bandwidth
GB = 1e9

# name: (file size, quant, gen tok/s of each reply in order, prompt tok/s, ttft ms)
MODELS = {
    "gemma-3-270m": (253_060_000, "Q4_K_M", [41.0, 44.5, 39.0, 47.2, 40.1], 480.0, 95.0),
    "qwen2.5-0.5b-instruct:Q8_0": (531_000_000, "Q8_0", [22.0, 19.5, 21.1], 230.0, 180.0),
    "llama-3.2-1b-instruct:Q4_K_M": (807_000_000, "Q4_K_M", [14.0, 15.2, 13.1, 16.0], 120.0, 410.0),
}


def reply_record(name, size, quant, gen_tps, prompt_tps, ttft_ms):
    """A per-reply record as the engine writes it (ResponseStats.to_dict())."""
    prompt_tokens, completion_tokens = 48, 200
    return {
        "reply": "…", "model": {"name": name, "file": f"/models/{name}.gguf", "quant": quant, "size_bytes": size,
                                "n_params": size * 2},
        "prompt_tokens": prompt_tokens, "cached_tokens": 0, "prompt_ms": prompt_tokens / prompt_tps * 1000,
        "prompt_tps": prompt_tps, "ttft_ms": ttft_ms, "completion_tokens": completion_tokens,
        "gen_ms": completion_tokens / gen_tps * 1000, "gen_tps": gen_tps, "total_ms": 5000.0, "stop_reason": "eos",
        "n_ctx": 4096, "n_threads": 2,
        "memory": {"weights_bytes": size, "kv_bytes": 50_331_648, "compute_bytes": 10_000_000,
                   "rss_bytes": size + 400_000_000, "rss_peak_bytes": size + 450_000_000, "vram_bytes": None},
        "backend": {"kind": "cpu", "gpu_offload": False}, "context": {}, "sampling": {}, "chat_format": "gemma",
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


@pytest.fixture
def filled(store):
    conv = store.create_conversation(model="gemma-3-270m")
    start = datetime(2026, 3, 1, 9, tzinfo=timezone.utc)
    for i, (name, (size, quant, speeds, pp, ttft)) in enumerate(MODELS.items()):
        for j, tps in enumerate(speeds):
            msg = store.add_message(conv.id, "assistant", "…", stats=reply_record(name, size, quant, tps, pp + j,
                                                                                   ttft + j))
            # Spread the replies over days, as a real history is.
            when = (start + timedelta(days=j, hours=i)).isoformat()
            store.conn.execute("UPDATE stats SET created_at = ? WHERE message_id = ?", (when, msg.id))
    return store


def make_view(qtbot, store, **kw):
    view = StatsView(store, bandwidth=kw.pop("bandwidth", BANDWIDTH), **kw)
    qtbot.addWidget(view)
    view.resize(1100, 800)
    view.show()
    return view


def ys(item):
    return list(item.getOriginalDataset()[1])


def test_each_chart_over_time_has_one_series_per_model_in_time_order(qtbot, filled):
    view = make_view(qtbot, filled)
    for chart in (view.speed_chart, view.prompt_chart, view.ttft_chart):
        assert set(chart.series) == set(MODELS)
        assert [item.name() for item in chart.series.values()] == sorted(MODELS)  # named for the legend
    for name, (_, _, speeds, pp, ttft) in MODELS.items():
        assert ys(view.speed_chart.series[name]) == speeds
        assert ys(view.prompt_chart.series[name]) == [pp + j for j in range(len(speeds))]
        assert ys(view.ttft_chart.series[name]) == [ttft + j for j in range(len(speeds))]
        times = list(view.speed_chart.series[name].getOriginalDataset()[0])
        assert times == sorted(times) and times[1] - times[0] == pytest.approx(86400)
    # One colour per model, the same in every chart.
    pens = {name: item.opts["symbolBrush"] for name, item in view.speed_chart.series.items()}
    assert len({QColor(b).name() for b in pens.values()}) == 3
    for chart in (view.prompt_chart, view.ttft_chart):
        assert {n: QColor(i.opts["symbolBrush"]).name() for n, i in chart.series.items()} == \
            {n: QColor(b).name() for n, b in pens.items()}


def test_the_model_filter_shows_one_model_over_time(qtbot, filled):
    view = make_view(qtbot, filled)
    combo = view.model_filter
    assert [combo.itemText(i) for i in range(combo.count())] == [ALL_MODELS, *sorted(MODELS)]
    combo.setCurrentIndex(combo.findText("qwen2.5-0.5b-instruct:Q8_0"))
    for chart in (view.speed_chart, view.prompt_chart, view.ttft_chart):
        assert list(chart.series) == ["qwen2.5-0.5b-instruct:Q8_0"]
    assert ys(view.speed_chart.series["qwen2.5-0.5b-instruct:Q8_0"]) == [22.0, 19.5, 21.1]
    assert set(view.size_chart.points) == set(MODELS)  # the comparison keeps every model
    # The choice survives a refresh, and the keyboard moves it.
    view.refresh()
    assert combo.currentText() == "qwen2.5-0.5b-instruct:Q8_0"
    combo.setFocus()
    qtbot.keyClick(combo, Qt.Key.Key_Home)
    assert combo.currentText() == ALL_MODELS and set(view.speed_chart.series) == set(MODELS)


def test_the_size_chart_has_one_point_per_model_at_its_median_and_the_bandwidth_limit(qtbot, filled):
    view = make_view(qtbot, filled)
    chart = view.size_chart
    assert set(chart.points) == set(MODELS)
    for name, (size, _, speeds, _, _) in MODELS.items():
        x, y = chart.points[name].getOriginalDataset()
        assert list(x) == [pytest.approx(size / GB)] and list(y) == [pytest.approx(statistics.median(speeds))]
        assert name in chart.labels[name].toPlainText()
    # The limit: tokens/s = bandwidth / model bytes, across the range of the points.
    assert chart.limit is not None and chart.bandwidth == BANDWIDTH
    xs, ys_ = chart.limit.getOriginalDataset()
    for x, y in zip(xs, ys_, strict=True):
        assert y == pytest.approx(BANDWIDTH / (x * GB))
    assert min(xs) < 0.253 and max(xs) > 0.807
    assert "20 GB/s" in chart.limit_label.toPlainText()
    assert "gemma-3-270m: 253 MB, median 41.0 tokens/s" in chart.widget.accessibleDescription()


def test_without_a_bandwidth_figure_the_points_still_show(qtbot, filled):
    view = make_view(qtbot, filled, bandwidth=lambda: (_ for _ in ()).throw(OSError("no probe")))
    assert view.size_chart.limit is None and set(view.size_chart.points) == set(MODELS)


def test_an_empty_history_says_so(qtbot, store):
    view = make_view(qtbot, store)
    for chart in view.charts():
        assert chart._note is not None and chart._note.toPlainText()
    assert view.speed_chart.series == {} and view.size_chart.points == {}
    assert view.table.rowCount() == 0 and view.table_empty.isVisibleTo(view)
    assert [view.model_filter.itemText(i) for i in range(view.model_filter.count())] == [ALL_MODELS]


def test_the_benchmark_table_shows_saved_benchmarks_newest_first(qtbot, filled):
    filled.save_benchmark(bench_result("gemma-3-270m", 253_060_000, "Q4_K_M", 512.3, 52.8))
    filled.save_benchmark(bench_result("llama-3.2-1b-instruct:Q4_K_M", 807_000_000, "Q4_K_M", 131.0, 17.4))
    view = make_view(qtbot, filled)
    table = view.table
    headers = [table.horizontalHeaderItem(i).text() for i in range(table.columnCount())]
    rows = [{h: table.item(r, c).text() for c, h in enumerate(headers)} for r in range(table.rowCount())]
    assert [r["Model"] for r in rows] == ["llama-3.2-1b-instruct:Q4_K_M", "gemma-3-270m"]
    assert (rows[1]["pp t/s"], rows[1]["tg t/s"], rows[1]["Weights"], rows[1]["KV cache"]) == (
        "512", "52.8", "253 MB", "50.3 MB")
    assert rows[1]["Ran on"] == "cpu, 2 threads" and rows[1]["RSS"] == "653 MB"
    assert not view.table_empty.isVisibleTo(view)
    # Sorting by a figure sorts by its value, not its text.
    table.sortByColumn(headers.index("tg t/s"), Qt.SortOrder.AscendingOrder)
    assert [table.item(r, 0).text() for r in range(2)] == ["llama-3.2-1b-instruct:Q4_K_M", "gemma-3-270m"]


def test_benchmark_button_emits_the_checked_models_and_shows_progress(qtbot, store):
    registry.register(InstalledModel(name="gemma-3-1b", path="/nowhere/gemma-3-1b.gguf", source="hub"))
    registry.register(InstalledModel(name="qwen2.5-0.5b", path="/nowhere/qwen.gguf", source="hub"))
    view = make_view(qtbot, store)
    names = [view.model_list.topLevelItem(i).text(0) for i in range(view.model_list.topLevelItemCount())]
    assert names == [registry.starter_entry().name, "gemma3-270m-base", "gemma-3-1b", "qwen2.5-0.5b"]
    assert view.model_list.topLevelItem(1).text(1) == "on first use"  # the built-in Gemma is assembled when used
    assert not view.bench_button.isEnabled()  # nothing checked yet

    # The keyboard checks models: Space on the current row.
    view.model_list.setFocus()
    qtbot.keyClick(view.model_list, Qt.Key.Key_Space)  # the starter
    qtbot.keyClick(view.model_list, Qt.Key.Key_Down)
    qtbot.keyClick(view.model_list, Qt.Key.Key_Down)
    qtbot.keyClick(view.model_list, Qt.Key.Key_Down)
    qtbot.keyClick(view.model_list, Qt.Key.Key_Space)  # qwen
    assert view.checked_models() == [registry.starter_entry().name, "qwen2.5-0.5b"]
    assert view.bench_button.isEnabled()

    with qtbot.waitSignal(view.benchmarkRequested, timeout=1000) as sent:
        qtbot.mouseClick(view.bench_button, Qt.MouseButton.LeftButton)
    assert sent.args == [[registry.starter_entry().name, "qwen2.5-0.5b"], None]
    assert not view.bench_button.isEnabled() and view.progress.isVisibleTo(view)

    view.on_benchmark_progress("Loading qwen2.5-0.5b…")
    view.on_benchmark_progress("qwen2.5-0.5b: pp256")
    assert view.status.text() == "qwen2.5-0.5b: pp256" and view.progress.value() == 2
    # No worker saved them (worker=None), so the view keeps them itself; an error is reported.
    view.on_benchmark_finished({"results": [
        bench_result("qwen2.5-0.5b", 531_000_000, "Q8_0", 240.0, 24.0),
        {"model": "starter", "error": "There is no model file."}]})
    assert view.table.rowCount() == 1 and view.table.item(0, 0).text() == "qwen2.5-0.5b"
    assert "Benchmarked 1 model." in view.status.text() and "no model file" in view.status.text()
    assert view.bench_button.isEnabled() and not view.progress.isVisibleTo(view)
    assert view.checked_models() == [registry.starter_entry().name, "qwen2.5-0.5b"]  # kept across the refresh


def test_results_a_worker_saved_are_not_saved_twice(qtbot, store):
    class Worker(QWidget):  # only its signals and `history` matter here
        from PySide6.QtCore import Signal

        benchmarkProgress = Signal(str)
        benchmarkFinished = Signal(dict)

    worker = Worker()
    worker.saves_results = True
    view = make_view(qtbot, store, worker=worker)
    result = bench_result("gemma-3-270m", 253_060_000, "Q4_K_M", 500.0, 50.0)
    store.save_benchmark(result)  # what the statistics service does
    worker.benchmarkProgress.emit("gemma-3-270m: tg64")
    assert view.status.text() == "gemma-3-270m: tg64"
    worker.benchmarkFinished.emit({"results": [result]})
    assert len(store.benchmarks()) == 1 and view.table.rowCount() == 1


def test_the_charts_follow_the_palette(qtbot, filled):
    view = make_view(qtbot, filled)
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


def test_every_control_has_an_accessible_name_and_the_keyboard_reaches_it(qtbot, filled):
    view = make_view(qtbot, filled)
    # A widget with a focus proxy (a chart's viewport) hands its focus to the proxy, which is checked.
    focusable = [w for w in view.findChildren(QWidget)
                 if w.focusPolicy() & Qt.FocusPolicy.TabFocus and w.isVisibleTo(view) and w.focusProxy() is None]
    interactive = [w for w in view.findChildren(QWidget)
                   if isinstance(w, (QAbstractButton, QComboBox, QAbstractItemView)) and w.isVisibleTo(view)]
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


@pytest.mark.llama_cpp
def test_benchmark_runs_through_the_statistics_service_and_fills_the_table(qtbot, tmp_path, tiny_model_path):
    from assistant.engine import LocalEngine
    from tests.support.window import open_services
    from ui.bridge import BenchmarkBridge

    registry.register(InstalledModel(name="tiny", path=str(tiny_model_path), source="local"))
    services = open_services(tmp_path, LocalEngine())
    bridge = BenchmarkBridge(services.stats)
    try:
        view = make_view(qtbot, services.history, worker=bridge)
        view.benchmarkRequested.connect(bridge.benchmark)  # what the main window does
        item = next(view.model_list.topLevelItem(i) for i in range(view.model_list.topLevelItemCount())
                    if view.model_list.topLevelItem(i).text(0) == "tiny")
        item.setCheckState(0, Qt.CheckState.Checked)
        progress = []
        bridge.benchmarkProgress.connect(progress.append)
        with qtbot.waitSignal(bridge.benchmarkFinished, timeout=60_000) as done:
            qtbot.mouseClick(view.bench_button, Qt.MouseButton.LeftButton)
        [result] = done.args[0]["results"]
        assert "error" not in result, result
        qtbot.waitUntil(lambda: view.table.rowCount() == 1, timeout=5000)
        assert view.table.item(0, 0).text() == "tiny"
        assert progress[0] == "Loading tiny…" and any("pp256" in p for p in progress)
        [saved] = services.history.benchmarks()  # saved once, by the service
        assert saved["model"] == "tiny" and saved["tg_tokens"] == 64 and saved["tg_tps"] > 0
        assert saved["size_bytes"] == tiny_model_path.stat().st_size and saved["weights_bytes"] > 0
        assert view.bench_button.isEnabled() and "Benchmarked 1 model." in view.status.text()
    finally:
        services.close()
