"""Benchmarks in the history (m005): saved, read back newest first, and an m004 file upgrades."""

import copy
import json
import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlite_utils import Migrations

from assistant.history import HistoryStore
from assistant.history.schema import MIGRATIONS

# What the statistics service saves: run_benchmark's result plus the loaded model's memory.
RESULT = {
    "model": "gemma-3-270m", "file": "/models/gemma-3-270m-Q4_K_M.gguf", "quant": "Q4_K_M",
    "threads": 2, "n_ctx": 4096, "backend": "cpu",
    "pp": {"tokens": 256, "tps": 412.7}, "tg": {"tokens": 64, "tps": 38.9}, "stream": [],
    "memory": {"weights_bytes": 253_000_000, "kv_bytes": 37_748_736, "compute_bytes": 10_536_960,
               "rss_bytes": 702_000_000, "vram_bytes": None},
    "size_bytes": 253_060_000, "n_params": 268_098_176,
}

STATS = {
    "reply": "Hi!",
    "model": {"name": "gemma-3-270m", "file": "gemma-3-270m-Q4_K_M.gguf", "quant": "Q4_K_M",
              "size_bytes": 253_060_000, "n_params": 268_098_176},
    "prompt_tokens": 20, "cached_tokens": 0, "prompt_ms": 90.5, "prompt_tps": 221.0, "ttft_ms": 210.0,
    "completion_tokens": 312, "gen_ms": 7572.8, "gen_tps": 41.2, "total_ms": 7700.0, "stop_reason": "eos",
    "n_ctx": 4096, "n_threads": 2, "memory": {}, "backend": {"kind": "cpu"},
}


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


def test_saved_benchmarks_come_back_newest_first_with_their_record(store):
    first = store.save_benchmark(RESULT)
    other = copy.deepcopy(RESULT) | {"model": "qwen2.5-0.5b", "quant": "Q8_0", "tg": {"tokens": 64, "tps": 17.5}}
    second = store.save_benchmark(other)
    rows = store.benchmarks()
    assert [r["id"] for r in rows] == [second, first]
    row = rows[1]
    assert {k: row[k] for k in ("model", "model_file", "quant", "n_params", "size_bytes", "threads", "backend",
                                "pp_tokens", "pp_tps", "tg_tokens", "tg_tps", "weights_bytes", "kv_bytes",
                                "compute_bytes", "rss_bytes")} == {
        "model": "gemma-3-270m", "model_file": "/models/gemma-3-270m-Q4_K_M.gguf", "quant": "Q4_K_M",
        "n_params": 268_098_176, "size_bytes": 253_060_000, "threads": 2, "backend": "cpu", "pp_tokens": 256,
        "pp_tps": 412.7, "tg_tokens": 64, "tg_tps": 38.9, "weights_bytes": 253_000_000, "kv_bytes": 37_748_736,
        "compute_bytes": 10_536_960, "rss_bytes": 702_000_000}
    assert row["record"] == RESULT and row["created_at"] <= rows[0]["created_at"]
    assert [r["model"] for r in store.benchmarks(limit=1)] == ["qwen2.5-0.5b"]


def test_size_comes_from_the_file_when_the_result_has_none(store, tmp_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(b"\0" * 12345)
    result = {k: v for k, v in RESULT.items() if k not in ("size_bytes", "n_params")} | {"file": str(model)}
    store.save_benchmark(result)
    missing = result | {"file": str(tmp_path / "gone.gguf")}
    store.save_benchmark(missing)
    gone, found = store.benchmarks()
    assert found["size_bytes"] == 12345 and found["n_params"] is None
    assert gone["size_bytes"] is None


def test_a_result_that_is_not_a_dict_is_refused(store):
    with pytest.raises(TypeError):
        store.save_benchmark(["not", "a", "result"])
    assert store.benchmarks() == []


odd = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=5),
                st.lists(st.integers(), max_size=2), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.fixed_dictionaries({}, optional={
    "model": odd, "file": odd, "quant": odd, "threads": odd, "backend": odd, "size_bytes": odd, "n_params": odd,
    "pp": st.one_of(odd, st.fixed_dictionaries({"tokens": odd, "tps": odd})),
    "tg": st.one_of(odd, st.fixed_dictionaries({"tokens": odd, "tps": odd})),
    "memory": st.one_of(odd, st.fixed_dictionaries({"weights_bytes": odd, "kv_bytes": odd, "rss_bytes": odd})),
}))
def test_odd_figures_are_null_columns_and_never_lose_the_result(store, result):
    bid = store.save_benchmark(result)
    row = next(r for r in store.benchmarks() if r["id"] == bid)
    assert json.dumps(row["record"]) == json.dumps(result, default=str)  # as text: NaN is not NaN
    for key in ("pp_tps", "tg_tps"):
        assert row[key] is None or isinstance(row[key], float)
    for key in ("threads", "size_bytes", "n_params", "pp_tokens", "tg_tokens", "weights_bytes", "rss_bytes"):
        assert row[key] is None or isinstance(row[key], int)


