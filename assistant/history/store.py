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

What a person saved is never lost or hidden (see recovery.py for the rule): a
damaged search index is rebuilt in place; a file SQLite itself finds damaged is
moved aside, kept byte for byte, and a notice naming where it went stays until
the person dismisses it (`notices()`, `dismiss_notice()`); a file that cannot be
written (read-only folder or file, full disk) opens read-only, with one sentence
in `warnings` saying why nothing new can be saved.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import sqlite3
import threading
import uuid
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

from sqlite_utils import Database, Migrations

from assistant.history import comparisons as _comparisons
from assistant.history import failures, importing, opening, recovery, schema
from assistant.history import images as _images
from assistant.history import rows as columns
from assistant.history import search as _search
from assistant.history.errors import (
    ConversationNotFound,
    HistoryBusyError,
    HistoryDamagedError,
    HistoryError,
    HistoryReadOnlyError,
    MessageNotFound,
)
from assistant.history.export import ImageWriter, embedded, to_json, to_markdown
from assistant.history.notices import Notice, NoticeBoard
from assistant.history.records import (
    ROLES,
    STATUSES,
    Conversation,
    ConversationSummary,
    ImageRef,
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

log = logging.getLogger(__name__)


class _CurrentLeaf:
    def __repr__(self) -> str:
        return "CURRENT_LEAF"


# Default parent of a new message: the end of the branch on show.
CURRENT_LEAF: Any = _CurrentLeaf()
_UNSET: Any = object()
BUSY_TIMEOUT_S = 10.0

_MESSAGE_COLUMNS = """m.id, m.conversation_id, m.parent_id, m.role, m.content, m.status,
    m.created_at, m.updated_at, s.record, m.error, m.uid, m.thinking"""
_MESSAGE_SELECT = f"SELECT {_MESSAGE_COLUMNS} FROM messages m LEFT JOIN stats s ON s.message_id = m.id"

# What speed_history reads from each record beside the columns, in its json_extract's order.
_RECORD_EXTRAS = ("transport_kind", "remote", "cpu_other_busy", "n_threads", "thinking_tokens", "thinking_ms")

# Kept under their old names: other modules and tests used them from here.
_json = columns.json_text
_insert_stats = columns.insert_stats


def _message(row: tuple) -> Message:
    mid, cid, parent, role, content, status, created, updated, record, error, uid, thinking = row
    return Message(mid, cid, parent, role, content, status, created, updated,
                   json.loads(record) if record is not None else None, error, uid, thinking=thinking)


@dataclass
class CheckResult:
    """What `HistoryStore.check` found and did, as one message for the person."""

    outcome: str  # "sound", "repaired" (a search index rebuilt), "moved" (damaged file moved aside), "damaged"
    message: str
    moved_to: Path | None = None


def _recovers(method):
    """A damaged search index found mid-operation is rebuilt and the operation run again;
    damaged saved data is moved aside (see HistoryStore._recover)."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        try:
            return method(self, *args, **kwargs)
        except HistoryDamagedError as exc:
            if self._recovering:
                raise
            self._recover(exc)
            return method(self, *args, **kwargs)
    return wrapper


class HistoryStore:
    """The chat history. Open with `HistoryStore.open()`; safe to share between threads."""

    def __init__(self, db: Database, path: Path, busy_timeout: float = BUSY_TIMEOUT_S,
                 read_only_reason: str | None = None):
        self.db = db
        self.conn: sqlite3.Connection = db.conn
        self.path = path
        self.busy_timeout = busy_timeout
        self._lock = threading.RLock()
        # Sentences for the person: a read-only history, a rebuilt index, and the
        # notices they have not dismissed. The CLI prints these; the window shows them.
        self.warnings: list[str] = []
        self.moved_aside: Path | None = None
        # Replies found cut off by a dead process on open (now `interrupted`).
        self.interrupted: list[int] = []
        self.migrated: list[str] = []
        # Why nothing can be written, as a sentence; None when the history is writable.
        self.read_only_reason = read_only_reason
        self._board = NoticeBoard(path)
        self._migrations: Migrations = schema.MIGRATIONS
        self._recovering = False
        self.image_files = _images.ImageFiles(path.parent / "images")

    @property
    def read_only(self) -> bool:
        return self.read_only_reason is not None

    # -- opening -------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike | None = None, *, migrations: Migrations = schema.MIGRATIONS,
             busy_timeout: float = BUSY_TIMEOUT_S) -> HistoryStore:
        """Open (creating or upgrading) the history.

        A file SQLite finds damaged is moved aside, never overwritten; one that
        cannot be written opens read-only. Locks, a full disk and I/O errors are
        reported, never taken for damage.
        """
        if path is None:
            from common.paths import history_db_path

            try:
                path = history_db_path()  # creates the data folder
            except OSError as exc:
                raise HistoryError(f"Cannot create the data folder {exc.filename} for the chat history: "
                                   f"{exc.strerror or exc}.") from exc
        path = Path(path)
        _ensure_folder(path.parent)
        moved: tuple[Path, str] | None = None
        for attempt in range(3):
            try:
                store = cls._connect(path, migrations, busy_timeout)
                break
            except HistoryDamagedError as exc:
                if attempt == 2:
                    raise
                result = cls._deal_with_damage(path, busy_timeout, exc)
                moved = result or moved
        if moved is not None:
            store._tell_moved_aside(*moved)
        store._show_notices()
        return store

    @classmethod
    def _deal_with_damage(cls, path: Path, busy_timeout: float, exc: HistoryDamagedError) -> tuple[Path, str] | None:
        """Repair the indexes or move the file aside, after looking at it afresh under the lock."""
        if opening.read_only_reason(path) is not None:
            raise HistoryDamagedError(f"{exc} It cannot be written, so it was left exactly as it is; copy it to "
                                      "a writable folder to recover it.") from exc
        try:
            return recovery.move_aside_if_damaged(path, busy_timeout)
        except sqlite3.Error as again:
            raise failures.translate(again, path, busy_timeout) from again
        except TimeoutError as again:  # the file lock: another process is dealing with it
            raise HistoryBusyError(f"The chat history {path} is being checked by another HearthChat process; "
                                   "try again in a moment.") from again

    @classmethod
    def _connect(cls, path: Path, migrations: Migrations, busy_timeout: float) -> HistoryStore:
        reason = opening.read_only_reason(path)
        if reason is None:
            try:
                return cls._connect_read_write(path, migrations, busy_timeout)
            except sqlite3.Error as exc:
                if not failures.blocks_writing(exc) or not path.is_file():
                    raise failures.translate(exc, path, busy_timeout) from exc
                log.warning("cannot open %s for writing (%s); opening it read-only", path, exc)
                reason = opening.reason_for(exc, path)
                original = exc
            try:
                return cls._connect_read_only(path, migrations, busy_timeout, reason)
            except sqlite3.Error as exc:
                raise failures.translate(original, path, busy_timeout) from exc
        try:
            return cls._connect_read_only(path, migrations, busy_timeout, reason)
        except sqlite3.Error as exc:
            raise failures.translate(exc, path, busy_timeout) from exc

    @classmethod
    def _connect_read_write(cls, path: Path, migrations: Migrations, busy_timeout: float) -> HistoryStore:
        conn = opening.connect(path, busy_timeout)
        try:
            opening.prepare(conn, busy_timeout)
            store = cls(Database(conn, execute_plugins=False), path, busy_timeout)
            store._migrations = migrations
            store.migrated = schema.migrate(store.db, path, migrations)
            store.interrupted = store._mark_orphans_interrupted()
            return store
        except BaseException:
            conn.close()
            raise

    @classmethod
    def _connect_read_only(cls, path: Path, migrations: Migrations, busy_timeout: float,
                           reason: str) -> HistoryStore:
        conn, note = opening.connect_read_only(path, busy_timeout)
        try:
            db = Database(conn, execute_plugins=False)
            missing = set(schema.pending(db, migrations)) - schema.INDEX_ONLY
            if missing:
                # An older schema than this code reads: upgrade a copy in memory, never the file.
                log.info("upgrading a read-only history in memory (%s)", ", ".join(sorted(missing)))
                conn = opening.copy_to_memory(conn)
                db = Database(conn, execute_plugins=False)
                schema.migrate(db, path, schema.without_index_only(migrations))
            conn.execute("PRAGMA query_only = ON")  # belt and braces: this connection never writes
            store = cls(db, path, busy_timeout, read_only_reason=reason)
            store._migrations = migrations
            store.warnings.append(reason)
            if note:
                store.warnings.append(note)
            return store
        except BaseException:
            conn.close()
            raise

    def _mark_orphans_interrupted(self) -> list[int]:
        try:
            ids = recovery.find_orphaned_streams(self.conn)
            if ids:
                marks = ",".join("?" * len(ids))
                with self._write() as conn:
                    # `AND status = 'streaming'`: a writer that finished meanwhile keeps its status.
                    conn.execute(
                        f"UPDATE messages SET status = 'interrupted', writer_pid = NULL, writer_started = NULL "
                        f"WHERE id IN ({marks}) AND status = 'streaming'", ids)
            return ids
        except HistoryError as exc:
            if isinstance(exc, HistoryDamagedError):
                raise
            # A full disk or a lock must not stop the history from opening; the next open retries.
            log.warning("could not mark cut-off replies as interrupted: %s", exc)
            return []

    def close(self) -> None:
        with self._lock:
            self.conn.close()

    def __enter__(self) -> HistoryStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- notices -------------------------------------------------------------------

    def notices(self) -> list[Notice]:
        """What the person must be told until they dismiss it (a damaged file moved aside), oldest first."""
        return self._board.read()

    def dismiss_notice(self, notice_id: int | None = None) -> list[Notice]:
        """Stop showing one notice, or all (None). Returns those dismissed."""
        try:
            return self._board.dismiss(notice_id)
        except OSError as exc:
            raise HistoryError(f"Cannot update the notices in {self._board.file}: {exc.strerror or exc}.") from exc

    def _tell_moved_aside(self, target: Path, reason: str) -> None:
        self.moved_aside = target
        text = (f"The chat history database {self.path} was damaged ({reason}). It was moved to {target}, where "
                "nothing in it was changed, and a new, empty history was started.")
        try:
            self._board.add(text, target)
        except OSError as exc:
            log.warning("cannot save the notice in %s (%s)", self._board.file, exc)
            self.warnings.append(text)  # shown this once at least

    def _show_notices(self) -> None:
        for notice in self.notices():
            self.warnings.append(f"{notice.text} (`assistant history dismiss {notice.id}` stops this reminder.)")

    # -- transactions --------------------------------------------------------------

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        if self.read_only_reason is not None:
            raise HistoryReadOnlyError(self.read_only_reason)
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
            raise failures.translate(exc, self.path, self.busy_timeout) from exc

    # -- damage found while in use -------------------------------------------------

    def _recover(self, exc: HistoryDamagedError) -> None:
        """Rebuild a damaged search index and return (the caller runs again), or raise.

        Damaged saved data is moved aside (with a notice) and a new history started;
        the operation that found it fails with a sentence saying so.
        """
        with self._lock:
            self._recovering = True
            try:
                try:
                    verdict = recovery.examine(self.conn)
                except sqlite3.Error as again:
                    raise failures.translate(again, self.path, self.busy_timeout) from again
                if verdict.kind == "sound":
                    raise exc  # SQLite's complaint did not hold up; nothing to act on
                if verdict.kind == "index":
                    self._rebuild_indexes(verdict)
                    return
                if self.read_only:
                    raise HistoryDamagedError(f"{exc} It cannot be written, so it was left exactly as it is; "
                                              "copy it to a writable folder to recover it.") from exc
                if self._reindex(verdict):
                    return
                target = self._move_aside_and_restart(exc)
                if target is None:
                    return  # sound when looked at afresh under the lock (another process repaired it)
                raise HistoryDamagedError(
                    f"The chat history database {self.path} was damaged ({verdict.reason}), so this was not done. "
                    f"It was moved to {target}, where nothing in it was changed, and a new, empty history was "
                    "started.") from exc
            finally:
                self._recovering = False

    def _rebuild_indexes(self, verdict: recovery.Verdict) -> None:
        if self.read_only:
            raise HistoryDamagedError(
                f"The search index of the chat history {self.path} is damaged ({verdict.reason}) and the file "
                "cannot be written, so it cannot be rebuilt; listing and showing conversations still work.")
        try:
            recovery.repair_indexes(self.conn, verdict.bad_indexes)
        except sqlite3.Error as exc:
            raise failures.translate(exc, self.path, self.busy_timeout) from exc
        text = (f"The search index of the chat history {self.path} was damaged ({verdict.reason}); it was rebuilt "
                "from your messages, and nothing was lost.")
        log.warning(text)
        self.warnings.append(text)

    def _reindex(self, verdict: recovery.Verdict) -> bool:
        """Index entries out of step with their table are derived data too: REINDEX, and look again."""
        if not recovery.only_index_entries(verdict.reason):
            return False
        try:
            self.conn.execute("REINDEX")
            if recovery.examine(self.conn, check_indexes=False).kind != "sound":
                return False
        except sqlite3.DatabaseError as exc:
            if not failures.is_damage(exc):
                raise failures.translate(exc, self.path, self.busy_timeout) from exc
            return False
        text = (f"The indexes of the chat history {self.path} were out of step with the messages "
                f"({verdict.reason}); they were rebuilt from them, and nothing was lost.")
        log.warning(text)
        self.warnings.append(text)
        return True

    def _move_aside_and_restart(self, exc: HistoryDamagedError) -> Path | None:
        self.conn.close()
        moved = type(self)._deal_with_damage(self.path, self.busy_timeout, exc)
        fresh = type(self)._connect(self.path, self._migrations, self.busy_timeout)
        self.db, self.conn = fresh.db, fresh.conn
        if moved is None:
            return None
        self._tell_moved_aside(*moved)
        return moved[0]

    def check(self) -> CheckResult:
        """Look at the whole file: rebuild a damaged search index, move a damaged file aside.

        Reads every page (seconds on a large history). The result's message says
        what was found and what was done.
        """
        with self._lock:
            self._recovering = True
            try:
                return self._check()
            finally:
                self._recovering = False

    def _check(self) -> CheckResult:
        path = self.path
        try:
            verdict = recovery.examine(self.conn)
        except sqlite3.Error as exc:
            raise failures.translate(exc, path, self.busy_timeout) from exc
        if verdict.kind == "damaged":
            if self.read_only:
                return CheckResult("damaged", f"The chat history {path} is damaged ({verdict.reason}). It cannot "
                                   "be written, so it was left exactly as it is; copy it to a writable folder to "
                                   "recover it.")
            if self._reindex(verdict):
                return CheckResult("repaired", self.warnings[-1])
            target = self._move_aside_and_restart(HistoryDamagedError(verdict.reason))
            if target is None:
                return CheckResult("sound", f"The chat history {path} was found sound on a second look; nothing "
                                   "was changed.")
            return CheckResult("moved", f"The chat history {path} was damaged ({verdict.reason}). It was moved to "
                               f"{target}, where nothing in it was changed, and a new, empty history was started.",
                               target)
        n_conv = self.count_conversations()
        n_msg = self.conn.execute("SELECT count(*) FROM messages").fetchone()[0]
        counts = f"{n_conv:,} conversation{'' if n_conv == 1 else 's'} and {n_msg:,} message{'' if n_msg == 1 else 's'}"
        if verdict.kind == "index":
            self._rebuild_indexes(verdict)
            return CheckResult("repaired", f"The search index of the chat history {path} was damaged "
                               f"({verdict.reason}). It was rebuilt from your {counts}; nothing was lost.")
        if self.read_only:  # FTS5 checks its indexes only through a write statement
            return CheckResult("sound", f"The chat history {path} is sound: {counts}. It cannot be written, so its "
                               "search indexes were not checked.")
        return CheckResult("sound", f"The chat history {path} is sound: {counts}, and the search indexes match them.")

    # -- conversations -------------------------------------------------------------

    @_recovers
    def create_conversation(self, model: str | None = None, system_prompt: str | None = None,
                            settings: dict[str, Any] | None = None, title: str | None = None) -> Conversation:
        """A new, empty conversation. Without a title, its first user message names it."""
        ts = now()
        uid = uuid.uuid4().hex
        title = (clean_text(title).strip() or None) if title is not None else None
        model, system_prompt = clean_optional(model), clean_optional(system_prompt)
        with self._write() as conn:
            cid = columns.inserted_id(conn.execute(
                "INSERT INTO conversations (uid, title, model, system_prompt, settings, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (uid, title, model, system_prompt, _json(settings or {}), ts, ts)))
        return Conversation(cid, uid, title, model, system_prompt, dict(settings or {}), ts, ts, None, [])

    @_recovers
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
            messages = self._with_images(conn, [_message(r) for r in rows])
        cid, uid, title, model, system_prompt, settings, created, updated, leaf = row
        return Conversation(cid, uid, title, model, system_prompt, json.loads(settings or "{}"),
                            created, updated, leaf, messages)

    @_recovers
    def list_conversations(self, limit: int = 100, offset: int = 0) -> list[ConversationSummary]:
        """Most recently active first."""
        with self._read() as conn:
            rows = conn.execute(
                "SELECT c.id, c.title, c.model, c.created_at, c.updated_at, "
                "(SELECT count(*) FROM messages m WHERE m.conversation_id = c.id), "
                "CASE WHEN json_valid(c.settings) THEN json_extract(c.settings, '$.source') END "
                "FROM conversations c ORDER BY c.updated_at DESC, c.id DESC LIMIT ? OFFSET ?",
                (limit, offset)).fetchall()
        return [ConversationSummary(*r) for r in rows]

    @_recovers
    def count_conversations(self) -> int:
        with self._read() as conn:
            return conn.execute("SELECT count(*) FROM conversations").fetchone()[0]

    @_recovers
    def conversation_ids(self) -> list[int]:
        """Every conversation id, oldest first (export order)."""
        with self._read() as conn:
            return [r[0] for r in conn.execute("SELECT id FROM conversations ORDER BY id")]

    @_recovers
    def rename(self, conversation_id: int, title: str) -> None:
        title = clean_text(title).strip()
        if not title:
            raise HistoryError("A conversation title cannot be empty.")
        with self._write() as conn:
            if not conn.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id)).rowcount:
                raise ConversationNotFound(conversation_id)

    @_recovers
    def update_conversation(self, conversation_id: int, *, model: str | None = _UNSET,
                            system_prompt: str | None = _UNSET, settings: dict[str, Any] = _UNSET) -> None:
        """Change the model, system prompt or settings used from now on."""
        fields = {k: v for k, v in (("model", model), ("system_prompt", system_prompt),
                                    ("settings", settings)) if v is not _UNSET}
        if "settings" in fields:
            fields["settings"] = _json(fields["settings"] or {})
        for key in ("model", "system_prompt"):
            if key in fields:
                fields[key] = clean_optional(str(fields[key]) if fields[key] is not None else None)
        if not fields:
            return
        sets = ", ".join(f"{k} = ?" for k in fields)
        with self._write() as conn:
            if not conn.execute(f"UPDATE conversations SET {sets}, updated_at = ? WHERE id = ?",
                                (*fields.values(), now(), conversation_id)).rowcount:
                raise ConversationNotFound(conversation_id)

    @_recovers
    def delete(self, conversation_id: int) -> int:
        """Delete a conversation, its messages, stats and search rows. Returns the message count."""
        with self._write() as conn:
            conn.execute("DELETE FROM stats WHERE message_id IN "
                         "(SELECT id FROM messages WHERE conversation_id = ?)", (conversation_id,))
            unused = _images.unlink_conversation(conn, conversation_id)
            # The FTS triggers remove the search rows in the same transaction.
            n = conn.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,)).rowcount
            if not conn.execute("DELETE FROM conversations WHERE id = ?", (conversation_id,)).rowcount:
                raise ConversationNotFound(conversation_id)
        if unused:  # the last conversation that showed them is gone: so are their files
            # The image lock first, then the store's: the order a message with images takes them in.
            from filelock import Timeout

            try:
                with self.image_files.locked():
                    self._sweep(unused)
            except (Timeout, OSError) as exc:  # the conversation is deleted; a file left behind costs only space
                log.warning("could not delete the images of conversation %s: %s", conversation_id, exc)
        return n

    # -- messages and the tree -----------------------------------------------------

    @_recovers
    def add_message(self, conversation_id: int, role: str, content: str, *, parent_id: int | None = CURRENT_LEAF,
                    status: str = "complete", stats: dict[str, Any] | None = None,
                    error: str | None = None, images: list | None = None) -> Message:
        """Save one message as the child of `parent_id` (default: the end of the branch on show).

        It becomes the branch on show. The message, its search row, its stats and its image
        links are one transaction; each image's file is written first (once, by its SHA-256).
        The first user message of an untitled conversation names it.
        """
        _check(role, status)
        if not images:
            return self._insert_message(conversation_id, role, clean_text(content), parent_id, status, stats,
                                        clean_optional(error))
        if self.read_only_reason is not None:
            raise HistoryReadOnlyError(self.read_only_reason)
        with _images.writing(self.image_files):
            new = self._new_images(images)
            for image in images:
                self.image_files.ensure(image)
            try:
                return self._insert_message(conversation_id, role, clean_text(content), parent_id, status, stats,
                                            clean_optional(error), images=images)
            except BaseException:
                self._sweep(new)  # the message was not saved: neither are files only it would have shown
                raise

    @_recovers
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
        """A new version of a message, as a sibling: the original and its replies are kept, and so are its images."""
        old = self.get_message(message_id)
        return self._insert_message(old.conversation_id, old.role, clean_text(content), old.parent_id, "complete",
                                    None, None, images_of=old.id if old.images else None)

    @_recovers
    def get_message(self, message_id: int) -> Message:
        with self._read() as conn:
            row = conn.execute(f"{_MESSAGE_SELECT} WHERE m.id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFound(message_id)
            return self._with_images(conn, [_message(row)])[0]

    def image_data(self, ref: ImageRef) -> bytes:
        """An image's bytes from the history's files; a HistoryError sentence when it cannot be read."""
        try:
            return self.image_files.read(ref)
        except (OSError, ValueError) as exc:
            raise HistoryError(f"The image {ref.name or ref.sha256[:12]} of this conversation cannot be read from "
                               f"{self.image_files.folder} ({getattr(exc, 'strerror', None) or exc}).") from exc

    def _new_images(self, images: list) -> list[tuple[str, str]]:
        """(sha, mime) of the images the history does not hold yet: the files a failed write must take back."""
        with self._read() as conn:
            return [(i.sha256, i.mime) for i in {i.sha256: i for i in images}.values()
                    if conn.execute("SELECT 1 FROM images WHERE sha256 = ?", (i.sha256,)).fetchone() is None]

    def _sweep(self, candidates: list[tuple[str, str]]) -> None:
        """Delete those of `candidates` that no message links (the caller holds the image lock)."""
        if candidates:
            with self._lock, self._errors():
                self.image_files.remove_unlinked(self.conn, candidates, held=True)

    @staticmethod
    def _with_images(conn: sqlite3.Connection, messages: list[Message]) -> list[Message]:
        refs = _images.refs_for(conn, [m.id for m in messages]) if messages else {}
        for m in messages:
            m.images = refs.get(m.id, [])
        return messages

    @_recovers
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
            return self._with_images(conn, [_message(r) for r in rows])

    @_recovers
    def siblings(self, message_id: int) -> list[Message]:
        """All versions of a message, itself included, oldest first: the "2/3" arrows."""
        with self._read() as conn:
            row = conn.execute("SELECT conversation_id, parent_id FROM messages WHERE id = ?", (message_id,)).fetchone()
            if row is None:
                raise MessageNotFound(message_id)
            rows = conn.execute(f"{_MESSAGE_SELECT} WHERE m.conversation_id = ? AND m.parent_id IS ? ORDER BY m.id",
                                row).fetchall()
        return [_message(r) for r in rows]

    @_recovers
    def switch_branch(self, message_id: int) -> list[Message]:
        """Show the branch through `message_id` (its newest descendants); returns the new thread."""
        msg = self.get_message(message_id)
        conv = self.get_conversation(msg.conversation_id)
        leaf = latest_leaf(conv.messages, message_id)
        with self._write() as conn:
            conn.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?", (leaf, conv.id))
        return path_to(conv.messages, leaf)

    def _insert_message(self, conversation_id, role, content, parent_id, status, stats, error,
                        writer=(None, None), images=None, images_of: int | None = None) -> Message:
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
            mid = columns.inserted_id(conn.execute(
                "INSERT INTO messages (uid, conversation_id, parent_id, role, content, status, created_at, "
                "updated_at, error, writer_pid, writer_started) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (uid, conversation_id, parent_id, role, content, status, ts, ts, error, *writer)))
            if stats is not None:
                _insert_stats(conn, mid, stats, ts)
            if images:
                _images.link(conn, mid, images)
            elif images_of is not None:
                _images.copy_links(conn, images_of, mid)
            refs = _images.refs_for(conn, [mid]).get(mid, []) if (images or images_of is not None) else []
            title = title_from(content) if role == "user" and content.strip() else None
            conn.execute("UPDATE conversations SET current_leaf_id = ?, updated_at = ?, "
                         "title = COALESCE(title, ?) WHERE id = ?", (mid, ts, title, conversation_id))
        return Message(mid, conversation_id, parent_id, role, content, status, ts, ts,
                       json.loads(_json(stats)) if stats is not None else None, error, uid, refs)

    # -- streaming (called by StreamingReply) --------------------------------------

    @_recovers
    def _save_stream(self, message_id: int, content: str, thinking: str | None = None) -> None:
        """`thinking` None: unchanged since the last save (its index is not touched)."""
        with self._write() as conn:
            if thinking is None:
                conn.execute("UPDATE messages SET content = ?, updated_at = ? WHERE id = ? AND status = 'streaming'",
                             (clean_text(content), now(), message_id))
            else:
                conn.execute("UPDATE messages SET content = ?, thinking = ?, updated_at = ? WHERE id = ? AND "
                             "status = 'streaming'", (clean_text(content), clean_text(thinking), now(), message_id))

    @_recovers
    def _finish_stream(self, message_id: int, content: str, status: str, stats, error,
                       thinking: str | None = None) -> Message:
        ts = now()
        with self._write() as conn:
            # Deleted meanwhile (the window removed the conversation): nothing to save.
            if conn.execute(
                "UPDATE messages SET content = ?, thinking = ?, status = ?, error = ?, updated_at = ?, "
                "writer_pid = NULL, writer_started = NULL WHERE id = ?",
                (clean_text(content), clean_optional(thinking or None), status, clean_optional(error), ts,
                 message_id)).rowcount:
                if stats is not None:
                    _insert_stats(conn, message_id, stats, ts)
                conn.execute("UPDATE conversations SET updated_at = ? WHERE id = "
                             "(SELECT conversation_id FROM messages WHERE id = ?)", (ts, message_id))
        try:
            return self.get_message(message_id)
        except MessageNotFound:
            return Message(message_id, -1, None, "assistant", content, status, ts, ts, stats, error,
                           thinking=thinking or None)

    # -- search, statistics, export ------------------------------------------------

    @_recovers
    def search(self, query: str, limit: int = 20, highlight: tuple[str, str] = ("**", "**"), *,
               thinking: bool = False) -> list[SearchHit]:
        """Ranked hits in titles and messages; any text is a valid query (never raises on syntax).
        `thinking`: replies' thinking is searched too (its hits say `in_thinking`)."""
        with self._read() as conn:
            return _search.search(conn, query, limit=limit, highlight=highlight, thinking=thinking)

    @_recovers
    def speed_history(self, model: str | None = None, limit: int | None = None) -> list[dict[str, Any]]:
        """Per-reply speed figures, oldest first, for the statistics view's charts.

        Beside the columns, values from the record, as it holds them (None when absent):
        `transport_kind` ("remote" for a reply from a server), `remote` (its name),
        `cpu_other_busy` (how busy other programs kept the CPU), `n_threads`, and a reasoning
        model's `thinking_tokens` and `thinking_ms`.
        """
        sql = ("SELECT created_at, model, quant, gen_tps, prompt_tps, ttft_ms, prompt_tokens, completion_tokens, "
               "stop_reason, message_id, size_bytes, "
               # One json_extract with several paths parses each record once; CASE skips one that is not JSON.
               "CASE WHEN json_valid(record) THEN json_extract(record, '$.transport.kind', '$.transport.remote', "
               "'$.transport.cpu_other_busy', '$.n_threads', '$.thinking_tokens', '$.thinking_ms') END FROM stats"
               + (" WHERE model = ?" if model else "")
               + " ORDER BY created_at" + (" LIMIT ?" if limit else ""))
        params = ([model] if model else []) + ([limit] if limit else [])
        with self._read() as conn:
            cur = conn.execute(sql, params)
            names = [d[0] for d in cur.description][:-1]
            out = []
            for r in cur.fetchall():
                row = dict(zip(names, r[:-1], strict=True))
                extra = json.loads(r[-1]) if r[-1] else [None] * len(_RECORD_EXTRAS)
                row.update(zip(_RECORD_EXTRAS, extra, strict=True))
                out.append(row)
            return out

    @_recovers
    def draft_history(self) -> list[dict[str, Any]]:
        """Per-reply generation speed with what drafted it, oldest first, for the drafting statistics:
        `model`, `gen_tps`, `completion_tokens`, `created_at`, and from the record `draft` (the dict, or
        None), `cpu_other_busy` and `n_threads`. Remote replies are left out (the server drafts, or not)."""
        sql = ("SELECT created_at, model, gen_tps, completion_tokens, "
               "CASE WHEN json_valid(record) THEN json_extract(record, '$.draft', '$.transport.kind', "
               "'$.transport.cpu_other_busy', '$.n_threads') END FROM stats ORDER BY created_at")
        with self._read() as conn:
            out = []
            for created_at, model, gen_tps, completion_tokens, extra in conn.execute(sql).fetchall():
                draft, kind, busy, threads = json.loads(extra) if extra else [None] * 4
                if kind == "remote":
                    continue
                if isinstance(draft, str):  # json_extract gives a nested object as JSON text
                    draft = json.loads(draft)
                out.append({"created_at": created_at, "model": model, "gen_tps": gen_tps,
                            "completion_tokens": completion_tokens, "draft": draft if isinstance(draft, dict) else None,
                            "cpu_other_busy": busy, "n_threads": threads})
            return out

    @_recovers
    def save_benchmark(self, result: dict[str, Any]) -> int:
        """Save one model's benchmark (what `run_benchmark` returns, plus `memory`); returns its id."""
        if not isinstance(result, dict):
            raise TypeError(f"a benchmark result is a dict, not {type(result).__name__}")
        with self._write() as conn:
            return columns.inserted_id(conn.execute(
                f"INSERT INTO benchmarks ({', '.join(columns.BENCH_COLUMNS)}, record) "
                f"VALUES ({', '.join('?' * (len(columns.BENCH_COLUMNS) + 1))})",
                (*columns.benchmark_columns(result, now()), _json(result))))

    @_recovers
    def benchmarks(self, limit: int | None = None) -> list[dict[str, Any]]:
        """Saved benchmarks, newest first: the columns, with `record` the full result."""
        sql = f"SELECT id, {', '.join(columns.BENCH_COLUMNS)}, record FROM benchmarks ORDER BY created_at DESC, id DESC"
        with self._read() as conn:
            cur = conn.execute(sql + (" LIMIT ?" if limit else ""), [limit] if limit else [])
            names = [d[0] for d in cur.description]
            rows = [dict(zip(names, r, strict=True)) for r in cur.fetchall()]
        for row in rows:
            row["record"] = json.loads(row["record"])
        return rows

    @_recovers
    def export_markdown(self, ids: list[int] | None = None, image_links: dict[str, str] | None = None) -> str:
        """The conversations to read; `image_links` (SHA-256 -> a path beside the file) shows images as
        Markdown images (image_export.py writes those files), else by name."""
        return to_markdown(self._conversations(ids), image_links)

    @_recovers
    def export_json(self, ids: list[int] | None = None, images: ImageWriter | None = None) -> dict[str, Any]:
        """Everything: branches, statuses, stats, images (embedded unless `images` says otherwise); with no
        `ids`, the comparisons (verdicts included) and prompt sets too. `import_json` takes it back losslessly."""
        images = images or embedded(self.image_data)
        if ids is not None:
            return to_json(self._conversations(ids), images=images)
        return to_json(self._conversations(None),
                       comparisons=[_comparisons.comparison_to_json(c)
                                    for c in self.list_comparisons(limit=None, oldest_first=True)],
                       prompt_sets=[_comparisons.prompt_set_to_json(s) for s in self.prompt_sets()], images=images)

    def import_json(self, data: dict | str | bytes,
                    limits: importing.ImportLimits = importing.LIMITS, *, folder: str | os.PathLike | None = None
                    ) -> ImportResult:
        """Import an export. Read within `limits`, checked whole first (every image too: its bytes, its
        SHA-256, its kind), then written in one transaction: all or nothing. `folder`: where the export
        was, for images exported as files beside it. ImportFormatError / ImportLimitError say what is wrong."""
        doc = importing.parse(data, limits) if isinstance(data, (str, bytes, bytearray)) else data
        conversations = importing.validate(doc, limits, folder=Path(folder) if folder is not None else None)
        comparisons, prompt_sets = importing.validate_comparisons(doc, limits)
        images = [i for c in conversations for m in c["messages"] for i in m.get("images") or []]
        if not images:
            return self._write_import(conversations, comparisons, prompt_sets)
        if self.read_only_reason is not None:
            raise HistoryReadOnlyError(self.read_only_reason)
        with _images.writing(self.image_files):
            new = self._new_images(images)
            for image in {i.sha256: i for i in images}.values():
                self.image_files.ensure(image)
            try:
                return self._write_import(conversations, comparisons, prompt_sets)
            finally:
                self._sweep(new)  # files of conversations skipped (already here), or of a failed import

    @_recovers
    def _write_import(self, conversations: list[dict[str, Any]], comparisons: list[dict[str, Any]] | None = None,
                      prompt_sets: list[dict[str, Any]] | None = None) -> ImportResult:
        with self._write() as conn:
            result = importing.write(conn, conversations, link_images=_images.link)
            result.comparisons, result.comparisons_skipped, result.prompt_sets = _comparisons.write(
                conn, comparisons or [], prompt_sets or [])
            return result

    # -- comparisons, verdicts and prompt sets (see comparisons.py) -----------------

    @_recovers
    def create_comparison(self, prompt: str, *, system_prompt: str | None = None,
                          settings: dict[str, Any] | None = None, prompt_set: str | None = None,
                          batch: str | None = None, rerun_of: str | None = None) -> _comparisons.Comparison:
        """A new comparison of one prompt; its answers are added as each model finishes."""
        with self._write() as conn:
            return _comparisons.create(conn, prompt, system_prompt=system_prompt, settings=settings,
                                       prompt_set=prompt_set, batch=batch, rerun_of=rerun_of)

    @_recovers
    def add_comparison_answer(self, comparison_id: int, position: int, model: str, content: str, *,
                              status: str = "complete", stats: dict[str, Any] | None = None,
                              error: str | None = None) -> _comparisons.Answer:
        with self._write() as conn:
            return _comparisons.add_answer(conn, comparison_id, position, model, content, status=status,
                                           stats=stats, error=error)

    @_recovers
    def set_verdict(self, answer_id: int, verdict: str | None) -> _comparisons.Answer:
        """Mark an answer "good" (good enough), "not_good", or None (not judged); returns it as saved."""
        with self._write() as conn:
            _comparisons.set_verdict(conn, answer_id, verdict)
        return self._answer(answer_id)

    @_recovers
    def set_best(self, comparison_id: int, answer_id: int | None) -> _comparisons.Comparison:
        """Pick the best answer of a comparison (it is good enough too); None clears the pick."""
        with self._write() as conn:
            _comparisons.set_best(conn, comparison_id, answer_id)
        return self.get_comparison(comparison_id)

    def _answer(self, answer_id: int) -> _comparisons.Answer:
        with self._read() as conn:
            comparison = _comparisons.get(conn, _comparisons.answer_comparison_id(conn, answer_id))
        return next(a for a in comparison.answers if a.id == answer_id)

    @_recovers
    def get_comparison(self, comparison_id: int) -> _comparisons.Comparison:
        with self._read() as conn:
            return _comparisons.get(conn, comparison_id)

    @_recovers
    def list_comparisons(self, limit: int | None = 100, offset: int = 0, *, batch: str | None = None,
                         prompt_set: str | None = None, oldest_first: bool = False) -> list[_comparisons.Comparison]:
        """Saved comparisons with their answers, newest first (a batch: `batch=`, oldest first for its order)."""
        with self._read() as conn:
            return _comparisons.listing(conn, limit=limit, offset=offset, batch=batch, prompt_set=prompt_set,
                                        oldest_first=oldest_first)

    @_recovers
    def count_comparisons(self) -> int:
        with self._read() as conn:
            return _comparisons.count(conn)

    @_recovers
    def delete_comparison(self, comparison_id: int) -> None:
        with self._write() as conn:
            _comparisons.delete(conn, comparison_id)

    @_recovers
    def search_comparisons(self, query: str, limit: int = 20,
                           highlight: tuple[str, str] = ("**", "**")) -> list[_comparisons.ComparisonHit]:
        """Compared prompts and answers holding the query; any text is a valid query."""
        with self._read() as conn:
            return _comparisons.search(conn, query, limit=limit, highlight=highlight)

    @_recovers
    def save_prompt_set(self, name: str, prompts: list[str], *, system_prompt: str | None = None,
                        replace: bool = False) -> _comparisons.PromptSet:
        """A named list of prompts to run as a batch; `replace` overwrites one of the same name."""
        with self._write() as conn:
            return _comparisons.save_set(conn, name, prompts, system_prompt, replace)

    @_recovers
    def get_prompt_set(self, name: str) -> _comparisons.PromptSet:
        with self._read() as conn:
            return _comparisons.get_set(conn, name)

    @_recovers
    def prompt_sets(self) -> list[_comparisons.PromptSet]:
        with self._read() as conn:
            return _comparisons.all_sets(conn)

    @_recovers
    def delete_prompt_set(self, name: str) -> None:
        with self._write() as conn:
            _comparisons.delete_set(conn, name)

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




def _ensure_folder(folder: Path) -> None:
    """The data folder exists (creating it if needed), or a sentence says why it cannot."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        if folder.is_dir():  # exists but cannot be touched: opening will say more
            return
        raise HistoryError(f"Cannot create the folder {folder} for the chat history: {exc.strerror or exc}.") from exc
