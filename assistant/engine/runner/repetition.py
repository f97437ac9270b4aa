"""A guard against degenerate loops: the same n-gram repeating for many tokens.

Small and base models fall into loops ("| | | | …", one sentence again and
again) and would run until the context is full. A reply is judged looping when
its last tokens are one short pattern of `period` tokens repeated back to back,
covering at least `MIN_SPAN` tokens and at least `MIN_REPEATS` copies of the
pattern, or when its last `LOW_VARIETY_SPAN` tokens use no more than
`LOW_VARIETY_TOKENS` different tokens (the same few tokens shuffled, "a b a c b a b"
without end, is a loop too). Legitimate text rarely does either that long; a user
who wants it anyway switches the guard off.

The check runs every CHECK_EVERY tokens (list comparisons in C, not a Python loop
per token), so a loop is caught at most that many tokens late.
"""

from __future__ import annotations

MAX_PERIOD = 64  # longest repeating pattern looked for, in tokens
MIN_SPAN = 96  # tokens the repetition must cover
MIN_REPEATS = 4  # copies of the pattern, for long patterns
CHECK_EVERY = 16
LOW_VARIETY_SPAN = 192
LOW_VARIETY_TOKENS = 8


class RepetitionGuard:
    def __init__(self, max_period: int = MAX_PERIOD, min_span: int = MIN_SPAN, min_repeats: int = MIN_REPEATS,
                 check_every: int = CHECK_EVERY):
        self.max_period = max_period
        self.min_span = min_span
        self.min_repeats = min_repeats
        self.check_every = check_every
        self.window = max(min_span, min_repeats * max_period, LOW_VARIETY_SPAN)  # the most a check needs to see
        self.tokens: list[int] = []
        self.count = 0

    def repeating(self, token: int) -> bool:
        """Add the newest token; True when the reply has been looping."""
        self.tokens.append(token)
        self.count += 1
        if self.count % self.check_every:
            return False
        if len(self.tokens) > self.window:
            del self.tokens[: len(self.tokens) - self.window]
        tail, n = self.tokens, len(self.tokens)
        if n >= LOW_VARIETY_SPAN and len(set(tail[n - LOW_VARIETY_SPAN:])) <= LOW_VARIETY_TOKENS:
            return True
        for period in range(1, min(self.max_period, n // 2) + 1):
            need = max(self.min_span, self.min_repeats * period)
            # The last `need` tokens repeat with this period: each equals the one `period` before it.
            if n >= need and tail[-1] == tail[-1 - period] and tail[n - need + period:] == tail[n - need:n - period]:
                return True
        return False
