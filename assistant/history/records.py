"""The records the history store hands out: plain dataclasses, no database handle.

The chat loop and the window read these; they never write through them. Writes go
through `HistoryStore` (or a `StreamingReply`), so every write is one transaction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

ROLES = ("system", "user", "assistant", "tool")
# The life of a message. Only `streaming` is not final: a reply being written.
STATUSES = ("complete", "streaming", "stopped", "interrupted", "error")

UNTITLED = "New conversation"
_TITLE_CHARS = 60


def now() -> str:
    """UTC ISO 8601 to the microsecond: sorts as text (and in order of events), round-trips through JSON."""
    return datetime.now(timezone.utc).isoformat(timespec="microseconds")


def clean_text(text: str) -> str:
    """Text SQLite can store as UTF-8: lone surrogates (a mis-decoded terminal, a JSON
    "\\ud800" escape) become U+FFFD. Everything else, NUL included, is kept as it is."""
    if not isinstance(text, str):
        raise TypeError(f"text must be str, not {type(text).__name__}")
    try:
        text.encode("utf-8")
        return text
    except UnicodeEncodeError:
        # Through UTF-16: a split pair joins into its character, a lone half becomes one U+FFFD.
        return text.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")


def clean_optional(text: str | None) -> str | None:
    return None if text is None else clean_text(text)


def title_from(text: str) -> str:
    """A title from a first message: its first line-ish, cut at a word near 60 chars."""
    words = re.sub(r"\s+", " ", text).strip()
    if len(words) <= _TITLE_CHARS:
        return words or UNTITLED
    cut = words[:_TITLE_CHARS]
    if " " in cut[_TITLE_CHARS // 2 :]:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip(" ,.;:") + "…"


@dataclass(frozen=True)
class ImageRef:
    """An image a message shows: the file is the history's, named by its SHA-256 (history/images.py)."""

    sha256: str
    mime: str
    name: str | None = None
    width: int | None = None
    height: int | None = None
    size_bytes: int | None = None


@dataclass
class Message:
    id: int
    conversation_id: int
    parent_id: int | None
    role: str
    content: str
    status: str
    created_at: str
    updated_at: str
    stats: dict[str, Any] | None = None
    error: str | None = None
    uid: str = ""
    images: list[ImageRef] = field(default_factory=list)
    thinking: str | None = None  # a reasoning model's thinking before this reply (content is the answer)


@dataclass
class ConversationSummary:
    """One row of the conversation list: enough to draw it, no messages."""

    id: int
    title: str | None
    model: str | None
    created_at: str
    updated_at: str
    message_count: int
    source: str | None = None  # "api" for a conversation the local API server saved (settings' "source")

    @property
    def display_title(self) -> str:
        return self.title or UNTITLED


@dataclass
class Conversation:
    id: int
    uid: str
    title: str | None
    model: str | None
    system_prompt: str | None
    settings: dict[str, Any]
    created_at: str
    updated_at: str
    current_leaf_id: int | None
    # Every message of every branch, oldest first; `thread` is the one shown.
    messages: list[Message] = field(default_factory=list)

    @property
    def display_title(self) -> str:
        return self.title or UNTITLED

    def message(self, message_id: int) -> Message:
        for m in self.messages:
            if m.id == message_id:
                return m
        raise KeyError(message_id)

    @property
    def thread(self) -> list[Message]:
        """The visible branch: root to the current leaf."""
        return path_to(self.messages, self.current_leaf_id)

    def siblings(self, message_id: int) -> list[Message]:
        """The versions of a message (itself included), oldest first: the "2/3" arrows."""
        parent = self.message(message_id).parent_id
        return [m for m in self.messages if m.parent_id == parent]

    def branch_count(self) -> int:
        """How many leaves the tree has: 1 when nothing was regenerated or edited."""
        parents = {m.parent_id for m in self.messages}
        return sum(1 for m in self.messages if m.id not in parents) or 1

    def chat_messages(self) -> list[dict[str, str]]:
        """The visible thread as the engine's `[{role, content}]`, system prompt first."""
        out = []
        if self.system_prompt:
            out.append({"role": "system", "content": self.system_prompt})
        out.extend({"role": m.role, "content": m.content} for m in self.thread)
        return out


@dataclass
class SearchHit:
    conversation_id: int
    message_id: int | None  # None: the title matched
    title: str | None
    role: str | None
    snippet: str
    rank: float
    in_thinking: bool = False  # the match is in the reply's thinking, not its answer

    @property
    def display_title(self) -> str:
        return self.title or UNTITLED


@dataclass
class ImportResult:
    imported: list[int] = field(default_factory=list)  # new conversation ids
    skipped: list[str] = field(default_factory=list)  # uids already in the store
    comparisons: list[int] = field(default_factory=list)  # new comparison ids
    comparisons_skipped: list[str] = field(default_factory=list)  # comparison uids already in the store
    prompt_sets: list[str] = field(default_factory=list)  # prompt sets added, by the name they now have


def path_to(messages: list[Message], leaf_id: int | None) -> list[Message]:
    """Root-to-leaf path through the tree; [] for no leaf."""
    by_id = {m.id: m for m in messages}
    path: list[Message] = []
    seen: set[int] = set()
    node = by_id.get(leaf_id) if leaf_id is not None else None
    while node is not None and node.id not in seen:  # `seen` guards a damaged tree
        seen.add(node.id)
        path.append(node)
        node = by_id.get(node.parent_id) if node.parent_id is not None else None
    path.reverse()
    return path


def latest_leaf(messages: list[Message], start_id: int) -> int:
    """Follow the newest child from `start_id` down to a leaf: what a branch switch shows."""
    children: dict[int | None, list[Message]] = {}
    for m in messages:
        children.setdefault(m.parent_id, []).append(m)
    node = start_id
    seen = set()
    while children.get(node) and node not in seen:
        seen.add(node)
        node = max(children[node], key=lambda m: m.id).id
    return node
