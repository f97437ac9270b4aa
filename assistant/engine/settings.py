"""Settings for loading a model and for generating one reply."""

from dataclasses import asdict, dataclass, replace
from enum import Enum


def default_threads() -> int:
    """The physical cores: OpenMP threads spin, so more threads than free cores
    collapses generation speed (field notes: 0.5 t/s instead of 40)."""
    import os

    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


class ContextPolicy(str, Enum):
    """What to do when the conversation no longer fits the context window."""

    STOP = "stop"  # stop at the limit and say so
    DROP_OLDEST = "drop_oldest"  # drop the oldest turns, keep the system prompt


# The KV cache types offered, K and V alike (llama-server's -ctk/-ctv names): q8_0 is about half of f16
# (34 bytes per 32 values), q4_0 about a quarter (18 per 32).
KV_CACHE_TYPES = ("f16", "q8_0", "q4_0")
DEFAULT_KV_CACHE_TYPE = "f16"
# Flash attention as llama-server's -fa: "auto" lets llama.cpp use it where the backend supports it.
FLASH_ATTN_MODES = ("auto", "on", "off")
DEFAULT_FLASH_ATTN = "auto"


@dataclass
class LoadSettings:
    n_ctx: int | None = None  # None: the model's training context, capped at 4096
    n_threads: int | None = None  # None: physical cores
    n_gpu_layers: int | None = None  # None: all layers when the build can offload, else 0
    n_batch: int = 512
    chat_format: str | None = None  # a llama-cpp-python format name, overriding the GGUF's template
    chat_template: str | None = None  # a Jinja template, overriding both
    # Speculative decoding: None or "off", "lookup" (prompt lookup), or a draft model (an installed name or a
    # path) of the same vocabulary; draft_max caps the tokens drafted a round. draft_always keeps drafting
    # when it does not pay (measurements of the floor only: by default drafting pauses itself then).
    draft: str | None = None
    draft_max: int = 8
    draft_always: bool = False
    kv_cache_type: str = DEFAULT_KV_CACHE_TYPE  # one of KV_CACHE_TYPES
    flash_attn: str = DEFAULT_FLASH_ATTN  # one of FLASH_ATTN_MODES

    def resolved_threads(self) -> int:
        return self.n_threads or default_threads()

    def checked(self) -> tuple["LoadSettings", list[str]]:
        """These settings with the cache type and flash attention made usable, and a sentence for each
        change: values come from settings files and API callers, so a word that is not one of the choices
        falls back to the default rather than stopping the load."""
        notices = []
        kv, fa = self.kv_cache_type, self.flash_attn
        if kv not in KV_CACHE_TYPES:
            notices.append(f"The KV cache type {str(kv)[:40]!r} is not one of {', '.join(KV_CACHE_TYPES)}; "
                           f"using {DEFAULT_KV_CACHE_TYPE}.")
            kv = DEFAULT_KV_CACHE_TYPE
        if fa not in FLASH_ATTN_MODES:
            notices.append(f"The flash attention setting {str(fa)[:40]!r} is not one of "
                           f"{', '.join(FLASH_ATTN_MODES)}; using {DEFAULT_FLASH_ATTN}.")
            fa = DEFAULT_FLASH_ATTN
        if kv != "f16" and fa == "off":
            # llama.cpp refuses a quantized V cache without flash attention.
            notices.append(f"A {kv} KV cache needs flash attention, so it is on for this model.")
            fa = "on"
        return replace(self, kv_cache_type=kv, flash_attn=fa), notices


DEFAULT_MAX_TOKENS = 2048  # a reply never runs on unbounded by default; 0 or None lifts the limit
DEFAULT_REPLY_DEADLINE_S = 1800.0  # a remote reply's overall deadline (the `reply_deadline_s` setting)


@dataclass
class GenerationSettings:
    max_tokens: int | None = DEFAULT_MAX_TOKENS  # None or 0: until the end of turn or the context is full
    temperature: float = 0.8
    top_k: int = 40
    top_p: float = 0.95
    min_p: float = 0.05
    repeat_penalty: float = 1.0
    repeat_last_n: int = 64
    seed: int | None = None  # None: a fresh random seed each reply
    context_policy: ContextPolicy = ContextPolicy.DROP_OLDEST
    stop: list[str] | None = None  # extra stop strings (API clients send them)
    stop_on_repetition: bool = True  # end a degenerate loop with stop reason "repetition"
    ignore_eos: bool = False  # benchmarks only: generate exactly max_tokens
    # Reasoning models (assistant/engine/thinking_controls.py says how each applies):
    thinking: str | None = None  # "on" or "off"; None: the model's own default
    thinking_effort: str | None = None  # "low", "medium" or "high" (gpt-oss's own; others: a budget)
    thinking_budget: int | None = None  # at most this many tokens of thinking, then the model answers
    thinking_format: str | None = None  # override the detected format (thinking.FORMATS) or "none"
    grammar: str | None = None  # a GBNF grammar the reply must follow (llama-server's `grammar` field)
    use_draft: bool = True  # draft with the loaded draft model or prompt lookup, if any (benchmarks turn it off)
    # Remote replies: the most seconds one may take in all, however the server drips it (0 or None: no limit).
    reply_deadline_s: float | None = DEFAULT_REPLY_DEADLINE_S

    def to_dict(self) -> dict:
        d = asdict(self)
        d["context_policy"] = self.context_policy.value
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "GenerationSettings":
        """The inverse of to_dict; unknown keys are ignored (records from other versions)."""
        known = {f for f in cls.__dataclass_fields__}
        values = {k: v for k, v in d.items() if k in known}
        if "context_policy" in values:
            values["context_policy"] = ContextPolicy(values["context_policy"])
        return cls(**values)
