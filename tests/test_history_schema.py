"""Migrations (upgrade from the oldest schema, a failed step) and damaged database files."""

import os
import re
import sqlite3

import pytest
from sqlite_utils import Migrations

from common.errors import UserError
from assistant.history import HistoryStore, MigrationError
from assistant.history.schema import MIGRATIONS

# What version 1 of the app wrote (m001 only), frozen here so that editing a
# shipped migration by mistake breaks this test instead of users' upgrades.
SCHEMA_V1 = """
CREATE TABLE "_sqlite_migrations" ("id" INTEGER PRIMARY KEY, "migration_set" TEXT, "name" TEXT, "applied_at" TEXT);
CREATE UNIQUE INDEX "idx__sqlite_migrations_migration_set_name" ON "_sqlite_migrations" ("migration_set", "name");
INSERT INTO "_sqlite_migrations"
    VALUES(1, 'hearthchat-history', 'm001_conversations_and_messages', '2026-01-01 00:00:00+00:00');
CREATE TABLE conversations (
    id INTEGER PRIMARY KEY, uid TEXT NOT NULL UNIQUE, title TEXT, model TEXT, system_prompt TEXT,
    settings TEXT NOT NULL DEFAULT '{}', current_leaf_id INTEGER, created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE TABLE messages (
    id INTEGER PRIMARY KEY, uid TEXT NOT NULL, conversation_id INTEGER NOT NULL REFERENCES conversations(id),
    parent_id INTEGER REFERENCES messages(id), role TEXT NOT NULL, content TEXT NOT NULL, status TEXT NOT NULL,
    created_at TEXT NOT NULL, updated_at TEXT NOT NULL);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE INDEX conversations_by_recency ON conversations(updated_at, id);
INSERT INTO conversations VALUES (1, 'c1', 'Old times', 'llama', 'Be kind.', '{"temperature": 0.5}', 3,
    '2026-01-01T10:00:00.000+00:00', '2026-01-01T10:01:00.000+00:00');
INSERT INTO messages VALUES (1, 'm1', 1, NULL, 'user', 'What is a platypus?', 'complete',
    '2026-01-01T10:00:00.000+00:00', '2026-01-01T10:00:00.000+00:00');
INSERT INTO messages VALUES (2, 'm2', 1, 1, 'assistant', 'A monotreme from Australia.', 'complete',
    '2026-01-01T10:00:05.000+00:00', '2026-01-01T10:00:05.000+00:00');
INSERT INTO messages VALUES (3, 'm3', 1, 1, 'assistant', 'An egg-laying mammal.', 'streaming',
    '2026-01-01T10:01:00.000+00:00', '2026-01-01T10:01:00.000+00:00');
"""


def _dump(path):
    conn = sqlite3.connect(path)
    try:
        return list(conn.iterdump())
    finally:
        conn.close()


def _old_db(path):
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_V1)
    conn.close()


def test_new_database_is_wal_and_fully_migrated(tmp_path):
    with HistoryStore.open(tmp_path / "h.db") as store:
        assert store.migrated == [m.name for m in MIGRATIONS.pending(_empty_db())]
        assert store.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert store.conn.execute("PRAGMA busy_timeout").fetchone()[0] >= 5000
        assert store.warnings == []
    with HistoryStore.open(tmp_path / "h.db") as store:
        assert store.migrated == []  # nothing pending the second time


def _empty_db():
    from sqlite_utils import Database

    return Database(memory=True)


def test_upgrade_from_the_oldest_schema(tmp_path):
    path = tmp_path / "old.db"
    _old_db(path)
    with HistoryStore.open(path) as store:
        assert store.migrated == ["m002_reply_stats", "m003_full_text_search", "m004_stream_recovery",
                                  "m005_benchmarks", "m006_substring_search", "m007_comparisons", "m008_images",
                                  "m009_reply_thinking", "m010_thinking_search"]
        conv = store.get_conversation(1)
        assert conv.title == "Old times" and conv.settings == {"temperature": 0.5}
        assert [m.content for m in conv.thread] == ["What is a platypus?", "An egg-laying mammal."]
        assert len(store.siblings(2)) == 2
        # Old rows are searchable: the FTS migration indexed what was there.
        assert [h.message_id for h in store.search("monotreme")] == [2]
        assert [h.conversation_id for h in store.search("old times")] == [1]
        # A `streaming` row from before writer tracking has no writer: it is interrupted.
        assert store.get_message(3).status == "interrupted"
        assert store.interrupted == [3]
        # And the upgraded database takes new writes.
        store.add_message(1, "user", "Thanks!")
        assert store.integrity_check() == "ok"


