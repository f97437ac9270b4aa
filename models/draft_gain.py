"""What a draft model should gain a target, before either is loaded (speculative decoding).

A round drafts k tokens with the draft (k draft steps) and checks them in one batch of k+1
on the target. With a per-token acceptance rate a it yields E(a, k) tokens; each step's cost
follows the bytes it reads per token (generation is bound by memory bandwidth), and the
verify batch costs a plain step plus `beta` of one per extra token:

    speed-up(a, k) = E(a, k) / (k * c + 1 + beta * k),   c = draft bytes / target bytes per token

The runner measures the real costs as a reply goes (assistant/engine/runner/draft_control.py,
which uses the same formula); this is the estimate the window shows when it offers a draft.
"""

from __future__ import annotations

TYPICAL_ACCEPTANCE = 0.7  # same-family pairs on chat text (llama.cpp #5877, Qwen3 0.6B/1.7B for 8B): 0.6-0.8
TYPICAL_BETA = 0.15


def expected_tokens(a: float, k: int) -> float:
    """Tokens one round yields: the accepted drafts plus the target's own token at the end."""
    if a >= 1.0:
        return k + 1.0
    return (1.0 - a ** (k + 1)) / (1.0 - a)


def expected_speedup(draft_bytes: float, target_bytes: float, *, acceptance: float = TYPICAL_ACCEPTANCE,
                     beta: float = TYPICAL_BETA, draft_max: int = 8) -> tuple[float, int]:
    """(speed-up, best draft length) for a draft reading `draft_bytes` a token against a target reading
    `target_bytes`; a speed-up below 1 means the pair does not pay (drafting would pause itself)."""
    c = draft_bytes / target_bytes if target_bytes else 1.0
    best, best_k = 0.0, 1
    for k in range(1, max(1, draft_max) + 1):
        s = expected_tokens(acceptance, k) / (k * c + 1.0 + beta * k)
        if s > best:
            best, best_k = s, k
    return best, best_k
