"""When drafting pays, how many tokens to draft, and when to pause it.

A round drafts k tokens (k draft steps; none for prompt lookup) and checks them in
one verify batch of k+1 tokens on the target. With a per-token acceptance rate a,
a round yields E(a, k) = (1 - a^(k+1)) / (1 - a) tokens. A plain step yields one
token for one target step t1. So drafting pays when

    E(a, k) * t1 > k * c_draft + c_verify(k)

All three costs are measured as the reply goes, on this machine and for this pair
(a draft step, a verify batch, a plain step), and the verify batch is modelled as
t1 * (1 + beta * k). The break-even acceptance is the `a` where both sides meet;
the acceptance so far (with a small prior, so two rounds decide nothing alone) is
compared with it after every round. Below it, drafting pauses; it probes again
after a pause that doubles each time, so a reply loses at most a few rounds.

The model can be wrong about a machine (a verify batch that costs more than its
parts, sampling, the stream), so the controller also watches what drafting really
yields: the wall time per emitted token over the last few rounds, against the same
figure for plain steps. A reply whose drafted tokens come no faster than plain ones
pauses whatever the model says.
"""

from __future__ import annotations

from dataclasses import dataclass

from models.draft_gain import expected_tokens

PRIOR_ACCEPTANCE = 0.6  # what a same-family pair typically reaches; weighs as PRIOR_WEIGHT tokens
PRIOR_WEIGHT = 2.0
PRIOR_BETA = 0.15  # a verify batch's extra cost per token, as a share of a plain step
MIN_ROUNDS = 2  # rounds before the acceptance so far may pause drafting
FIRST_PAUSE_TOKENS = 64  # a paused reply probes again after this many tokens, then twice as many...
REMEASURE_EVERY = 8  # replies: a pair whose measured costs say it can never pay measures them again this often
REALIZED_ROUNDS = 3  # rounds whose wall time per token may overrule the model
REALIZED_PLAIN_STEPS = 2  # plain steps measured before their wall time is trusted
_EMA = 0.3


@dataclass
class Costs:
    """Measured seconds: a plain target step, a draft step, and beta (verify batch = t1 * (1 + beta * k))."""

    t_plain: float | None = None
    t_draft_measured: float | None = None
    draft_ratio: float = 0.0  # before a draft step is measured: its cost as a share of t_plain (the size ratio)
    beta: float = PRIOR_BETA
    verify_batches: int = 0  # how many verify batches beta has learnt from
    plain_wall: float | None = None  # wall seconds per token of plain steps, the loop's own work included
    plain_walls: int = 0
    replies: int = 0

    @property
    def measured(self) -> bool:
        return self.t_plain is not None and self.verify_batches >= 2  # one batch may have met a busy moment

    @property
    def t_draft(self) -> float:
        if self.t_draft_measured is not None:
            return self.t_draft_measured
        return self.draft_ratio * (self.t_plain or 1.0)

    def round_cost(self, k: int) -> float:
        t1 = self.t_plain or 1.0
        return k * self.t_draft + t1 * (1.0 + self.beta * k)

    def speedup(self, a: float, k: int) -> float:
        return expected_tokens(a, k) * (self.t_plain or 1.0) / self.round_cost(k)

    def break_even(self, k: int) -> float:
        """The acceptance rate at which drafting k tokens a round is exactly as fast as not drafting."""
        if self.speedup(1.0, k) <= 1.0:
            return 1.0  # even a draft that is always right would not pay
        lo, hi = 0.0, 1.0
        for _ in range(30):
            mid = (lo + hi) / 2
            lo, hi = (lo, mid) if self.speedup(mid, k) >= 1.0 else (mid, hi)
        return hi


