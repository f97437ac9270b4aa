"""How a reply's thinking settings (on/off, effort, budget) reach a model, whatever its family.

- **On / off**: a template that reads `enable_thinking` (Qwen3, Qwen3.5, SmolLM3, Gemma 4) gets it;
  one that looks for `/no_think` in the system message (SmolLM3's older form, Nemotron) gets that;
  any other thinking model switched off gets an empty thinking block at the end of its generation
  prompt, so it starts on the answer (`thinking.close_block`).
- **Effort**: gpt-oss's template reads `reasoning_effort` ("Reasoning: low" in its system message);
  for every other family an effort is a thinking budget (`EFFORT_BUDGETS`).
- **Budget**: the runner counts thinking tokens and, at the budget, writes the format's own closing
  delimiter into the context (`thinking.CLOSING`), so the model goes on to answer.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from assistant.engine import thinking
from assistant.engine.settings import GenerationSettings
from common.errors import UserError

THINKING_CHOICES = ("on", "off")
EFFORTS = ("low", "medium", "high")
# Effort as tokens of thinking, for families without an effort switch of their own. Chosen so that
# "low" is a quick look (a few seconds on a laptop CPU at 30-60 tokens/s), "high" a long think.
EFFORT_BUDGETS = {"low": 512, "medium": 2048, "high": 8192}


@dataclass
class ThinkingPlan:
    """What one reply does about thinking: render arguments, a system note, a prompt suffix, a budget."""

    format: str | None  # the format the reply is parsed with; None: no thinking
    template_kwargs: dict[str, Any] = field(default_factory=dict)
    system_note: str | None = None  # appended to the system message ("/no_think")
    close_prompt: bool = False  # append an empty thinking block to the generation prompt
    budget: int | None = None  # thinking tokens allowed, then the thinking is closed


def check(settings: GenerationSettings) -> None:
    """A sentence for a value no model can use (the CLI and the API check before anything runs)."""
    s = settings
    if s.thinking is not None and s.thinking not in THINKING_CHOICES:
        raise UserError(f"Thinking must be on or off, not {s.thinking!r}.")
    if s.thinking_effort is not None and s.thinking_effort not in EFFORTS:
        raise UserError(f"The thinking effort must be low, medium or high, not {s.thinking_effort!r}.")
    if s.thinking_budget is not None and (isinstance(s.thinking_budget, bool) or not isinstance(s.thinking_budget, int)
                                          or s.thinking_budget < 0):
        raise UserError("The thinking budget must be a whole number of tokens, 0 or more.")
    if s.thinking_format is not None and s.thinking_format not in (*thinking.FORMATS, thinking.NONE):
        raise UserError(f"There is no thinking format {s.thinking_format!r}; known formats: "
                        f"{', '.join(thinking.FORMATS)}, or none.")


def plan(settings: GenerationSettings, detected: str | None, template: str | None) -> ThinkingPlan:
    """The plan for one reply of a model whose detected format is `detected` and whose Jinja chat
    template (None for a named format) is `template`."""
    fmt = settings.thinking_format or detected
    if fmt == thinking.NONE or fmt not in thinking.FORMATS:
        return ThinkingPlan(format=None)
    text = template or ""
    result = ThinkingPlan(format=fmt)
    if settings.thinking in THINKING_CHOICES:
        on = settings.thinking == "on"
        if "enable_thinking" in text:
            result.template_kwargs["enable_thinking"] = on
        elif "/no_think" in text and not on:
            result.system_note = "/no_think"
        elif not on:
            result.close_prompt = True
    effort = settings.thinking_effort
    if effort in EFFORTS:
        if "reasoning_effort" in text:
            result.template_kwargs["reasoning_effort"] = effort
        else:
            result.budget = EFFORT_BUDGETS[effort]
    if settings.thinking_budget is not None:
        result.budget = settings.thinking_budget  # an explicit budget is what the user asked for
    if settings.thinking == "off":
        result.budget = None  # nothing to count
    return result


def with_system_note(messages: list[dict], note: str | None) -> list[dict]:
    """The conversation with `note` at the end of its system message (one is added if there is none)."""
    if not note:
        return messages
    out = [dict(m) for m in messages]
    if out and out[0].get("role") == "system":
        out[0]["content"] = f"{out[0].get('content') or ''}\n{note}".lstrip("\n")
    else:
        out.insert(0, {"role": "system", "content": note})
    return out
