"""Write an export to a file, its images embedded or as files in a folder beside it.

    chat.json                 the export ("file": "chat-images/<sha256>.png" for each image)
    chat-images/<sha>.png     each image once, its exact bytes

JSON takes either (the user's choice, `images="embed"` or `"files"`); Markdown always links
files beside it. Everything is written next to its target and renamed into place: a failed
export leaves no half file, and the images are in place before the file that names them.
"""

from __future__ import annotations

import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.history.export import dumps
from assistant.history.records import ImageRef
from assistant.images import MIME_EXTENSIONS
from common.errors import UserError
from common.user_files import UserFileError, write_text

IMAGE_MODES = ("embed", "files")


@dataclass(frozen=True)
class ExportWritten:
    path: Path
    conversations: int
    images: int  # image files written beside it (0 when embedded or none)
    images_folder: Path | None


def images_folder_for(path: Path) -> Path:
    return path.with_name(f"{path.stem}-images")


def write_export(store: Any, path: str | os.PathLike, fmt: str, ids: list[int] | None = None,
                 images: str = "embed", *, name_in_folder: str | None = None) -> ExportWritten:
    """Export conversations `ids` (None: all) to `path` as "json" or "md"; a UserError sentence if it cannot be.

    A folder at `path` gets the file inside it, named `name_in_folder`; the file itself is written as
    `common.user_files.write_text` writes (never over a FIFO, socket or device; atomically)."""
    if images not in IMAGE_MODES:
        raise UserError(f"Images are exported embedded or as files, not {images!r}.")
    target = Path(path)
    if target.is_dir() and name_in_folder is not None:
        target = target / name_in_folder
    folder = images_folder_for(target)
    beside: dict[str, tuple[ImageRef, str]] = {}  # sha -> (ref, path relative to the export's folder)

    def as_file(ref: ImageRef) -> dict[str, Any]:
        rel = f"{folder.name}/{ref.sha256}.{MIME_EXTENSIONS.get(ref.mime, 'bin')}"
        beside.setdefault(ref.sha256, (ref, rel))
        return {"file": rel}

    if fmt == "json":
        doc = store.export_json(ids, images=as_file if images == "files" else None)
        text = dumps(doc)
        count = len(doc["conversations"])
    elif fmt == "md":
        conv_ids = ids if ids is not None else store.conversation_ids()
        for cid in conv_ids:
            for m in store.get_conversation(cid).thread:
                for ref in m.images:
                    as_file(ref)
        text = store.export_markdown(conv_ids, image_links={sha: rel for sha, (_, rel) in beside.items()}) + "\n"
        count = len(conv_ids)
    else:
        raise UserError(f"Conversations are exported as json or md, not {fmt!r}.")
    if beside:
        if not target.parent.is_dir():
            raise UserFileError(f"Cannot write {target}: the folder {target.parent} does not exist.")
        for ref, rel in beside.values():
            _write_image(target.parent / rel, store.image_data(ref))
    written = write_text(target, text, name_in_folder=name_in_folder)  # the images are in place before it
    return ExportWritten(written, count, len(beside), folder if beside else None)


def _write_image(path: Path, data: bytes) -> None:
    """One image file beside the export, in its own folder; never over anything but a regular file."""
    try:
        path.parent.mkdir(exist_ok=True)
        if path.is_symlink() or (path.exists() and not path.is_file()):
            raise UserFileError(f"{path} is not a regular file, so it was not replaced.")
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
    except OSError as exc:
        raise UserFileError(f"Cannot write {path}: {exc.strerror or exc}.") from exc
