"""Damage, and what is not damage: only SQLite's own verdict on the saved data moves a file aside.

A damaged search index is rebuilt in place; damaged messages move the file aside
with a notice that stays until dismissed; a lock, an odd-looking header or a
busy file never moves anything.
"""

import json
import sqlite3
import subprocess
import sys
import textwrap
import time

import pytest

from assistant.history import HistoryBusyError, HistoryStore
from assistant.history.errors import HistoryDamagedError
from tests.support.history_files import (
    REPO,
    checkpoint,
    damaged_files,
    filled,
    overwrite_page,
    root_page,
    run_cli,
    scramble_index_blocks,
)


def _contents(path):
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT id, content FROM messages ORDER BY id").fetchall()
    finally:
        conn.close()


# -- search indexes: rebuilt in place, never a reason to move anything ------------------

def test_scrambled_word_index_is_rebuilt_when_search_meets_it(tmp_path):
    path = tmp_path / "history.db"
    filled(path)
    before = _contents(path)
    scramble_index_blocks(path, "messages_fts")
    with HistoryStore.open(path) as store:
        hits = store.search("penguins")
        assert hits and all("enguins" in h.snippet for h in hits)
        assert any("search index" in w and "rebuilt" in w for w in store.warnings)
        assert store.check().outcome == "sound"
    assert damaged_files(tmp_path) == [] and _contents(path) == before


@pytest.mark.parametrize("index", ["messages_fts", "conversations_fts", "messages_trigram"])
def test_unreadable_index_pages_are_recreated_and_the_write_goes_through(tmp_path, index):
    # The index's root page is garbage: FTS5 cannot even open it, so 'rebuild'
    # alone cannot help; the index is dropped from the schema and created again.
    path = tmp_path / "history.db"
    filled(path)
    before = _contents(path)
    overwrite_page(path, root_page(path, f"{index}_data"))
    with HistoryStore.open(path) as store:
        conv = store.create_conversation(title="after the damage")  # the triggers write to every index
        saved = store.add_message(conv.id, "user", "新しい機械学習の質問")
        assert [h.message_id for h in store.search("機械学習の質問")] == [saved.id]
        assert {h.conversation_id for h in store.search("penguins")} == {1}
        assert store.search("after the damage")[0].conversation_id == conv.id
        assert store.check().outcome == "sound"
        assert store.integrity_check() == "ok"
    assert damaged_files(tmp_path) == []
    assert _contents(path)[: len(before)] == before


def test_history_check_rebuilds_a_damaged_index_and_says_what_it_did(tmp_path):
    path = tmp_path / "history.db"
    filled(path)
    before = _contents(path)
    scramble_index_blocks(path, "messages_trigram")
    proc = run_cli("history", "check", home=tmp_path)
    out = proc.stdout.decode()
    assert proc.returncode == 0, proc.stderr
    assert "search index" in out and "rebuilt" in out and "40 messages" in out and "nothing was lost" in out
    assert "history check" not in out + proc.stderr.decode()  # it never quotes itself
    assert damaged_files(tmp_path) == [] and _contents(path) == before
    again = run_cli("history", "check", home=tmp_path)
    assert again.returncode == 0 and "is sound" in again.stdout.decode()
    found = run_cli("history", "search", "機械学習", home=tmp_path).stdout.decode()
    assert "深層学習と**機械学習**の違い" in found


# -- damaged saved data: moved aside, kept, and the person told until they dismiss it ----