def test_replies_keep_their_model_size_as_a_column(store):
    conv = store.create_conversation(model="gemma-3-270m")
    store.add_message(conv.id, "assistant", "Hi!", stats=STATS)
    wild = copy.deepcopy(STATS)
    wild["model"]["size_bytes"] = 1e300  # no SQLite integer holds it: NULL, and the reply is still saved
    store.add_message(conv.id, "assistant", "Hello!", stats=wild)
    assert [r["size_bytes"] for r in store.speed_history()] == [253_060_000, None]


def test_an_m004_database_upgrades_and_its_replies_get_their_size(tmp_path):
    path = tmp_path / "history.db"
    old = Migrations("hearthchat-history")
    for m in MIGRATIONS._migrations:
        if m.name < "m005":
            old(name=m.name)(m.fn)
    with HistoryStore.open(path, migrations=old) as store:
        assert store.migrated[-1] == "m004_stream_recovery"
        assert "benchmarks" not in store.db.table_names()
        conv = store.create_conversation(model="gemma-3-270m")
        # The m004 store's own insert, as the previous release wrote it (no size_bytes column yet).
        store.conn.execute("BEGIN")
        for i, record in enumerate([json.dumps(STATS), json.dumps(STATS | {"model": "just-a-name"}), "{not json"]):
            mid = store.conn.execute(
                "INSERT INTO messages (uid, conversation_id, role, content, status, created_at, updated_at) "
                "VALUES (?, ?, 'assistant', 'x', 'complete', ?, ?)",
                (f"u{i}", conv.id, f"2026-01-0{i + 1}", f"2026-01-0{i + 1}")).lastrowid
            store.conn.execute("INSERT INTO stats (message_id, model, gen_tps, created_at, record) "
                               "VALUES (?, 'gemma-3-270m', 40.0, ?, ?)", (mid, f"2026-01-0{i + 1}", record))
        store.conn.execute("COMMIT")

    with HistoryStore.open(path) as store:
        assert store.migrated == ["m005_benchmarks", "m006_substring_search", "m007_comparisons", "m008_images",
                                  "m009_reply_thinking", "m010_thinking_search"]
        # Backfilled from the JSON; a record without a size, or not even JSON, is skipped, not fatal.
        assert [r["size_bytes"] for r in store.speed_history()] == [253_060_000, None, None]
        assert store.benchmarks() == []
        bid = store.save_benchmark(RESULT)
        assert store.benchmarks()[0]["id"] == bid
        assert store.integrity_check() == "ok"
    with HistoryStore.open(path) as store:
        assert store.migrated == []


def test_an_import_fills_the_size_column(store, tmp_path):
    conv = store.create_conversation(model="gemma-3-270m")
    store.add_message(conv.id, "assistant", "Hi!", stats=STATS)
    with HistoryStore.open(tmp_path / "other.db") as other:
        other.import_json(store.export_json())
        assert [r["size_bytes"] for r in other.speed_history()] == [253_060_000]


def test_the_benchmarks_table_is_as_documented(store):
    cols = [r[1] for r in store.conn.execute("PRAGMA table_info(benchmarks)")]
    assert cols == ["id", "created_at", "model", "model_file", "quant", "n_params", "size_bytes", "threads",
                    "backend", "pp_tokens", "pp_tps", "tg_tokens", "tg_tps", "weights_bytes", "kv_bytes",
                    "compute_bytes", "rss_bytes", "record"]
    with pytest.raises(sqlite3.IntegrityError):  # the record is required
        store.conn.execute("INSERT INTO benchmarks (created_at) VALUES ('now')")
