"""The statistics service without Qt: aggregation from a real history, the bandwidth figure,
benchmarks over several models (cancelled between steps), and `assistant bench -m A -m B`."""

from __future__ import annotations

import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from assistant.chat_service import ChatService
from assistant.history import HistoryStore
from assistant.stats_series import IDLE_GAP_S
from assistant.stats_service import BenchmarkProgress, StatsService
from tests.support.fake_engine import FakeEngine

ASSISTANT = Path(sys.prefix) / "bin" / "assistant"
START = datetime(2026, 3, 1, 9, tzinfo=UTC)
QUIET, BUSY = 0.0, 0.95  # cpu_other_busy: a quiet run, one where other programs held nearly every core


def record(model="gemma-3-270m", gen_tps=40.0, *, size=253_060_000, busy=QUIET, remote=None, threads=2,
           prompt_tps=480.0, ttft_ms=95.0, tokens=200, prompt_tokens=48):
    """A per-reply record as the engines write it (ResponseStats.to_dict(), the parts that matter here)."""
    transport = {"kind": "remote", "remote": remote, "host": "lab.local"} if remote else {"cpu_other_busy": busy}
    return {
        "reply": "…", "model": {"name": model, "file": None if remote else f"/models/{model}.gguf",
                                "quant": None if remote else "Q4_K_M", "size_bytes": None if remote else size,
                                "n_params": None},
        "prompt_tokens": prompt_tokens, "cached_tokens": 0, "prompt_ms": 100.0, "prompt_tps": prompt_tps,
        "ttft_ms": ttft_ms, "completion_tokens": tokens, "gen_ms": 5000.0, "gen_tps": gen_tps, "total_ms": 5100.0,
        "stop_reason": "eos", "n_ctx": 4096, "n_threads": None if remote else threads,
        "memory": {"weights_bytes": None if remote else size, "kv_bytes": None, "compute_bytes": None,
                   "rss_bytes": None, "rss_peak_bytes": None, "vram_bytes": None},
        "backend": {"kind": "remote" if remote else "cpu"}, "transport": transport,
    }


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


def add(store, at: datetime, stats: dict) -> None:
    conv = store.create_conversation()
    msg = store.add_message(conv.id, "assistant", "…", stats=stats)
    store.conn.execute("UPDATE stats SET created_at = ? WHERE message_id = ?", (at.isoformat(), msg.id))


@pytest.fixture
def service(store):
    chat = ChatService(FakeEngine(), store)
    yield StatsService(chat, bandwidth_probe=lambda: 14e9)
    chat.close()


# --- aggregation -------------------------------------------------------------------------------


def test_medians_leave_out_busy_runs_and_say_how_many(store, service):
    speeds = [(41.0, QUIET), (12.0, BUSY), (44.5, QUIET), (39.0, QUIET), (9.0, BUSY)]
    for i, (tps, busy) in enumerate(speeds):
        add(store, START + timedelta(minutes=5 * i), record(gen_tps=tps, busy=busy, ttft_ms=100.0 + i))
    snap = service.snapshot()
    fig = snap.figures["gemma-3-270m"]
    assert fig.gen_tps == statistics.median([41.0, 44.5, 39.0])  # the busy 12 and 9 are not in it
    assert fig.ttft_ms == statistics.median([100.0, 102.0, 103.0])
    assert (fig.replies, fig.busy_replies, snap.busy_replies) == (5, 2, 2)
    [point] = snap.size_points
    assert point.gen_tps == fig.gen_tps and point.replies == 3 and "2 replies on a busy CPU left out" in point.detail
    assert "Medians leave out 2 replies on a busy CPU" in snap.size_note()
    # Every reply is still charted; the busy ones are marked.
    [series] = snap.series["gen_tps"]
    assert series.ys == [t for t, _ in speeds] and [p.busy for p in series.points] == [b == BUSY for _, b in speeds]
    busy_detail = series.points[1].detail
    assert "busy CPU" in busy_detail and "95%" in busy_detail and "left out of the medians" in busy_detail


