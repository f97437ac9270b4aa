"""Settings for loading a model and for generating one reply."""

from dataclasses import asdict, dataclass
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

    def resolved_threads(self) -> int:
        return self.n_threads or default_threads()


DEFAULT_MAX_TOKENS = 2048  # a reply never runs on unbounded by default; 0 or None lifts the limit


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
    use_draft: bool = True  # draft with the loaded draft model or prompt lookup, if any (benchmarks turn it off)

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
