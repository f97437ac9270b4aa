"""HistoryStore: every conversation, message and statistics record, in one SQLite file.

    store = HistoryStore.open()                      # $ASSISTANT_HOME/history.db
    conv = store.create_conversation(model="gemma-3-270m", system_prompt="Be brief.")
    store.add_message(conv.id, "user", "Hello!")     # titles the conversation
    with store.start_reply(conv.id) as reply:        # saved as it grows
        for chunk in engine_stream:
            reply.append(chunk)
        reply.finish("complete", stats=record)

Every write is one short IMMEDIATE transaction: a message, its full-text row (by
trigger) and its stats land together or not at all, and the window and a CLI chat
beside it wait their turn (busy_timeout) instead of failing with "database is locked".
"""

from __future__ import annotations

import json
import math
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

from sqlite_utils import Database, Migrations

from assistant.history import recovery, schema
from assistant.history import search as _search
from assistant.history.errors import (
    ConversationNotFound,
    HistoryBusyError,
    HistoryError,
    MessageNotFound,
)
from assistant.history.records import (
    ROLES,
    STATUSES,
    Conversation,
    ConversationSummary,
    ImportResult,
    Message,
    SearchHit,
    clean_optional,
    clean_text,
    latest_leaf,
    now,
    path_to,
    title_from,
)
from assistant.history.streaming import StreamingReply


class _CurrentLeaf:
    def __repr__(self) -> str:
        return "CURRENT_LEAF"


# Default parent of a new message: the end of the branch on show.
CURRENT_LEAF: Any = _CurrentLeaf()
_UNSET: Any = object()
BUSY_TIMEOUT_S = 10.0

_MESSAGE_COLUMNS = """m.id, m.conversation_id, m.parent_id, m.role, m.content, m.status,
    m.created_at, m.updated_at, s.record, m.error, m.uid"""
_MESSAGE_SELECT = f"SELECT {_MESSAGE_COLUMNS} FROM messages m LEFT JOIN stats s ON s.message_id = m.id"


def _json(value: Any) -> str:
    # default=str: an odd value in a stats record must never cost the reply itself.
    # ASCII escapes: a lone surrogate in a record survives as "\\ud800", exactly.
    return json.dumps(value, default=str)