def test_damaged_messages_are_moved_aside_with_a_notice_until_dismissed(tmp_path):
    path = tmp_path / "history.db"
    filled(path, n=200)
    overwrite_page(path, root_page(path, "messages"))
    damaged = path.read_bytes()

    proc = run_cli("history", "check", home=tmp_path)
    out = proc.stdout.decode()
    [aside] = damaged_files(tmp_path)
    assert proc.returncode == 1 and str(aside) in out and "new, empty history" in out
    assert "history check" not in out + proc.stderr.decode()
    assert aside.read_bytes() == damaged  # kept byte for byte

    for command in (["history", "list"], ["history", "search", "x"], ["history", "list"]):
        shown = run_cli(*command, home=tmp_path)
        assert shown.returncode == 0 and str(aside) in shown.stderr.decode(), command
        assert "history dismiss 1" in shown.stderr.decode()
    with HistoryStore.open(path) as store:
        [notice] = store.notices()
        assert notice.path == str(aside) and str(aside) in notice.text

    gone = run_cli("history", "dismiss", home=tmp_path)
    assert gone.returncode == 0 and "Dismissed notice 1" in gone.stdout.decode()
    quiet = run_cli("history", "list", home=tmp_path)
    assert quiet.stderr.decode() == "" and "No saved conversations yet." in quiet.stdout.decode()
    assert damaged_files(tmp_path) == [aside]


def test_damage_met_while_in_use_moves_the_file_aside_and_says_so(tmp_path):
    path = tmp_path / "history.db"
    ids = filled(path, n=200)
    with HistoryStore.open(path) as store:
        overwrite_page(path, root_page(path, "messages"))
        with pytest.raises(HistoryDamagedError, match="was moved to .*history.damaged-.*not done|so this was not done"):
            store.get_conversation(1)
        assert store.moved_aside is not None and store.list_conversations() == []
        store.add_message(store.create_conversation().id, "user", "life goes on")  # the new history works
    [aside] = damaged_files(tmp_path)
    assert aside == store.moved_aside and len(ids) == 200


def test_a_damaged_notices_file_loses_no_notice(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"not a database at all" * 100)
    HistoryStore.open(path).close()
    (tmp_path / "history-notices.json").write_text("{ broken")
    with HistoryStore.open(path) as store:
        [notice] = store.notices()
        assert notice.path == str(damaged_files(tmp_path)[0])


