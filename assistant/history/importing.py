"""Reading a JSON export back in: bounded, checked whole, then written in one transaction.

Everything about the input is limited, and each limit, when hit, is named in
the sentence the person reads: the bytes read (a stream is never read past the
limit, so `/dev/zero` stops at once), the nesting depth, the size of numbers, and
the number of conversations and messages. Nothing is written until the whole
file has been checked.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import os
import re
import sqlite3
import stat
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path, PurePosixPath
from typing import Any, BinaryIO

from assistant.history import comparisons as _comparisons
from assistant.history import rows
from assistant.history.errors import ImportFormatError, ImportLimitError
from assistant.history.export import FORMAT, VERSION
from assistant.history.records import ROLES, STATUSES, ImportResult, clean_text
from assistant.images import MAX_IMAGE_BYTES, ImageAttachment, ImageError, attachment
from common.formatting import format_bytes
from common.user_files import FileTooLarge, NotARegularFile, read_bounded

CHUNK = 1 << 16
_INT64 = 1 << 63


@dataclass(frozen=True)
class ImportLimits:
    max_bytes: int = 512 * 1024 * 1024  # about 600,000 typical messages
    max_depth: int = 64  # the format itself needs 6; statistics records a few more
    max_number_chars: int = 40  # "-9223372036854775808" is 20; a float's digits, sign and exponent fit
    max_conversations: int = 100_000
    max_messages: int = 2_000_000
    max_images: int = 10_000
    max_image_bytes: int = MAX_IMAGE_BYTES  # each
    max_image_total_bytes: int = 2 << 30  # all of them, embedded or beside the file


LIMITS = ImportLimits()


# -- reading, bounded -----------------------------------------------------------------

def read_file(path: str | os.PathLike, limits: ImportLimits = LIMITS) -> bytes:
    """The bytes of an export file; a sentence for a missing, unreadable or oversized one."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            info = os.fstat(f.fileno())
            if stat.S_ISDIR(info.st_mode):
                raise ImportFormatError(f"{path} is a folder, not a file")
            if stat.S_ISREG(info.st_mode) and info.st_size > limits.max_bytes:
                raise _too_large(limits, info.st_size)
            return read_stream(f, limits)
    except IsADirectoryError:
        raise ImportFormatError(f"{path} is a folder, not a file") from None
    except OSError as exc:
        raise ImportFormatError(f"{path} cannot be read ({exc.strerror or exc})") from exc


def read_stream(stream: BinaryIO, limits: ImportLimits = LIMITS) -> bytes:
    """At most limits.max_bytes + 1 bytes from a stream (a pipe, a device, a file).

    The first bytes must open a JSON object: an export always does, and a stream of
    zeros or of random bytes stops after one read instead of at the size limit.
    """
    parts: list[bytes] = []
    total = 0
    opened = False
    while True:
        chunk = stream.read(min(CHUNK, limits.max_bytes + 1 - total))
        if not chunk:
            break
        if not opened:
            opened = _check_opening(b"".join(parts) + chunk)
        parts.append(chunk)
        total += len(chunk)
        if total > limits.max_bytes:
            raise _too_large(limits, None)
    return b"".join(parts)