def test_failed_migration_leaves_database_unchanged(tmp_path):
    path = tmp_path / "old.db"
    _old_db(path)
    before = _dump(path)

    broken = Migrations("hearthchat-history")
    for m in MIGRATIONS._migrations:
        broken(name=m.name)(m.fn)

    @broken()
    def m005_broken(db):
        db.execute("CREATE TABLE half_done (x)")
        db.execute("INSERT INTO no_such_table VALUES (1)")

    with pytest.raises(MigrationError) as info:
        HistoryStore.open(path, migrations=broken)
    assert isinstance(info.value, UserError)
    message = str(info.value)
    assert "m005_broken" in message and "no_such_table" in message and "left exactly as it was" in message
    # All-or-nothing: not even the steps before the broken one were kept.
    assert _dump(path) == before
    assert not list(tmp_path.glob("*damaged*"))  # a failed upgrade is not damage

    # The real migrations still upgrade it afterwards.
    with HistoryStore.open(path) as store:
        assert store.get_conversation(1).title == "Old times"


def test_random_bytes_file_is_moved_aside(tmp_path):
    path = tmp_path / "history.db"
    junk = os.urandom(50_000)
    path.write_bytes(junk)
    with HistoryStore.open(path) as store:
        assert store.moved_aside is not None
        assert re.fullmatch(r"history\.damaged-\d{8}T\d{6}Z\.db", store.moved_aside.name)
        assert store.moved_aside.read_bytes() == junk  # kept byte for byte
        assert str(store.moved_aside) in store.warnings[0]
        assert "not an SQLite database" in store.warnings[0]
        assert store.list_conversations() == []
        store.create_conversation(title="fresh")
    with HistoryStore.open(path) as store:
        # The fresh history is used, and the person is still told where the old one went.
        assert store.list_conversations()[0].title == "fresh"
        assert len(store.warnings) == 1 and "history.damaged-" in store.warnings[0]
        [notice] = store.notices()
        assert notice.path.endswith(".db") and notice.path in store.warnings[0]
        store.dismiss_notice(notice.id)
    with HistoryStore.open(path) as store:
        assert store.warnings == [] and store.notices() == []


def _filled(path, n=300):
    with HistoryStore.open(path) as store:
        conv = store.create_conversation(model="m")
        for i in range(n):
            store.add_message(conv.id, "user", f"message {i} " + "lorem ipsum " * 40)
    conn = sqlite3.connect(path)  # fold the WAL in, so the main file holds everything
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def test_truncated_database_is_moved_aside_once_sqlite_finds_it_damaged(tmp_path):
    # No guess from the file's size: the file goes aside when SQLite itself reports
    # the damage, here when the check (or any read of the lost pages) reaches it.
    path = tmp_path / "history.db"
    _filled(path)
    size = path.stat().st_size
    with open(path, "r+b") as f:
        f.truncate(size // 2)
    kept = path.read_bytes()
    with HistoryStore.open(path) as store:  # SQLite reports the lost pages as soon as open reads them
        assert store.check().outcome == "sound"  # the new history
        assert store.list_conversations() == []
        assert store.integrity_check() == "ok"
    [aside] = tmp_path.glob("history.damaged-*.db")
    assert aside.read_bytes() == kept
    with HistoryStore.open(path) as store:
        assert str(aside) in store.warnings[0] and "malformed" in store.warnings[0]


def test_damage_found_by_sqlite_is_moved_aside(tmp_path):
    # A sound header but garbage in the schema page: only SQLite itself notices.
    path = tmp_path / "history.db"
    _filled(path, n=5)
    with open(path, "r+b") as f:
        f.seek(100)
        f.write(b"\xff" * 3000)
    with HistoryStore.open(path) as store:
        assert store.moved_aside is not None
        assert store.list_conversations() == []


def test_moving_aside_never_overwrites(tmp_path, monkeypatch):
    from assistant.history import recovery

    path = tmp_path / "history.db"

    class FrozenClock:
        @staticmethod
        def now(tz=None):
            import datetime

            return datetime.datetime(2026, 1, 2, 3, 4, 5, tzinfo=tz)

    monkeypatch.setattr(recovery, "datetime", FrozenClock)
    names = []
    for i in range(3):
        path.write_bytes(b"junk %d" % i * 100)
        with HistoryStore.open(path) as store:
            names.append(store.moved_aside.name)
    assert names == ["history.damaged-20260102T030405Z.db", "history.damaged-20260102T030405Z-2.db",
                     "history.damaged-20260102T030405Z-3.db"]
    assert (tmp_path / names[0]).read_bytes() == b"junk 0" * 100


def test_empty_file_is_a_new_database_not_damage(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"")
    with HistoryStore.open(path) as store:
        assert store.moved_aside is None and store.warnings == []


def test_unopenable_path_is_a_clear_error_not_damage(tmp_path):
    path = tmp_path / "history.db"
    path.mkdir()  # a folder where the file should be
    with pytest.raises(UserError, match="history.db"):
        HistoryStore.open(path)
    assert path.is_dir() and not list(tmp_path.glob("*damaged*"))
