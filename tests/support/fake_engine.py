"""A scripted Engine for fast UI and service tests.

It implements the same public `Engine` interface as `LocalEngine` (load, summary,
chat/complete -> a lazy Response that records its stats, count_tokens, cancel,
unload) and streams a scripted reply with a small delay per token. Nothing here
mirrors engine internals. One end-to-end test drives the real window with the
real engine.
"""

from __future__ import annotations

import time
from collections.abc import Generator

from assistant.engine.interface import Engine, ModelSummary, Response
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.engine.thinking import THINKING, Piece
from assistant.stats import MemoryStats, ModelRef, ResponseStats
from common.errors import ModelNotFoundError

REPLY = ("Here is a list:\n\n- apples\n- pears\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
         "| size | speed |\n|---|---|\n| 1B | fast |\n")


class FakeResponse(Response):
    def __init__(self, engine: FakeEngine, messages, prompt, settings: GenerationSettings):
        super().__init__(messages, settings, prompt)
        self.engine = engine

    def _stream(self) -> Generator[str | Piece, None, None]:
        t0 = time.perf_counter()
        summary = self.engine.summary()
        thinking = self.engine.thinking if self.settings.thinking != "off" else ""
        thought = [w + " " for w in thinking.split(" ")] if thinking else []
        words = thought + [w + " " for w in self.engine.reply.split(" ")]
        reason, n, t_thought = "eos", 0, 0.0
        try:
            for i, word in enumerate(words):
                if self.cancelled:
                    reason = "stopped"
                    break
                if self.settings.max_tokens and i >= self.settings.max_tokens:
                    reason = "length"
                    break
                time.sleep(self.engine.token_delay)
                n += 1
                if i < len(thought):  # a reasoning model's thinking comes first, as its own pieces
                    t_thought = (time.perf_counter() - t0) * 1000
                    yield Piece(THINKING, word, n)
                else:
                    yield word
        except GeneratorExit:
            reason = "stopped"
            raise
        finally:
            ms = (time.perf_counter() - t0) * 1000
            name = summary.name if summary else "?"
            self.stats = ResponseStats(
                reply="".join(self.chunks),
                model=ModelRef(name=name, file=f"/models/{name}-Q4_K_M.gguf", quant="Q4_K_M",
                               size_bytes=700_000_000, n_params=1_200_000_000),
                prompt_tokens=20, cached_tokens=0, prompt_ms=10.0, prompt_tps=2000.0, ttft_ms=12.0,
                completion_tokens=n, gen_ms=ms, gen_tps=round((n - 1) / ms * 1000, 2) if n > 1 else None,
                total_ms=ms, stop_reason=reason, n_ctx=4096, n_threads=2,
                memory=MemoryStats(weights_bytes=700_000_000, kv_bytes=64_000_000, compute_bytes=30_000_000,
                                   rss_bytes=900_000_000, rss_peak_bytes=950_000_000, vram_bytes=None,
                                   app_rss_bytes=200_000_000),
                backend={"kind": "CPU", "llama_cpp_python": "fake"},
                context={"policy": "drop_oldest", "used_tokens": 20 + n, "applied": False, "dropped_messages": 0},
                thinking="".join(self.thinking_chunks).strip() or None, thinking_tokens=min(n, len(thought)),
                thinking_ms=round(t_thought, 2), answer_tokens=n - min(n, len(thought)),
                thinking_format="think_tags" if thought else None,
                thinking_unfinished=bool(thought) and n <= len(thought),
            )


class FakeEngine(Engine):
    def __init__(self, reply: str = REPLY, token_delay: float = 0.002, load_delay: float = 0.05, thinking: str = ""):
        self.reply, self.token_delay, self.load_delay = reply, token_delay, load_delay
        self.thinking = thinking  # a reasoning model's thinking, streamed before the reply
        self.loads: list[str] = []
        self._summary: ModelSummary | None = None
        self._current: FakeResponse | None = None

    def load(self, spec, settings: LoadSettings | None = None, *, automatic: bool = False) -> ModelSummary:
        time.sleep(self.load_delay)
        name = spec if isinstance(spec, str) else spec.name
        if name.startswith("missing"):
            raise ModelNotFoundError(f"No installed model is named {name!r}.")
        self.loads.append(name)
        self._summary = ModelSummary(
            name=name, path=f"/models/{name}.gguf", quant="Q4_K_M", architecture="llama", n_params=1_200_000_000,
            size_bytes=700_000_000, n_ctx=4096, n_ctx_train=8192, n_threads=2, n_gpu_layers=0, chat_format="gguf",
            has_chat_template=True, backend={"kind": "CPU", "gpu_offload": False, "llama_cpp_python": "fake"},
            memory={"weights_bytes": 700_000_000, "kv_bytes": 64_000_000, "compute_bytes": 30_000_000,
                    "rss_bytes": 900_000_000, "vram_bytes": None})
        return self._summary

    def unload(self) -> None:
        self._summary = None

    def summary(self) -> ModelSummary | None:
        return self._summary

    def chat(self, messages, settings: GenerationSettings | None = None, *, prefix: str | None = None) -> FakeResponse:
        self._current = FakeResponse(self, messages, None, settings or GenerationSettings())
        self._current.prefix = prefix
        return self._current

    def complete(self, prompt: str, settings: GenerationSettings | None = None) -> FakeResponse:
        self._current = FakeResponse(self, None, prompt, settings or GenerationSettings())
        return self._current

    def count_tokens(self, messages) -> int:
        return sum(len(m["content"].split()) + 4 for m in messages)

    def cancel(self) -> None:
        if self._current:
            self._current.cancel()
