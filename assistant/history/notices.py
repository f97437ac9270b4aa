"""Notices a person sees until they dismiss them, such as a damaged database moved aside.

They live in a small JSON list next to the database (`history-notices.json`),
so every front end shows them on every start (the CLI on each history and chat
command, the window when it opens), not only the process that acted. Written
whole to a unique temporary file, then renamed over the old list, under a file
lock, so concurrent processes never lose one another's notices.
"""

from __future__ import annotations

import json
import logging
import os
import tempfile
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from assistant.history.records import now

log = logging.getLogger(__name__)

LOCK_WAIT_S = 10.0


@dataclass(frozen=True)
class Notice:
    id: int
    text: str  # one or two sentences, complete in themselves
    created_at: str
    path: str | None = None  # the file it is about: where a damaged database went


class NoticeBoard:
    def __init__(self, db_path: Path):
        self.file = db_path.with_name(f"{db_path.stem}-notices.json")
        self._db_path = db_path
        self._lock = FileLock(f"{self.file}.lock", timeout=LOCK_WAIT_S)

    def read(self) -> list[Notice]:
        try:
            raw = self.file.read_bytes()
        except FileNotFoundError:
            return []
        except OSError as exc:
            log.warning("cannot read %s: %s", self.file, exc)
            return self._from_moved_files()
        try:
            items = json.loads(raw)
            return [Notice(int(i["id"]), str(i["text"]), str(i["created_at"]), i.get("path")) for i in items]
        except (ValueError, TypeError, KeyError) as exc:
            # Never lose a notice to a damaged list: the files it names are still there.
            log.warning("the notices file %s is not a valid list (%s); rebuilding it from the files", self.file, exc)
            return self._from_moved_files()

    def add(self, text: str, path: Path | None = None) -> Notice:
        """Add a notice (OSError when the folder cannot be written)."""
        with self._lock:  # filelock.Timeout is an OSError too
            items = self.read()
            notice = Notice(max((n.id for n in items), default=0) + 1, text, now(), str(path) if path else None)
            self._write([*items, notice])
        return notice

    def dismiss(self, notice_id: int | None = None) -> list[Notice]:
        """Remove one notice, or all of them (None); returns those removed."""
        with self._lock:  # filelock.Timeout is an OSError too
            items = self.read()
            gone = [n for n in items if notice_id is None or n.id == notice_id]
            if gone:
                self._write([n for n in items if n not in gone])
        return gone

    def _write(self, items: list[Notice]) -> None:
        fd, tmp = tempfile.mkstemp(prefix=f".{self.file.name}.", suffix=".tmp", dir=self.file.parent)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                json.dump([asdict(n) for n in items], f, ensure_ascii=False, indent=1)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, self.file)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise

    def _from_moved_files(self) -> list[Notice]:
        pattern = f"{self._db_path.stem}.damaged-*{self._db_path.suffix}"
        return [Notice(i, f"A damaged chat history database was moved to {p}; it was kept as it was.", now(), str(p))
                for i, p in enumerate(sorted(self._db_path.parent.glob(pattern)), start=1)]
