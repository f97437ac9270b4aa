"""Getting back to a sound state: damaged files, damaged search indexes, and replies cut off mid-stream.

The rule: a database is moved aside only when SQLite itself says the file is not
a database, or `integrity_check` fails on the tables that hold what people saved.
Nothing else (a size that looks wrong, a lock, a busy timeout, a full disk, an
I/O error) ever moves a file. A damaged search index is rebuilt in place from the
messages, because everything in it is derived from them.
"""

from __future__ import annotations

import logging
import os
import sqlite3
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from filelock import FileLock

from assistant.history import failures, indexes
from assistant.history.errors import HistoryError
from assistant.history.indexes import SearchIndex

log = logging.getLogger(__name__)

# What people saved. Everything else in the file (the search indexes) is derived.
MESSAGE_TABLES = ("_sqlite_migrations", "conversations", "messages", "stats", "benchmarks", "comparisons",
                  "comparison_answers", "prompt_sets")
MAX_PROBLEMS_SHOWN = 3


@dataclass
class Verdict:
    """What SQLite says about a file."""

    kind: str  # "sound", "index" (only search indexes damaged) or "damaged" (the saved data)
    reason: str = ""  # SQLite's own words
    bad_indexes: list[SearchIndex] = field(default_factory=list)


def examine(conn: sqlite3.Connection, *, check_indexes: bool = True) -> Verdict:
    """Check the message tables, then the search indexes. Reads only; seconds on a large history.

    Raises sqlite3.Error for anything that is not damage (busy, I/O): the caller
    must not read a lock as a verdict.
    """
    try:
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table in MESSAGE_TABLES:
            if table in tables:
                problems = integrity_problems(conn, table)
                if problems:
                    return Verdict("damaged", problems)
    except sqlite3.DatabaseError as exc:
        if not failures.is_damage(exc):
            raise
        return Verdict("damaged", describe_damage(exc))
    if not check_indexes:
        return Verdict("sound")
    bad, reasons = [], []
    for index in indexes.present(conn):
        problem = index_problem(conn, index, tables)
        if problem:
            bad.append(index)
            reasons.append(problem)
    return Verdict("index", "; ".join(reasons), bad) if bad else Verdict("sound")


def examine_file(path: Path, busy_timeout: float) -> Verdict:
    """examine() on a fresh connection (never creating the file)."""
    if not path.exists():
        return Verdict("sound")
    conn = sqlite3.connect(f"{path.resolve().as_uri()}?mode=rw", uri=True, timeout=busy_timeout,
                           isolation_level=None)
    try:
        return examine(conn)
    except sqlite3.DatabaseError as exc:
        if failures.is_damage(exc):  # e.g. not a database: raised before any table is read
            return Verdict("damaged", describe_damage(exc))
        raise
    finally:
        conn.close()


def integrity_problems(conn: sqlite3.Connection, table: str) -> str:
    """'' when SQLite finds `table` (and its indexes) sound, else its first few complaints."""
    rows = [r[0] for r in conn.execute(f"PRAGMA integrity_check({_quote(table)})")]
    if rows == ["ok"]:
        return ""
    lines = [line for row in rows for line in str(row).splitlines() if line.strip()]
    shown = "; ".join(lines[:MAX_PROBLEMS_SHOWN])
    return shown + (f" and {len(lines) - MAX_PROBLEMS_SHOWN} more" if len(lines) > MAX_PROBLEMS_SHOWN else "")


def index_problem(conn: sqlite3.Connection, index: SearchIndex, tables: set[str]) -> str:
    """'' when a search index is sound and matches the messages, else what is wrong."""
    try:
        for shadow in index.shadow_tables:
            if shadow in tables:
                problems = integrity_problems(conn, shadow)
                if problems:
                    return f"{index.name}: {problems}"
        # rank 1: also compare the index with the text it was built from.
        conn.execute(f"INSERT INTO {index.name} ({index.name}, rank) VALUES ('integrity-check', 1)")
        return ""
    except sqlite3.DatabaseError as exc:
        if failures.code(exc) == failures.READONLY:
            return ""  # cannot be checked without writing; searching it will tell
        if not failures.is_damage(exc):
            raise
        return f"{index.name}: {exc}"


def describe_damage(exc: BaseException) -> str:
    if failures.is_not_a_database(exc):
        return f"it is not an SQLite database: {exc}"
    return str(exc)


def only_index_entries(problems: str) -> bool:
    """integrity_check complained only about index entries, which REINDEX rebuilds from the table."""
    parts = [p for p in problems.split("; ") if p and not p.startswith("and ")]
    return bool(parts) and all(" index " in f" {p} " for p in parts)