_BOMS = (b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff")
_JSON_SPACE = b" \t\r\n"


def _check_opening(head: bytes) -> bool:
    """True once the start is seen to be a JSON object; raises when it cannot be one."""
    if head.startswith(_BOMS[1:]) or head[:4].count(0) in (2, 3):
        return True  # UTF-16 or UTF-32: json.loads reads those; it judges the rest
    start = head[3:] if head.startswith(_BOMS[0]) else head
    start = start.lstrip(_JSON_SPACE)
    if not start:
        return False  # only white space so far
    if start[:1] != b"{":
        shown = f"{start[0]:#04x}" if start[0] < 0x20 or start[0] > 0x7E else repr(chr(start[0]))
        raise ImportFormatError(f"it is not a HearthChat history export: it starts with the byte {shown}, "
                                "not with a JSON object")
    return True


def _too_large(limits: ImportLimits, size: int | None) -> ImportLimitError:
    was = f" ({format_bytes(size)})" if size is not None else ""
    return ImportLimitError(f"it is larger{was} than the {format_bytes(limits.max_bytes)} an import reads "
                            "(the size limit)")


# -- parsing, bounded -----------------------------------------------------------------

class _NumberTooLarge(Exception):
    def __init__(self, literal: str):
        self.literal = literal


def parse(data: str | bytes | bytearray, limits: ImportLimits = LIMITS) -> Any:
    """JSON text to Python values; ImportFormatError / ImportLimitError say what is wrong."""
    if len(data) > limits.max_bytes:
        raise _too_large(limits, len(data))
    if isinstance(data, (bytes, bytearray)):
        _check_opening(bytes(data[:CHUNK]))

    def number(kind):
        def parse_number(literal: str):
            if len(literal) > limits.max_number_chars:
                raise _NumberTooLarge(literal)
            value = kind(literal)
            if kind is int and not -_INT64 <= value < _INT64:
                raise _NumberTooLarge(literal)
            return value
        return parse_number

    try:
        return json.loads(data, parse_int=number(int), parse_float=number(float))
    except RecursionError:
        raise ImportLimitError(f"it is nested more than {limits.max_depth} levels deep (the nesting limit)") from None
    except _NumberTooLarge as exc:
        digits = exc.literal.lstrip("-")
        shown = exc.literal if len(exc.literal) <= 24 else f"{exc.literal[:20]}… ({len(digits)} digits)"
        raise ImportLimitError(f"it holds the number {shown}, larger than a history stores (the number size "
                               f"limit: whole numbers up to ±9,223,372,036,854,775,807, and at most "
                               f"{limits.max_number_chars} characters)") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ImportFormatError(f"it is not valid JSON ({exc})") from exc


# -- checking -------------------------------------------------------------------------

def validate(doc: Any, limits: ImportLimits = LIMITS, folder: Path | None = None) -> list[dict[str, Any]]:
    """The conversations of an export, checked and normalised; ImportFormatError says what is wrong.

    Images are read and checked here too (embedded, or files beside the export in `folder`), so
    nothing is written until every one of them is known good."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ImportFormatError(f'it is not a HearthChat history export (no "format": "{FORMAT}")')
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ImportFormatError(f"its version {_short(version)} is not a known history format version")
    if version > VERSION:
        raise ImportFormatError(
            f"it was written by a newer HearthChat (history format version {_short(version)}; this one reads up "
            f"to version {VERSION}). Update HearthChat to import it")
    convs = doc.get("conversations")
    if not isinstance(convs, list):
        raise ImportFormatError('"conversations" is missing or is not a list')
    if len(convs) > limits.max_conversations:
        raise ImportLimitError(f"it holds {len(convs):,} conversations, more than the {limits.max_conversations:,} "
                               "one import takes (the conversation limit)")
    n_messages = sum(len(c["messages"]) for c in convs
                     if isinstance(c, dict) and isinstance(c.get("messages"), list))
    if n_messages > limits.max_messages:
        raise ImportLimitError(f"it holds {n_messages:,} messages, more than the {limits.max_messages:,} one "
                               "import takes (the message limit)")
    n_images = sum(len(m["images"]) for c in convs if isinstance(c, dict) and isinstance(c.get("messages"), list)
                   for m in c["messages"] if isinstance(m, dict) and isinstance(m.get("images"), list))
    if n_images > limits.max_images:
        raise ImportLimitError(f"it holds {n_images:,} images, more than the {limits.max_images:,} one import takes "
                               "(the image limit)")
    images = _ImageReader(limits, folder)
    seen: set[str] = set()
    out = []
    for i, conv in enumerate(convs):
        where = f"conversations[{i}]"
        c = _validate_conversation(conv, where, limits, images)
        if c["id"] in seen:
            raise ImportFormatError(f"{where}: the conversation id {_short(c['id'])} appears twice")
        seen.add(c["id"])
        out.append(c)
    return out


def validate_comparisons(doc: dict[str, Any], limits: ImportLimits = LIMITS) -> tuple[list[dict], list[dict]]:
    """The comparisons and prompt sets of an export (version 2; none in version 1), checked and normalised."""
    items = doc.get("comparisons")
    if isinstance(items, list):
        if len(items) > limits.max_conversations:
            raise ImportLimitError(f"it holds {len(items):,} comparisons, more than the {limits.max_conversations:,} "
                                   "one import takes (the conversation limit)")
        n_answers = sum(len(c["answers"]) for c in items if isinstance(c, dict) and isinstance(c.get("answers"), list))
        if n_answers > limits.max_messages:
            raise ImportLimitError(f"it holds {n_answers:,} compared answers, more than the {limits.max_messages:,} "
                                   "one import takes (the message limit)")
    return _comparisons.validate(doc, _field, _timestamp, _check_depth, limits)


# Depth of a conversation's settings and of a message's stats in the document:
# {"conversations": [{"settings": {...}}]} and ... [{"messages": [{"stats": {...}}]}].
_SETTINGS_DEPTH, _STATS_DEPTH = 4, 6


def _validate_conversation(conv: Any, where: str, limits: ImportLimits, images: _ImageReader) -> dict[str, Any]:
    if not isinstance(conv, dict):
        raise ImportFormatError(f"{where} is not an object")
    c = {
        "id": _field(conv, "id", where, str, required=True),
        "title": _field(conv, "title", where, str),
        "model": _field(conv, "model", where, str),
        "system_prompt": _field(conv, "system_prompt", where, str),
        "settings": _field(conv, "settings", where, dict) or {},
        "created_at": _timestamp(conv, "created_at", where),
        "current_leaf": _field(conv, "current_leaf", where, str),
    }
    _check_depth(c["settings"], f"{where}.settings", _SETTINGS_DEPTH, limits)
    c["updated_at"] = _timestamp(conv, "updated_at", where, default=c["created_at"])
    if not c["id"]:
        raise ImportFormatError(f"{where}.id is empty")
    messages = conv.get("messages", [])
    if not isinstance(messages, list):
        raise ImportFormatError(f"{where}.messages is not a list")
    by_id: dict[str, dict[str, Any]] = {}
    for j, msg in enumerate(messages):
        m = _validate_message(msg, f"{where}.messages[{j}]", limits, images)
        if m["id"] in by_id:
            raise ImportFormatError(f"{where}.messages[{j}]: the message id {_short(m['id'])} appears twice")
        by_id[m["id"]] = m
    for m in by_id.values():
        if m["parent_id"] is not None and m["parent_id"] not in by_id:
            raise ImportFormatError(f"{where}: message {_short(m['id'])} names a parent {_short(m['parent_id'])} "
                                    "that is not there")
    if c["current_leaf"] is not None and c["current_leaf"] not in by_id:
        raise ImportFormatError(f"{where}.current_leaf names a message that is not there")
    c["messages"] = _parents_first(list(by_id.values()), where)
    return c


def _validate_message(msg: Any, where: str, limits: ImportLimits, images: _ImageReader) -> dict[str, Any]:
    if not isinstance(msg, dict):
        raise ImportFormatError(f"{where} is not an object")
    m = {
        "id": _field(msg, "id", where, str, required=True),
        "parent_id": _field(msg, "parent_id", where, str),
        "role": _field(msg, "role", where, str, required=True),
        "content": _field(msg, "content", where, str, required=True),
        "status": _field(msg, "status", where, str, required=True),
        "created_at": _timestamp(msg, "created_at", where),
        "error": _field(msg, "error", where, str),
        "stats": _field(msg, "stats", where, dict),
        "thinking": _field(msg, "thinking", where, str),  # a reasoning model's thinking (absent before m009)
    }
    _check_depth(m["stats"], f"{where}.stats", _STATS_DEPTH, limits)
    m["updated_at"] = _timestamp(msg, "updated_at", where, default=m["created_at"])
    if m["role"] not in ROLES:
        raise ImportFormatError(f"{where}.role {_short(m['role'])} is not one of {', '.join(ROLES)}")
    if m["status"] not in STATUSES:
        raise ImportFormatError(f"{where}.status {_short(m['status'])} is not one of {', '.join(STATUSES)}")
    raw_images = msg.get("images")
    if raw_images is not None and not isinstance(raw_images, list):
        raise ImportFormatError(f"{where}.images is not a list")
    m["images"] = [images.read(item, f"{where}.images[{k}]") for k, item in enumerate(raw_images or [])]
    return m


_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class _ImageReader:
    """Images of an export, embedded (base64) or in files beside it, each read within the limits and checked:
    its bytes must have the SHA-256 it is listed under and be a kind of picture the app reads."""

    def __init__(self, limits: ImportLimits, folder: Path | None) -> None:
        self.limits = limits
        self.folder = folder
        self.total = 0
        self.by_sha: dict[str, ImageAttachment] = {}

    def read(self, item: Any, where: str) -> ImageAttachment:
        if not isinstance(item, dict):
            raise ImportFormatError(f"{where} is not an object")
        sha = item.get("sha256")
        if not isinstance(sha, str) or not _SHA256.match(sha):
            raise ImportFormatError(f"{where}.sha256 is not a SHA-256 (64 lowercase hex digits)")
        name = _field(item, "name", where, str)
        if sha in self.by_sha:
            return self.by_sha[sha]
        if isinstance(item.get("data"), str):
            data = self._embedded(item["data"], where)
        elif isinstance(item.get("file"), str):
            data = self._beside(item["file"], where)
        else:
            raise ImportFormatError(f"{where} has neither its data nor the name of its file")
        if hashlib.sha256(data).hexdigest() != sha:
            raise ImportFormatError(f"{where}: the image's bytes do not have the SHA-256 it is listed under, so it "
                                    "is damaged or was changed")
        self.total += len(data)
        if self.total > self.limits.max_image_total_bytes:
            raise ImportLimitError(f"its images add up to more than {format_bytes(self.limits.max_image_total_bytes)} "
                                   "(the image size limit)")
        try:
            image = attachment(data, name)
        except ImageError as exc:
            raise ImportFormatError(f"{where}: {str(exc).rstrip('.')}") from None
        width, height = item.get("width"), item.get("height")
        ok = lambda v: isinstance(v, int) and not isinstance(v, bool) and 0 < v < 1 << 31  # noqa: E731
        image = ImageAttachment(image.data, image.sha256, image.mime, image.name,
                                width if ok(width) else None, height if ok(height) else None)
        self.by_sha[sha] = image
        return image

    def _embedded(self, text: str, where: str) -> bytes:
        if len(text) > (self.limits.max_image_bytes + 2) // 3 * 4 + 4:
            raise self._too_large(where)
        try:
            return base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            raise ImportFormatError(f"{where}.data is not valid base64") from None

    def _beside(self, name: str, where: str) -> bytes:
        if self.folder is None:
            raise ImportFormatError(f"{where} is a file beside the export, but the export was not read from a folder")
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or "\\" in name or ":" in name or not rel.parts or len(name) > 400:
            raise ImportFormatError(f"{where}.file {_short(name)} is not a plain path inside the export's folder")
        path = self.folder.joinpath(*rel.parts)
        try:
            if not path.resolve().is_relative_to(self.folder.resolve()):
                raise ImportFormatError(f"{where}.file {_short(name)} leads outside the export's folder")
            # Never blocks on a FIFO, never reads past the limit (an export is untrusted).
            return read_bounded(path, self.limits.max_image_bytes)
        except FileNotFoundError:
            raise ImportFormatError(f"{where}.file {_short(name)} is not beside the export") from None
        except NotARegularFile:
            raise ImportFormatError(f"{where}.file {_short(name)} is not a regular file") from None
        except FileTooLarge:
            raise self._too_large(where) from None
        except OSError as exc:
            raise ImportFormatError(f"{where}.file {_short(name)} cannot be read ({exc.strerror or exc})") from None

    def _too_large(self, where: str) -> ImportLimitError:
        return ImportLimitError(f"{where} is larger than the {format_bytes(self.limits.max_image_bytes)} an image "
                                "may be (the image size limit)")


def _check_depth(value: Any, where: str, depth: int, limits: ImportLimits) -> None:
    """A free-form object (settings, stats) nested no deeper than the limit; iterative, so any depth is safe."""
    stack = [(value, depth)]
    while stack:
        item, d = stack.pop()
        if d > limits.max_depth:
            raise ImportLimitError(f"{where} is nested more than {limits.max_depth} levels deep (the nesting limit)")
        if isinstance(item, dict):
            stack.extend((v, d + 1) for v in item.values())
        elif isinstance(item, list):
            stack.extend((v, d + 1) for v in item)


def _field(obj: dict, key: str, where: str, kind: type, required: bool = False) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise ImportFormatError(f"{where}.{key} is missing")
        return None
    if not isinstance(value, kind):
        raise ImportFormatError(f"{where}.{key} should be {'text' if kind is str else 'an object'}, "
                                f"not {type(value).__name__}")
    return clean_text(value) if isinstance(value, str) else value


def _timestamp(obj: dict, key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None:
        raise ImportFormatError(f"{where}.{key} is missing")
    if not isinstance(value, str):
        raise ImportFormatError(f"{where}.{key} should be an ISO 8601 time, not {type(value).__name__}")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ImportFormatError(f"{where}.{key} {_short(value)} is not an ISO 8601 time") from None
    return clean_text(value)


def _short(value: Any, limit: int = 60) -> str:
    """A value quoted in a sentence: repr (control characters escaped), cut to a readable length."""
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10 ** limit:
        return f"a {len(str(abs(value)))}-digit number"
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _parents_first(messages: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Order so every parent is inserted before its children; a cycle is an error."""
    by_id = {m["id"]: m for m in messages}
    done: set[str] = set()
    out: list[dict[str, Any]] = []
    for m in messages:
        chain: list[dict[str, Any]] = []
        in_chain: set[str] = set()
        node: dict[str, Any] | None = m
        while node is not None and node["id"] not in done:
            if node["id"] in in_chain:
                raise ImportFormatError(f"{where}: the messages' parent links form a loop")
            chain.append(node)
            in_chain.add(node["id"])
            node = by_id.get(node["parent_id"]) if node["parent_id"] is not None else None
        for n in reversed(chain):
            done.add(n["id"])
            out.append(n)
    return out


# -- writing --------------------------------------------------------------------------

def write(conn: sqlite3.Connection, conversations: list[dict[str, Any]],
          link_images: Callable[[sqlite3.Connection, int, list], None] | None = None) -> ImportResult:
    """Insert checked conversations inside the caller's transaction.

    A conversation whose uid is already stored is skipped, never overwritten. A
    `streaming` message comes in as `interrupted`: no process is writing it here.
    """
    result = ImportResult()
    for conv in conversations:
        if conn.execute("SELECT 1 FROM conversations WHERE uid = ?", (conv["id"],)).fetchone():
            result.skipped.append(conv["id"])
            continue
        cid = rows.inserted_id(conn.execute(
            "INSERT INTO conversations (uid, title, model, system_prompt, settings, created_at, updated_at) "
            "VALUES (?, ?, ?, ?, ?, ?, ?)",
            (conv["id"], conv["title"], conv["model"], conv["system_prompt"],
             rows.json_text(conv["settings"]), conv["created_at"], conv["updated_at"])))
        ids: dict[str, int] = {}
        for m in conv["messages"]:  # parents first: validate() sorted them
            status = "interrupted" if m["status"] == "streaming" else m["status"]
            mid = rows.inserted_id(conn.execute(
                "INSERT INTO messages (uid, conversation_id, parent_id, role, content, status, created_at, "
                "updated_at, error, thinking) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (m["id"], cid, ids.get(m["parent_id"]), m["role"], m["content"], status,
                 m["created_at"], m["updated_at"], m["error"], m.get("thinking") or None)))
            ids[m["id"]] = mid
            if m.get("images") and link_images is not None:  # their files are written already (store.py)
                link_images(conn, mid, m["images"])
            if m["stats"] is not None:
                rows.insert_stats(conn, mid, m["stats"], m["updated_at"])
        conn.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?",
                     (ids.get(conv["current_leaf"]), cid))
        result.imported.append(cid)
    return result
