"""Files a person names on the command line or in a dialog: read within a bound, written without harm.

Reading (`read_text`): only a regular file, at most `limit` bytes. `/dev/zero` would never
end, a FIFO would block until a writer came, and a 300 MB file named by mistake would be
read whole before anyone noticed: each is one sentence, at once.

Writing (`write_text`): never replaces what is not a regular file. A FIFO, a socket or a
device at the path (or at the end of a symbolic link) is refused with a sentence, where a
plain rename would have put a regular file in its place (as root, even over `/dev/full`).
A folder means "in this folder", under the name the caller suggests. A regular file is
replaced atomically: the text goes to a temporary file beside it, then a rename, so a
failure leaves the old file as it was and never half a new one.
"""

from __future__ import annotations

import errno
import os
import re
import stat
import tempfile
from pathlib import Path

from common.errors import UserError
from common.formatting import format_bytes


class UserFileError(UserError):
    """A file a person named cannot be read or written as asked."""


def kind_of(mode: int) -> str:
    """What a file of this st_mode is, in words."""
    if stat.S_ISDIR(mode):
        return "a folder"
    if stat.S_ISFIFO(mode):
        return "a named pipe (FIFO)"
    if stat.S_ISSOCK(mode):
        return "a socket"
    if stat.S_ISCHR(mode):
        return "a character device"
    if stat.S_ISBLK(mode):
        return "a block device"
    if stat.S_ISLNK(mode):
        return "a symbolic link"
    return "not a regular file"


def _why(exc: OSError) -> str:
    if exc.errno == errno.ELOOP:
        return "it is a symbolic link that leads back to itself (a loop)"
    if exc.errno == errno.ENOSPC:
        return "the disk is full"
    if exc.errno == errno.EROFS:
        return "the file system is read-only"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission is denied"
    return exc.strerror or str(exc)


# --- Reading ----------------------------------------------------------------------------------------------

class NotARegularFile(OSError):
    """A FIFO, a device, a directory...: `kind` says which ("a named pipe")."""

    def __init__(self, kind: str) -> None:
        super().__init__(kind)
        self.kind = kind


class FileTooLarge(OSError):
    """More bytes than allowed; `size` is the file's stated size when its header said so, else None."""

    def __init__(self, size: int | None) -> None:
        super().__init__("too large")
        self.size = size


def read_bounded(path: str | os.PathLike, limit: int) -> bytes:
    """The bytes of the regular file at `path`, never more than `limit`: a FIFO, a device or /dev/zero raises at
    once (NotARegularFile) instead of waiting or reading forever, a larger file raises FileTooLarge, and a file
    that cannot be opened or read raises its OSError."""
    # O_NONBLOCK: opening a FIFO with no writer returns at once instead of waiting for one.
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise NotARegularFile(kind_of(info.st_mode))
        if info.st_size > limit:
            raise FileTooLarge(info.st_size)
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        data = bytearray()
        while len(data) <= limit:  # a file growing while it is read still stops at the limit
            piece = os.read(fd, min(1 << 20, limit + 1 - len(data)))
            if not piece:
                break
            data += piece
        if len(data) > limit:
            raise FileTooLarge(None)
        return bytes(data)
    finally:
        os.close(fd)


def read_text(path: str | os.PathLike, limit: int, what: str) -> str:
    """The UTF-8 text of the regular file at `path`, of at most `limit` bytes; `what` names it in sentences
    ("The chat template file")."""
    shown = os.fspath(path)
    try:
        data = read_bounded(path, limit)
    except NotARegularFile as exc:
        raise UserFileError(f"{what} {shown} is {exc.kind}, not a regular file; name a file.") from None
    except FileTooLarge as exc:
        size = f"{format_bytes(exc.size)}, more than" if exc.size is not None else "more than"
        raise UserFileError(f"{what} {shown} is {size} the {format_bytes(limit)} such a file can be.") from None
    except OSError as exc:
        raise UserFileError(f"{what} {shown} cannot be read: {_why(exc)}.") from exc
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserFileError(f"{what} {shown} is not UTF-8 text (a byte at position {exc.start:,} is not).") from None


def file_name(title: str, fallback: str) -> str:
    """A file name made from a title: letters, digits, spaces and -_. only, never empty, never a path."""
    name = re.sub(r"[^\w\s.-]", "", title, flags=re.UNICODE).strip(" .")
    name = re.sub(r"\s+", " ", name)[:80].strip()
    return name or fallback


# --- Writing ----------------------------------------------------------------------------------------------

def write_text(path: str | os.PathLike, text: str, *, name_in_folder: str | None = None) -> Path:
    """Write `text` (UTF-8) to `path`, atomically; returns where it went.

    A folder at `path` gets the file inside it, named `name_in_folder` (refused when that is None).
    A symbolic link is followed to its file, which is replaced and the link kept. Anything that is
    not a regular file (a FIFO, a socket, a device) is refused: nothing is written, nothing replaced.
    """
    target = _target(Path(path), name_in_folder)
    folder = target.parent
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name[:100]}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        raise UserFileError(_cannot_create(target, folder, exc)) from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        _keep_mode(target, tmp)
        # Checked again just before the rename: a FIFO put there meanwhile is not replaced either.
        _refuse_special(target)
        os.replace(tmp, target)
    except UserFileError:
        _remove(tmp)
        raise
    except OSError as exc:
        _remove(tmp)
        raise UserFileError(f"Cannot write {target}: {_why(exc)}.") from exc
    return target


def _target(path: Path, name_in_folder: str | None) -> Path:
    """Where a write to `path` lands: through links, into a folder; refused for anything but a regular file."""
    try:
        info = os.stat(path)  # follows links: what the path leads to
    except FileNotFoundError:
        if path.is_symlink():
            raise UserFileError(f"{path} is a symbolic link to {os.readlink(path)}, which does not exist; "
                                "name the file itself.") from None
        if not path.parent.is_dir():
            raise UserFileError(f"Cannot write {path}: the folder {path.parent} does not exist.") from None
        return path
    except OSError as exc:
        raise UserFileError(f"Cannot write {path}: {_why(exc)}.") from exc
    if stat.S_ISDIR(info.st_mode):
        if name_in_folder is None:
            raise UserFileError(f"{path} is a folder; name a file.")
        return _target(path / name_in_folder, None)
    if not stat.S_ISREG(info.st_mode):
        raise UserFileError(f"{path} is {kind_of(info.st_mode)}, not a regular file, so it was not replaced; "
                            "name a file.")
    return Path(os.path.realpath(path)) if path.is_symlink() else path


def _refuse_special(target: Path) -> None:
    try:
        info = os.lstat(target)
    except FileNotFoundError:
        return
    if not stat.S_ISREG(info.st_mode):
        raise UserFileError(f"{target} is {kind_of(info.st_mode)}, not a regular file, so it was not replaced.")


def _cannot_create(target: Path, folder: Path, exc: OSError) -> str:
    if exc.errno == errno.ENOENT and folder.is_dir():
        # /proc, /sys: folders that exist but take no new files.
        return (f"Cannot write {target}: the folder {folder} does not take new files (a system folder); "
                "choose another place.")
    return f"Cannot write {target}: {_why(exc)} in the folder {folder}."


def _keep_mode(target: Path, tmp: str) -> None:
    """A replaced file keeps its permissions (mkstemp makes 0600); a new one gets the usual 0644 less umask."""
    try:
        mode = stat.S_IMODE(os.stat(target).st_mode)
    except FileNotFoundError:
        umask = os.umask(0)
        os.umask(umask)
        mode = 0o666 & ~umask
    os.chmod(tmp, mode)


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except OSError:
        pass
