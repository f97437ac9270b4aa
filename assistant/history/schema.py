"""The history schema as numbered migrations (sqlite-utils `Migrations`).

Never edit a migration that has shipped: add a new one, numbered after the last.
Each migration runs in its own savepoint, and `migrate()` wraps the whole pending
run in one IMMEDIATE transaction, so a failure anywhere leaves the file exactly as
it was, and two processes that open an old file at the same moment cannot both
upgrade it: the second waits for the first, then finds nothing left to do. A
reader in another process meanwhile sees the file as it was before (WAL snapshot),
never half an upgrade.
"""

from __future__ import annotations

import sqlite3
import time
from typing import NoReturn

from sqlite_utils import Database, Migrations

from assistant.history import failures, indexes
from assistant.history.errors import MigrationError

MIGRATIONS = Migrations("hearthchat-history")

# Kept for anything that read the word index's tokenizer from here.
FTS_TOKENIZE = indexes.WORD_TOKENIZE

# Migrations that only add a search index. A file that cannot be written (a
# read-only folder, a full disk) is read without them: search falls back to
# scanning, everything else works.
INDEX_ONLY = frozenset({"m006_substring_search", "m010_thinking_search"})

# How long an open waits for another process that is upgrading the file. Longer
# than the busy timeout of ordinary writes: adding an index to a large history
# takes seconds (6 s for 200,000 messages here), and failing to open because
# another window is upgrading would be wrong.
UPGRADE_WAIT_S = 300.0