def test_a_run_is_busy_only_when_others_took_the_cores_it_needed(store, service):
    cores = os.cpu_count() or 1
    # One thread on a machine with spare cores: others using those spare cores do not slow it.
    spare = (cores - 1) / cores if cores > 1 else 0.0
    add(store, START, record(gen_tps=40.0, threads=1, busy=spare))
    add(store, START + timedelta(minutes=1), record(gen_tps=20.0, threads=cores, busy=1.0))
    snap = service.snapshot()
    assert [p.busy for p in snap.series["gen_tps"][0].points] == [False, True]


def test_a_model_whose_every_reply_ran_busy_has_no_median_and_the_size_chart_says_why(store, service):
    add(store, START, record("busy-model", 10.0, busy=BUSY))
    add(store, START + timedelta(minutes=1), record("busy-model", 11.0, busy=BUSY))
    snap = service.snapshot()
    assert snap.figures["busy-model"].gen_tps is None and snap.size_points == ()
    assert "busy-model: every reply ran on a busy CPU." in snap.left_off_size_chart
    assert "no quiet reply" in snap.describe("gen_tps")


def test_series_are_in_time_order_with_hover_details(store, service):
    add(store, START + timedelta(minutes=10), record(gen_tps=44.0, tokens=310))
    add(store, START, record(gen_tps=41.0, tokens=200))
    [series] = service.snapshot().series["gen_tps"]
    assert series.ys == [41.0, 44.0] and series.xs == sorted(series.xs)
    assert series.xs[0] == pytest.approx(START.timestamp())
    detail = series.points[0].detail.splitlines()
    local = START.astimezone().strftime("%Y-%m-%d %H:%M")
    assert detail == ["gemma-3-270m", local, "41.0 tokens/s · 200 tokens"]
    [ttft] = service.snapshot().series["ttft_ms"]
    assert "95.0 ms to first token · 48 prompt tokens" in ttft.points[0].detail


def test_lines_break_across_idle_gaps(store, service):
    minutes = [0, 5, 12, 12 + 3 * 60, 12 + 3 * 60 + 4, 60 * 24 * 2]  # a sitting, another hours later, days later
    for m in minutes:
        add(store, START + timedelta(minutes=m), record())
    [series] = service.snapshot().series["gen_tps"]
    assert series.connected == (True, True, False, True, False, False)
    assert [len(s) for s in series.segments()] == [3, 2, 1]
    # Exactly the gap joins; a second more does not.
    assert all(b - a <= IDLE_GAP_S for seg in series.segments() for a, b in zip(
        [p.x for p in seg], [p.x for p in seg][1:]))


def test_remote_replies_are_kept_apart_and_never_on_the_size_chart(store, service):
    add(store, START, record("llama3:8b@lab", 55.0, remote="lab", ttft_ms=300.0))
    add(store, START + timedelta(minutes=1), record("llama3:8b@lab", 57.0, remote="lab"))
    add(store, START + timedelta(minutes=2), record("gemma-3-270m", 40.0))
    # The same name on this machine and on a server: two series, never one median.
    add(store, START + timedelta(minutes=3), record("gemma-3-270m", 90.0, remote="lab"))
    snap = service.snapshot()
    assert snap.remote_models == {"llama3:8b@lab", "gemma-3-270m (remote)"}
    assert snap.figures["gemma-3-270m"].gen_tps == 40.0 and snap.figures["gemma-3-270m (remote)"].gen_tps == 90.0
    assert snap.figures["llama3:8b@lab"].gen_tps == 56.0 and snap.figures["llama3:8b@lab"].size_bytes is None
    assert [p.model for p in snap.size_points] == ["gemma-3-270m"]  # this machine's memory only
    assert any("Remote models" in s and "llama3:8b@lab" in s for s in snap.left_off_size_chart)
    remote = {s.model: s for s in snap.series["gen_tps"]}
    assert remote["llama3:8b@lab"].remote and not remote["gemma-3-270m"].remote
    assert "remote: on lab" in remote["llama3:8b@lab"].points[0].detail
    assert not any(p.busy for p in remote["llama3:8b@lab"].points)


