"""A long-lived process that runs history operations for concurrency tests.

    python -m tests.support.history_worker

Reads one JSON job per line: {"db": path, "start": epoch seconds, "name": str,
"ops": [[op, arg], ...]}; waits until `start` (so every worker begins at the same
moment); runs the ops; answers one JSON line: {"written": {title: n_messages},
"errors": [sentences], "moved": [paths]}. Ops:

    ["open", null]         open with every migration (also done by any op needing a store)
    ["migrate", k]         upgrade with only the first k migrations (as an older release would)
    ["write", n]           a new conversation with n messages
    ["stream", n]          a reply streamed in n chunks into this worker's last conversation
    ["read", null]         list, open the newest conversation, search
    ["reopen", null]       close and open again
    ["checkpoint", null]   PRAGMA wal_checkpoint, as SQLite's auto-checkpoint does
    ["sleep", ms]
"""

from __future__ import annotations

import json
import sqlite3
import sys
import time
from pathlib import Path

from sqlite_utils import Database, Migrations

from assistant.history import HistoryStore, failures, opening, schema
from assistant.history.errors import HistoryError
from assistant.history.schema import MIGRATIONS


def first_migrations(k: int) -> Migrations:
    subset = Migrations(MIGRATIONS.name)
    for m in MIGRATIONS._migrations[:k]:
        subset(name=m.name)(m.fn)
    return subset


def upgrade_to(db: str, k: int) -> None:
    """What an older release's open does to the file: its own migrations, under the same lock."""
    conn = opening.connect(Path(db), 10.0)
    try:
        opening.prepare(conn, 10.0)
        schema.migrate(Database(conn), db, first_migrations(k))
    except sqlite3.Error as exc:
        raise failures.translate(exc, Path(db)) from exc
    finally:
        conn.close()


def run(job: dict) -> dict:
    db, name = job["db"], job["name"]
    written: dict[str, int] = {}
    errors: list[str] = []
    moved: list[str] = []
    store = None
    conv_id = None
    time.sleep(max(0.0, job["start"] - time.time()))

    def opened(s: HistoryStore) -> HistoryStore:
        if s.moved_aside is not None:
            moved.append(str(s.moved_aside))
        return s

    for i, (op, arg) in enumerate(job["ops"]):
        try:
            if op == "migrate":
                upgrade_to(db, int(arg))
                continue
            if op == "sleep":
                time.sleep(int(arg) / 1000)
                continue
            if op == "reopen" and store is not None:
                store.close()
                store = None
            if store is None:
                store = opened(HistoryStore.open(db))
            if op == "write":
                title = f"{name} op{i}"
                conv = store.create_conversation(title=title)
                for j in range(int(arg)):
                    store.add_message(conv.id, "user" if j % 2 == 0 else "assistant", f"{title} message {j} 機械学習")
                conv_id = conv.id
                written[title] = int(arg)
            elif op == "stream" and conv_id is not None:
                with store.start_reply(conv_id, save_interval=0) as reply:
                    for j in range(int(arg)):
                        reply.append(f"chunk{j} ")
                title = store.get_conversation(conv_id).title
                written[title] += 1
            elif op == "read":
                rows = store.list_conversations(limit=5)
                if rows:
                    store.get_conversation(rows[0].id)
                store.search("message")
                store.search("学習")
            elif op == "checkpoint":
                store.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
        except HistoryError as exc:
            errors.append(f"{op}: {exc}")
    if store is not None:
        store.close()
    return {"written": written, "errors": errors, "moved": moved}


def main() -> int:
    for line in sys.stdin:
        if not line.strip():
            continue
        try:
            answer = run(json.loads(line))
        except Exception as exc:  # a bug in the code under test: report it, keep serving
            answer = {"written": {}, "errors": [f"unexpected {type(exc).__name__}: {exc}"], "moved": []}
        print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
