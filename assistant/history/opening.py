"""Connecting to the history file: read-write when the folder, the file and the disk allow it, read-only otherwise.

A history that cannot be written is still the person's history: they can list,
show and search it, and are told in one sentence why nothing new can be saved.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from assistant.history import failures

log = logging.getLogger(__name__)


def read_only_reason(path: Path) -> str | None:
    """Why this history cannot be written, as a sentence; None when it can."""
    folder = path.parent
    if not os.access(folder, os.W_OK):
        if not path.exists():
            return (f"The folder {folder} is read-only and holds no chat history yet, so nothing can be saved "
                    "to the history.")
        return (f"The folder {folder} is read-only, so nothing new can be saved to the chat history; you can "
                "still list, show and search it.")
    if path.exists() and not os.access(path, os.W_OK):
        return (f"The chat history {path} is a read-only file, so nothing new can be saved; you can still list, "
                "show and search it.")
    return None


def reason_for(exc: BaseException, path: Path) -> str:
    """The read-only sentence for a history opened read-only after `exc` stopped a read-write open."""
    code = failures.code(exc)
    if failures.is_full(exc, path):
        return (f"The disk holding the chat history {path} is full, so nothing new can be saved until some space "
                "is freed; you can still list, show and search it.")
    if code == failures.IOERR:
        return (f"The disk reported an input/output error for the chat history {path} ({exc}), so it was opened "
                "for reading only; you can still list, show and search it.")
    return (f"The chat history {path} cannot be written ({exc}), so nothing new can be saved; you can still "
            "list, show and search it.")


def connect(path: Path, busy_timeout: float) -> sqlite3.Connection:
    """Read-write. isolation_level=None: no hidden transactions, every write is an explicit
    BEGIN IMMEDIATE ... COMMIT. check_same_thread=False plus the store's lock: the window
    may save from a worker thread."""
    return sqlite3.connect(path, timeout=busy_timeout, isolation_level=None, check_same_thread=False)


def prepare(conn: sqlite3.Connection, busy_timeout: float) -> None:
    """WAL and durability settings of a read-write connection."""
    _retry_busy(lambda: _enable_wal(conn), busy_timeout)
    conn.execute("PRAGMA synchronous = FULL")  # a committed message survives power loss too
    conn.execute("PRAGMA foreign_keys = ON")
    # Private by default: deleted text is overwritten in the file, not just unlinked.
    conn.execute("PRAGMA secure_delete = ON")


def _enable_wal(conn: sqlite3.Connection) -> None:
    # WAL: readers never block the writer, nor the writer readers. Set once per
    # file; switching needs a lock that a concurrent opener may hold a moment.
    if conn.execute("PRAGMA journal_mode").fetchone()[0].lower() != "wal":
        conn.execute("PRAGMA journal_mode = WAL")


def _retry_busy(action, wait_s: float):
    deadline = time.monotonic() + wait_s
    while True:
        try:
            return action()
        except sqlite3.OperationalError as exc:
            if not failures.is_busy(exc) or time.monotonic() >= deadline:
                raise
            time.sleep(0.02)


def connect_read_only(path: Path, busy_timeout: float) -> tuple[sqlite3.Connection, str | None]:
    """A connection that never writes, and a sentence for anything it cannot show.

    `mode=ro` sees every committed change, but SQLite needs the -shm file beside a
    WAL database and creates it when missing: only possible in a writable folder.
    In a read-only folder a cleanly closed database (no -wal left) opens as
    `immutable=1`, which needs nothing beside the file.
    """
    if not path.exists():
        return _memory(), None
    uri = path.resolve().as_uri()
    wal = Path(f"{path}-wal")
    wal_has_changes = wal.exists() and wal.stat().st_size > 0
    if os.access(path.parent, os.W_OK) or wal_has_changes:
        conn = sqlite3.connect(f"{uri}?mode=ro", uri=True, timeout=busy_timeout, isolation_level=None,
                               check_same_thread=False)
        try:
            conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            return conn, None
        except sqlite3.Error as exc:
            conn.close()
            if failures.is_damage(exc):
                raise
            log.info("read-only open of %s failed (%s); opening it as immutable", path, exc)
    note = None
    if wal_has_changes:
        note = (f"The newest changes to the chat history, in {wal}, cannot be read here, so what was saved "
                "just before them is shown.")
    conn = sqlite3.connect(f"{uri}?immutable=1", uri=True, timeout=busy_timeout, isolation_level=None,
                           check_same_thread=False)
    return conn, note


def copy_to_memory(conn: sqlite3.Connection) -> sqlite3.Connection:
    """The whole database in memory: a read-only file whose schema must be upgraded to be read."""
    memory = _memory()
    conn.backup(memory)
    conn.close()
    return memory


def _memory() -> sqlite3.Connection:
    return sqlite3.connect(":memory:", isolation_level=None, check_same_thread=False)
