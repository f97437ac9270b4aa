"""Fit a conversation into the context window under the user's chosen policy.

Nothing is ever cut silently: the result says which policy acted and how many
messages it dropped, and that goes into the reply's statistics.

Two steps, both bounded however large the conversation:

- `prefit` (in the app, before the runner sees anything) counts without a tokenizer: no token
  stands for more characters than the vocabulary's longest token, so characters / longest is a
  lower bound on a message's tokens (and a message with any text takes at least one). What
  certainly cannot fit is dropped (or, under the "stop" policy, refused with its figures) before
  it costs a render, a tokenization or the runner's memory: a 100 MB message or 300,000 messages
  are one sentence, not a crash blamed on the model.
- `fit_conversation` (in the runner) then counts exactly, dropping the oldest turns by binary
  search: a logarithmic number of renders, not one per dropped message.

Pure Python, no llama.cpp: the app imports it too.
"""

from collections.abc import Callable
from dataclasses import dataclass, field

from assistant.engine.settings import ContextPolicy


@dataclass
class FittedPrompt:
    tokens: list[int]
    stop: list[str]
    messages: list[dict]  # the messages that were rendered
    fits: bool
    info: dict = field(default_factory=dict)  # goes into stats["context"]
    text: str = ""  # the rendered prompt (where a reply's thinking starts is read from its end)
    add_bos: bool = True  # whether its tokens began with BOS added by the tokenizer


def reply_reserve(max_tokens: int | None, n_ctx: int) -> int:
    """Tokens kept free for the reply when older turns are dropped."""
    return min(max_tokens or 256, n_ctx // 4)


def prompt_limit(policy: ContextPolicy, n_ctx: int, reserve: int) -> int:
    # Under STOP the prompt only has to fit; the reply then stops at the limit.
    return n_ctx - 1 if policy is ContextPolicy.STOP else max(1, n_ctx - reserve)


def _droppable(messages: list[dict]) -> list[int]:
    """Positions that DROP_OLDEST may drop, oldest first: every message but the system prompt and the last."""
    return [i for i, m in enumerate(messages[:-1]) if m["role"] != "system"]


def _without_first(messages: list[dict], droppable: list[int], k: int) -> tuple[list[dict], int]:
    """`messages` without the oldest `k` droppable ones, and without a reply left at the front (templates
    expect a user turn first); returns them and how many were dropped."""
    gone = set(droppable[:k])
    if k < len(droppable) and messages[droppable[k]]["role"] == "assistant":
        gone.add(droppable[k])
    return [m for i, m in enumerate(messages) if i not in gone], len(gone)


def fit_conversation(messages, *, render, tokenize, n_ctx: int, policy: ContextPolicy,
                     reply_reserve: int) -> FittedPrompt:
    """render(messages) -> RenderedPrompt; tokenize(text, add_bos) -> tokens."""

    def build(msgs):
        rendered = render(msgs)
        return tokenize(rendered.text, rendered.add_bos), rendered.stop, rendered

    tokens, stop, rendered = build(messages)
    info = {"policy": policy.value, "n_ctx": n_ctx, "dropped_messages": 0, "applied": False}
    limit = prompt_limit(policy, n_ctx, reply_reserve)
    kept = list(messages)
    dropped = 0
    if policy is ContextPolicy.DROP_OLDEST and len(tokens) > limit:
        droppable = _droppable(messages)
        built: dict[int, tuple] = {}

        def attempt(k: int) -> bool:
            msgs, n = _without_first(messages, droppable, k)
            built[k] = (msgs, n, *build(msgs))
            return len(built[k][2]) <= limit

        # The fewest oldest turns to drop: dropping more never makes the prompt longer, so search.
        lo, hi = 1, len(droppable)
        if hi >= 1 and attempt(hi):
            while lo < hi:
                mid = (lo + hi) // 2
                if attempt(mid):
                    hi = mid
                else:
                    lo = mid + 1
        if droppable:
            kept, dropped, tokens, stop, rendered = built[hi]
    fits = len(tokens) <= n_ctx - 1
    info.update(dropped_messages=dropped, applied=dropped > 0 or not fits, prompt_tokens=len(tokens))
    if not fits:
        info["message"] = (
            f"The conversation needs {len(tokens)} tokens but the context holds {n_ctx}"
            + ("; even the last message alone does not fit." if dropped else ".")
            + " Start a new chat, raise the context length, or choose the 'drop oldest turns' policy."
        )
    elif dropped:
        info["message"] = f"Dropped the {dropped} oldest messages to fit the context of {n_ctx} tokens."
    return FittedPrompt(tokens=tokens, stop=stop, messages=kept, fits=fits, info=info, text=rendered.text,
                        add_bos=rendered.add_bos)


# --- Before the runner: a bound that needs no tokenizer ---------------------------------------------------


def least_tokens(text: str, longest_token: int) -> int:
    """The fewest tokens `text` can take: no token stands for more than `longest_token` characters (a message
    with any text takes at least one, which `prefit` adds: 300,000 one-word messages cannot fit 4,096)."""
    return -(-len(text) // max(1, longest_token)) if text else 0


@dataclass
class Prefit:
    messages: list[dict]  # what may go to the runner: the rest certainly cannot fit
    dropped: int  # messages dropped here (the runner may drop more, counting exactly)
    at_least: int  # tokens the kept messages take at the least
    refusal: dict | None = None  # the context record when nothing that could fit remains


def prefit(messages: list[dict], *, n_ctx: int, policy: ContextPolicy, reserve: int,
           longest_token: int, extra: int = 0, count: Callable[[str, int], int] = least_tokens) -> Prefit:
    """Drop (DROP_OLDEST) or refuse (STOP) what certainly cannot fit, counting characters only; `extra`:
    tokens the prompt takes besides the messages (a reply being continued)."""
    costs = [max(1, count(str(m.get("content") or ""), longest_token)) if m.get("content") else 0
             for m in messages]
    total = sum(costs) + extra
    limit = prompt_limit(policy, n_ctx, reserve)
    if total <= limit:
        return Prefit(list(messages), 0, total)
    if policy is ContextPolicy.STOP or not messages:
        return Prefit([], 0, total, _refusal(policy, n_ctx, total, dropped=0, what="The conversation needs"))
    # The shortest prefix of droppable turns whose removal leaves a bound within the limit.
    droppable = _droppable(messages)
    left, k = total, 0
    while k < len(droppable) and left > limit:
        left -= costs[droppable[k]]
        k += 1
    kept, dropped = _without_first(messages, droppable, k)
    at_least = sum(max(1, count(str(m.get("content") or ""), longest_token)) if m.get("content") else 0
                   for m in kept) + extra
    if at_least > limit:
        what = ("The system prompt and the last message alone need" if any(m["role"] == "system" for m in kept)
                else "The last message alone needs")
        return Prefit([], dropped, at_least, _refusal(policy, n_ctx, at_least, dropped=dropped, what=what))
    return Prefit(kept, dropped, at_least)


def _refusal(policy: ContextPolicy, n_ctx: int, at_least: int, *, dropped: int, what: str) -> dict:
    fix = ("Start a new chat, raise the context length, or choose the 'drop oldest turns' policy."
           if policy is ContextPolicy.STOP else "Shorten it, or raise the context length.")
    said = f"{what} at least {at_least:,} tokens but the context holds {n_ctx:,}. {fix}"
    return {"policy": policy.value, "n_ctx": n_ctx, "dropped_messages": dropped, "applied": True,
            "prompt_tokens": at_least, "at_least": True, "counted": "characters", "message": said}
