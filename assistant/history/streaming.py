"""A reply that saves itself while it is being generated.

The chat loop feeds it text chunks; it writes the growing text at most every
`save_interval` seconds (0.5 s by default, so a save is never more than about a
second behind), marked `streaming` with this process's pid and start time. If the
process dies, the next `HistoryStore.open` finds the row, sees that its writer is
gone and marks it `interrupted`, keeping the text up to the last save. `finish`
writes the final text, status and stats record in one transaction.

A save that fails on the way (the disk is full, another process held the lock)
does not stop the reply: the text stays in memory, the next save tries again,
and what was saved before stays saved. Only `finish` reports the failure, with
its sentence, so the person knows the end of this reply was not kept.
"""

from __future__ import annotations

import logging
import time
from typing import Any, Protocol

from assistant.history.errors import HistoryError
from assistant.history.records import STATUSES, Message

log = logging.getLogger(__name__)


class ReplyWriter(Protocol):
    """What a streaming reply needs from the store (HistoryStore implements it)."""

    def _save_stream(self, message_id: int, content: str, thinking: str | None = None) -> None: ...

    def _finish_stream(self, message_id: int, content: str, status: str, stats: dict[str, Any] | None,
                       error: str | None, thinking: str | None = None) -> Message: ...


class StreamingReply:
    def __init__(self, store: ReplyWriter, message: Message, save_interval: float = 0.5):
        self.store = store
        self.message = message
        self.save_interval = save_interval
        self._parts: list[str] = []
        self._thinking: list[str] = []  # a reasoning model's thinking, saved beside the answer
        self._saved_chars = 0
        self._saved_thinking_chars = 0
        self._last_save = time.monotonic()
        self.finished = False
        # The last failed save along the way, if the next one has not succeeded since.
        self.save_error: HistoryError | None = None

    @property
    def id(self) -> int:
        return self.message.id

    @property
    def conversation_id(self) -> int:
        return self.message.conversation_id

    @property
    def content(self) -> str:
        if len(self._parts) > 1:  # join lazily, keep one string
            self._parts = ["".join(self._parts)]
        return self._parts[0] if self._parts else ""

    @property
    def thinking(self) -> str:
        if len(self._thinking) > 1:
            self._thinking = ["".join(self._thinking)]
        return self._thinking[0] if self._thinking else ""

    def append_thinking(self, text: str) -> None:
        """Add a chunk of the thinking; saved with the reply, as `append` saves the answer."""
        if self.finished:
            raise RuntimeError("this reply is already finished")
        if text:
            self._thinking.append(text)
        self._maybe_save()

    def append(self, text: str) -> None:
        """Add a chunk; saves when the last save is `save_interval` old."""
        if self.finished:
            raise RuntimeError("this reply is already finished")
        if text:
            self._parts.append(text)
        self._maybe_save()

    def _maybe_save(self) -> None:
        if time.monotonic() - self._last_save >= self.save_interval:
            try:
                self.flush()
            except HistoryError as exc:
                # Busy, disk full, read-only: the reply goes on; the next save retries.
                if self.save_error is None:
                    log.warning("saving reply %s failed; will retry: %s", self.id, exc)
                self.save_error = exc
                self._last_save = time.monotonic()

    def flush(self) -> None:
        """Save the text so far now (a window can call this from a timer)."""
        text, thinking = self.content, self.thinking
        grown = len(thinking) != self._saved_thinking_chars
        if len(text) != self._saved_chars or grown:
            if grown:
                self.store._save_stream(self.id, text, thinking)
            else:
                self.store._save_stream(self.id, text)
            self._saved_chars, self._saved_thinking_chars = len(text), len(thinking)
        self._last_save = time.monotonic()
        self.save_error = None

    def finish(self, status: str = "complete", stats: dict[str, Any] | None = None,
               error: str | None = None) -> Message:
        """Final text, status and stats in one transaction. Returns the saved message."""
        if status not in STATUSES or status == "streaming":
            raise ValueError(f"a finished reply cannot have status {status!r}")
        if self.finished:
            raise RuntimeError("this reply is already finished")
        if self.thinking:
            self.message = self.store._finish_stream(self.id, self.content, status, stats, error,
                                                     thinking=self.thinking.strip())
        else:
            self.message = self.store._finish_stream(self.id, self.content, status, stats, error)
        self.finished = True
        return self.message

    def stop(self, stats: dict[str, Any] | None = None) -> Message:
        """The user pressed stop: keep what was generated, marked `stopped`."""
        return self.finish("stopped", stats)

    def fail(self, error: BaseException | str, stats: dict[str, Any] | None = None) -> Message:
        return self.finish("error", stats, error=str(error) or type(error).__name__)

    def __enter__(self) -> StreamingReply:
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        # A block that ends without finish(): Ctrl-C is a stop, an exception an error.
        if self.finished:
            return
        if exc_type is None:
            self.finish("complete")
        elif issubclass(exc_type, KeyboardInterrupt):
            self.finish("stopped")
        else:
            self.fail(exc)
