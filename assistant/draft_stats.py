"""What drafting does for each pair, from the history: acceptance, and the speed with and without it.

    pairs = draft_pairs(history.draft_history())
    pairs[0].sentence   # "qwen3-8b drafted by qwen3-0.6b: 71% of drafts accepted; 9.8 tokens/s against
                        #  6.1 without drafting (1.61×), over 12 and 30 replies"

A reply counts for a pair when a draft model or prompt lookup was loaded for it (even if it
drafted nothing: a paused draft is part of what drafting costs); the speed without is the same
model's replies with no draft. Replies during which other programs kept the CPU busy are left
out of both speeds, by the one busy rule (`assistant.busy.run_is_busy`).
"""

from __future__ import annotations

import os
import statistics
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from assistant.busy import run_is_busy

MIN_TOKENS = 16  # shorter replies say more about the first token than about the speed


@dataclass(frozen=True)
class DraftPair:
    model: str
    draft: str  # the draft model's name, or "prompt lookup"
    replies: int  # with this draft
    drafted: int
    accepted: int
    tps_with: float | None  # median generation speed of quiet replies with the draft
    tps_without: float | None  # of the same model's quiet replies without any
    replies_without: int

    @property
    def acceptance(self) -> float | None:
        return self.accepted / self.drafted if self.drafted else None

    @property
    def speedup(self) -> float | None:
        return self.tps_with / self.tps_without if self.tps_with and self.tps_without else None

    @property
    def sentence(self) -> str:
        parts = [f"{self.model} drafted by {self.draft}: "]
        parts.append(f"{100 * self.acceptance:.0f}% of drafts accepted" if self.acceptance is not None
                     else "nothing drafted yet")
        if self.tps_with and self.tps_without:
            parts.append(f"; {self.tps_with:.1f} tokens/s against {self.tps_without:.1f} without drafting "
                         f"({self.speedup:.2f}×), over {self.replies} and {self.replies_without} replies")
        elif self.tps_with:
            parts.append(f"; {self.tps_with:.1f} tokens/s over {self.replies} replies (none without drafting yet)")
        return "".join(parts)


def _speed(row: dict[str, Any]) -> float | None:
    tps, tokens = row.get("gen_tps"), row.get("completion_tokens")
    if not isinstance(tps, (int, float)) or tps <= 0 or not isinstance(tokens, int) or tokens < MIN_TOKENS:
        return None
    return float(tps)


def draft_pairs(rows: list[dict[str, Any]], n_cores: int | None = None) -> list[DraftPair]:
    """One DraftPair per model and draft seen in `rows` (the history's `draft_history()`), most used first."""
    cores = n_cores or os.cpu_count() or 1
    without: dict[str, list[float]] = defaultdict(list)
    with_draft: dict[tuple[str, str], list[dict[str, Any]]] = defaultdict(list)
    for row in rows:
        model, draft = row.get("model"), row.get("draft")
        if not isinstance(model, str):
            continue
        if not isinstance(draft, dict) or draft.get("error"):
            speed = _speed(row)
            if speed is not None and not run_is_busy(row.get("cpu_other_busy"), row.get("n_threads"), cores):
                without[model].append(speed)
            continue
        label = "prompt lookup" if draft.get("kind") == "lookup" else str(draft.get("model") or "a draft model")
        with_draft[(model, label)].append(row)
    pairs = []
    for (model, label), mine in with_draft.items():
        speeds = [s for r in mine if not run_is_busy(r.get("cpu_other_busy"), r.get("n_threads"), cores) and (s := _speed(r)) is not None]
        drafted = sum(int(r["draft"].get("drafted") or 0) for r in mine)
        accepted = sum(int(r["draft"].get("accepted") or 0) for r in mine)
        plain = without.get(model, [])
        pairs.append(DraftPair(model=model, draft=label, replies=len(mine), drafted=drafted, accepted=accepted,
                               tps_with=statistics.median(speeds) if speeds else None,
                               tps_without=statistics.median(plain) if plain else None,
                               replies_without=len(plain)))
    pairs.sort(key=lambda p: -p.replies)
    return pairs
