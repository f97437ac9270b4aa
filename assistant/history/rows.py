"""Values as the history's columns store them, shared by the store and the importer.

A wild figure in a statistics record (NaN, 10^30, a string) becomes NULL in its
column and stays exactly as it was in the JSON record: it never costs the row.
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
from typing import Any

BENCH_COLUMNS = ("created_at", "model", "model_file", "quant", "n_params", "size_bytes", "threads", "backend",
                 "pp_tokens", "pp_tps", "tg_tokens", "tg_tps", "weights_bytes", "kv_bytes", "compute_bytes",
                 "rss_bytes")


def json_text(value: Any) -> str:
    # default=str: an odd value in a stats record must never cost the reply itself.
    # ASCII escapes: a lone surrogate in a record survives as "\\ud800", exactly.
    return json.dumps(value, default=str)


def finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value) if math.isfinite(value) else None
    except OverflowError:  # an int too large for a float
        return None


def integer(v: Any) -> int | None:
    f = finite(v)
    return int(f) if f is not None else None


def int64(v: Any) -> int | None:
    """An integer SQLite can store, or None."""
    i = integer(v)
    return i if i is not None and -(1 << 63) <= i < (1 << 63) else None


def text(v: Any) -> str | None:
    return None if v is None else str(v)


def insert_stats(conn: sqlite3.Connection, message_id: int, stats: dict[str, Any], ts: str) -> None:
    """The record as JSON, plus the columns a speed chart queries."""
    model = stats.get("model") if isinstance(stats, dict) else None
    info = model if isinstance(model, dict) else {"name": model if isinstance(model, str) else None}
    get = stats.get if isinstance(stats, dict) else (lambda k: None)
    conn.execute(
        "INSERT OR REPLACE INTO stats (message_id, model, model_file, quant, gen_tps, prompt_tps, ttft_ms, "
        "prompt_tokens, completion_tokens, stop_reason, created_at, record, size_bytes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message_id, text(info.get("name")), text(info.get("file")), text(info.get("quant")),
         finite(get("gen_tps")), finite(get("prompt_tps")), finite(get("ttft_ms")),
         int64(get("prompt_tokens")), int64(get("completion_tokens")), text(get("stop_reason")), ts,
         json_text(stats), int64(info.get("size_bytes"))))


def benchmark_columns(result: dict[str, Any], ts: str) -> tuple:
    """The queryable columns of a benchmark result; anything missing or odd is NULL."""
    def part(key: str) -> dict:
        v = result.get(key)
        return v if isinstance(v, dict) else {}

    pp, tg, mem = part("pp"), part("tg"), part("memory")
    model = result.get("model")
    info = model if isinstance(model, dict) else {"name": model}  # a stats-style ModelRef, or a name
    path = result.get("file") or info.get("file")
    size = result.get("size_bytes", info.get("size_bytes"))
    if size is None and isinstance(path, str):
        try:
            size = os.path.getsize(path)
        except (OSError, ValueError):  # gone, or not a path at all
            pass
    return (ts, text(info.get("name")), text(path), text(result.get("quant") or info.get("quant")),
            int64(result.get("n_params", info.get("n_params"))), int64(size), int64(result.get("threads")),
            text(result.get("backend")), int64(pp.get("tokens")), finite(pp.get("tps")), int64(tg.get("tokens")),
            finite(tg.get("tps")), int64(mem.get("weights_bytes")), int64(mem.get("kv_bytes")),
            int64(mem.get("compute_bytes")), int64(mem.get("rss_bytes")))


def inserted_id(cursor: sqlite3.Cursor) -> int:
    """The id an INSERT gave its row (sqlite3 types `lastrowid` as optional: it is set after an INSERT)."""
    row_id = cursor.lastrowid
    assert row_id is not None, "inserted_id after a statement that inserted nothing"
    return row_id