# -- search indexes, rebuilt in place -------------------------------------------------

def repair_indexes(conn: sqlite3.Connection, bad: list[SearchIndex]) -> None:
    """Rebuild damaged search indexes from the messages; raises sqlite3.Error if that fails.

    First FTS5's own 'rebuild'. When the index's pages themselves are unreadable
    (rebuild must read them to clear them), its entries are removed from the schema
    without reading it, VACUUM gives the orphaned pages back, and the index is
    created again exactly as its migration did.
    """
    try:
        _in_transaction(conn, lambda: _each(indexes.rebuild, conn, bad))
        still_bad = [ix for ix in bad if index_problem(conn, ix, _tables(conn))]
    except sqlite3.DatabaseError as exc:
        if not failures.is_damage(exc):
            raise
        still_bad = bad
    if not still_bad:
        return
    log.warning("search index pages unreadable (%s); recreating them", ", ".join(ix.name for ix in still_bad))
    _drop_from_schema(conn, still_bad)
    try:
        conn.execute("VACUUM")  # the orphaned pages; needs free space the size of the file
    except sqlite3.OperationalError as exc:
        log.warning("VACUUM after dropping a damaged index failed (%s); the space stays unused", exc)
    _in_transaction(conn, lambda: _each(indexes.create, conn, still_bad))


def _drop_from_schema(conn: sqlite3.Connection, bad: list[SearchIndex]) -> None:
    names = [n for ix in bad for n in indexes.schema_names(ix)]
    if hasattr(conn, "setconfig"):  # Python 3.12+: a build that defaults to defensive mode
        conn.setconfig(getattr(sqlite3, "SQLITE_DBCONFIG_DEFENSIVE"), False)  # 3.12+ only

    def drop():
        version = conn.execute("PRAGMA schema_version").fetchone()[0]
        conn.execute("PRAGMA writable_schema = ON")
        try:
            conn.execute(f"DELETE FROM sqlite_master WHERE name IN ({', '.join('?' * len(names))})", names)
            # Every connection, in every process, must reload the schema now.
            conn.execute(f"PRAGMA schema_version = {int(version) + 1}")
        finally:
            conn.execute("PRAGMA writable_schema = OFF")

    _in_transaction(conn, drop)


def _each(step, conn: sqlite3.Connection, bad: list[SearchIndex]) -> None:
    for ix in bad:
        step(conn, ix)


def _in_transaction(conn: sqlite3.Connection, work) -> None:
    conn.execute("BEGIN IMMEDIATE")
    try:
        work()
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _tables(conn: sqlite3.Connection) -> set[str]:
    return {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def _quote(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# -- damaged files, moved aside -------------------------------------------------------

def lock_for(path: Path, timeout: float) -> FileLock:
    """The lock that serialises judging and moving this database across processes."""
    return FileLock(f"{path}.lock", timeout=timeout)


def move_aside_if_damaged(path: Path, busy_timeout: float) -> tuple[Path, str] | None:
    """Move the file aside if, looked at afresh under the lock, SQLite still finds it damaged.

    Under the lock, so two processes that both saw damage do not both move: the
    second finds the fresh database the first started, and leaves it alone.
    Returns (where it went, why), or None when nothing was moved.
    """
    with lock_for(path, busy_timeout):
        verdict = examine_file(path, busy_timeout)
        if verdict.kind == "damaged" and only_index_entries(verdict.reason):
            verdict = _reindex(path, busy_timeout, verdict)
        if verdict.kind != "damaged":
            if verdict.kind == "index":
                _repair_file_indexes(path, busy_timeout, verdict.bad_indexes)
            return None
        return move_aside(path), verdict.reason


def _reindex(path: Path, busy_timeout: float, verdict: Verdict) -> Verdict:
    """Ordinary indexes of the message tables are derived too: rebuild them and look again."""
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        conn.execute("REINDEX")
        log.warning("rebuilt the indexes of %s (%s)", path, verdict.reason)
        return examine(conn)
    except sqlite3.DatabaseError as exc:
        if not failures.is_damage(exc):
            raise
        return verdict
    finally:
        conn.close()


def _repair_file_indexes(path: Path, busy_timeout: float, bad: list[SearchIndex]) -> None:
    conn = sqlite3.connect(path, timeout=busy_timeout, isolation_level=None)
    try:
        repair_indexes(conn, bad)
    finally:
        conn.close()


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
            f"({exc.strerror or exc}). Close any other HearthChat window and try again.") from exc
    log.warning("moved the damaged chat history %s to %s", path, target)
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
        except Exception as exc:  # no psutil, or a sandbox hiding /proc: pid alone then
            log.debug("no process start time (%s); streams are tracked by pid alone", exc)
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
