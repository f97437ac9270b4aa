"""The Engine: the one object that owns the loaded model.

The window, the command line and any later API server all go through one Engine.
It loads and unloads models (unloading first, so memory comes back before the
next model maps its weights) and hands out `Response` objects. A Response is
lazy, in the manner of simonw/llm: iterating it runs generation and streams text;
when it ends, for whatever reason, it has recorded its own statistics.
"""

import gc
import random
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from assistant.engine import llama_runtime as rt
from assistant.engine.chat_template import ChatRenderer, choose_renderer
from assistant.engine.context_fit import fit_conversation
from assistant.engine.llama_model import DecodeError, LoadedModel, Sampler
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.engine.text_stream import TextStream
from common.errors import ModelFileError, UserError
from assistant.stats import MemoryStats, ModelRef, ResponseStats, rss_bytes, rss_peak_bytes, tps, vram_bytes
from models import registry
from models.gguf_file import read_gguf_info
from models.speed import record_measured_speed

DEFAULT_MAX_CTX = 4096  # a sensible default; the user can raise it up to the training context


@dataclass
class ActiveModel:
    """What is loaded now, and how."""

    entry: registry.InstalledModel
    info: object  # models.gguf_file.GGUFInfo
    llama: LoadedModel
    renderer: ChatRenderer
    settings: LoadSettings

    @property
    def ref(self) -> ModelRef:
        return ModelRef(name=self.entry.name, file=self.entry.path, quant=self.info.quant,
                        size_bytes=self.info.size_bytes, n_params=self.llama.n_params())


