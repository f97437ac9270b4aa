"""A guard against degenerate loops: the same n-gram repeating for many tokens.

Small and base models fall into loops ("| | | | …", one sentence again and
again) and would run until the context is full. A reply is judged looping when
its last tokens are one short pattern of `period` tokens repeated back to back,
covering at least `MIN_SPAN` tokens and at least `MIN_REPEATS` copies of the
pattern. Legitimate text rarely repeats a 1 to 64 token pattern that long; a
user who wants it anyway switches the guard off.
"""

from __future__ import annotations

MAX_PERIOD = 64  # longest repeating pattern looked for, in tokens
MIN_SPAN = 96  # tokens the repetition must cover
MIN_REPEATS = 4  # copies of the pattern, for long patterns


class RepetitionGuard:
    def __init__(self, max_period: int = MAX_PERIOD, min_span: int = MIN_SPAN, min_repeats: int = MIN_REPEATS):
        self.max_period = max_period
        self.min_span = min_span
        self.min_repeats = min_repeats
        self.tokens: list[int] = []
        # run[p]: how many tokens in a row have equalled the token p places before them
        self.run = [0] * (max_period + 1)

    def repeating(self, token: int) -> bool:
        """Add the newest token; True when the reply has been looping."""
        tokens, run = self.tokens, self.run
        tokens.append(token)
        n = len(tokens)
        looping = False
        for p in range(1, min(self.max_period, n - 1) + 1):
            if tokens[n - 1 - p] == token:
                run[p] += 1
                # run[p] matching tokens plus the first copy of the pattern are covered.
                if run[p] + p >= max(self.min_span, self.min_repeats * p):
                    looping = True
            else:
                run[p] = 0
        if n > 4 * self.min_span + self.max_period:  # keep the list short; only the tail matters
            del tokens[: n - (self.max_period + 1)]
        return looping
