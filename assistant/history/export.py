"""Markdown (to read) and JSON (complete, re-importable) exports; importing.py reads them back.

JSON layout, version 3 (version 2 is the same without messages' "images"; version 1 also without
"comparisons" and "prompt_sets", which comparisons.py describes; all are read back):

    {"format": "hearthchat-history", "version": 1, "exported_at": "...",
     "conversations": [{"id": uid, "title", "model", "system_prompt", "settings",
                        "created_at", "updated_at", "current_leaf": message uid | null,
                        "messages": [{"id": uid, "parent_id": uid | null, "role", "content",
                                      "status", "created_at", "updated_at", "error", "stats",
                                      "images": [{"sha256", "mime", "name", "width", "height", "size_bytes",
                                                  "data": base64 | "file": "NAME-images/SHA.png"}],
                                      "thinking" (a reasoning model's thinking; only when there is some)}]}],
     "comparisons": [...], "prompt_sets": [...]}

A message's images are embedded (base64 "data") or, the user's choice, files beside the
export ("file", a path relative to the export's folder): image_export.py writes those.

Ids in the file are the stable uids, not the local integer ids, so a file imported
into any history links up the same way, and importing it twice adds nothing.
"""

from __future__ import annotations

import html
import json
import base64
from collections.abc import Callable
from typing import Any, Iterable

from assistant.history.records import Conversation, ImageRef, clean_text, now
from assistant.stats_format import format_images_line, format_stats_line

FORMAT = "hearthchat-history"
VERSION = 3  # 2 added comparisons and prompt sets; 3 added messages' images

# How a message's image goes into JSON: given its ref, the extra fields ({"data": ...} or {"file": ...}).
ImageWriter = Callable[[ImageRef], dict[str, Any]]

_ROLE_HEADINGS = {"user": "You", "assistant": "Assistant", "system": "System", "tool": "Tool"}
_STATUS_NOTES = {
    "streaming": "still being written when this was exported",
    "stopped": "stopped before the end",
    "interrupted": "cut off: the app closed while this reply was being written",
    "error": "failed",
}


# -- JSON ----------------------------------------------------------------------------

def image_to_json(ref: ImageRef, extra: dict[str, Any]) -> dict[str, Any]:
    return {"sha256": ref.sha256, "mime": ref.mime, "name": ref.name, "width": ref.width, "height": ref.height,
            "size_bytes": ref.size_bytes, **extra}


def embedded(read: Callable[[ImageRef], bytes]) -> ImageWriter:
    """Images in the JSON itself, base64."""
    return lambda ref: {"data": base64.b64encode(read(ref)).decode("ascii")}


def conversation_to_json(conv: Conversation, images: ImageWriter | None = None) -> dict[str, Any]:
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
                **({"images": [image_to_json(r, images(r) if images else {}) for r in m.images]} if m.images else {}),
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
            prompt_sets: list[dict[str, Any]] | None = None, images: ImageWriter | None = None) -> dict[str, Any]:
    """The export document; `comparisons` and `prompt_sets` already in their JSON form (comparisons.py)."""
    doc = {
        "format": FORMAT,
        "version": VERSION,
        "exported_at": now(),
        "conversations": [conversation_to_json(c, images) for c in conversations],
    }
    if comparisons is not None:
        doc["comparisons"] = comparisons
    if prompt_sets is not None:
        doc["prompt_sets"] = prompt_sets
    return doc


# -- Markdown ------------------------------------------------------------------------

def conversation_to_markdown(conv: Conversation, image_links: dict[str, str] | None = None) -> str:
    """The branch on show, readable: each reply followed by its one-line stats. A message's images are
    Markdown images of the files `image_links` names (by SHA-256), else their names in brackets."""
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
        for ref in m.images:
            label = _one_line(ref.name or "image").replace("]", ")").replace("[", "(")
            link = (image_links or {}).get(ref.sha256)
            out += [f"![{label}]({link})" if link else f"*[image: {label}]*", ""]
        if m.thinking:
            out += _thinking_details(m.thinking, m.stats)
        out += [m.content.rstrip("\n") or ("" if m.images else "*(empty)*"), ""]
        note = _STATUS_NOTES.get(m.status)
        if note:
            out += [f"*({note}{': ' + _one_line(m.error) if m.error else ''})*", ""]
        line = format_stats_line(m.stats)
        if line:
            out += [f"*{line}*", ""]
        images_line = format_images_line(m.stats)
        if images_line:
            out += [f"*{images_line}*", ""]
    return "\n".join(out)


def _thinking_details(thinking: str, stats: dict[str, Any] | None) -> list[str]:
    """The thinking as a folded block (GitHub and most Markdown viewers render <details>)."""
    summary = "Thinking"
    if isinstance(stats, dict) and stats.get("thinking_tokens"):
        seconds = (stats.get("thinking_ms") or 0) / 1000
        summary = f"Thought for {seconds:.1f} s · {int(stats['thinking_tokens'])} tokens"
    body = html.escape(thinking.strip())  # thinking may hold "</details>" or markup: shown as text
    return ["<details>", f"<summary>{summary}</summary>", "", f"<pre>{body}</pre>", "", "</details>", ""]


def to_markdown(conversations: Iterable[Conversation], image_links: dict[str, str] | None = None) -> str:
    return clean_text("\n---\n\n".join(conversation_to_markdown(c, image_links) for c in conversations))


def _one_line(text: str) -> str:
    return " ".join(text.split())
