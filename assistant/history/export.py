"""Markdown (to read) and JSON (complete, re-importable) exports; importing.py reads them back.

JSON layout, version 2 (version 1 is the same without "comparisons" and "prompt_sets",
which comparisons.py describes; both are read back):

    {"format": "hearthchat-history", "version": 1, "exported_at": "...",
     "conversations": [{"id": uid, "title", "model", "system_prompt", "settings",
                        "created_at", "updated_at", "current_leaf": message uid | null,
                        "messages": [{"id": uid, "parent_id": uid | null, "role", "content",
                                      "status", "created_at", "updated_at", "error", "stats",
                                      "thinking" (a reasoning model's thinking; only when there is some)}]}],
     "comparisons": [...], "prompt_sets": [...]}

Ids in the file are the stable uids, not the local integer ids, so a file imported
into any history links up the same way, and importing it twice adds nothing.
"""

from __future__ import annotations

import html
import json
from typing import Any, Iterable

from assistant.history.records import Conversation, clean_text, now
from assistant.stats_format import format_stats_line

FORMAT = "hearthchat-history"
VERSION = 2  # 2 added comparisons and prompt sets

_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}
_STATUS_NOTES = {
    "streaming": "still being written when this was exported",
    "stopped": "stopped before the end",
    "interrupted": "cut off: the app closed while this reply was being written",
    "error": "failed",
}


# -- JSON ----------------------------------------------------------------------------

def conversation_to_json(conv: Conversation) -> dict[str, Any]:
    uids: dict[int | None, str] = {m.id: m.uid for m in conv.messages}
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
                **({"thinking": m.thinking} if m.thinking else {}),
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


def to_json(conversations: Iterable[Conversation], comparisons: list[dict[str, Any]] | None = None,
            prompt_sets: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """The export document; `comparisons` and `prompt_sets` already in their JSON form (comparisons.py)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": now(),
        "conversations": [conversation_to_json(c) for c in conversations],
    }
    if comparisons is not None:
        doc["comparisons"] = comparisons
    if prompt_sets is not None:
        doc["prompt_sets"] = prompt_sets
    return doc


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
        out += [f"### {_ROLE_HEADINGS.get(m.role, m.role.title())}", ""]
        if m.thinking:
            out += _thinking_details(m.thinking, m.stats)
        out += [m.content.rstrip("\n") or "*(empty)*", ""]
        note = _STATUS_NOTES.get(m.status)
        if note:
            out += [f"*({note}{': ' + _one_line(m.error) if m.error else ''})*", ""]
        line = format_stats_line(m.stats)
        if line:
            out += [f"*{line}*", ""]
    return "\n".join(out)


def _thinking_details(thinking: str, stats: dict[str, Any] | None) -> list[str]:
    """The thinking as a folded block (GitHub and most Markdown viewers render <details>)."""
    summary = "Thinking"
    if isinstance(stats, dict) and stats.get("thinking_tokens"):
        seconds = (stats.get("thinking_ms") or 0) / 1000
        summary = f"Thought for {seconds:.1f} s · {int(stats['thinking_tokens'])} tokens"
    body = html.escape(thinking.strip())  # thinking may hold "</details>" or markup: shown as text
    return ["<details>", f"<summary>{summary}</summary>", "", f"<pre>{body}</pre>", "", "</details>", ""]


def to_markdown(conversations: Iterable[Conversation]) -> str:
    return clean_text("\n---\n\n".join(conversation_to_markdown(c) for c in conversations))


def _one_line(text: str) -> str:
    return " ".join(text.split())
