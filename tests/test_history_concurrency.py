"""Many processes opening, upgrading and writing one history at once never misjudge one another.

Real processes throughout: a barrier start for a crowd of openers on an old
file, an upgrade that holds the lock longer than the busy timeout, and a
property test (hypothesis) of random interleavings across long-lived workers.
No run may move a database aside, leave a notice, or lose an acknowledged write.
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.history import HistoryStore
from assistant.history.schema import MIGRATIONS
from tests.support.history_files import REPO, damaged_files

# The first release's file (m001 only), as test_history_schema freezes it.
from tests.test_history_schema import SCHEMA_V1

N_MIGRATIONS = len(MIGRATIONS._migrations)


def _env():
    return {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}


def _old_file(path: Path, kind: str) -> None:
    """A history as an older release left it: nothing, an empty file, m001 only, or up to m003/m005."""
    if kind == "none":
        return
    if kind == "empty":
        path.write_bytes(b"")
        return
    if kind == "v1":
        conn = sqlite3.connect(path)
        conn.executescript(SCHEMA_V1)
        conn.close()
        return
    from tests.support.history_worker import upgrade_to

    upgrade_to(str(path), {"m003": 3, "m005": 5}[kind])
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO conversations (uid, title, created_at, updated_at) "
                     "VALUES ('old', 'old one', '2026-01-01', '2026-01-01')")
    conn.close()


def _assert_whole(folder: Path, path: Path, written: dict[str, int]) -> None:
    assert damaged_files(folder) == []
    with HistoryStore.open(path) as store:
        assert store.moved_aside is None and store.warnings == [] and store.notices() == []
        assert store.integrity_check() == "ok"
        counts = {c.title: c.message_count for c in store.list_conversations(limit=10_000)}
        for title, n in written.items():
            assert counts.get(title) == n, (title, counts.get(title), n)
        assert store.check().outcome == "sound"


# -- a crowd at one moment ------------------------------------------------------------

CROWD = textwrap.dedent("""
    import sys, time
    from assistant.history import HistoryStore
    path, start, name, n = sys.argv[1], float(sys.argv[2]), sys.argv[3], int(sys.argv[4])
    time.sleep(max(0, start - time.time()))
    for round in range(n):
        with HistoryStore.open(path) as s:        # open (and upgrade) again and again
            assert s.moved_aside is None, s.warnings
            conv = s.create_conversation(title=f"{name} {round}")
            s.add_message(conv.id, "user", f"{name} says hello {round}")
            with s.start_reply(conv.id, save_interval=0) as r:
                r.append("a reply ")
                r.append("in parts")
            s.list_conversations(limit=3)
            s.search("hello")
            s.conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
    print("done", flush=True)
""")


@pytest.mark.parametrize("initial", ["none", "empty", "v1"])
def test_a_crowd_opening_an_old_file_at_once(tmp_path, initial):
    path = tmp_path / "history.db"
    _old_file(path, initial)
    start = time.time() + 2.5  # after every interpreter has started
    n_procs, rounds = 8, 4
    procs = [subprocess.Popen([sys.executable, "-c", CROWD, str(path), str(start), f"p{i}", str(rounds)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
             for i in range(n_procs)]
    for p in procs:
        out, err = p.communicate(timeout=300)
        assert p.returncode == 0 and out.strip() == "done", err
    _assert_whole(tmp_path, path, {f"p{i} {r}": 2 for i in range(n_procs) for r in range(rounds)})


SLOW_UPGRADE = textwrap.dedent("""
    import sys, time
    from sqlite_utils import Migrations
    from assistant.history import HistoryStore
    from assistant.history.schema import MIGRATIONS
    slow = Migrations(MIGRATIONS.name)
    for m in MIGRATIONS._migrations:
        slow(name=m.name)(m.fn)
    @slow()
    def m999_slow_test_step(db):
        db.execute("CREATE TABLE slow_marker (x)")
        print("upgrading", flush=True)
        time.sleep(float(sys.argv[2]))
    with HistoryStore.open(sys.argv[1], migrations=slow) as s:
        print("upgraded", s.migrated[-1], flush=True)