class Engine:
    def __init__(self):
        self._lock = threading.RLock()  # one generation or load at a time
        self.active: ActiveModel | None = None
        self._current: "Response | None" = None

    # --- Loading
    def load(self, spec, settings: LoadSettings | None = None) -> ActiveModel:
        """Load a model by `-m` spec (starter, installed name, .gguf path) or registry entry."""
        settings = settings or LoadSettings()
        entry = spec if isinstance(spec, registry.InstalledModel) else registry.resolve(spec)
        info = read_gguf_info(entry.path)  # validates the file before llama.cpp sees it
        with self._lock:
            previous = self.active
            self.unload()  # free the old weights first: two models may not fit in RAM together
            try:
                self.active = self._open(entry, info, settings)
            except Exception:
                if previous is not None:  # keep the user chatting on what they had
                    try:
                        self.active = self._open(previous.entry, previous.info, previous.settings)
                    except Exception:
                        self.active = None
                raise
            return self.active

    def _open(self, entry, info, settings: LoadSettings) -> ActiveModel:
        n_ctx = settings.n_ctx or min(info.context_length or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
        n_gpu = settings.n_gpu_layers
        if n_gpu is None:
            n_gpu = -1 if rt.supports_gpu_offload() else 0
        try:
            llama = LoadedModel(entry.path, n_ctx=n_ctx, n_threads=settings.resolved_threads(),
                                n_gpu_layers=n_gpu, n_batch=settings.n_batch)
        except rt.LlamaLoadError as exc:
            raise ModelFileError(entry.path, f"{exc}; the file may be damaged or need a newer llama.cpp") from exc
        try:
            bos, eos = llama.bos_eos_text()
            renderer = choose_renderer(
                gguf_template=llama.chat_template(), arch=info.architecture, vocab_size=llama.n_vocab,
                bos_token=bos, eos_token=eos, override_template=settings.chat_template,
                override_format=settings.chat_format, catalogue_format=entry.chat_format,
            )
        except Exception:
            llama.close()
            raise
        return ActiveModel(entry=entry, info=info, llama=llama, renderer=renderer, settings=settings)

    def unload(self) -> None:
        with self._lock:
            if self.active is not None:
                self.active.llama.close()
                self.active = None
                gc.collect()  # drop ctypes buffers that point into freed memory

    def require_model(self) -> ActiveModel:
        if self.active is None:
            raise UserError("No model is loaded; pick one with -m or /model NAME.")
        return self.active

    # --- Chat
    def chat(self, messages: list[dict], settings: GenerationSettings | None = None) -> "Response":
        """A lazy reply to `messages` ([{role, content}]); iterate it to stream text."""
        self.require_model()
        return Response(self, [dict(role=m["role"], content=m["content"]) for m in messages],
                        settings or GenerationSettings())

    def count_tokens(self, messages: list[dict]) -> int:
        """Tokens the conversation takes as a prompt (for a live context meter)."""
        active = self.require_model()
        rendered = active.renderer.render(messages)
        return len(active.llama.tokenize(rendered.text, rendered.add_bos))

    def cancel(self) -> None:
        """Stop the reply being generated, from any thread."""
        current = self._current
        if current is not None:
            current.cancel()

    def backend_record(self) -> dict:
        info = rt.backend_info()
        n_gpu = self.active.llama.n_gpu_layers if self.active else 0
        return {"llama_cpp_python": info.llama_cpp_python, "kind": info.kind(n_gpu), "gpu_offload": info.gpu_offload,
                "n_gpu_layers": n_gpu, "amx_guard": info.amx_guard, "devices": info.devices,
                "system_info": info.system_info}


class Response:
    """One reply. Iterate for text; afterwards `.stats` holds its record."""

    def __init__(self, engine: Engine, messages: list[dict], settings: GenerationSettings):
        self.engine = engine
        self.messages = messages
        self.settings = settings
        self.stats: ResponseStats | None = None
        self.chunks: list[str] = []
        self._cancel = threading.Event()
        self._started = False

    def cancel(self) -> None:
        self._cancel.set()

    @property
    def done(self) -> bool:
        return self.stats is not None

    def text(self) -> str:
        for _ in self:
            pass
        return "".join(self.chunks)

    def __iter__(self):
        if self._started:
            yield from self.chunks if self.done else ()
            return
        self._started = True
        with self.engine._lock:
            self.engine._current = self
            try:
                yield from self._generate()
            finally:
                self.engine._current = None

    def _generate(self):
        s = self.settings
        active = self.engine.require_model()
        llama = active.llama
        t0 = time.perf_counter()
        seed = s.seed if s.seed is not None else random.getrandbits(32)
        n_prompt = n_cached = n_out = 0
        prompt_ms = 0.0
        t_first = t_last = None
        stop_reason, error = "error", None
        context_info: dict = {}
        sampler = None
        try:
            fitted = fit_conversation(
                self.messages, render=active.renderer.render, tokenize=llama.tokenize, n_ctx=llama.n_ctx,
                policy=s.context_policy, reply_reserve=min(s.max_tokens or 256, llama.n_ctx // 4),
            )
            context_info = fitted.info
            n_prompt = len(fitted.tokens)
            if not fitted.fits:
                stop_reason = "context_full"
                return
            tp = time.perf_counter()
            evaluated = llama.eval_prompt(fitted.tokens)
            prompt_ms = (time.perf_counter() - tp) * 1000
            n_cached = evaluated.n_cached
            sampler = Sampler(llama, s, seed)
            stream = TextStream(fitted.stop)
            stop_ids = llama.stop_tokens(fitted.stop)
            while True:
                if self._cancel.is_set():
                    stop_reason = "stopped"
                    break
                token = sampler.sample()
                now = time.perf_counter()
                if not s.ignore_eos and (llama.is_eog(token) or token in stop_ids):
                    stop_reason = "eos"
                    break
                n_out += 1
                t_first = t_first or now
                t_last = now
                text = stream.feed(llama.piece(token))
                if text:
                    self.chunks.append(text)
                    yield text
                if stream.stopped:
                    stop_reason = "eos"
                    break
                if s.max_tokens and n_out >= s.max_tokens:
                    stop_reason = "length"
                    break
                if len(llama.kv_tokens) >= llama.n_ctx:
                    stop_reason = "context_full"
                    context_info = {**context_info, "applied": True,
                                    "message": f"The reply reached the end of the context ({llama.n_ctx} tokens)."}
                    break
                llama.decode_one(token)
            tail = stream.flush()
            if tail:
                self.chunks.append(tail)
                yield tail
        except GeneratorExit:
            stop_reason = "stopped"  # the consumer walked away: keep what it got
            raise
        except (DecodeError, UserError) as exc:
            stop_reason, error = "error", str(exc)
        finally:
            if sampler:
                sampler.close()
            self._record(active, t0, n_prompt, n_cached, prompt_ms, n_out, t_first, t_last,
                         stop_reason, error, context_info, seed)

    def _record(self, active, t0, n_prompt, n_cached, prompt_ms, n_out, t_first, t_last,
                stop_reason, error, context_info, seed):
        end = time.perf_counter()
        llama = active.llama
        gen_ms = (t_last - t_first) * 1000 if (t_first and t_last and n_out > 1) else 0.0
        buffers = llama.buffers
        memory = MemoryStats(
            weights_bytes=llama.weights_bytes(),
            kv_bytes=buffers.kv,
            compute_bytes=buffers.compute,
            rss_bytes=rss_bytes(),
            rss_peak_bytes=rss_peak_bytes(),
            vram_bytes=vram_bytes(),
        )
        self.stats = ResponseStats(
            reply="".join(self.chunks),
            model=active.ref,
            prompt_tokens=n_prompt,
            cached_tokens=n_cached,
            prompt_ms=round(prompt_ms, 2),
            prompt_tps=tps(n_prompt - n_cached, prompt_ms),
            ttft_ms=round((t_first - t0) * 1000, 2) if t_first else None,
            completion_tokens=n_out,
            gen_ms=round(gen_ms, 2),
            gen_tps=tps(n_out - 1, gen_ms),
            total_ms=round((end - t0) * 1000, 2),
            stop_reason=stop_reason,
            n_ctx=llama.n_ctx,
            n_threads=llama.n_threads,
            memory=memory,
            backend=self.engine.backend_record(),
            context={**context_info, "used_tokens": len(llama.kv_tokens)},
            sampling={**self.settings.to_dict(), "seed": seed},
            chat_format=active.renderer.label,
            error=error,
        )
        self._record_speed(active)

    def _record_speed(self, active) -> None:
        """Feed the measured speed to the model catalogue's estimates (issue 4)."""
        st = self.stats
        if st.completion_tokens < 16 or not st.gen_tps:
            return
        try:
            record_measured_speed(Path(active.entry.path), st.gen_tps, st.n_threads)
        except OSError:
            pass  # a statistic we could not save must not cost the user their reply
