"""Prompt lookup: drafts copied from the conversation itself (no second model).

When a reply quotes, edits or repeats what is already in the conversation (code
being changed, a passage being quoted, a list being continued) its next tokens
are often the tokens that followed the same few tokens earlier on. The index maps
every n-gram (n = 2..4) of the conversation to where it last occurred, so a
lookup is one dict access per n whatever the length of the conversation, and
adding a token is three.
"""

from __future__ import annotations

from collections.abc import Iterable

NGRAM_MIN, NGRAM_MAX = 2, 4  # one token matches too often to be worth a verify batch


class NgramIndex:
    def __init__(self, tokens: Iterable[int] = ()) -> None:
        self.tokens: list[int] = []
        self._next: dict[tuple[int, ...], int] = {}  # n-gram -> position of the token that followed it last
        for token in tokens:
            self.append(token)

    def append(self, token: int) -> None:
        t = self.tokens
        t.append(token)
        end = len(t) - 1  # the new token follows the n-grams that end just before it
        for n in range(NGRAM_MIN, NGRAM_MAX + 1):
            if end - n < 0:
                break
            self._next[tuple(t[end - n:end])] = end

    def extend(self, tokens: Iterable[int]) -> None:
        for token in tokens:
            self.append(token)

    def draft(self, k: int) -> list[int]:
        """Up to `k` tokens that followed the longest earlier occurrence of the sequence's last n-gram."""
        t = self.tokens
        for n in range(NGRAM_MAX, NGRAM_MIN - 1, -1):
            if len(t) < n:
                continue
            start = self._next.get(tuple(t[-n:]))
            if start is not None:
                return t[start:start + k]
        return []
