"""Images a user attaches to a message, as the app holds them: the file's bytes, never its pixels.

The app only looks at an image's first bytes (what kind of file it says it is) and its size;
decoding is done in a child process (the model's runner, or `image_check` when no model can
look), so a decoder bug costs that process, not the app. An attachment travels as bytes to the
runner, as a data URL to a remote server, and into the history as a content-addressed file.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common.errors import UserError
from common.formatting import format_bytes

MAX_IMAGE_BYTES = 20 * 1024 * 1024  # OpenAI's limit per image; the runner checks the same
MAX_IMAGES_PER_MESSAGE = 16

# First bytes of the kinds the decoder reads: (prefix, offset, MIME type).
_MAGIC = (
    (b"\x89PNG\r\n\x1a\n", 0, "image/png"),
    (b"\xff\xd8\xff", 0, "image/jpeg"),
    (b"GIF87a", 0, "image/gif"),
    (b"GIF89a", 0, "image/gif"),
    (b"WEBP", 8, "image/webp"),
    (b"BM", 0, "image/bmp"),
)
MIME_EXTENSIONS = {"image/png": "png", "image/jpeg": "jpg", "image/gif": "gif", "image/webp": "webp",
                   "image/bmp": "bmp"}
_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[\w.+-]+=[\w.+-]+)*)(?P<b64>;base64)?,",
                       re.IGNORECASE)


class ImageError(UserError):
    """An attachment that cannot be used, with one sentence saying why."""

    code = "invalid_image"


class ModelCannotSee(ImageError):
    """Images were sent to a model that has no image projector."""

    code = "model_cannot_see"


@dataclass(frozen=True)
class ImageAttachment:
    data: bytes = field(repr=False)
    sha256: str
    mime: str
    name: str | None = None  # the file's name as the user knows it (never a path to follow)
    width: int | None = None  # known once checked (image_check) or read back from the history
    height: int | None = None

    @property
    def label(self) -> str:
        return f"The image {self.name!r}" if self.name else "The image"

    def wire(self) -> dict[str, Any]:
        """As the runner takes it: its bytes to decode there."""
        return {"sha256": self.sha256, "data": self.data, "name": self.name, "mime": self.mime}

    def data_url(self) -> str:
        return f"data:{self.mime};base64,{base64.b64encode(self.data).decode('ascii')}"


def sniff(data: bytes) -> str | None:
    """The MIME type the file's first bytes say it is, among the kinds the decoder reads; else None."""
    for magic, offset, mime in _MAGIC:
        if data[offset:offset + len(magic)] == magic:
            if mime == "image/webp" and data[:4] != b"RIFF":
                continue
            return mime
    return None


def attachment(data: bytes, name: str | None = None) -> ImageAttachment:
    """An attachment from a file's bytes, after the cheap checks (size, kind); ImageError otherwise."""
    label = f"The image {name!r}" if name else "The image"
    if not data:
        raise ImageError(f"{label} is empty (0 bytes).")
    if len(data) > MAX_IMAGE_BYTES:
        raise ImageError(f"{label} is {format_bytes(len(data))}, more than the {format_bytes(MAX_IMAGE_BYTES)} an "
                         "image may be.")
    mime = sniff(data)
    if mime is None:
        raise ImageError(f"{label} is not a picture Hearth can read: it is not a PNG, JPEG, GIF, WebP or BMP file, "
                         "whatever its name says.")
    return ImageAttachment(bytes(data), hashlib.sha256(data).hexdigest(), mime, name)


def read_image_file(path: str | Path) -> ImageAttachment:
    """An attachment from a regular file on disk, read within the size limit: a FIFO, a device or /dev/zero is one
    sentence at once, never a wait or an endless read."""
    from common.user_files import FileTooLarge, NotARegularFile, read_bounded

    p = Path(path).expanduser()
    try:
        data = read_bounded(p, MAX_IMAGE_BYTES)
    except FileNotFoundError:
        raise ImageError(f"There is no image file at {p}.") from None
    except NotARegularFile as exc:
        raise ImageError(f"{p} is {exc.kind}, not an image file.") from None
    except FileTooLarge as exc:
        size = f"{format_bytes(exc.size)}, more than" if exc.size is not None else "more than"
        raise ImageError(f"The image {p.name!r} is {size} the {format_bytes(MAX_IMAGE_BYTES)} an image may "
                         "be.") from None
    except OSError as exc:
        raise ImageError(f"The image {p} cannot be read ({exc.strerror or exc}).") from None
    return attachment(data, p.name)


def from_data_url(url: str, max_bytes: int = MAX_IMAGE_BYTES) -> ImageAttachment:
    """An attachment from a `data:image/...;base64,...` URL; ImageError for anything else."""
    match = _DATA_URL.match(url)
    if not match or not match.group("b64"):
        raise ImageError("The image is not a base64 data URL (data:image/png;base64,...).")
    payload = url[match.end():]
    if len(payload) > (max_bytes + 2) // 3 * 4 + 4:
        raise ImageError(f"The image is larger than the {format_bytes(max_bytes)} an image may be.")
    try:
        data = base64.b64decode(payload.strip(), validate=True)
    except (binascii.Error, ValueError):
        raise ImageError("The image's data URL is not valid base64.") from None
    # The declared type is not trusted: a mislabelled file is read as what its bytes are.
    return attachment(data)


def describe(images: list[ImageAttachment]) -> str:
    """'2 images' for a status line."""
    return f"{len(images)} image{'' if len(images) == 1 else 's'}"
