"""Time the history store on a large file against the issue's targets; print medians.

    python bench/make_history.py          # once: bench/out/history-bench.db
    python bench/history_bench.py [--db bench/out/history-bench.db] [--repeat 30] [--no-migration]

Targets (10,000 conversations, 200,000 messages): list the 100 most recent < 20 ms,
open a 500-message conversation < 50 ms, a search < 50 ms (median over word,
CJK, emoji and substring queries), open the database (migrations check and
stream recovery included) < 200 ms. Also measured, without a target: how long
the trigram migration (m006) takes on a copy of the file as it was before it,
and that it runs once.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from assistant.history import HistoryStore  # noqa: E402

# From very common to rare words of the generated text, two-word and prefix
# queries, a phrase, and the kind of junk a search box gets; then what only the
# trigram index answers: words inside Japanese text, emoji runs, parts of words,
# and pieces of one or two characters (the bounded scan).
QUERIES = ["the", "water", "python function", "memory speed", "bread", "gard", '"of the"', "quantize model",
           "llama", "(unbalanced \"query*", "kari", "zzzz-not-there",
           "機械学習", "自然言語処理について", "データベース 速度", "🎉🍕", "学習", "ython", "uantiz", "東京の天気は晴れ"]


def median_ms(fn, repeat: int) -> float:
    fn()  # warm: first run pays for page-cache misses and statement preparation
    times = []
    for _ in range(repeat):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1000)
    return statistics.median(times)


def cold_open_ms(db: Path, repeat: int) -> tuple[float, float]:
    """A fresh interpreter: import of the store's modules, then open. Medians of (import, open)."""
    code = ("import time; t=time.perf_counter(); from assistant.history import HistoryStore; "
            "i=time.perf_counter(); s=HistoryStore.open(%r); o=time.perf_counter(); s.close(); "
            "print((i-t)*1000, (o-i)*1000)" % str(db))
    imports, opens = [], []
    for _ in range(repeat):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
        a, b = map(float, out.stdout.split())
        imports.append(a)
        opens.append(b)
    return statistics.median(imports), statistics.median(opens)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--db", default=str(ROOT / "bench" / "out" / "history-bench.db"))
    ap.add_argument("--repeat", type=int, default=30)
    ap.add_argument("--no-migration", action="store_true", help="skip timing the trigram migration (m006)")
    args = ap.parse_args(argv)
    db = Path(args.db)
    if not db.exists():
        print(f"{db} does not exist: run bench/make_history.py first.", file=sys.stderr)
        return 1

    store = HistoryStore.open(db)
    n_conv = store.count_conversations()
    n_msg = store.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
    long_id = store.conn.execute(
        "SELECT conversation_id FROM messages GROUP BY conversation_id HAVING count(*) = 500 LIMIT 1").fetchone()[0]
    print(f"{db}: {n_conv} conversations, {n_msg} messages, {db.stat().st_size / 1e6:.0f} MB; "
          f"SQLite {store.conn.execute('select sqlite_version()').fetchone()[0]}, Python {sys.version.split()[0]}")

    results = []
    results.append(("list the 100 most recent conversations", 20,
                    median_ms(lambda: store.list_conversations(100), args.repeat)))
    assert len(store.get_conversation(long_id).messages) == 500
    results.append(("open a conversation of 500 messages", 50,
                    median_ms(lambda: store.get_conversation(long_id), args.repeat)))
    per_query = {q: median_ms(lambda q=q: store.search(q, limit=20), args.repeat) for q in QUERIES}
    results.append((f"search (median of {len(QUERIES)} queries' medians)", 50,
                    statistics.median(per_query.values())))
    store.close()
    results.append(("open the database, migrations included", 200,
                    median_ms(lambda: HistoryStore.open(db).close(), args.repeat)))
    imp, cold = cold_open_ms(db, max(3, args.repeat // 6))
    fresh = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(max(5, args.repeat // 3)):
            t = time.perf_counter()
            HistoryStore.open(Path(tmp) / f"new{i}.db").close()
            fresh.append((time.perf_counter() - t) * 1000)

    width = max(len(r[0]) for r in results)
    print(f"\n{'operation':<{width}}  {'median':>9}  {'target':>8}")
    ok = True
    for name, target, ms in results:
        ok &= ms < target
        print(f"{name:<{width}}  {ms:7.2f} ms  < {target:>3} ms  {'ok' if ms < target else 'SLOW'}")
    print(f"\nfirst open in a fresh process: {cold:.1f} ms (plus {imp:.0f} ms importing sqlite-utils and the store)")
    print(f"creating a new database, all migrations run: {statistics.median(fresh):.1f} ms")
    print("search, per query (median, 20 hits with snippets):")
    worst = max(per_query.values())
    store = HistoryStore.open(db)
    for q, ms in per_query.items():
        n = len(store.search(q, limit=20))
        print(f"  {q!r:<28} {ms:7.2f} ms  {n:>2} hits{'  <- slowest' if ms == worst else ''}")
    store.close()
    if not args.no_migration:
        migration_s, again_ms = time_trigram_migration(db)
        print(f"\nadding the trigram index (m006) to this history as it was before: {migration_s:.1f} s, once; "
              f"the next open: {again_ms:.1f} ms, nothing to migrate")
    return 0 if ok else 1


def time_trigram_migration(db: Path) -> tuple[float, float]:
    """A copy of the file without m006 (as the previous release left it), opened: the upgrade, then again."""
    with tempfile.TemporaryDirectory(dir=db.parent) as tmp:
        copy = Path(tmp) / "before-m006.db"
        shutil.copy(db, copy)
        conn = sqlite3.connect(copy, isolation_level=None)
        conn.execute("PRAGMA writable_schema = OFF")
        conn.execute("BEGIN")
        for trigger in ("messages_trigram_ai", "messages_trigram_ad", "messages_trigram_au"):
            conn.execute(f"DROP TRIGGER {trigger}")
        conn.execute("DROP TABLE messages_trigram")
        conn.execute("DELETE FROM _sqlite_migrations WHERE name = 'm006_substring_search'")
        conn.execute("COMMIT")
        conn.execute("VACUUM")  # the file as the previous release wrote it, no free pages left over
        conn.close()
        started = time.perf_counter()
        store = HistoryStore.open(copy)
        migration_s = time.perf_counter() - started
        assert store.migrated == ["m006_substring_search"], store.migrated
        store.close()
        started = time.perf_counter()
        store = HistoryStore.open(copy)
        again_ms = (time.perf_counter() - started) * 1000
        assert store.migrated == [], store.migrated
        store.close()
    return migration_s, again_ms


if __name__ == "__main__":
    sys.exit(main())
