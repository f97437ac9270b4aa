"""Helpers for history tests: real database files, damaged on purpose, and the real CLI in a subprocess."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from assistant.history import HistoryStore

REPO = Path(__file__).resolve().parents[2]

TEXTS = [
    "How do penguins stay warm in the Antarctic winter?",
    "Penguins have dense feathers and a layer of fat.",
    "深層学習と機械学習の違いを説明してください。",
    "機械学習はデータから学ぶ方法です。🍕🍕🍕🎉🎉 パーティー",
    "Python functions can return several values.",
]


def filled(path: Path, n: int = 40, title: str | None = None) -> list[int]:
    """A history with one conversation of `n` messages (TEXTS in turn), checkpointed; returns the ids."""
    with HistoryStore.open(path) as store:
        conv = store.create_conversation(model="gemma-3-270m", title=title)
        ids = [store.add_message(conv.id, "user" if i % 2 == 0 else "assistant", f"{TEXTS[i % len(TEXTS)]} #{i}").id
               for i in range(n)]
    checkpoint(path)
    return ids


def checkpoint(path: Path) -> None:
    """Fold the WAL into the main file, so damage written there is what SQLite reads."""
    conn = sqlite3.connect(path)
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        conn.close()


def root_page(path: Path, table: str) -> int:
    conn = sqlite3.connect(path)
    try:
        return conn.execute("SELECT rootpage FROM sqlite_master WHERE name = ?", (table,)).fetchone()[0]
    finally:
        conn.close()


def overwrite_page(path: Path, page: int, data: bytes | None = None) -> None:
    """Replace one page of the file with garbage (a bad sector, a stray write)."""
    conn = sqlite3.connect(path)
    try:
        size = conn.execute("PRAGMA page_size").fetchone()[0]
    finally:
        conn.close()
    with open(path, "r+b") as f:
        f.seek((page - 1) * size)
        f.write(data if data is not None else os.urandom(size))


def scramble_index_blocks(path: Path, index: str = "messages_fts") -> None:
    """Damage an FTS5 index's content, leaving every page a sound b-tree page."""
    conn = sqlite3.connect(path)
    try:
        conn.execute(f"UPDATE {index}_data SET block = randomblob(length(block)) WHERE id > 10")
        conn.commit()
    finally:
        conn.close()
    checkpoint(path)


def damaged_files(folder: Path) -> list[Path]:
    return sorted(folder.glob("*.damaged-*"))


def run_cli(*args: str, home: Path, stdin: bytes | None = None, timeout: float = 60, env: dict | None = None,
            prefix: tuple[str, ...] = (), **popen) -> subprocess.CompletedProcess:
    """`assistant ARGS` in a fresh process, with ASSISTANT_HOME=home (after `prefix`, e.g. setpriv)."""
    env = {**os.environ, **(env or {}), "ASSISTANT_HOME": str(home),
           "PYTHONPATH": str(REPO) + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.run([*prefix, sys.executable, "-m", "assistant.cli.main", *args], input=stdin, capture_output=True,
                          timeout=timeout, env=env, cwd=REPO, **popen)