@MIGRATIONS()
def m001_conversations_and_messages(db: Database) -> None:
    # Integer ids are what a person types (`history show 42`); `uid` is the stable
    # identity that export and import use, so re-importing a file adds no duplicates.
    db.execute("""
        CREATE TABLE conversations (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            title TEXT,                -- NULL until the first message names it
            model TEXT,
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}',   -- JSON
            current_leaf_id INTEGER,   -- the branch on show; see records.path_to
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    # The tree: regenerate and edit add a sibling (same parent), so nothing is lost.
    db.execute("""
        CREATE TABLE messages (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL,
            conversation_id INTEGER NOT NULL REFERENCES conversations(id),
            parent_id INTEGER REFERENCES messages(id),
            role TEXT NOT NULL,
            content TEXT NOT NULL,
            status TEXT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX messages_by_conversation ON messages(conversation_id, id)")
    db.execute("CREATE INDEX conversations_by_recency ON conversations(updated_at, id)")


@MIGRATIONS()
def m002_reply_stats(db: Database) -> None:
    # The engine's full record as JSON, plus the few columns a speed-over-time
    # chart filters and plots, so that view needs no second store.
    db.execute("""
        CREATE TABLE stats (
            message_id INTEGER PRIMARY KEY REFERENCES messages(id),
            model TEXT,
            model_file TEXT,
            quant TEXT,
            gen_tps REAL,
            prompt_tps REAL,
            ttft_ms REAL,
            prompt_tokens INTEGER,
            completion_tokens INTEGER,
            stop_reason TEXT,
            created_at TEXT NOT NULL,
            record TEXT NOT NULL       -- JSON, the engine's record as it was
        )""")
    db.execute("CREATE INDEX stats_by_model_time ON stats(model, created_at)")


@MIGRATIONS()
def m003_full_text_search(db: Database) -> None:
    # External-content FTS5 tables kept in step by triggers, so a message, its
    # search row and its stats land in the same transaction. Written out rather
    # than through sqlite-utils' enable_fts() for two options it does not take:
    # prefix='3' and UPDATE OF triggers (see indexes.create). The names are
    # enable_fts()'s, so sqlite-utils' detect_fts(), search() and rebuild_fts()
    # work on these tables too.
    for index in indexes.WORD_INDEXES:
        indexes.create(db.conn, index)


@MIGRATIONS()
def m004_stream_recovery(db: Database) -> None:
    # Who is writing a `streaming` reply: pid plus process start time, so a reused
    # pid is not mistaken for the writer. See recovery.mark_interrupted.
    db.execute("ALTER TABLE messages ADD COLUMN writer_pid INTEGER")
    db.execute("ALTER TABLE messages ADD COLUMN writer_started REAL")
    db.execute("ALTER TABLE messages ADD COLUMN error TEXT")
    # Partial index: finding live streams on every open costs nothing at any size.
    db.execute("CREATE INDEX messages_streaming ON messages(status) WHERE status = 'streaming'")


@MIGRATIONS()
def m005_benchmarks(db: Database) -> None:
    # The statistics view's benchmark table: one row per model benchmarked (pp/tg
    # like llama-bench, and its memory), the full result as JSON beside the columns.
    db.execute("""
        CREATE TABLE benchmarks (
            id INTEGER PRIMARY KEY,
            created_at TEXT NOT NULL,
            model TEXT,
            model_file TEXT,
            quant TEXT,
            n_params INTEGER,
            size_bytes INTEGER,
            threads INTEGER,
            backend TEXT,
            pp_tokens INTEGER,
            pp_tps REAL,
            tg_tokens INTEGER,
            tg_tps REAL,
            weights_bytes INTEGER,
            kv_bytes INTEGER,
            compute_bytes INTEGER,
            rss_bytes INTEGER,
            record TEXT NOT NULL       -- JSON, the benchmark's result as it was
        )""")
    db.execute("CREATE INDEX benchmarks_by_time ON benchmarks(created_at, id)")
    # The model file's size, for the speed-against-size chart, as a column beside
    # the others it plots; filled in from the records already there. CASE, not AND:
    # SQLite does not promise to short-circuit, and a record that is not valid JSON
    # must be skipped, never fail the upgrade.
    db.execute("ALTER TABLE stats ADD COLUMN size_bytes INTEGER")
    db.execute("""
        UPDATE stats SET size_bytes = CAST(json_extract(record, '$.model.size_bytes') AS INTEGER)
        WHERE CASE WHEN json_valid(record) THEN json_type(record, '$.model.size_bytes') END
              IN ('integer', 'real')""")


@MIGRATIONS()
def m006_substring_search(db: Database) -> None:
    # A trigram index beside the word index: the word index cannot find 機械学習
    # inside a Japanese sentence (no spaces: the whole sentence is one "word"),
    # part of an emoji run (emoji are not word characters), or "ython" in
    # "Python". Search uses it only for such queries; see search.py.
    indexes.create(db.conn, indexes.TRIGRAM_INDEX)


@MIGRATIONS()
def m007_comparisons(db: Database) -> None:
    # "Is the small model enough?": one prompt run on several models, each answer with
    # its full statistics record and the user's verdict. `uid`s, as for conversations,
    # so an export imports anywhere and twice adds nothing.
    db.execute("""
        CREATE TABLE comparisons (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            prompt TEXT NOT NULL,
            system_prompt TEXT,
            settings TEXT NOT NULL DEFAULT '{}',  -- JSON: the sampling every model got, seed included
            prompt_set TEXT,           -- the prompt set's name, when it ran in a batch
            batch TEXT,                -- shared by the comparisons of one batch run
            rerun_of TEXT,             -- the uid of the comparison this one ran again on other models
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    # The figures the summaries need as columns; the engine's record as JSON beside them.
    db.execute("""
        CREATE TABLE comparison_answers (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            comparison_id INTEGER NOT NULL REFERENCES comparisons(id),
            position INTEGER NOT NULL,
            model TEXT NOT NULL,       -- as it was asked for: an installed name, a path, MODEL@REMOTE
            content TEXT NOT NULL,
            status TEXT NOT NULL,
            error TEXT,
            verdict TEXT,              -- 'good', 'not_good', or NULL (not judged)
            best INTEGER NOT NULL DEFAULT 0,
            gen_tps REAL,
            ttft_ms REAL,
            completion_tokens INTEGER,
            total_ms REAL,
            rss_peak_bytes INTEGER,
            record TEXT,               -- JSON, the engine's record as it was
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    db.execute("CREATE INDEX comparison_answers_by_comparison ON comparison_answers(comparison_id, position)")
    db.execute("CREATE INDEX comparisons_by_time ON comparisons(created_at, id)")
    db.execute("CREATE INDEX comparisons_by_batch ON comparisons(batch)")
    db.execute("""
        CREATE TABLE prompt_sets (
            id INTEGER PRIMARY KEY,
            uid TEXT NOT NULL UNIQUE,
            name TEXT NOT NULL UNIQUE,
            system_prompt TEXT,
            prompts TEXT NOT NULL,     -- JSON list of the prompts, in order
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL
        )""")
    for index in indexes.COMPARISON_INDEXES:
        indexes.create(db.conn, index)


@MIGRATIONS()
def m008_images(db: Database) -> None:
    # Images shown in messages. The bytes are files named by their SHA-256 in the data directory
    # (history/images.py), written once however many messages show them; these rows say what each
    # file is and which messages show it, in order. A message and its links are one transaction.
    db.execute("""
        CREATE TABLE images (
            sha256 TEXT PRIMARY KEY,
            mime TEXT NOT NULL,
            size_bytes INTEGER NOT NULL,
            width INTEGER,
            height INTEGER,
            name TEXT,                 -- the name it was first attached under
            created_at TEXT NOT NULL
        )""")
    db.execute("""
        CREATE TABLE message_images (
            message_id INTEGER NOT NULL REFERENCES messages(id),
            position INTEGER NOT NULL,
            sha256 TEXT NOT NULL REFERENCES images(sha256),
            name TEXT,
            PRIMARY KEY (message_id, position)
        )""")
    db.execute("CREATE INDEX message_images_by_image ON message_images(sha256)")


@MIGRATIONS()
def m009_reply_thinking(db: Database) -> None:
    # A reasoning model's thinking, kept with its reply but apart from it: `content` stays the
    # answer (what is sent back to the model, exported as the reply, found by plain search).
    db.execute("ALTER TABLE messages ADD COLUMN thinking TEXT")


@MIGRATIONS()
def m010_thinking_search(db: Database) -> None:
    # Search finds thinking only when asked (`history search --thinking`): its own word index,
    # so plain search ranks answers exactly as before.
    indexes.create(db.conn, indexes.THINKING_INDEX)


def pending(db: Database, migrations: Migrations = MIGRATIONS) -> list[str]:
    return [m.name for m in migrations.pending(db)]


def without_index_only(migrations: Migrations) -> Migrations:
    """The same set, less the migrations that only add a search index."""
    reduced = Migrations(migrations.name)
    for m in migrations._migrations:
        if m.name not in INDEX_ONLY:
            reduced(name=m.name, transactional=m.transactional)(m.fn)
    return reduced


def migrate(db: Database, path, migrations: Migrations = MIGRATIONS,
            wait_s: float = UPGRADE_WAIT_S) -> list[str]:
    """Apply pending migrations; return their names. On failure raise MigrationError.

    A sqlite3 error for a busy lock, a full disk, a read-only file, an I/O error or
    damage passes through untouched, so the caller can tell those apart from a
    broken step.
    """
    if not migrations.pending(db):  # the common case: one read, no write lock
        return []
    _begin_immediate(db.conn, wait_s)  # waits for any other writer, an upgrading process included
    todo: list[str] = []
    try:
        todo = [m.name for m in migrations.pending(db)]  # re-read under the lock
        migrations.apply(db)  # each step in a savepoint of our transaction
        db.execute("COMMIT")
        return todo
    except sqlite3.Error as exc:
        if failures.is_busy(exc) or failures.blocks_writing(exc) or failures.is_damage(exc):
            _rollback(db)
            raise  # the file or the disk, not the step: the caller tells these apart
        _fail(db, path, migrations, todo, exc)
    except Exception as exc:
        _fail(db, path, migrations, todo, exc)
    except BaseException:
        _rollback(db)
        raise


def _fail(db: Database, path, migrations: Migrations, todo: list[str], exc: BaseException) -> NoReturn:
    step = "?"
    if db.conn.in_transaction:
        # Steps that succeeded are recorded inside our transaction: the
        # first one that is not is the one that failed.
        done = {m.name for m in migrations.applied(db)}
        step = next((name for name in todo if name not in done), step)
    _rollback(db)
    raise MigrationError(path, step, str(exc) or type(exc).__name__) from exc


def _begin_immediate(conn: sqlite3.Connection, wait_s: float) -> None:
    """BEGIN IMMEDIATE, waiting up to `wait_s` for the write lock (beyond the busy timeout)."""
    deadline = time.monotonic() + wait_s
    while True:
        try:
            conn.execute("BEGIN IMMEDIATE")
            return
        except sqlite3.OperationalError as exc:
            if not failures.is_busy(exc) or time.monotonic() >= deadline:
                raise
            # The busy timeout already waited; another process holds the lock for a long
            # upgrade. Keep waiting for it rather than failing the open.
            time.sleep(0.05)


def _rollback(db: Database) -> None:
    if db.conn.in_transaction:
        db.execute("ROLLBACK")