""")

READER = textwrap.dedent("""
    import sys
    from assistant.history import HistoryStore
    with HistoryStore.open(sys.argv[1], busy_timeout=0.5) as s:
        assert s.moved_aside is None
        print(s.count_conversations(), len(s.search("platypus")), flush=True)
""")


def test_an_upgrade_longer_than_the_busy_timeout_is_waited_for_not_misjudged(tmp_path):
    path = tmp_path / "history.db"
    _old_file(path, "v1")
    upgrader = subprocess.Popen([sys.executable, "-c", SLOW_UPGRADE, str(path), "3"], stdout=subprocess.PIPE,
                                stderr=subprocess.PIPE, text=True, env=_env(), cwd=REPO)
    try:
        assert upgrader.stdout.readline().strip() == "upgrading", upgrader.stderr.read()
        # Mid-upgrade: readers with a 0.5 s busy timeout see the old file and wait for the
        # lock to upgrade it themselves; none takes it for damage.
        readers = [subprocess.run([sys.executable, "-c", READER, str(path)], capture_output=True, text=True,
                                  env=_env(), cwd=REPO, timeout=120) for _ in range(2)]
        out, err = upgrader.communicate(timeout=120)
    finally:
        if upgrader.poll() is None:
            upgrader.kill()
    assert upgrader.returncode == 0 and "m999_slow_test_step" in out, err
    for r in readers:
        assert r.returncode == 0 and r.stdout.split() == ["1", "1"], r.stderr
    assert damaged_files(tmp_path) == []


# -- random interleavings (hypothesis) -------------------------------------------------

class Workers:
    """Long-lived worker processes (tests/support/history_worker.py), one job each per example."""

    def __init__(self, n: int):
        self.procs = [subprocess.Popen([sys.executable, "-m", "tests.support.history_worker"], stdin=subprocess.PIPE,
                                       stdout=subprocess.PIPE, text=True, env=_env(), cwd=REPO) for _ in range(n)]

    def run(self, db: Path, plans: list[list[list]]) -> list[dict]:
        start = time.time() + 0.2
        for i, (proc, ops) in enumerate(zip(self.procs, plans)):
            proc.stdin.write(json.dumps({"db": str(db), "start": start, "name": f"w{i}", "ops": ops}) + "\n")
            proc.stdin.flush()
        return [json.loads(proc.stdout.readline()) for proc in self.procs[: len(plans)]]

    def close(self):
        for proc in self.procs:
            proc.stdin.close()
            proc.wait(timeout=30)


@pytest.fixture(scope="module")
def workers():
    w = Workers(3)
    yield w
    w.close()


OPS = st.one_of(
    st.tuples(st.just("open"), st.none()),
    st.tuples(st.just("migrate"), st.integers(1, N_MIGRATIONS)),
    st.tuples(st.just("write"), st.integers(1, 4)),
    st.tuples(st.just("stream"), st.integers(1, 4)),
    st.tuples(st.just("read"), st.none()),
    st.tuples(st.just("reopen"), st.none()),
    st.tuples(st.just("checkpoint"), st.none()),
    st.tuples(st.just("sleep"), st.integers(0, 40)),
).map(list)


@settings(max_examples=25, deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(initial=st.sampled_from(["none", "empty", "v1", "m003", "m005"]),
       plans=st.lists(st.lists(OPS, min_size=1, max_size=8), min_size=2, max_size=3))
def test_random_interleavings_never_move_a_database_aside(workers, tmp_path_factory, initial, plans):
    folder = tmp_path_factory.mktemp("interleave")
    path = folder / "history.db"
    _old_file(path, initial)
    answers = workers.run(path, plans)
    for answer in answers:
        assert answer["errors"] == [] and answer["moved"] == [], answer
    written = {title: n for a in answers for title, n in a["written"].items()}
    _assert_whole(folder, path, written)