def test_one_model_over_time_keeps_every_model_in_the_medians(store, service):
    add(store, START, record("a", 10.0))
    add(store, START, record("b", 20.0, size=500_000_000))
    snap = service.snapshot(only="b")
    assert [s.model for s in snap.series["gen_tps"]] == ["b"]
    assert snap.models == ("a", "b") and {p.model for p in snap.size_points} == {"a", "b"}


@pytest.mark.parametrize("wild", [
    {"gen_tps": "fast"}, {"gen_tps": float("nan")}, {"gen_tps": -3.0}, {"n_threads": "two"},
    {"transport": {"cpu_other_busy": "very"}}, {"transport": {"cpu_other_busy": 7}}, {"transport": "remote"},
    {"transport": {"kind": ["remote"]}}, {"model": {"name": None}}, {"completion_tokens": 10**30},
])
def test_odd_records_neither_break_the_charts_nor_count_as_figures(store, service, wild):
    add(store, START, record(gen_tps=40.0))
    add(store, START + timedelta(minutes=1), {**record(gen_tps=30.0), **wild})
    snap = service.snapshot()  # no exception
    assert snap.figures["gemma-3-270m"].gen_tps in (40.0, 35.0)
    for s in snap.series["gen_tps"]:
        assert all(isinstance(p.y, float) and p.y > 0 for p in s.points)


def test_an_empty_history_gives_empty_charts(service):
    snap = service.snapshot()
    assert snap.models == () and snap.size_points == () and all(v == () for v in snap.series.values())
    assert snap.size_note() == "" and service.benchmarks() == []


# --- the bandwidth figure ----------------------------------------------------------------------


