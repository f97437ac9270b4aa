"""A history that cannot be written can still be listed, shown and searched, with one sentence saying why nothing new can be saved.

Two real ways to be read-only: a read-only file system (a tmpfs remounted
read-only; needs root on Linux), and a folder or file the user may not write
(the CLI run as `nobody`; needs root to switch users). Root ignores permission
bits, so a chmod alone proves nothing here.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from assistant.history import HistoryStore
from assistant.history.errors import HistoryReadOnlyError
from tests.support.history_files import REPO, damaged_files, filled, run_cli
from tests.test_history_schema import SCHEMA_V1


def _can_mount() -> bool:
    return sys.platform == "linux" and os.geteuid() == 0 and shutil.which("mount") is not None


@pytest.fixture
def read_only_disk(tmp_path):
    """A tmpfs to fill, then `freeze()` to remount it read-only."""
    if not _can_mount():
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=16m,mode=0755", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")

    def freeze():
        subprocess.run(["mount", "-o", "remount,ro", str(mount_point)], check=True, capture_output=True)

    try:
        yield mount_point, freeze
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _one_sentence(stderr: bytes) -> str:
    lines = stderr.decode().strip().splitlines()
    assert len(lines) == 1, lines
    assert lines[0].startswith("warning: ") and "nothing" in lines[0] and "saved" in lines[0]
    return lines[0]


def test_a_read_only_file_system_still_lists_shows_and_searches(read_only_disk):
    disk, freeze = read_only_disk
    home = disk / "data"
    home.mkdir()
    filled(home / "history.db", n=20, title="Penguins and learning")
    freeze()

    listed = run_cli("history", "list", home=home)
    assert listed.returncode == 0 and "Penguins and learning" in listed.stdout.decode()
    assert "read-only" in _one_sentence(listed.stderr)
    shown = run_cli("history", "show", "1", home=home)
    assert shown.returncode == 0 and "Penguins have dense feathers" in shown.stdout.decode()
    for query, expected in (("penguins", "**penguins**"), ("機械学習", "**機械学習**"), ("学習", "**学習**")):
        found = run_cli("history", "search", query, home=home)
        assert found.returncode == 0 and expected in found.stdout.decode(), (query, found.stdout, found.stderr)
    exported = run_cli("history", "export", "1", "--format", "json", home=home)
    assert exported.returncode == 0 and '"Penguins and learning"' in exported.stdout.decode()
    checked = run_cli("history", "check", home=home)
    assert checked.returncode == 0 and "is sound" in checked.stdout.decode()

    renamed = run_cli("history", "rename", "1", "new", "title", home=home)
    err = renamed.stderr.decode()
    assert renamed.returncode == 1 and err.splitlines()[-1].startswith("error: ") and "read-only" in err
    assert "did not expect" not in err

    with HistoryStore.open(home / "history.db") as store:
        assert store.read_only and "read-only" in store.read_only_reason
        with pytest.raises(HistoryReadOnlyError, match="nothing new can be saved"):
            store.add_message(1, "user", "hello?")
    assert damaged_files(home) == []


def test_an_older_file_on_a_read_only_disk_is_read_without_upgrading_it(read_only_disk):
    # m001-only (SCHEMA_V1): upgraded in memory to be read; the file is never touched.
    disk, freeze = read_only_disk
    path = disk / "history.db"
    conn = sqlite3.connect(path)
    conn.executescript(SCHEMA_V1)
    conn.close()
    before = path.read_bytes()
    freeze()
    with HistoryStore.open(path) as store:
        assert store.read_only
        conv = store.get_conversation(1)
        assert conv.title == "Old times" and [m.content for m in conv.thread] == ["What is a platypus?",
                                                                                    "An egg-laying mammal."]
        assert [h.message_id for h in store.search("monotreme")] == [2]
        assert [h.message_id for h in store.search("otrem")] == [2]  # a substring, without the trigram index
    assert path.read_bytes() == before


def test_a_file_without_the_trigram_index_searches_cjk_by_scanning(read_only_disk):
    # An m005 file: everything but the newest index. Opened read-only as it is.
    from tests.support.history_worker import upgrade_to

    disk, freeze = read_only_disk
    path = disk / "history.db"
    upgrade_to(str(path), 5)
    conn = sqlite3.connect(path)
    with conn:
        conn.execute("INSERT INTO conversations (id, uid, title, created_at, updated_at) VALUES (1, 'c', 't', 'x', 'x')")
        conn.execute("INSERT INTO messages (uid, conversation_id, role, content, status, created_at, updated_at) "
                     "VALUES ('m', 1, 'user', '深層学習と機械学習の違い', 'complete', 'x', 'x')")
    conn.close()
    freeze()
    with HistoryStore.open(path) as store:
        assert store.read_only
        assert [h.message_id for h in store.search("機械学習")] == [1]
        assert [h.message_id for h in store.search("学習")] == [1]


def test_a_read_only_folder_without_a_history_says_so(read_only_disk):
    disk, freeze = read_only_disk
    freeze()
    listed = run_cli("history", "list", home=disk)
    assert listed.returncode == 0 and listed.stdout.decode() == "No saved conversations yet.\n"
    assert "holds no chat history" in _one_sentence(listed.stderr)


# -- a user who may not write: the CLI as `nobody` -----------------------------------

def _as_nobody():
    """The prefix that runs a command as `nobody` (uid 65534), or skip."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("setpriv"):
        pytest.skip("switching to another user needs root and setpriv on Linux")
    prefix = ("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    probe = subprocess.run([*prefix, sys.executable, "-c", "import os, assistant.history; print(os.getuid())"],
                           cwd=REPO, capture_output=True, env={**os.environ, "PYTHONPATH": str(REPO)})
    if probe.returncode != 0 or probe.stdout.strip() != b"65534":
        pytest.skip(f"the user nobody cannot run this checkout: {probe.stderr.decode()[-200:]}")
    return {"prefix": prefix}


@pytest.fixture
def shared_home():
    """A folder in /tmp that `nobody` can reach (pytest's tmp_path is private to root)."""
    folder = Path(tempfile.mkdtemp(prefix="hearth-ro-"))
    folder.chmod(0o755)
    try:
        yield folder
    finally:
        shutil.rmtree(folder, ignore_errors=True)


@pytest.mark.parametrize("locked", ["folder", "file"])
def test_a_history_the_user_may_not_write_is_still_readable(shared_home, locked):
    who = _as_nobody()
    home = shared_home / "data"
    home.mkdir()
    filled(home / "history.db", n=10, title="Owned by someone else")
    if locked == "folder":
        home.chmod(0o755)  # root's folder: nobody may read, not write
        (home / "history.db").chmod(0o644)
    else:
        home.chmod(0o777)  # nobody may write the folder (for -shm), but not the file
        (home / "history.db").chmod(0o444)
    listed = run_cli("history", "list", home=home, **who)
    assert listed.returncode == 0 and "Owned by someone else" in listed.stdout.decode(), listed.stderr
    assert "read-only" in _one_sentence(listed.stderr)
    found = run_cli("history", "search", "機械学習", home=home, **who)
    assert found.returncode == 0 and "**機械学習**" in found.stdout.decode(), found.stderr
    renamed = run_cli("history", "rm", "1", "--yes", home=home, **who)
    assert renamed.returncode == 1 and "read-only" in renamed.stderr.decode()
    with HistoryStore.open(home / "history.db") as store:  # root: untouched, all there
        assert store.count_conversations() == 1 and len(store.get_conversation(1).messages) == 10
    assert damaged_files(home) == []
