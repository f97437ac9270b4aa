"""Fit a conversation into the context window under the user's chosen policy.

Nothing is ever cut silently: the result says which policy acted and how many
messages it dropped, and that goes into the reply's statistics.
"""

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


def fit_conversation(messages, *, render, tokenize, n_ctx: int, policy: ContextPolicy,
                     reply_reserve: int) -> FittedPrompt:
    """render(messages) -> RenderedPrompt; tokenize(text, add_bos) -> tokens."""

    def build(msgs):
        rendered = render(msgs)
        built.update(text=rendered.text, add_bos=rendered.add_bos)
        return tokenize(rendered.text, rendered.add_bos), rendered.stop

    built: dict = {"text": "", "add_bos": True}
    tokens, stop = build(messages)
    info = {"policy": policy.value, "n_ctx": n_ctx, "dropped_messages": 0, "applied": False}
    # Under STOP the prompt only has to fit; the reply then stops at the limit.
    limit = n_ctx - 1 if policy is ContextPolicy.STOP else max(1, n_ctx - reply_reserve)
    kept = list(messages)
    dropped = 0
    if policy is ContextPolicy.DROP_OLDEST:
        while len(tokens) > limit:
            droppable = [i for i, m in enumerate(kept[:-1]) if m["role"] != "system"]
            if not droppable:
                break
            del kept[droppable[0]]
            dropped += 1
            # Templates expect a user turn first: drop a reply left at the front as well.
            first = next((i for i, m in enumerate(kept[:-1]) if m["role"] != "system"), None)
            if first is not None and kept[first]["role"] == "assistant":
                del kept[first]
                dropped += 1
            tokens, stop = build(kept)
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
    return FittedPrompt(tokens=tokens, stop=stop, messages=kept, fits=fits, info=info, text=built["text"],
                        add_bos=built["add_bos"])