def test_the_bandwidth_is_probed_once_even_when_asked_from_several_threads(store):
    calls = []

    def probe():
        calls.append(threading.current_thread().name)
        time.sleep(0.1)
        return 13.5e9

    chat = ChatService(FakeEngine(), store)
    try:
        stats = StatsService(chat, bandwidth_probe=probe)
        assert stats.cached_bandwidth() == (False, None)  # known only once measured; asking never probes
        threads = [threading.Thread(target=stats.memory_bandwidth) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(calls) == 1 and stats.memory_bandwidth() == 13.5e9 and stats.cached_bandwidth() == (True, 13.5e9)
    finally:
        chat.close()


def test_a_failed_probe_gives_no_figure_is_logged_and_is_not_retried(store, caplog):
    calls = []

    def probe():
        calls.append(1)
        raise OSError("no memory to probe with")

    chat = ChatService(FakeEngine(), store)
    try:
        stats = StatsService(chat, bandwidth_probe=probe)
        assert stats.memory_bandwidth() is None and stats.memory_bandwidth() is None
        assert calls == [1] and stats.cached_bandwidth() == (True, None)
        assert "no memory-bandwidth figure" in caplog.text
    finally:
        chat.close()


def test_the_default_probe_is_models_speed(store, monkeypatch):
    from models import speed

    monkeypatch.setattr(speed, "memory_bandwidth", lambda force=False: 21e9)
    chat = ChatService(FakeEngine(), store)
    try:
        assert StatsService(chat).memory_bandwidth() == 21e9
    finally:
        chat.close()


# --- benchmarks --------------------------------------------------------------------------------


def test_a_model_that_is_not_local_is_an_error_row_and_the_others_go_on(store):
    chat = ChatService(FakeEngine(), store)
    try:
        run = StatsService(chat).run_benchmarks(["fake-a", "missing-b"])
        results = run.future.result(timeout=30)
        assert [r["model"] for r in results] == ["fake-a", "missing-b"]
        assert "Only a model on this machine" in results[0]["error"] and "missing-b" in results[1]["error"]
        assert store.benchmarks() == [] and not run.cancelled
    finally:
        chat.close()


def test_a_benchmark_cancelled_while_it_waits_never_starts(store):
    engine = FakeEngine()
    chat = ChatService(engine, store)
    try:
        release = threading.Event()
        blocker = chat.run_on_engine(lambda e: release.wait(10))  # the engine is busy (a reply, say)
        run = StatsService(chat).run_benchmarks(["fake-a", "fake-b"])
        run.cancel()
        release.set()
        assert blocker.result(timeout=10) and run.future.result(timeout=10) == [] and run.cancelled
        assert engine.loads == []
    finally:
        chat.close()


@pytest.fixture(scope="module")
def two_tiny_models(tmp_path_factory):
    from tests.support.tiny_gguf import write_tiny_llama

    folder = tmp_path_factory.mktemp("two-tiny")
    return write_tiny_llama(folder / "tiny-a.gguf"), write_tiny_llama(folder / "tiny-b.gguf", n_layers=3, seed=1)


@pytest.mark.llama_cpp
def test_two_models_are_benchmarked_saved_and_the_loaded_model_comes_back(store, two_tiny_models):
    from assistant.engine import LocalEngine

    a, b = two_tiny_models
    chat = ChatService(LocalEngine(), store)
    try:
        chat.load(str(a)).result(timeout=60)
        steps: list[BenchmarkProgress] = []
        run = StatsService(chat).run_benchmarks([str(b), str(a)], pp_tokens=32, tg_tokens=8, stream_lengths=(8,),
                                                progress=steps.append)
        results = run.future.result(timeout=120)
        assert [r["model"] for r in results] == ["tiny-b", "tiny-a"]
        assert all(r["pp"]["tps"] > 0 and r["tg"]["tps"] > 0 for r in results)
        # How busy the rest of the CPU was meanwhile (its runner counted as its own), saved with each one.
        assert all(0.0 <= r["cpu_other_busy"] <= 1.0 for r in results)
        assert all("cpu_other_busy" in row["record"] for row in store.benchmarks())
        assert sorted(r["model"] for r in store.benchmarks()) == ["tiny-a", "tiny-b"]
        # Progress counts the steps of the whole run: load, pp, tg and one stream pair per model.
        assert [p.step for p in steps] == list(range(8)) and {p.steps for p in steps} == {8}
        assert steps[0].message == f"Loading {b}…" and steps[4].model == str(a)
        assert chat.summary().path == str(a)  # the model loaded before is loaded again
    finally:
        chat.close()


@pytest.mark.llama_cpp
def test_cancel_stops_a_multi_model_benchmark_between_steps(store, two_tiny_models):
    from assistant.engine import LocalEngine

    a, b = two_tiny_models
    chat = ChatService(LocalEngine(), store)
    try:
        seen: list[str] = []
        holder = {}

        def progress(p: BenchmarkProgress) -> None:
            seen.append(p.message)
            if p.model == str(b) and "pp" in p.message:  # the second model has loaded and starts measuring
                holder["run"].cancel()

        holder["run"] = run = StatsService(chat).run_benchmarks([str(a), str(b)], pp_tokens=32, tg_tokens=8,
                                                                progress=progress)
        results = run.future.result(timeout=120)
        assert run.cancelled and [r["model"] for r in results] == ["tiny-a"]
        assert [r["model"] for r in store.benchmarks()] == ["tiny-a"]  # the cut-short model is not saved
        assert not any("tg" in m for m in seen if str(b) in m)  # it stopped at the next step
    finally:
        chat.close()


# --- the command line --------------------------------------------------------------------------


def bench(*args, timeout=180):
    return subprocess.run([str(ASSISTANT), "bench", *args], capture_output=True, text=True, timeout=timeout, check=False,
                          env=dict(os.environ))


@pytest.mark.llama_cpp
def test_bench_takes_several_models_and_prints_a_json_list(two_tiny_models, tmp_path):
    a, b = two_tiny_models
    proc = bench("-m", str(a), "-m", str(b), "--json", "--pp", "32", "--tokens", "8", "--lengths", "8", "-t", "1")
    assert proc.returncode == 0, proc.stderr
    results = json.loads(proc.stdout)
    assert [r["model"] for r in results] == ["tiny-a", "tiny-b"]
    for r in results:
        assert r["threads"] == 1 and r["pp"]["tokens"] == 32 and r["tg"]["tokens"] == 8
        assert r["pp"]["tps"] > 0 and r["tg"]["tps"] > 0 and [s["tokens"] for s in r["stream"]] == [8]
    # Saved in the history, as the window's Benchmark button saves them: its table shows them.
    with HistoryStore.open(Path(os.environ["ASSISTANT_HOME"]) / "history.db") as history:
        assert sorted(r["model"] for r in history.benchmarks()) == ["tiny-a", "tiny-b"]


@pytest.mark.llama_cpp
def test_bench_prints_one_row_per_model_and_an_error_for_a_missing_one(two_tiny_models, tmp_path):
    a, b = two_tiny_models
    proc = bench("-m", str(a), "-m", str(tmp_path / "nope.gguf"), "-m", str(b), "--pp", "32", "--tokens", "8",
                 "--lengths", "", "--no-save")
    assert proc.returncode == 1 and "Traceback" not in proc.stderr
    # On a shared machine other programs may hold the CPU meanwhile: the rows say so, and a note explains.
    lines = [line for line in proc.stdout.splitlines() if not line.startswith("(busy CPU)")]
    assert lines[0].split()[:4] == ["model", "quant", "pp32", "t/s"]
    assert [line.split()[0] for line in lines[1:3]] == ["tiny-a", "tiny-b"] and len(lines) == 3
    assert f"error: {tmp_path / 'nope.gguf'}: There is no model file" in proc.stderr
    assert not (Path(os.environ["ASSISTANT_HOME"]) / "history.db").exists()  # --no-save


@pytest.mark.llama_cpp
def test_ctrl_c_stops_bench_after_the_step_under_way_and_keeps_finished_models(two_tiny_models):
    a, b = two_tiny_models
    proc = subprocess.Popen([str(ASSISTANT), "bench", "-m", str(a), "-m", str(b), "--json", "--pp", "32",
                             "--tokens", "8", "--lengths", "64", "--repeats", "80", "-t", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=dict(os.environ))
    try:
        # --json keeps stderr quiet; the history shows when the first model is done.
        db = Path(os.environ["ASSISTANT_HOME"]) / "history.db"
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if db.exists():
                with HistoryStore.open(db) as history:
                    if history.benchmarks():
                        break
            time.sleep(0.1)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    finally:
        proc.kill()
    assert proc.returncode == 130, err
    assert [r["model"] for r in json.loads(out)] == ["tiny-a"]
    assert "stopping after the step under way" in err and "1 of 2 models benchmarked" in err
    assert "Traceback" not in err


def test_bench_marks_a_row_measured_on_a_busy_cpu(capsys, monkeypatch):
    from assistant.cli import bench_cmd

    monkeypatch.setattr("assistant.busy.os.cpu_count", lambda: 2)

    def result(model, busy):
        return {"model": model, "quant": "Q4_K_M", "threads": 2, "backend": "CPU", "pp": {"tokens": 32, "tps": 100.0},
                "tg": {"tokens": 8, "tps": 20.0}, "memory": {}, "stream": [], "process": {}, "cpu_other_busy": busy}

    bench_cmd._print([result("quiet-one", 0.0), result("busy-one", 0.95)], as_json=False)
    lines = capsys.readouterr().out.splitlines()
    rows = {line.split()[0]: line for line in lines[1:3]}
    assert rows["busy-one"].endswith("CPU, 2 threads  (busy CPU)") and "busy" not in rows["quiet-one"]
    assert lines[3].startswith("(busy CPU): other programs used the CPU during that benchmark")