def test_several_processes_meeting_one_damaged_file_move_it_once(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"garbage, not SQLite " * 500)
    script = textwrap.dedent("""
        import sys, time
        from assistant.history import HistoryStore
        time.sleep(max(0, float(sys.argv[2]) - time.time()))
        with HistoryStore.open(sys.argv[1]) as s:
            conv = s.create_conversation(title="p" + sys.argv[3])
            s.add_message(conv.id, "user", "hello")
        print("ok")
    """)
    start = time.time() + 2.0
    procs = [subprocess.Popen([sys.executable, "-c", script, str(path), str(start), str(i)], cwd=REPO,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for i in range(6)]
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0 and out.strip() == "ok", err
    assert len(damaged_files(tmp_path)) == 1
    with HistoryStore.open(path) as store:
        assert store.count_conversations() == 6  # all six wrote to the one fresh history
        assert len(store.notices()) == 1


def _index_out_of_step(path):
    """Index entries that no longer match their table (what a stray write to an index can leave)."""
    conn = sqlite3.connect(path, isolation_level=None)
    version = conn.execute("PRAGMA schema_version").fetchone()[0]
    conn.execute("PRAGMA writable_schema = ON")
    conn.execute("UPDATE sqlite_master SET sql = 'CREATE INDEX messages_by_conversation ON messages(role, id)' "
                 "WHERE name = 'messages_by_conversation'")
    conn.execute(f"PRAGMA schema_version = {version + 1}")
    conn.execute("PRAGMA writable_schema = OFF")
    conn.close()


def test_index_entries_out_of_step_are_rebuilt_not_moved(tmp_path):
    path = tmp_path / "history.db"
    filled(path, n=50)
    before = _contents(path)
    _index_out_of_step(path)
    with HistoryStore.open(path) as store:
        result = store.check()
        assert result.outcome == "repaired" and "out of step" in result.message and "nothing was lost" in result.message
        assert store.check().outcome == "sound"
    assert damaged_files(tmp_path) == [] and _contents(path) == before


def test_only_index_complaints_count_as_index_entries():
    from assistant.history.recovery import only_index_entries

    assert only_index_entries("row 1 missing from index m; wrong # of entries in index m and 3 more")
    assert not only_index_entries("row 1 missing from index m; Tree 6 page 6: btreeInitPage() returns error code 11")
    assert not only_index_entries("")


# -- not damage: never moved ---------------------------------------------------------

# Writes through a connection that never checkpoints, then copies the newest page 1
# from the WAL into the main file without extending it, and dies: a checkpoint cut
# short (by a full disk, or a crash). The WAL still holds every committed page.
HALF_CHECKPOINT = textwrap.dedent("""
    import os, sqlite3, sys
    path = sys.argv[1]
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA wal_autocheckpoint = 0")
    conn.execute("BEGIN IMMEDIATE")
    for i in range(300):
        conn.execute("INSERT INTO messages (uid, conversation_id, role, content, status, created_at, updated_at) "
                     "VALUES (?, 1, 'user', ?, 'complete', '2026-01-01', '2026-01-01')", (f"late{i}", "late " * 200))
    conn.execute("COMMIT")
    wal = open(path + "-wal", "rb").read()
    page_size = int.from_bytes(wal[8:12], "big")
    newest = None
    for at in range(32, len(wal), 24 + page_size):
        if int.from_bytes(wal[at:at + 4], "big") == 1:
            newest = wal[at + 24:at + 24 + page_size]
    with open(path, "r+b") as f:
        f.write(newest)
    print("ready", flush=True)
    os._exit(0)  # no close, no checkpoint: the WAL stays
""")


def test_a_checkpoint_cut_short_is_not_damage(tmp_path):
    # What the old size heuristic called "truncated" after a full disk: the main
    # file is shorter than its header says, because the newest pages are still in
    # the WAL. SQLite reads it whole; it stays where it is, every message there.
    path = tmp_path / "history.db"
    filled(path)
    proc = subprocess.run([sys.executable, "-c", HALF_CHECKPOINT, str(path)], capture_output=True, text=True,
                          timeout=60)
    assert proc.stdout.strip() == "ready", proc.stderr
    head = path.read_bytes()[:100]
    page_size = int.from_bytes(head[16:18], "big")
    assert int.from_bytes(head[28:32], "big") * page_size > path.stat().st_size  # "truncated", to a guess
    with HistoryStore.open(path) as store:
        assert store.moved_aside is None and store.warnings == []
        assert len(store.get_conversation(1).messages) == 340
        store.add_message(1, "user", "still here")
        assert store.check().outcome == "sound"
    assert damaged_files(tmp_path) == []


def test_a_lock_held_past_the_busy_timeout_is_a_sentence_not_damage(tmp_path):
    path = tmp_path / "history.db"
    filled(path)
    holder = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import sqlite3, sys, time
        conn = sqlite3.connect({str(path)!r}, isolation_level=None)
        conn.execute("PRAGMA locking_mode = EXCLUSIVE")
        conn.execute("BEGIN EXCLUSIVE")
        conn.execute("UPDATE conversations SET title = title")
        print("locked", flush=True)
        sys.stdin.read()
    """)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "locked"
        with pytest.raises(HistoryBusyError, match="busy"):
            HistoryStore.open(path, busy_timeout=0.3)
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)
    assert damaged_files(tmp_path) == []
    with HistoryStore.open(path) as store:
        assert store.count_conversations() == 1 and store.warnings == []


def test_check_on_a_sound_history_counts_what_is_there(tmp_path):
    filled(tmp_path / "history.db", n=7)
    proc = run_cli("history", "check", home=tmp_path)
    assert proc.returncode == 0
    assert proc.stdout.decode().strip().endswith("is sound: 1 conversation and 7 messages, and the search indexes "
                                                  "match them.")


def test_notices_file_is_a_json_list(tmp_path):
    path = tmp_path / "history.db"
    path.write_bytes(b"\x00" * 4096 + b"junk")
    HistoryStore.open(path).close()
    items = json.loads((tmp_path / "history-notices.json").read_text(encoding="utf-8"))
    assert [set(i) for i in items] == [{"id", "text", "created_at", "path"}]
    checkpoint(path)