def _finite(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _message(row: tuple) -> Message:
    mid, cid, parent, role, content, status, created, updated, record, error, uid = row
    return Message(mid, cid, parent, role, content, status, created, updated,
                   json.loads(record) if record is not None else None, error, uid)


class HistoryStore:
    """The chat history. Open with `HistoryStore.open()`; safe to share between threads."""

    def __init__(self, db: Database, path: Path):
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.path = path
        self._lock = threading.RLock()
        # For the person: e.g. a damaged file moved aside. The CLI prints these.
        self.warnings: list[str] = []
        self.moved_aside: Path | None = None
        # Replies found cut off by a dead process on open (now `interrupted`).
        self.interrupted: list[int] = []
        self.migrated: list[str] = []

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, migrations: Migrations = schema.MIGRATIONS,
             busy_timeout: float = BUSY_TIMEOUT_S) -> HistoryStore:
        """Open (creating or upgrading) the history; a damaged file is moved aside, never overwritten."""
        if path is None:
            from common.paths import history_db_path

            path = history_db_path()
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        moved, reason = None, recovery.damage_in_header(path)
        if reason:
            moved = recovery.move_aside(path)
        try:
            store = cls._connect(path, migrations, busy_timeout)
        except (sqlite3.Error, HistoryError) as exc:
            # A damage error may come wrapped (a failed migration step, a translated write).
            cause = exc.__cause__ if isinstance(exc, HistoryError) and exc.__cause__ is not None else exc
            if moved is not None or not recovery.is_damage(cause):
                if isinstance(exc, HistoryError):
                    raise
                raise _translate(exc, path) from exc
            reason, moved = str(cause), recovery.move_aside(path)
            try:
                store = cls._connect(path, migrations, busy_timeout)
            except sqlite3.Error as again:
                raise _translate(again, path) from again
        if moved is not None:
            store.moved_aside = moved
            store.warnings.append(
                f"The chat history database {path} was damaged ({reason}). It was moved to "
                f"{moved} and a new, empty history was started."
            )
        return store

    @classmethod
    def _connect(cls, path: Path, migrations: Migrations, busy_timeout: float) -> HistoryStore:
        # isolation_level=None: no hidden transactions; every write is an explicit,
        # short BEGIN IMMEDIATE ... COMMIT. check_same_thread=False + our lock: the
        # window may save from a worker thread.
        conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)
        try:
            db = Database(conn, execute_plugins=False)
            db.enable_wal()  # readers never block the writer, nor the writer readers
            conn.execute("PRAGMA synchronous = FULL")  # a committed message survives power loss too
            conn.execute("PRAGMA foreign_keys = ON")
            # Private by default: deleted text is overwritten in the file, not just unlinked.
            conn.execute("PRAGMA secure_delete = ON")
            store = cls(db, path)
            store.migrated = schema.migrate(db, path, migrations)
            store.interrupted = store._mark_orphans_interrupted()
            return store
        except BaseException:
            conn.close()
            raise

    def _mark_orphans_interrupted(self) -> list[int]:
        ids = recovery.find_orphaned_streams(self.conn)
        if ids:
            marks = ",".join("?" * len(ids))
            with self._write() as conn:
                # `AND status = 'streaming'`: a writer that finished meanwhile keeps its status.
                conn.execute(
                    f"UPDATE messages SET status = 'interrupted', writer_pid = NULL, writer_started = NULL "
                    f"WHERE id IN ({marks}) AND status = 'streaming'", ids)
        return ids

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- transactions --------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        with self._lock, self._errors():
            self.conn.execute("BEGIN IMMEDIATE")  # take the write lock now, waiting up to busy_timeout
            try:
                yield self.conn
                self.conn.execute("COMMIT")
            except BaseException:
                if self.conn.in_transaction:
                    self.conn.execute("ROLLBACK")
                raise

    @contextmanager
    def _read(self) -> Iterator[sqlite3.Connection]:
        # One snapshot for the several SELECTs of a record.
        with self._lock, self._errors():
            self.conn.execute("BEGIN")
            try:
                yield self.conn
            finally:
                if self.conn.in_transaction:
                    self.conn.execute("COMMIT")

    @contextmanager
    def _errors(self) -> Iterator[None]:
        try:
            yield
        except sqlite3.Error as exc:
            raise _translate(exc, self.path) from exc

    # -- conversations -------------------------------------------------------------

    def create_conversation(self, model: str | None = None, system_prompt: str | None = None,
                            settings: dict[str, Any] | None = None, title: str | None = None) -> Conversation:
        """A new, empty conversation. Without a title, its first user message names it."""
        ts = now()
        uid = uuid.uuid4().hex
        title = (clean_text(title).strip() or None) if title is not None else None
        model, system_prompt = clean_optional(model), clean_optional(system_prompt)
        with self._write() as conn:
            cid = conn.execute(
                "INSERT INTO conversations (uid, title, model, system_prompt, settings, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (uid, title, model, system_prompt, _json(settings or {}), ts, ts)).lastrowid
        return Conversation(cid, uid, title, model, system_prompt, dict(settings or {}), ts, ts, None, [])

    def get_conversation(self, conversation_id: int) -> Conversation:
        """The conversation with every message of every branch (see `Conversation.thread`)."""
        with self._read() as conn:
            row = conn.execute(
                "SELECT id, uid, title, model, system_prompt, settings, created_at, updated_at, current_leaf_id "
                "FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise ConversationNotFound(conversation_id)
            rows = conn.execute(f"{_MESSAGE_SELECT} WHERE m.conversation_id = ? ORDER BY m.id",
                                (conversation_id,)).fetchall()
        cid, uid, title, model, system_prompt, settings, created, updated, leaf = row
        return Conversation(cid, uid, title, model, system_prompt, json.loads(settings or "{}"),
                            created, updated, leaf, [_message(r) for r in rows])

    def list_conversations(self, limit: int = 100, offset: int = 0) -> list[ConversationSummary]:
        """Most recently active first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT c.id, c.title, c.model, c.created_at, c.updated_at, "
                "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id) "
                "FROM conversations c ORDER BY c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?",
                (limit, offset)).fetchall()
        return [ConversationSummary(*r) for r in rows]

    def count_conversations(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT count(*) FROM conversations").fetchone()[0]

    def conversation_ids(self) -> list[int]:
        """Every conversation id, oldest first (export order)."""
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT id FROM conversations ORDER BY id")]

    def rename(self, conversation_id: int, title: str) -> None:
        title = clean_text(title).strip()
        if not title:
            raise HistoryError("A conversation title cannot be empty.")
        with self._write() as conn:
            if not conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)).rowcount:
                raise ConversationNotFound(conversation_id)

    def update_conversation(self, conversation_id: int, *, model: str | None = _UNSET,
                            system_prompt: str | None = _UNSET, settings: dict[str, Any] = _UNSET) -> None:
        """Change the model, system prompt or settings used from now on."""
        fields = {k: v for k, v in (("model", model), ("system_prompt", system_prompt),
                                    ("settings", settings)) if v is not _UNSET}
        if "settings" in fields:
            fields["settings"] = _json(fields["settings"] or {})
        for key in ("model", "system_prompt"):
            if key in fields:
                fields[key] = clean_optional(fields[key])
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as conn:
            if not conn.execute(f"UPDATE conversations SET {sets}, updated_at = ? WHERE id = ?",
                                (*fields.values(), now(), conversation_id)).rowcount:
                raise ConversationNotFound(conversation_id)

    def delete(self, conversation_id: int) -> int:
        """Delete a conversation, its messages, stats and search rows. Returns the message count."""
        with self._write() as conn:
            conn.execute("DELETE FROM stats WHERE message_id IN "
                         "(SELECT id FROM messages WHERE conversation_id = ?)", (conversation_id,))
            # The FTS triggers remove the search rows in the same transaction.
            n = conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,)).rowcount
            if not conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount:
                raise ConversationNotFound(conversation_id)
        return n

    # -- messages and the tree -----------------------------------------------------

    def add_message(self, conversation_id: int, role: str, content: str, *, parent_id: int | None = CURRENT_LEAF,
                    status: str = "complete", stats: dict[str, Any] | None = None,
                    error: str | None = None) -> Message:
        """Save one message as the child of `parent_id` (default: the end of the branch on show).

        It becomes the branch on show. The message, its search row and its stats are
        one transaction. The first user message of an untitled conversation names it.
        """
        _check(role, status)
        return self._insert_message(conversation_id, role, clean_text(content), parent_id, status, stats,
                                    clean_optional(error))

    def start_reply(self, conversation_id: int, *, parent_id: int | None = CURRENT_LEAF, role: str = "assistant",
                    save_interval: float = 0.5) -> StreamingReply:
        """A reply saved as it streams (`append`, then `finish`), marked `streaming` meanwhile."""
        _check(role, "streaming")
        msg = self._insert_message(conversation_id, role, "", parent_id, "streaming", None, None,
                                   writer=(os.getpid(), recovery.own_process_start()))
        return StreamingReply(self, msg, save_interval)

    def regenerate(self, message_id: int, save_interval: float = 0.5) -> StreamingReply:
        """A new version of a reply: a sibling of it. The old one stays, one arrow away."""
        old = self.get_message(message_id)
        if old.role != "assistant":
            raise HistoryError("Only a reply can be regenerated; edit a message of yours instead.")
        return self.start_reply(old.conversation_id, parent_id=old.parent_id, save_interval=save_interval)

    def edit(self, message_id: int, content: str) -> Message:
        """A new version of a message, as a sibling: the original and its replies are kept."""
        old = self.get_message(message_id)
        return self.add_message(old.conversation_id, old.role, content, parent_id=old.parent_id)

    def get_message(self, message_id: int) -> Message:
        with self._read() as conn:
            row = conn.execute(f"{_MESSAGE_SELECT} WHERE m.id = ?", (message_id,)).fetchone()
        if row is None:
            raise MessageNotFound(message_id)
        return _message(row)

    def branch_path(self, leaf_id: int) -> list[Message]:
        """The thread from the root down to `leaf_id`: what the window shows."""
        with self._read() as conn:
            rows = conn.execute(
                "WITH RECURSIVE up(id, depth) AS (SELECT ?, 0 UNION ALL "
                "SELECT m.parent_id, up.depth + 1 FROM messages m JOIN up ON m.id = up.id "
                "WHERE m.parent_id IS NOT NULL AND up.depth < 100000) "
                f"{_MESSAGE_SELECT} JOIN up ON up.id = m.id ORDER BY up.depth DESC", (leaf_id,)).fetchall()
        if not rows:
            raise MessageNotFound(leaf_id)
        return [_message(r) for r in rows]

    def siblings(self, message_id: int) -> list[Message]:
        """All versions of a message, itself included, oldest first: the "2/3" arrows."""
        with self._read() as conn:
            row = conn.execute("SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFound(message_id)
            rows = conn.execute(f"{_MESSAGE_SELECT} WHERE m.conversation_id = ? AND m.parent_id IS ? ORDER BY m.id",
                                row).fetchall()
        return [_message(r) for r in rows]

    def switch_branch(self, message_id: int) -> list[Message]:
        """Show the branch through `message_id` (its newest descendants); returns the new thread."""
        msg = self.get_message(message_id)
        conv = self.get_conversation(msg.conversation_id)
        leaf = latest_leaf(conv.messages, message_id)
        with self._write() as conn:
            conn.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (leaf, conv.id))
        return path_to(conv.messages, leaf)

    def _insert_message(self, conversation_id, role, content, parent_id, status, stats, error,
                        writer=(None, None)) -> Message:
        ts = now()
        uid = uuid.uuid4().hex
        with self._write() as conn:
            row = conn.execute("SELECT current_leaf_id FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
            if row is None:
                raise ConversationNotFound(conversation_id)
            if parent_id is CURRENT_LEAF:
                parent_id = row[0]
            elif parent_id is not None:
                owner = conn.execute("SELECT conversation_id FROM messages WHERE id = ?", (parent_id,)).fetchone()
                if owner is None or owner[0] != conversation_id:
                    raise MessageNotFound(parent_id)
            mid = conn.execute(
                "INSERT INTO messages (uid, conversation_id, parent_id, role, content, status, created_at, "
                "updated_at, error, writer_pid, writer_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, conversation_id, parent_id, role, content, status, ts, ts, error, *writer)).lastrowid
            if stats is not None:
                _insert_stats(conn, mid, stats, ts)
            title = title_from(content) if role == "user" and content.strip() else None
            conn.execute("UPDATE conversations SET current_leaf_id = ?, updated_at = ?, "
                         "title = COALESCE(title, ?) WHERE id = ?", (mid, ts, title, conversation_id))
        return Message(mid, conversation_id, parent_id, role, content, status, ts, ts,
                       json.loads(_json(stats)) if stats is not None else None, error, uid)

    # -- streaming (called by StreamingReply) --------------------------------------

    def _save_stream(self, message_id: int, content: str) -> None:
        with self._write() as conn:
            conn.execute("UPDATE messages SET content = ?, updated_at = ? WHERE id = ? AND status = 'streaming'",
                         (clean_text(content), now(), message_id))

    def _finish_stream(self, message_id: int, content: str, status: str, stats, error) -> Message:
        ts = now()
        with self._write() as conn:
            # Deleted meanwhile (the window removed the conversation): nothing to save.
            if conn.execute(
                "UPDATE messages SET content = ?, status = ?, error = ?, updated_at = ?, writer_pid = NULL, "
                "writer_started = NULL WHERE id = ?", (clean_text(content), status, clean_optional(error), ts,
                                                        message_id)).rowcount:
                if stats is not None:
                    _insert_stats(conn, message_id, stats, ts)
                conn.execute("UPDATE conversations SET updated_at = ? WHERE id = "
                             "(SELECT conversation_id FROM messages WHERE id = ?)", (ts, message_id))
        try:
            return self.get_message(message_id)
        except MessageNotFound:
            return Message(message_id, -1, None, "assistant", content, status, ts, ts, stats, error)

    # -- search, statistics, export ------------------------------------------------

    def search(self, query: str, limit: int = 20, highlight: tuple[str, str] = ("**", "**")) -> list[SearchHit]:
        """Ranked hits in titles and messages; any text is a valid query (never raises on syntax)."""
        with self._read() as conn:
            return _search.search(conn, query, limit=limit, highlight=highlight)

    def speed_history(self, model: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Per-reply speed figures, oldest first, for the statistics view's charts."""
        sql = ("SELECT created_at, model, quant, gen_tps, prompt_tps, ttft_ms, prompt_tokens, completion_tokens, "
               "stop_reason, message_id, size_bytes FROM stats" + (" WHERE model = ?" if model else "")
               + " ORDER BY created_at" + (" LIMIT ?" if limit else ""))
        params = ([model] if model else []) + ([limit] if limit else [])
        with self._read() as conn:
            cur = conn.execute(sql, params)
            names = [d[0] for d in cur.description]
            return [dict(zip(names, r, strict=True)) for r in cur.fetchall()]

    def save_benchmark(self, result: dict[str, Any]) -> int:
        """Save one model's benchmark (what `run_benchmark` returns, plus `memory`); returns its id."""
        if not isinstance(result, dict):
            raise TypeError(f"a benchmark result is a dict, not {type(result).__name__}")
        with self._write() as conn:
            return conn.execute(
                f"INSERT INTO benchmarks ({', '.join(_BENCH_COLUMNS)}, record) "
                f"VALUES ({', '.join('?' * (len(_BENCH_COLUMNS) + 1))})",
                (*_benchmark_columns(result, now()), _json(result))).lastrowid

    def benchmarks(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Saved benchmarks, newest first: the columns, with `record` the full result."""
        sql = f"SELECT id, {', '.join(_BENCH_COLUMNS)}, record FROM benchmarks ORDER BY created_at DESC, id DESC"
        with self._read() as conn:
            cur = conn.execute(sql + (" LIMIT ?" if limit else ""), [limit] if limit else [])
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        for row in rows:
            row["record"] = json.loads(row["record"])
        return rows

    def export_markdown(self, ids: list[int] | None = None) -> str:
        from assistant.history.export import to_markdown

        return to_markdown(self._conversations(ids))

    def export_json(self, ids: list[int] | None = None) -> dict[str, Any]:
        """Everything: branches, statuses, stats. `import_json` takes it back losslessly."""
        from assistant.history.export import to_json

        return to_json(self._conversations(ids))

    def import_json(self, data: dict | str | bytes) -> ImportResult:
        """Import an export. Checked whole first, written in one transaction: all or nothing."""
        from assistant.history.export import import_document

        return import_document(self, data)

    def _conversations(self, ids: list[int] | None) -> Iterator[Conversation]:
        for cid in self.conversation_ids() if ids is None else ids:
            yield self.get_conversation(cid)

    def integrity_check(self) -> str:
        """'ok', or SQLite's list of problems (reads the whole file: seconds on a large history)."""
        with self._read() as conn:
            return "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))


def _check(role: str, status: str) -> None:
    if role not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {role!r}")
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")


def _insert_stats(conn: sqlite3.Connection, message_id: int, stats: dict[str, Any], ts: str) -> None:
    """The record as JSON, plus the columns a speed chart queries."""
    model = stats.get("model") if isinstance(stats, dict) else None
    info = model if isinstance(model, dict) else {"name": model if isinstance(model, str) else None}
    get = stats.get if isinstance(stats, dict) else (lambda k: None)
    conn.execute(
        "INSERT OR REPLACE INTO stats (message_id, model, model_file, quant, gen_tps, prompt_tps, ttft_ms, "
        "prompt_tokens, completion_tokens, stop_reason, created_at, record, size_bytes) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (message_id, _str(info.get("name")), _str(info.get("file")), _str(info.get("quant")),
         _finite(get("gen_tps")), _finite(get("prompt_tps")), _finite(get("ttft_ms")),
         _int(get("prompt_tokens")), _int(get("completion_tokens")), _str(get("stop_reason")), ts, _json(stats),
         _int64(info.get("size_bytes"))))


_BENCH_COLUMNS = ("created_at", "model", "model_file", "quant", "n_params", "size_bytes", "threads", "backend",
                  "pp_tokens", "pp_tps", "tg_tokens", "tg_tps", "weights_bytes", "kv_bytes", "compute_bytes",
                  "rss_bytes")


def _benchmark_columns(result: dict[str, Any], ts: str) -> tuple:
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
    return (ts, _str(info.get("name")), _str(path), _str(result.get("quant") or info.get("quant")),
            _int64(result.get("n_params", info.get("n_params"))), _int64(size), _int64(result.get("threads")),
            _str(result.get("backend")), _int64(pp.get("tokens")), _finite(pp.get("tps")), _int64(tg.get("tokens")),
            _finite(tg.get("tps")), _int64(mem.get("weights_bytes")), _int64(mem.get("kv_bytes")),
            _int64(mem.get("compute_bytes")), _int64(mem.get("rss_bytes")))


def _str(v: Any) -> str | None:
    return None if v is None else str(v)


def _int(v: Any) -> int | None:
    f = _finite(v)
    return int(f) if f is not None else None


def _int64(v: Any) -> int | None:
    """An integer SQLite can store, or None: a wild figure must not cost the row."""
    i = _int(v)
    return i if i is not None and -(1 << 63) <= i < (1 << 63) else None


def _translate(exc: BaseException, path: Path) -> HistoryError:
    """sqlite3 errors as sentences; a damaged file points at the way out."""
    if isinstance(exc, HistoryError):
        return exc
    if isinstance(exc, sqlite3.OperationalError) and ("locked" in str(exc) or "busy" in str(exc)):
        return HistoryBusyError(
            f"The chat history {path} stayed busy in another HearthChat window or chat for more than "
            f"{BUSY_TIMEOUT_S:.0f} seconds; try again.")
    if recovery.is_damage(exc):
        return HistoryError(
            f"The chat history database {path} is damaged ({exc}). Run `assistant history check` "
            "to move it aside and start a fresh one.")
    return HistoryError(f"Could not use the chat history database {path}: {exc}.")
