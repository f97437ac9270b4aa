"""Getting back to a sound state on open: damaged files, and replies cut off mid-stream."""

from __future__ import annotations

import os
import sqlite3
from datetime import datetime, timezone
from pathlib import Path

from assistant.history.errors import HistoryError

SQLITE_MAGIC = b"SQLite format 3\x00"
_CORRUPT, _NOTADB = 11, 26  # SQLITE_CORRUPT, SQLITE_NOTADB primary result codes


def damage_in_header(path: Path) -> str | None:
    """Why the file is plainly not a sound SQLite database, or None.

    Cheap (100 bytes read) so it runs on every open; a full integrity check
    would cost seconds on a large history.
    """
    try:
        size = path.stat().st_size
        if size == 0:  # SQLite treats an empty file as an empty database
            return None
        with open(path, "rb") as f:
            head = f.read(100)
    except OSError:  # missing, a folder, unreadable: not damage; SQLite's error will say
        return None
    if len(head) < 100 or not head.startswith(SQLITE_MAGIC):
        return "it is not an SQLite database"
    page_size = int.from_bytes(head[16:18], "big")
    page_size = 65536 if page_size == 1 else page_size
    if page_size < 512 or page_size & (page_size - 1):
        return "its header is damaged"
    change_counter = int.from_bytes(head[24:28], "big")
    n_pages = int.from_bytes(head[28:32], "big")
    valid_for = int.from_bytes(head[92:96], "big")
    # The in-header page count is trusted by SQLite when valid_for matches the
    # change counter; a file shorter than that has lost its tail.
    if n_pages and valid_for == change_counter and size < n_pages * page_size:
        return "it is truncated"
    return None


def is_damage(exc: BaseException) -> bool:
    """A corrupt or non-database file, as opposed to a lock, a full disk or a permission."""
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    code = getattr(exc, "sqlite_errorcode", None)
    if code is not None:
        return code & 0xFF in (_CORRUPT, _NOTADB)
    text = str(exc).lower()
    return "malformed" in text or "not a database" in text


def move_aside(path: Path) -> Path:
    """Rename a damaged database (and its -wal/-shm) to a timestamped name; never overwrite."""
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    base = f"{path.stem}.damaged-{stamp}"
    n = 1
    while True:
        target = path.with_name(f"{base}{'' if n == 1 else f'-{n}'}{path.suffix}")
        companions = [Path(f"{target}{s}") for s in ("", "-wal", "-shm")]
        if not any(p.exists() for p in companions):
            break
        n += 1
    try:
        os.rename(path, target)
        # The WAL belongs to the old file: left in place, SQLite would try it on the new one.
        for suffix in ("-wal", "-shm"):
            if Path(f"{path}{suffix}").exists():
                os.rename(f"{path}{suffix}", f"{target}{suffix}")
    except OSError as exc:
        raise HistoryError(
            f"The chat history database {path} is damaged and could not be moved aside "
            f"({exc.strerror or exc}). Close any other HearthChat window and try again."
        ) from exc
    return target


# -- replies whose writer died ------------------------------------------------------

_own_start: float | None = None


def own_process_start() -> float | None:
    """This process's start time: with the pid, it names the writer of a stream."""
    global _own_start
    if _own_start is None:
        try:
            import psutil

            _own_start = psutil.Process().create_time()
        except Exception:  # no psutil, or a sandbox hiding /proc: pid alone then
            return None
    return _own_start


def writer_alive(pid: int | None, started: float | None) -> bool:
    """Is the process that was streaming this reply still running?

    The pid alone is not enough: pids are reused, so the process start time must
    match too. A zombie (killed, not yet reaped) is dead. Unknown means alive: a
    live stream wrongly marked interrupted is worse than a stale one left a while.
    """
    if pid is None:
        return False
    try:
        import psutil
    except ImportError:
        return True
    try:
        proc = psutil.Process(pid)
        if proc.status() == psutil.STATUS_ZOMBIE:
            return False
        return started is None or abs(proc.create_time() - started) < 1.0
    except psutil.NoSuchProcess:  # ZombieProcess included
        return False
    except psutil.Error:  # AccessDenied: someone's process exists there
        return True


def find_orphaned_streams(conn: sqlite3.Connection) -> list[int]:
    """Ids of `streaming` replies whose writer process is gone."""
    rows = conn.execute(
        "SELECT id, writer_pid, writer_started FROM messages WHERE status = 'streaming'"
    ).fetchall()
    return [mid for mid, pid, started in rows if not writer_alive(pid, started)]
