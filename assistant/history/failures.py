"""sqlite3 errors as the kinds the store acts on, and as sentences a person reads.

Only two kinds are damage: SQLite saying the file is not a database, and SQLite
saying it is corrupt. A lock, a busy timeout, a full disk, a read-only file or an
I/O error says nothing about the file's contents and never leads to moving it aside.
"""

from __future__ import annotations

import os
import sqlite3
from pathlib import Path

from assistant.history.errors import (
    HistoryBusyError,
    HistoryDamagedError,
    HistoryDiskFullError,
    HistoryError,
    HistoryIOError,
    HistoryReadOnlyError,
)

# SQLite's primary result codes (the low byte of an extended code).
PERM, BUSY, LOCKED, NOMEM, READONLY, IOERR, CORRUPT, FULL, CANTOPEN, NOTADB = 3, 5, 6, 7, 8, 10, 11, 13, 14, 26


def code(exc: BaseException) -> int | None:
    """SQLite's primary result code of an error, or None when it has none."""
    if not isinstance(exc, sqlite3.Error):
        return None
    extended = getattr(exc, "sqlite_errorcode", None)
    return None if extended is None else extended & 0xFF


def is_damage(exc: BaseException) -> bool:
    """SQLite says the file is corrupt or not a database at all."""
    c = code(exc)
    if c is not None:
        return c in (CORRUPT, NOTADB)
    if not isinstance(exc, sqlite3.DatabaseError):
        return False
    text = str(exc).lower()  # an error raised without a code (older Pythons)
    return "malformed" in text or "not a database" in text


def is_not_a_database(exc: BaseException) -> bool:
    c = code(exc)
    return c == NOTADB if c is not None else "not a database" in str(exc).lower()


def is_busy(exc: BaseException) -> bool:
    c = code(exc)
    if c is not None:
        return c in (BUSY, LOCKED)
    text = str(exc)
    return isinstance(exc, sqlite3.OperationalError) and ("locked" in text or "busy" in text)


def is_full(exc: BaseException, path: Path | None = None) -> bool:
    """SQLite says the disk is full, or (given the file's `path`) reports an I/O error on a disk that is:
    a WAL index that cannot grow on a full disk is SQLite's "disk I/O error", not SQLITE_FULL."""
    c = code(exc)
    return c == FULL or (c == IOERR and path is not None and disk_is_full(path))


def disk_is_full(path: Path, spare: int = 1 << 20) -> bool:
    """Less than `spare` bytes free where `path` is (what this user may use: root may use the reserve)."""
    try:
        st = os.statvfs(path.parent if not path.is_dir() else path)
    except OSError:
        return False
    free = st.f_bfree if hasattr(os, "geteuid") and os.geteuid() == 0 else st.f_bavail
    return free * st.f_frsize < spare


def blocks_writing(exc: BaseException) -> bool:
    """The disk or folder, not the file, is why this failed: reading may still work."""
    return code(exc) in (FULL, IOERR, READONLY, CANTOPEN, PERM)


def translate(exc: BaseException, path: Path, busy_timeout: float = 10.0) -> HistoryError:
    """The sentence for a failed history operation."""
    if isinstance(exc, HistoryError):
        return exc
    c = code(exc)
    if is_busy(exc):
        return HistoryBusyError(
            f"The chat history {path} stayed busy in another HearthChat window or chat for more than "
            f"{busy_timeout:.0f} seconds; try again.")
    if is_damage(exc):
        return HistoryDamagedError(f"The chat history database {path} is damaged ({exc}).")
    if is_full(exc, path):
        return HistoryDiskFullError(
            f"The disk holding the chat history {path} is full, so this was not saved. Everything saved "
            "before is intact; free some space and try again.")
    if c == READONLY:
        return HistoryReadOnlyError(
            f"The chat history {path} cannot be written (the file or its folder is read-only), so nothing "
            "new can be saved; you can still list, show and search it.")
    if c == IOERR:
        return HistoryIOError(
            f"The disk reported an input/output error while using the chat history {path} ({exc}), so this "
            "was not saved. Nothing saved before was changed; check the disk and try again.")
    if c in (CANTOPEN, PERM):
        return HistoryError(f"Cannot open the chat history {path}: {why_unopenable(path)}.")
    if c == NOMEM:
        return HistoryError(f"The computer ran out of memory while using the chat history {path}.")
    return HistoryError(f"Could not use the chat history database {path}: {exc}.")


def why_unopenable(path: Path) -> str:
    """A guess at why SQLite could not open a file, in words."""
    if path.is_dir():
        return "it is a folder, not a file"
    if not path.parent.is_dir():
        return f"the folder {path.parent} does not exist"
    if path.exists() and not os.access(path, os.R_OK):
        return "permission to read it is denied"
    if not os.access(path.parent, os.W_OK):
        return f"the folder {path.parent} cannot be written to"
    return "the operating system refused to open it"
