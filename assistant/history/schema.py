"""The history schema as numbered migrations (sqlite-utils `Migrations`).

Never edit a migration that has shipped: add a new one. Each migration runs in its
own savepoint, and `migrate()` wraps the whole pending run in one IMMEDIATE
transaction, so a failure anywhere leaves the file exactly as it was, and two
processes that open an old file at the same moment cannot both upgrade it.
"""

from __future__ import annotations

from sqlite_utils import Database, Migrations

from assistant.history.errors import MigrationError

MIGRATIONS = Migrations("hearthchat-history")

# Porter stemming so "running" finds "run"; remove_diacritics so "cafe" finds "café".
FTS_TOKENIZE = "porter unicode61 remove_diacritics 2"


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
    # prefix='3', without which a search-as-you-type prefix like "the*" merges
    # hundreds of posting lists (80 ms on 200,000 messages; 14 ms with it), and
    # UPDATE OF triggers, so a status change or a conversation's new updated_at
    # does not re-index its text. The names are enable_fts()'s, so sqlite-utils'
    # detect_fts(), search() and rebuild_fts() work on these tables too.
    for table, column in (("messages", "content"), ("conversations", "title")):
        _full_text_index(db, table, column)


def _full_text_index(db: Database, table: str, column: str) -> None:
    fts = f"{table}_fts"
    db.execute(f"CREATE VIRTUAL TABLE {fts} USING FTS5 ({column}, tokenize='{FTS_TOKENIZE}', "
               f"prefix='3', content='{table}')")
    db.execute(f"""CREATE TRIGGER {table}_ai AFTER INSERT ON {table} BEGIN
        INSERT INTO {fts} (rowid, {column}) VALUES (new.rowid, new.{column});
    END""")
    db.execute(f"""CREATE TRIGGER {table}_ad AFTER DELETE ON {table} BEGIN
        INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column});
    END""")
    db.execute(f"""CREATE TRIGGER {table}_au AFTER UPDATE OF {column} ON {table} BEGIN
        INSERT INTO {fts} ({fts}, rowid, {column}) VALUES ('delete', old.rowid, old.{column});
        INSERT INTO {fts} (rowid, {column}) VALUES (new.rowid, new.{column});
    END""")
    db.execute(f"INSERT INTO {fts} ({fts}) VALUES ('rebuild')")  # index the rows already there


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


def pending(db: Database, migrations: Migrations = MIGRATIONS) -> list[str]:
    return [m.name for m in migrations.pending(db)]


def migrate(db: Database, path, migrations: Migrations = MIGRATIONS) -> list[str]:
    """Apply pending migrations; return their names. On failure raise MigrationError."""
    if not migrations.pending(db):  # the common case: one read, no write lock
        return []
    db.execute("BEGIN IMMEDIATE")  # waits (busy_timeout) for any other writer
    todo = [m.name for m in migrations.pending(db)]  # re-read under the lock
    try:
        migrations.apply(db)  # each step in a savepoint of our transaction
        db.execute("COMMIT")
        return todo
    except Exception as exc:
        step = "?"
        if db.conn.in_transaction:
            # Steps that succeeded are recorded inside our transaction: the
            # first one that is not is the one that failed.
            done = {m.name for m in migrations.applied(db)}
            step = next((name for name in todo if name not in done), step)
            db.execute("ROLLBACK")
        raise MigrationError(path, step, str(exc) or type(exc).__name__) from exc
    except BaseException:
        if db.conn.in_transaction:
            db.execute("ROLLBACK")
        raise
