"""Images in the history: files named by their SHA-256 beside the database, written once, linked from messages.

    <data dir>/images/ab/ab12...ef.png      the file's exact bytes (never re-encoded)
    images (table)                          one row per image: type, size, pixels, first name
    message_images (table)                  which messages show which images, in order

A message and its links are one transaction (store.py); the file is written before it, under a
lock shared by every process on this history (`images/.lock`), and checked again afterwards.
Deleting the last message that shows an image deletes its row in the same transaction and its
file after the commit, under the same lock, once no message links it any more. So a file is
never deleted while a message that another process is adding needs it, and a saved message
never points at a missing file; a failed write leaves at worst an unlinked file, which the next
deletion sweeps away.
"""

from __future__ import annotations

import hashlib
import logging
import os
import sqlite3
import threading
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from pathlib import Path

from assistant.history.records import ImageRef, now
from assistant.images import MIME_EXTENSIONS, ImageAttachment

log = logging.getLogger(__name__)

LOCK_TIMEOUT_S = 30.0


class ImageFiles:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        self._thread_lock = threading.RLock()

    def path_for(self, sha256: str, mime: str) -> Path:
        if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
            raise ValueError(f"not a SHA-256: {sha256!r}")
        return self.folder / sha256[:2] / f"{sha256}.{MIME_EXTENSIONS.get(mime, 'bin')}"

    @contextmanager
    def locked(self) -> Iterator[None]:
        """Across threads and processes: file writes and deletions never interleave with each other."""
        from filelock import FileLock

        with self._thread_lock:
            self.folder.mkdir(parents=True, exist_ok=True)
            with FileLock(str(self.folder / ".lock"), timeout=LOCK_TIMEOUT_S):
                yield

    def ensure(self, image: ImageAttachment) -> Path:
        """The image's file, written (fsynced, renamed into place) unless it is already there whole."""
        target = self.path_for(image.sha256, image.mime)
        try:
            if target.stat().st_size == len(image.data):
                return target
        except FileNotFoundError:
            pass
        target.parent.mkdir(parents=True, exist_ok=True)
        tmp = target.with_name(f".{target.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        try:
            with open(tmp, "wb") as f:
                f.write(image.data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return target

    def read(self, ref: ImageRef) -> bytes:
        """The image's bytes, checked against its SHA-256; OSError if missing or changed."""
        data = self.path_for(ref.sha256, ref.mime).read_bytes()
        if hashlib.sha256(data).hexdigest() != ref.sha256:
            raise OSError(f"the file of image {ref.sha256[:12]}… no longer holds that image")
        return data

    def remove_unlinked(self, conn: sqlite3.Connection, candidates: Iterable[tuple[str, str]], *,
                        held: bool = False) -> int:
        """Delete the files of `candidates` (sha, mime) that no message links (after the commit that unlinked them;
        `held`: the caller holds the image lock already). Returns how many."""
        if not held:
            with self.locked():
                return self.remove_unlinked(conn, candidates, held=True)
        removed = 0
        for sha, mime in set(candidates):
            if conn.execute("SELECT 1 FROM message_images WHERE sha256 = ? LIMIT 1", (sha,)).fetchone():
                continue  # another process linked it meanwhile
            try:
                self.path_for(sha, mime).unlink(missing_ok=True)
                removed += 1
            except OSError as exc:  # a file left behind costs space, never a message
                log.warning("could not delete the image file %s: %s", sha, exc)
        return removed


@contextmanager
def writing(files: ImageFiles) -> Iterator[None]:
    """Under the image lock; a failure to write a file becomes a sentence (nothing was saved)."""
    from filelock import Timeout

    from assistant.history.errors import HistoryBusyError, HistoryDiskFullError, HistoryError

    try:
        with files.locked():
            yield
    except Timeout:
        raise HistoryBusyError(f"The images of the chat history ({files.folder}) stayed locked by another HearthChat "
                               f"process for more than {LOCK_TIMEOUT_S:.0f} seconds; try again.") from None
    except OSError as exc:
        import errno

        if exc.errno in (errno.ENOSPC, errno.EDQUOT):
            raise HistoryDiskFullError(f"The disk holding the chat history's images ({files.folder}) is full, so "
                                       "this message was not saved. Free some space and try again.") from exc
        raise HistoryError(f"The image could not be saved in {files.folder} ({exc.strerror or exc}), so this "
                           "message was not saved.") from exc


# -- rows ----------------------------------------------------------------------------------


def link(conn: sqlite3.Connection, message_id: int, images: list[ImageAttachment]) -> None:
    """Link images to a message (inside the caller's transaction), adding each image's row once."""
    ts = now()
    for position, image in enumerate(images):
        conn.execute("INSERT OR IGNORE INTO images (sha256, mime, size_bytes, width, height, name, created_at) "
                     "VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (image.sha256, image.mime, len(image.data), image.width, image.height, image.name, ts))
        conn.execute("INSERT INTO message_images (message_id, position, sha256, name) VALUES (?, ?, ?, ?)",
                     (message_id, position, image.sha256, image.name))


def copy_links(conn: sqlite3.Connection, from_id: int, to_id: int) -> None:
    """The same images on another message (an edited version keeps its images)."""
    conn.execute("INSERT INTO message_images (message_id, position, sha256, name) "
                 "SELECT ?, position, sha256, name FROM message_images WHERE message_id = ?", (to_id, from_id))


def refs_for(conn: sqlite3.Connection, message_ids: list[int]) -> dict[int, list[ImageRef]]:
    """Each message's images, in order."""
    out: dict[int, list[ImageRef]] = {}
    for start in range(0, len(message_ids), 500):
        part = message_ids[start:start + 500]
        rows = conn.execute(
            "SELECT l.message_id, l.sha256, i.mime, COALESCE(l.name, i.name), i.width, i.height, i.size_bytes "
            f"FROM message_images l JOIN images i ON i.sha256 = l.sha256 WHERE l.message_id IN "
            f"({','.join('?' * len(part))}) ORDER BY l.message_id, l.position", part).fetchall()
        for mid, sha, mime, name, width, height, size in rows:
            out.setdefault(mid, []).append(ImageRef(sha, mime, name, width, height, size))
    return out


def unlink_conversation(conn: sqlite3.Connection, conversation_id: int) -> list[tuple[str, str]]:
    """Drop a conversation's image links and the rows of images nothing else shows; (sha, mime) of those."""
    shas = [r[0] for r in conn.execute(
        "SELECT DISTINCT sha256 FROM message_images WHERE message_id IN "
        "(SELECT id FROM messages WHERE conversation_id = ?)", (conversation_id,))]
    conn.execute("DELETE FROM message_images WHERE message_id IN (SELECT id FROM messages WHERE conversation_id = ?)",
                 (conversation_id,))
    return _drop_unused(conn, shas)


def _drop_unused(conn: sqlite3.Connection, shas: list[str]) -> list[tuple[str, str]]:
    gone = []
    for sha in shas:
        if conn.execute("SELECT 1 FROM message_images WHERE sha256 = ? LIMIT 1", (sha,)).fetchone():
            continue
        row = conn.execute("DELETE FROM images WHERE sha256 = ? RETURNING mime", (sha,)).fetchone()
        if row is not None:
            gone.append((sha, row[0]))
    return gone