class DraftController:
    """Per reply: the acceptance so far, the next round's draft length, and the pause."""

    def __init__(self, draft_max: int, costs: Costs, *, drafts_cost: bool = True, adaptive: bool = True) -> None:
        self.draft_max = max(1, draft_max)
        self.adaptive = adaptive  # False: draft every round whatever it costs (measurements of the floor)
        self.costs = costs  # shared between the replies of one loaded pair: the machine's figures carry over
        self.drafts_cost = drafts_cost  # prompt lookup's draft costs nothing worth measuring
        self.accepted = 0
        self.drafted = 0
        self.rejections = 0  # rounds that ended on a rejected draft
        self.rounds = 0
        self.paused = False  # at any point in this reply
        self._pause_until = -1  # a token count
        self._pause_len = FIRST_PAUSE_TOKENS
        self._probing = False
        self._seen_accepted = 0.0  # the evidence the acceptance estimate weighs (halved at each pause)
        self._seen_rejections = 0.0
        costs.replies += 1
        if adaptive and costs.measured and costs.replies % REMEASURE_EVERY == 0:
            costs.verify_batches = 0  # the machine may have been busy when it was measured: a few rounds again
        self._drafted_wall = 0.0  # wall seconds and tokens of the rounds since the last pause
        self._drafted_tokens = 0
        self._drafted_rounds = 0

    # --- Measurements
    def plain_step(self, seconds: float) -> None:
        c = self.costs
        c.t_plain = seconds if c.t_plain is None else (1 - _EMA) * c.t_plain + _EMA * seconds

    def draft_steps(self, seconds: float, n_steps: int) -> None:
        if n_steps > 0 and self.drafts_cost:
            c = self.costs
            per = seconds / n_steps
            old = c.t_draft_measured
            c.t_draft_measured = per if old is None else (1 - _EMA) * old + _EMA * per

    def verified(self, k: int, n_accepted: int, seconds: float) -> None:
        """One round: k tokens drafted, n_accepted kept, the verify batch took `seconds`."""
        self.rounds += 1
        self.drafted += k
        self.accepted += n_accepted
        self._seen_accepted += n_accepted
        if n_accepted < k:
            self.rejections += 1
            self._seen_rejections += 1
        c = self.costs
        if c.t_plain and k > 0:
            beta = max(0.0, (seconds / c.t_plain - 1.0) / k)
            c.beta = beta if c.verify_batches == 0 else (1 - _EMA) * c.beta + _EMA * beta
            c.verify_batches += 1

    def realized(self, seconds: float, tokens: int, *, drafted: bool) -> None:
        """Wall time from one step to the next: a plain step's one token, or a round's verified tokens."""
        if tokens <= 0 or seconds <= 0:
            return
        if drafted:
            self._drafted_wall += seconds
            self._drafted_tokens += tokens
            self._drafted_rounds += 1
            return
        c = self.costs
        per = seconds / tokens
        c.plain_wall = per if c.plain_wall is None else (1 - _EMA) * c.plain_wall + _EMA * per
        c.plain_walls += 1

    def drafting_loses(self) -> bool:
        """Measured, not modelled: the recent rounds yielded tokens no faster than plain steps do."""
        c = self.costs
        if self._drafted_rounds < REALIZED_ROUNDS or c.plain_wall is None or c.plain_walls < REALIZED_PLAIN_STEPS:
            return False
        return self._drafted_wall / self._drafted_tokens >= c.plain_wall

    # --- Decisions
    @property
    def acceptance(self) -> float:
        """The per-token acceptance rate so far (geometric: accepted over accepted plus rejections)."""
        seen = self._seen_accepted + self._seen_rejections
        return (self._seen_accepted + PRIOR_ACCEPTANCE * PRIOR_WEIGHT) / (seen + PRIOR_WEIGHT)

    def best_k(self, a: float, limit: int) -> tuple[int, float]:
        best, gain = 1, 0.0
        for k in range(1, max(1, min(limit, self.draft_max)) + 1):
            s = self.costs.speedup(a, k)
            if s > gain:
                best, gain = k, s
        return best, gain

    def next_k(self, n_emitted: int, limit: int) -> int:
        """How many tokens to draft now (0: decode plainly). `limit`: the most the context and the
        length limit leave room for."""
        if limit < 1 or self.costs.t_plain is None:  # the first step of a reply measures a plain step
            return 0
        if not self.adaptive:
            return min(limit, self.draft_max)
        if n_emitted < self._pause_until:
            return 0
        k, gain = self.best_k(self.acceptance, limit)
        if self._probing:  # back from a pause: one round to look again, whatever the past says
            self._probing = False
            return k
        if self.costs.measured and self.costs.speedup(1.0, k) < 1.0:
            # Even drafts that are always kept would lose on this machine: no acceptance can change that, so the
            # reply does without drafting and does not probe again (later replies of the pair neither, until
            # REMEASURE_EVERY replies have gone by).
            self._pause(n_emitted)
            self._pause_until = 1 << 62
            return 0
        if (gain < 1.0 and self.rounds >= MIN_ROUNDS) or self.drafting_loses():
            self._pause(n_emitted)
            return 0
        return k

    def stop(self) -> None:
        """No more drafting in this reply (the draft itself failed)."""
        self.paused = True
        self._pause_until = 1 << 62

    def _pause(self, n_emitted: int) -> None:
        self.paused = True
        self._pause_until = n_emitted + self._pause_len
        self._pause_len *= 2
        self._probing = True
        # The evidence that led here counts half when probing again: recent rounds weigh more, but one
        # lucky round does not undo a pause alone.
        self._seen_accepted /= 2
        self._seen_rejections /= 2
        self._drafted_wall, self._drafted_tokens, self._drafted_rounds = 0.0, 0, 0

    def break_even(self) -> float:
        return self.costs.break_even(self.best_k(self.acceptance, self.draft_max)[0])
