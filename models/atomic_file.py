"""Small state files written so that a crash or a second process never leaves half of one.

The new content goes to a temporary file with a unique name in the same folder,
is flushed to the disk (fsync), and then replaces the old file with one rename.
A reader sees the old file or the new one, never a mix; two writers never share
a temporary file (a fixed name like `installed.tmp` let one process rename
another's file away, which failed with FileNotFoundError).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path


def write_bytes(path: Path, data: bytes) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def write_json(path: Path, obj) -> None:
    write_bytes(path, json.dumps(obj, indent=1).encode("utf-8"))


def fsync_dir(folder: Path) -> None:
    """Make a rename in `folder` durable (POSIX); a no-op where folders cannot be opened (Windows)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:  # some file systems refuse fsync on a folder; the rename itself has happened
        pass
    finally:
        os.close(fd)


def append_line(path: Path, line: str) -> None:
    """Append one line and flush it to the disk (for a journal kept beside a state file)."""
    with open(path, "a", encoding="utf-8") as f:
        f.write(line.rstrip("\n") + "\n")
        f.flush()
        os.fsync(f.fileno())
