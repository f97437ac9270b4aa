"""A scripted stand-in for assistant.engine.Engine, for fast UI unit tests.

It speaks the same interface the window and ChatSession use (load, active,
chat → Response-like iterable with chunks/stats/cancel, count_tokens,
backend_record) and streams a scripted reply with a small delay per token.
One end-to-end test elsewhere drives the real window with the real engine.
"""

import threading
import time
from dataclasses import dataclass, field

from common.errors import ModelNotFoundError

REPLY = ("Here is a list:\n\n- apples\n- pears\n\n```python\ndef add(a, b):\n    return a + b\n```\n\n"
         "| size | speed |\n|---|---|\n| 1B | fast |\n")


@dataclass
class _Entry:
    name: str
    path: str
    chat_format: str | None = None


@dataclass
class _Info:
    quant: str = "Q4_K_M"
    architecture: str = "llama"
    size_bytes: int = 700_000_000


@dataclass
class _Buffers:
    kv: int = 64_000_000
    compute: int = 30_000_000


@dataclass
class _Llama:
    n_ctx: int = 4096
    n_threads: int = 2
    n_gpu_layers: int = 0
    buffers: _Buffers = field(default_factory=_Buffers)
    kv_tokens: list = field(default_factory=list)

    def n_params(self):
        return 1_200_000_000

    def weights_bytes(self):
        return 700_000_000


@dataclass
class _Renderer:
    label: str = "gguf"


@dataclass
class _Active:
    entry: _Entry
    info: _Info = field(default_factory=_Info)
    llama: _Llama = field(default_factory=_Llama)
    renderer: _Renderer = field(default_factory=_Renderer)


class FakeStats:
    def __init__(self, record):
        self._record = record
        self.stop_reason = record["stop_reason"]
        self.error = record.get("error")

    def to_dict(self):
        return dict(self._record)


class FakeResponse:
    def __init__(self, engine, messages, settings):
        self.engine, self.messages, self.settings = engine, messages, settings
        self.chunks, self.stats = [], None
        self._cancel = threading.Event()

    def cancel(self):
        self._cancel.set()

    @property
    def done(self):
        return self.stats is not None

    def __iter__(self):
        t0 = time.perf_counter()
        words = [w + " " for w in self.engine.reply.split(" ")]
        reason = "eos"
        try:
            for i, word in enumerate(words):
                if self._cancel.is_set():
                    reason = "stopped"
                    break
                if self.settings.max_tokens and i >= self.settings.max_tokens:
                    reason = "length"
                    break
                time.sleep(self.engine.token_delay)
                self.chunks.append(word)
                yield word
        except GeneratorExit:
            reason = "stopped"
            raise
        finally:
            ms = (time.perf_counter() - t0) * 1000
            n = len(self.chunks)
            name = self.engine.active.entry.name
            self.stats = FakeStats({
                "reply": "".join(self.chunks), "model": {"name": name, "file": f"/models/{name}-Q4_K_M.gguf",
                                                         "quant": "Q4_K_M", "size_bytes": 700_000_000,
                                                         "n_params": 1_200_000_000},
                "prompt_tokens": 20, "cached_tokens": 0, "prompt_ms": 10.0, "prompt_tps": 2000.0, "ttft_ms": 12.0,
                "completion_tokens": n, "gen_ms": ms, "gen_tps": round((n - 1) / ms * 1000, 2) if n > 1 else None,
                "total_ms": ms, "stop_reason": reason, "n_ctx": 4096, "n_threads": 2,
                "memory": {"weights_bytes": 7e8, "kv_bytes": 6.4e7, "compute_bytes": 3e7, "rss_bytes": 9e8,
                           "rss_peak_bytes": 9.5e8, "vram_bytes": None},
                "backend": {"kind": "CPU", "llama_cpp_python": "fake"},
                "context": {"policy": "drop_oldest", "used_tokens": 20 + n, "applied": False, "dropped_messages": 0},
            })


class FakeEngine:
    def __init__(self, reply: str = REPLY, token_delay: float = 0.002, load_delay: float = 0.05):
        self.reply, self.token_delay, self.load_delay = reply, token_delay, load_delay
        self.active = None
        self.loads: list[str] = []
        self._current = None

    def load(self, spec, settings=None):
        time.sleep(self.load_delay)
        name = spec if isinstance(spec, str) else spec.name
        if name.startswith("missing"):
            raise ModelNotFoundError(f"No installed model is named {name!r}.")
        self.loads.append(name)
        self.active = _Active(entry=_Entry(name=name, path=f"/models/{name}.gguf"))
        return self.active

    def unload(self):
        self.active = None

    def chat(self, messages, settings=None):
        from assistant.engine.settings import GenerationSettings

        self._current = FakeResponse(self, messages, settings or GenerationSettings())
        return self._current

    def count_tokens(self, messages):
        return sum(len(m["content"].split()) + 4 for m in messages)

    def cancel(self):
        if self._current:
            self._current.cancel()

    def backend_record(self):
        return {"kind": "CPU", "gpu_offload": False, "llama_cpp_python": "fake"}
