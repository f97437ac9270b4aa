"""Model files that crashed the runner, remembered by their SHA-256.

A file that crashed llama.cpp once will likely do it again: the app never loads
it again on its own (the model it reopens at start-up, a model an API request
names). A user who asks for it by name may still try.

Hashing a 5 GB file takes seconds, so a file is only hashed when it crashed, or
when it is about to be loaded automatically and a crashed file of the same size
is on record.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from pathlib import Path

from common.paths import data_dir

log = logging.getLogger(__name__)
_lock = threading.Lock()


def _store() -> Path:
    return data_dir() / "crashed-models.json"


def sha256_of(path: str | os.PathLike) -> str:
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read() -> list[dict]:
    try:
        data = json.loads(_store().read_text(encoding="utf-8"))
        return [e for e in data.get("crashed", []) if isinstance(e, dict) and isinstance(e.get("sha256"), str)]
    except FileNotFoundError:
        return []
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("the list of crashed models could not be read (%s); starting a new one", exc)
        return []


def _write(entries: list[dict]) -> None:
    path = _store()
    tmp = path.with_name(f"{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps({"crashed": entries[-200:]}, indent=1), encoding="utf-8")
    os.replace(tmp, path)


def remember(path: str, reason: str, sha256: str | None = None) -> None:
    """Record that the file at `path` crashed the runner (hashes it: call off the GUI thread)."""
    try:
        digest = sha256 or sha256_of(path)
        size = os.path.getsize(path)
    except OSError as exc:
        log.warning("could not remember the crash of %s: %s", path, exc)
        return
    with _lock:
        entries = [e for e in _read() if e["sha256"] != digest]
        entries.append({"sha256": digest, "size": size, "path": str(path), "reason": reason,
                        "at": time.strftime("%Y-%m-%dT%H:%M:%S")})
        try:
            _write(entries)
        except OSError as exc:
            log.warning("could not save the list of crashed models: %s", exc)


def crash_record(path: str, sha256: str | None = None) -> dict | None:
    """The crash on record for this file's content, or None."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return None
    candidates = [e for e in _read() if e.get("size") == size]
    if not candidates:
        return None
    try:
        digest = sha256 or sha256_of(path)
    except OSError:
        return None
    return next((e for e in candidates if e["sha256"] == digest), None)


def forget(path: str) -> None:
    """The user chose to trust this file again (it loaded and answered)."""
    try:
        size = os.path.getsize(path)
    except OSError:
        return
    with _lock:
        entries = _read()
        if not any(e.get("size") == size for e in entries):
            return
        digest = sha256_of(path)
        kept = [e for e in entries if e["sha256"] != digest]
        if len(kept) != len(entries):
            _write(kept)
