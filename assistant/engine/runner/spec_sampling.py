"""Speculative sampling: the token distributions of a sampler chain, and the rule that keeps them.

With temperature above zero a drafted token cannot be checked by comparing it with
the target's own sample: that would throw away most good drafts. The rule of
Leviathan et al. (2023) and Chen et al. (2023) accepts a drafted token `d` with
probability min(1, p(d)/q(d)), where p is the target's distribution and q the
draft's; on rejection it samples from norm(max(0, p - q)). Every token that comes
out is then distributed exactly as p, whatever the draft proposed.

p and q must be the distributions the sampler chain really samples from, so
`chain_distribution` repeats llama.cpp's chain (llama-sampler.cpp) in numpy, in the
order `llama_model.Sampler` builds it: repetition penalty, top-k, top-p, min-p,
temperature, then softmax. It runs only while a draft is being checked: a reply
without drafting never reaches this module.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from assistant.engine.settings import GenerationSettings

_TOP_P_FIRST_TRY = 256  # as llama.cpp's top-p: most of the mass sits in the first few hundred tokens


@dataclass
class Distribution:
    """A sparse distribution over token ids: `ids` with `probs` (summing to 1), most likely first."""

    ids: np.ndarray
    probs: np.ndarray

    def prob(self, token: int) -> float:
        where = np.flatnonzero(self.ids == token)
        return float(self.probs[where[0]]) if where.size else 0.0

    def sample(self, rng: np.random.Generator) -> int:
        i = int(np.searchsorted(np.cumsum(self.probs), rng.random() * float(self.probs.sum()), side="right"))
        return int(self.ids[min(i, self.ids.size - 1)])

    def dense(self, n_vocab: int) -> np.ndarray:
        out = np.zeros(n_vocab, dtype=np.float64)
        inside = self.ids < n_vocab
        out[self.ids[inside]] = self.probs[inside]
        return out


def point_mass(token: int) -> Distribution:
    """What prompt lookup 'samples' from: its drafted token, with certainty."""
    return Distribution(np.array([token], dtype=np.int64), np.array([1.0]))


def chain_distribution(logits: np.ndarray, s: GenerationSettings, recent: Sequence[int] = ()) -> Distribution:
    """The distribution llama.cpp's chain for `s` samples from, given one position's logits.

    `recent`: the tokens the chain has accepted so far in this reply (the repetition penalty's window).
    Needs temperature above zero (greedy has no distribution to keep: its drafts are compared).
    """
    x = np.array(logits, dtype=np.float32)  # a copy: the penalty writes into it
    if s.repeat_penalty != 1.0 and recent:
        window = np.unique(np.asarray(recent[-s.repeat_last_n:] if s.repeat_last_n > 0 else recent, dtype=np.int64))
        window = window[window < x.size]
        seen = x[window]
        x[window] = np.where(seen <= 0, seen * s.repeat_penalty, seen / s.repeat_penalty)
    if s.top_k > 0 and s.top_k < x.size:
        ids = np.argpartition(-x, s.top_k - 1)[: s.top_k]
        ids = ids[np.argsort(-x[ids], kind="stable")]
        lse = _logsumexp(x[ids])
    elif s.top_p < 1.0:
        ids, lse = _top_p_candidates(x, s.top_p)
    else:
        ids = np.argsort(-x, kind="stable")
        lse = _logsumexp(x)
    z = x[ids].astype(np.float64)
    if s.top_p < 1.0:
        cum = np.cumsum(np.exp(z - lse))  # the softmax over every candidate, as llama.cpp's top-p takes it
        keep = int(np.searchsorted(cum, s.top_p, side="left")) + 1  # the first index where cum >= top_p
        ids, z = ids[:keep], z[:keep]
    if s.min_p > 0:
        keep_mask = z >= z[0] + np.log(s.min_p)
        keep_mask[0] = True
        ids, z = ids[keep_mask], z[keep_mask]
    probs = _softmax(z / s.temperature)
    return Distribution(ids.astype(np.int64), probs)


def _top_p_candidates(x: np.ndarray, top_p: float) -> tuple[np.ndarray, float]:
    """The most likely tokens, enough of them to hold `top_p` of the mass, sorted (a full sort only if
    needed), and the log of the whole vocabulary's mass."""
    lse = _logsumexp(x)
    if x.size > 4 * _TOP_P_FIRST_TRY:
        first = np.argpartition(-x, _TOP_P_FIRST_TRY - 1)[:_TOP_P_FIRST_TRY]
        first = first[np.argsort(-x[first], kind="stable")]
        if np.exp(x[first].astype(np.float64) - lse).sum() >= top_p:
            return first, lse
    return np.argsort(-x, kind="stable"), lse


def _logsumexp(z: np.ndarray) -> float:
    z = z.astype(np.float64)
    top = float(z.max())
    return top + float(np.log(np.exp(z - top).sum()))


def _softmax(z: np.ndarray) -> np.ndarray:
    e = np.exp(z - z.max())
    return e / e.sum()


def accept_or_correct(p: Distribution, q: Distribution, drafted: int, rng: np.random.Generator,
                      n_vocab: int) -> tuple[bool, int]:
    """The speculative-sampling rule for one drafted token: (True, drafted) when kept, else (False, a token
    drawn from norm(max(0, p - q))), so the token that comes out is distributed as p."""
    p_d, q_d = p.prob(drafted), q.prob(drafted)
    if q_d <= 0.0:  # outside the draft's own support (rounding): judge it as a certain proposal
        q, q_d = point_mass(drafted), 1.0
    if rng.random() < min(1.0, p_d / q_d):
        return True, drafted
    residual = np.maximum(p.dense(n_vocab) - q.dense(n_vocab), 0.0)
    total = residual.sum()
    if total <= 0.0:  # p == q: a rejection cannot happen, but rounding may say so
        return False, p.sample(rng)
    ids = np.flatnonzero(residual)
    return False, Distribution(ids, residual[ids] / total).sample(rng)
