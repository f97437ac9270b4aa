"""Markdown (to read) and JSON (complete, re-importable) exports, and the JSON import.

JSON layout, version 1:

    {"format": "hearthchat-history", "version": 1, "exported_at": "...",
     "conversations": [{"id": uid, "title", "model", "system_prompt", "settings",
                        "created_at", "updated_at", "current_leaf": message uid | null,
                        "messages": [{"id": uid, "parent_id": uid | null, "role", "content",
                                      "status", "created_at", "updated_at", "error", "stats"}]}]}

Ids in the file are the stable uids, not the local integer ids, so a file imported
into any history links up the same way, and importing it twice adds nothing.
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, Iterable

from assistant.history.errors import ImportFormatError
from assistant.history.records import ROLES, STATUSES, Conversation, ImportResult, clean_text, now
from assistant.stats_format import format_stats_line

if TYPE_CHECKING:
    from assistant.history.store import HistoryStore

FORMAT = "hearthchat-history"
VERSION = 1

_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}
_STATUS_NOTES = {
    "streaming": "still being written when this was exported",
    "stopped": "stopped before the end",
    "interrupted": "cut off: the app closed while this reply was being written",
    "error": "failed",
}


# -- JSON ----------------------------------------------------------------------------

def conversation_to_json(conv: Conversation) -> dict[str, Any]:
    uids = {m.id: m.uid for m in conv.messages}
    return {
        "id": conv.uid,
        "title": conv.title,
        "model": conv.model,
        "system_prompt": conv.system_prompt,
        "settings": conv.settings,
        "created_at": conv.created_at,
        "updated_at": conv.updated_at,
        "current_leaf": uids.get(conv.current_leaf_id),
        "messages": [
            {
                "id": m.uid,
                "parent_id": uids.get(m.parent_id),
                "role": m.role,
                "content": m.content,
                "status": m.status,
                "created_at": m.created_at,
                "updated_at": m.updated_at,
                "error": m.error,
                "stats": m.stats,
            }
            for m in conv.messages
        ],
    }


def dumps(doc: dict[str, Any]) -> str:
    """The export as text: readable UTF-8, or ASCII escapes when a stats record holds
    a lone surrogate that UTF-8 cannot carry (escaped, it still round-trips exactly)."""
    text = json.dumps(doc, ensure_ascii=False, indent=2)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        text = json.dumps(doc, indent=2)
    return text + "\n"


def to_json(conversations: Iterable[Conversation]) -> dict[str, Any]:
    return {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": now(),
        "conversations": [conversation_to_json(c) for c in conversations],
    }


# -- Markdown ------------------------------------------------------------------------

def conversation_to_markdown(conv: Conversation) -> str:
    """The branch on show, readable: each reply followed by its one-line stats."""
    out = [f"# {_one_line(conv.display_title)}", ""]
    meta = [f"Conversation {conv.id}", f"started {conv.created_at[:16].replace('T', ' ')} UTC"]
    if conv.model:
        meta.insert(1, f"model {conv.model}")
    out += ["*" + " · ".join(meta) + "*", ""]
    branches = conv.branch_count()
    if branches > 1:
        out += [f"*This conversation has {branches} branches (regenerated or edited messages); this is the "
                "one on show. The JSON export keeps them all.*", ""]
    if conv.system_prompt:
        out += ["> **System prompt:** " + conv.system_prompt.replace("\n", "\n> "), ""]
    for m in conv.thread:
        out += [f"### {_ROLE_HEADINGS.get(m.role, m.role.title())}", "", m.content.rstrip("\n") or "*(empty)*", ""]
        note = _STATUS_NOTES.get(m.status)
        if note:
            out += [f"*({note}{': ' + _one_line(m.error) if m.error else ''})*", ""]
        line = format_stats_line(m.stats)
        if line:
            out += [f"*{line}*", ""]
    return "\n".join(out)


def to_markdown(conversations: Iterable[Conversation]) -> str:
    return clean_text("\n---\n\n".join(conversation_to_markdown(c) for c in conversations))


def _one_line(text: str) -> str:
    return " ".join(text.split())


# -- import --------------------------------------------------------------------------

def import_document(store: HistoryStore, data: dict | str | bytes) -> ImportResult:
    """Validate the whole document, then write it in one transaction: all or nothing.

    A conversation whose uid is already stored is skipped, never overwritten. A
    `streaming` message comes in as `interrupted`: no process is writing it here.
    """
    if isinstance(data, (str, bytes, bytearray)):
        try:
            data = json.loads(data)
        except (ValueError, UnicodeDecodeError) as exc:
            raise ImportFormatError(f"it is not valid JSON ({exc})") from exc
    conversations = validate(data)
    from assistant.history.store import _insert_stats, _json

    result = ImportResult()
    with store._write() as conn:
        for conv in conversations:
            if conn.execute("SELECT 1 FROM conversations WHERE uid = ?", (conv["id"],)).fetchone():
                result.skipped.append(conv["id"])
                continue
            cid = conn.execute(
                "INSERT INTO conversations (uid, title, model, system_prompt, settings, created_at, updated_at) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conv["id"], conv["title"], conv["model"], conv["system_prompt"],
                 _json(conv["settings"]), conv["created_at"], conv["updated_at"])).lastrowid
            ids: dict[str, int] = {}
            for m in conv["messages"]:  # parents first: validate() sorted them
                status = "interrupted" if m["status"] == "streaming" else m["status"]
                mid = conn.execute(
                    "INSERT INTO messages (uid, conversation_id, parent_id, role, content, status, created_at, "
                    "updated_at, error) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (m["id"], cid, ids.get(m["parent_id"]), m["role"], m["content"], status,
                     m["created_at"], m["updated_at"], m["error"])).lastrowid
                ids[m["id"]] = mid
                if m["stats"] is not None:
                    _insert_stats(conn, mid, m["stats"], m["updated_at"])
            conn.execute("UPDATE conversations SET current_leaf_id = ? WHERE id = ?",
                         (ids.get(conv["current_leaf"]), cid))
            result.imported.append(cid)
    return result


def validate(doc: Any) -> list[dict[str, Any]]:
    """The conversations of an export, checked and normalised; ImportFormatError says what is wrong."""
    if not isinstance(doc, dict) or doc.get("format") != FORMAT:
        raise ImportFormatError(f'it is not a HearthChat history export (no "format": "{FORMAT}")')
    version = doc.get("version")
    if not isinstance(version, int) or isinstance(version, bool) or version < 1:
        raise ImportFormatError(f"its version {version!r} is not a known history format version")
    if version > VERSION:
        raise ImportFormatError(
            f"it was written by a newer HearthChat (history format version {version}; this one reads up to "
            f"version {VERSION}). Update HearthChat to import it")
    convs = doc.get("conversations")
    if not isinstance(convs, list):
        raise ImportFormatError('"conversations" is missing or is not a list')
    seen: set[str] = set()
    out = []
    for i, conv in enumerate(convs):
        where = f"conversations[{i}]"
        c = _validate_conversation(conv, where)
        if c["id"] in seen:
            raise ImportFormatError(f"{where}: the conversation id {c['id']!r} appears twice")
        seen.add(c["id"])
        out.append(c)
    return out


def _validate_conversation(conv: Any, where: str) -> dict[str, Any]:
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
    c["updated_at"] = _timestamp(conv, "updated_at", where, default=c["created_at"])
    if not c["id"]:
        raise ImportFormatError(f"{where}.id is empty")
    messages = conv.get("messages", [])
    if not isinstance(messages, list):
        raise ImportFormatError(f"{where}.messages is not a list")
    by_id: dict[str, dict[str, Any]] = {}
    for j, msg in enumerate(messages):
        m = _validate_message(msg, f"{where}.messages[{j}]")
        if m["id"] in by_id:
            raise ImportFormatError(f"{where}.messages[{j}]: the message id {m['id']!r} appears twice")
        by_id[m["id"]] = m
    for m in by_id.values():
        if m["parent_id"] is not None and m["parent_id"] not in by_id:
            raise ImportFormatError(f"{where}: message {m['id']!r} names a parent {m['parent_id']!r} that is not there")
    if c["current_leaf"] is not None and c["current_leaf"] not in by_id:
        raise ImportFormatError(f"{where}.current_leaf names a message that is not there")
    c["messages"] = _parents_first(list(by_id.values()), where)
    return c


def _validate_message(msg: Any, where: str) -> dict[str, Any]:
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
    }
    m["updated_at"] = _timestamp(msg, "updated_at", where, default=m["created_at"])
    if m["role"] not in ROLES:
        raise ImportFormatError(f"{where}.role {m['role']!r} is not one of {', '.join(ROLES)}")
    if m["status"] not in STATUSES:
        raise ImportFormatError(f"{where}.status {m['status']!r} is not one of {', '.join(STATUSES)}")
    return m


def _field(obj: dict, key: str, where: str, kind: type, required: bool = False) -> Any:
    value = obj.get(key)
    if value is None:
        if required:
            raise ImportFormatError(f"{where}.{key} is missing")
        return None
    if not isinstance(value, kind):
        raise ImportFormatError(f"{where}.{key} should be {'text' if kind is str else 'an object'}, "
                                f"not {type(value).__name__}")
    return clean_text(value) if kind is str else value


def _timestamp(obj: dict, key: str, where: str, default: str | None = None) -> str:
    value = obj.get(key, default)
    if value is None:
        raise ImportFormatError(f"{where}.{key} is missing")
    if not isinstance(value, str):
        raise ImportFormatError(f"{where}.{key} should be an ISO 8601 time, not {type(value).__name__}")
    try:
        datetime.fromisoformat(value)
    except ValueError:
        raise ImportFormatError(f"{where}.{key} {value!r} is not an ISO 8601 time") from None
    return value


def _parents_first(messages: list[dict[str, Any]], where: str) -> list[dict[str, Any]]:
    """Order so every parent is inserted before its children; a cycle is an error."""
    by_id = {m["id"]: m for m in messages}
    done: set[str] = set()
    out: list[dict[str, Any]] = []
    for m in messages:
        chain: list[dict[str, Any]] = []
        in_chain: set[str] = set()
        node = m
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
