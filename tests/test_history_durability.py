"""Durability with real processes: SIGKILL mid-reply, and two writers at once."""

import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from assistant.history import HistoryStore

REPO = Path(__file__).resolve().parents[1]

# Streams a reply forever, printing "saved N" after each committed save, so the
# test knows what was acknowledged before it kills the process.
WRITER = textwrap.dedent("""
    import sys, time
    from assistant.history import HistoryStore

    store = HistoryStore.open(sys.argv[1])
    conv = store.create_conversation(model="m")
    store.add_message(conv.id, "user", "first question")
    store.add_message(conv.id, "assistant", "first answer", stats={"gen_tps": 10.0})
    store.add_message(conv.id, "user", "second question")
    reply = store.start_reply(conv.id, save_interval=0.05)
    print("started", conv.id, reply.id, flush=True)
    i = 0
    while True:
        before = reply._saved_chars
        reply.append(f"token{i} ")
        if reply._saved_chars != before:
            print("saved", reply._saved_chars, flush=True)
        i += 1
        time.sleep(0.002)
""")

# Adds messages as fast as it can, next to other writers.
BUSY_WRITER = textwrap.dedent("""
    import sys
    from assistant.history import HistoryStore

    store = HistoryStore.open(sys.argv[1])
    conv = store.create_conversation(title=sys.argv[2])
    for i in range(int(sys.argv[3])):
        store.add_message(conv.id, "user", f"{sys.argv[2]} message {i}")
        with store.start_reply(conv.id, save_interval=0) as r:
            r.append("streamed ")
            r.append("reply")
        store.list_conversations()
        store.search("message")
    print("done", flush=True)
""")


def _spawn(script, *args):
    env = {**os.environ, "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", script, *map(str, args)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env, cwd=REPO)


def _expected(n_chars):
    text, i = "", 0
    while len(text) < n_chars:
        text += f"token{i} "
        i += 1
    return text


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_sigkill_mid_reply_keeps_everything_acknowledged(tmp_path):
    path = tmp_path / "history.db"
    child = _spawn(WRITER, path)
    try:
        started = child.stdout.readline().split()
        assert started and started[0] == "started", child.stderr.read()
        conv_id, reply_id = int(started[1]), int(started[2])
        acknowledged = saves = 0
        while saves < 5:  # let a few saves commit, then kill mid-stream
            line = child.stdout.readline()
            assert line, child.stderr.read()
            acknowledged = int(line.split()[1])
            saves += 1

        # While the writer lives, another process opening the history (the
        # window) must leave the live stream alone.
        with HistoryStore.open(path) as window:
            assert window.interrupted == []
            assert window.get_message(reply_id).status == "streaming"

        child.send_signal(signal.SIGKILL)
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
        child.stdout.close()
        child.stderr.close()

    with HistoryStore.open(path) as store:
        assert store.integrity_check() == "ok"
        assert store.interrupted == [reply_id]
        conv = store.get_conversation(conv_id)
        assert [(m.role, m.content, m.status) for m in conv.thread[:3]] == [
            ("user", "first question", "complete"),
            ("assistant", "first answer", "complete"),
            ("user", "second question", "complete"),
        ]
        assert conv.thread[1].stats == {"gen_tps": 10.0}
        partial = conv.thread[3]
        assert partial.id == reply_id and partial.status == "interrupted"
        # Everything acknowledged is there (maybe a later save too), and only text that was written.
        assert len(partial.content) >= acknowledged
        assert partial.content == _expected(len(partial.content))[: len(partial.content)]
        assert store.search("token0")[0].message_id == reply_id
    with HistoryStore.open(path) as again:  # recovery happens once
        assert again.interrupted == []


def test_two_processes_write_at_once_without_locked_errors(tmp_path):
    path = tmp_path / "history.db"
    HistoryStore.open(path).close()
    n = 100
    children = [_spawn(BUSY_WRITER, path, name, n) for name in ("window", "cli")]
    try:
        with HistoryStore.open(path) as me:  # and this process writes too, meanwhile
            conv = me.create_conversation(title="main")
            for i in range(n):
                me.add_message(conv.id, "user", f"main {i}")
        for child in children:
            out, err = child.communicate(timeout=120)
            assert child.returncode == 0 and out.strip() == "done", err
    finally:
        for child in children:
            if child.poll() is None:
                child.kill()
                child.wait()
    with HistoryStore.open(path) as store:
        counts = sorted(c.message_count for c in store.list_conversations())
        assert counts == [n, 2 * n, 2 * n]
        assert store.integrity_check() == "ok"


def test_durable_settings(tmp_path):
    with HistoryStore.open(tmp_path / "h.db") as store:
        pragma = lambda name: store.conn.execute(f"PRAGMA {name}").fetchone()[0]  # noqa: E731
        assert pragma("journal_mode") == "wal"
        assert pragma("synchronous") == 2  # FULL
        assert pragma("foreign_keys") == 1
        assert pragma("busy_timeout") >= 5000
