"""A full disk fails the current write with a sentence; everything saved before stays, and shows once space returns.

On a real, small tmpfs where the test can mount one (root, Linux; skipped
elsewhere), and everywhere through a fault-injecting limit on file size
(RLIMIT_FSIZE), which makes the kernel refuse to grow the files as a full disk does.
"""

from __future__ import annotations

import errno
import os
import shutil
import subprocess
import sys
import textwrap

import pytest

from assistant.history import HistoryStore
from tests.support.history_files import REPO, damaged_files, filled, run_cli

# A chat that saves a first part of a reply, then meets a full disk: a big user
# message fails, the reply streams on (its saves fail quietly), and finish()
# reports the failure. It prints each sentence it got, then exits.
CHAT = textwrap.dedent("""
    import os, resource, signal, sys
    from assistant.history import HistoryStore
    from assistant.history.errors import HistoryError
    path, how = sys.argv[1], sys.argv[2]
    store = HistoryStore.open(path)
    conv = store.get_conversation(1)
    reply = store.start_reply(conv.id, save_interval=0)
    reply.append("first part, saved. ")
    print("saved", reply.id, flush=True)
    if how == "rlimit":   # no file may grow past its size now: what a full disk does to SQLite
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
        # The WAL as it is now: it may not grow (nor, beyond that size, the database file). Taking the
        # database's size instead would let the WAL grow up to it, which depends on the schema's size.
        limit = os.path.getsize(path + "-wal")
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit, resource.RLIM_INFINITY))
    else:
        sys.stdin.readline()  # the test fills the disk meanwhile
    try:
        store.add_message(conv.id, "user", "a long question " * 20000)
        print("no error", flush=True)
    except HistoryError as exc:
        print("write:", type(exc).__name__, exc, flush=True)
    for i in range(50):
        reply.append("more text that cannot be saved " * 200)
    print("save_error:", type(reply.save_error).__name__, flush=True)
    try:
        reply.finish("complete")
        print("no error", flush=True)
    except HistoryError as exc:
        print("finish:", type(exc).__name__, exc, flush=True)
    os._exit(0)  # as a killed window would: no clean close
""")


def _chat(path, how):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", CHAT, str(path), how], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _check_after(path, reply_id, before):
    """Once space is back: every earlier message, the saved part of the reply, and new writes."""
    assert damaged_files(path.parent) == []
    with HistoryStore.open(path) as store:
        assert store.moved_aside is None and store.read_only_reason is None
        conv = store.get_conversation(1)
        assert [m.content for m in conv.messages[: len(before)]] == before
        reply = store.get_message(reply_id)
        assert reply.status == "interrupted" and reply.content == "first part, saved. "
        assert store.search("機械学習") and store.search("penguins")
        store.add_message(1, "user", "space is back")
        assert store.integrity_check() == "ok" and store.check().outcome == "sound"


def _read_answers(proc):
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    lines = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    return {k: v.strip() for k, v in lines.items()}


def _assert_sentences(answers):
    write = answers["write"]
    assert write.startswith(("HistoryDiskFullError", "HistoryIOError")), answers
    assert "was not saved" in write and ("full" in write or "input/output" in write)
    assert answers["save_error"] in ("HistoryDiskFullError", "HistoryIOError")
    assert answers["finish"].startswith(("HistoryDiskFullError", "HistoryIOError")), answers


@pytest.mark.skipif(not hasattr(os, "setrlimit") and sys.platform != "linux", reason="needs RLIMIT_FSIZE")
def test_files_that_cannot_grow_fail_the_write_and_keep_everything(tmp_path):
    path = tmp_path / "history.db"
    filled(path, n=30)
    before = [m.content for m in HistoryStore.open(path).get_conversation(1).messages]
    proc = _chat(path, "rlimit")
    reply_id = int(proc.stdout.readline().split()[1])
    _assert_sentences(_read_answers(proc))
    _check_after(path, reply_id, before)


# -- a real full disk: a 3 MB tmpfs ---------------------------------------------------

@pytest.fixture
def small_disk(tmp_path):
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    mount_point = tmp_path / "disk"
    mount_point.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(mount_point)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        yield mount_point
    finally:
        subprocess.run(["umount", "-l", str(mount_point)], capture_output=True)


def _fill(folder):
    """Write a filler file until the disk refuses; returns it."""
    filler = folder / "filler"
    with open(filler, "wb") as f:
        try:
            while True:
                f.write(b"\0" * 65536)
                f.flush()
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
    return filler


def test_a_full_disk_fails_the_write_keeps_everything_and_reading_goes_on(small_disk):
    home = small_disk
    path = home / "history.db"
    filled(path, n=30)
    before = [m.content for m in HistoryStore.open(path).get_conversation(1).messages]
    proc = _chat(path, "tmpfs")
    reply_id = int(proc.stdout.readline().split()[1])
    filler = _fill(home)
    # While the chat is still running and the disk is full: the CLI reads everything.
    listed = run_cli("history", "list", home=home)
    assert listed.returncode == 0 and "How do penguins stay warm" in listed.stdout.decode(), listed.stderr
    found = run_cli("history", "search", "機械学習", home=home)
    assert found.returncode == 0 and "**機械学習**" in found.stdout.decode()
    proc.stdin.write("go\n")
    proc.stdin.flush()
    _assert_sentences(_read_answers(proc))
    assert damaged_files(home) == []

    # The chat has exited, the disk is still full: opening, listing and showing still work.
    shown = run_cli("history", "show", "1", home=home)
    assert shown.returncode == 0 and "Penguins have dense feathers" in shown.stdout.decode(), shown.stderr
    assert damaged_files(home) == []

    filler.unlink()
    _check_after(path, reply_id, before)
