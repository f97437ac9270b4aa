"""Context checkpoints: the part of a model's cache that cannot be rolled back, saved at a few points.

Two kinds of memory only ever move forward:
- sliding-window layers with window-sized caches (Gemma 2/3/4, gpt-oss, ...: llama-server's default, and
  this runner's) keep only the last `n_swa` positions, so after a few more tokens the cells needed to
  resume from an earlier position are gone;
- recurrent and hybrid models (Qwen3.5, LFM2, Granite 4 H, Mamba) keep one state per sequence that has
  folded every token in; it cannot be taken back to an earlier position at all.

So, as llama-server does (`--ctx-checkpoints`), the runner saves that part of the state
(`LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY`: the sliding-window cells or the recurrent state, not the
full-attention cache, which can be cut back at any position) while it evaluates a prompt, a few tokens
before the prompt's end. A later prompt that shares a prefix restores the newest checkpoint inside that
prefix, cuts the full-attention cache back to the same position, and evaluates only the rest.

Each checkpoint is as large as that partial state (for Gemma 3 270M: 512 cells of 15 layers, 7.5 MiB);
at most `limit` are kept, and at most `max_bytes` in all (the app counts that in the runner's memory
ceiling), the oldest dropped first; their bytes are reported in every reply's record.
"""

from __future__ import annotations

import ctypes
import logging
import mmap
from dataclasses import dataclass

import llama_cpp.llama_cpp as C

log = logging.getLogger(__name__)

PARTIAL = C.LLAMA_STATE_SEQ_FLAGS_PARTIAL_ONLY
SEQ = 0  # the runner's only sequence
DEFAULT_LIMIT = 3  # llama-server keeps up to 32; a chat needs the newest prompt's (and one edit back)
# llama-server's offsets: a checkpoint this many tokens before the prompt's end, so that a regenerated
# reply (the same prompt, whose last token must be evaluated again for its logits) or a template that
# renders the last turn's opening differently in the history still restores one close to the end.
END_OFFSET = 4


@dataclass
class Checkpoint:
    n_tokens: int  # the state after this many tokens of the cache
    data: ctypes.Array

    @property
    def size(self) -> int:
        return len(self.data)


class Checkpoints:
    """The saved partial states of one context, oldest first (their `n_tokens` ascending)."""

    def __init__(self, ctx, limit: int = DEFAULT_LIMIT, max_bytes: int | None = None) -> None:
        self.ctx = ctx
        self.limit = limit
        self.max_bytes = max_bytes
        self.saved: list[Checkpoint] = []

    @property
    def bytes(self) -> int:
        return sum(c.size for c in self.saved)

    def points(self, n_start: int, n_prompt: int, n_ubatch: int) -> set[int]:
        """Where to save while a prompt is evaluated from `n_start`: END_OFFSET and one micro-batch more
        before its end (llama-server's choice), each only if it lies among the tokens evaluated now."""
        if self.limit <= 0:
            return set()
        return {p for p in (n_prompt - END_OFFSET - n_ubatch, n_prompt - END_OFFSET) if n_start < p < n_prompt}

    def save(self, n_tokens: int) -> None:
        """Save the partial state as it is now, after the cache's first `n_tokens` tokens."""
        size = C.llama_state_seq_get_size_ext(self.ctx, SEQ, PARTIAL)
        if size <= 0:
            return
        if self.max_bytes is not None and size > self.max_bytes:
            log.info("a checkpoint would take %d bytes, more than the %d allowed; none kept", size, self.max_bytes)
            return
        self.saved = [c for c in self.saved if c.n_tokens != n_tokens]
        while self.saved and (len(self.saved) >= self.limit
                              or (self.max_bytes is not None and self.bytes + size > self.max_bytes)):
            del self.saved[0]  # the oldest is the least likely to be needed again
        # Anonymous pages of their own: dropping a checkpoint gives its memory back to the system at once
        # (a malloc'ed block of this size would stay in the process's heap, and in its RSS).
        data = (ctypes.c_uint8 * size).from_buffer(mmap.mmap(-1, size))
        if C.llama_state_seq_get_data_ext(self.ctx, data, size, SEQ, PARTIAL) != size:
            log.warning("llama.cpp did not write a checkpoint at %d tokens; none kept", n_tokens)
            return
        self.saved.append(Checkpoint(n_tokens, data))

    def restore(self, n_max: int) -> int | None:
        """Put back the newest checkpoint at or before `n_max` tokens; its token count, or None if none
        lies there or llama.cpp refused it (the caller then starts from an empty cache)."""
        for c in reversed(self.saved):
            if c.n_tokens <= n_max:
                if C.llama_state_seq_set_data_ext(self.ctx, c.data, c.size, SEQ, PARTIAL) != c.size:
                    log.warning("llama.cpp refused the checkpoint at %d tokens", c.n_tokens)
                    self.saved.remove(c)
                    return None
                return c.n_tokens
        return None

    def forget_after(self, n_tokens: int) -> None:
        """Drop the checkpoints past the first `n_tokens` tokens: the cache no longer holds what they followed."""
        if self.saved and self.saved[-1].n_tokens > n_tokens:
            self.saved = [c for c in self.saved if c.n_tokens <= n_tokens]

    def clear(self) -> None:
        self.saved.clear()

    def record(self) -> dict:
        return {"checkpoints": len(self.saved), "checkpoint_bytes": self.bytes, "max_checkpoints": self.limit,
                "max_checkpoint_bytes": self.max_bytes}
