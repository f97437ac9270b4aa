"""The runner's side of the conversation with the app: one model, one request at a time.

The runner is the only process that imports llama.cpp. Whatever a model file does
to it (abort, crash, loop, allocate without end) ends here, and the app turns it
into one sentence.
"""

from __future__ import annotations

import logging
import os
import threading
import time
import traceback
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from typing import Any

from assistant.engine import protocol as P
from assistant.engine import thinking
from assistant.engine.runner import llama_runtime as rt
from assistant.engine.runner import native_bench
from assistant.engine.runner.chat_template import ChatRenderer, TemplateRefused, choose_renderer, render_safely
from assistant.engine.runner.drafting import DraftSetup, load_drafting
from assistant.engine.runner.generation import CANNOT_SEE, PromptBuilder, generate
from assistant.engine.runner.image_cache import DecodedImages
from assistant.engine.runner.limits import TimeLimitExceeded, set_memory_ceiling, time_limit
from assistant.engine.runner.llama_model import LoadedModel
from assistant.engine.settings import GenerationSettings
from assistant.stats import rss_bytes, rss_peak_bytes, vram_bytes
from common.errors import UserError
from common.formatting import format_bytes
from common.terminal import shorten

log = logging.getLogger(__name__)

POLL_INTERVAL_SECONDS = 0.005  # a cancel is seen within 5 ms: one select() per token at most on a fast model
_PROBE = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello"}]


class _Shutdown(Exception):
    pass


class RunnerServer:
    def __init__(self, conn) -> None:
        self.conn = conn
        self.model: LoadedModel | None = None
        self.renderer: ChatRenderer | None = None
        self.thinking_format: str | None = None  # how this model marks its thinking (thinking.detect_format)
        self.drafting: DraftSetup | None = None  # a draft model or prompt lookup, when asked for
        self.draft_error: dict[str, Any] | None = None  # the draft asked for but refused: kind, model, error
        self.memory_limit: int | None = None
        self._pending: deque = deque()  # requests read while a reply was running
        self._request_id: int | None = None  # the reply in flight, which a cancel must name
        self._cancelled = False
        self._shutdown = False
        self._last_poll = 0.0
        self.images = DecodedImages()  # decoded pixels by SHA-256, so a follow-up turn does not decode again
        self._send_lock = threading.Lock()  # the load's heartbeat thread sends too
        self._last_sent = time.monotonic()

    # --- The loop
    def serve(self) -> None:
        self.conn.send((P.READY, os.getpid()))
        while not self._shutdown:
            msg = self._next()
            if msg is None:
                break
            kind, args = msg[0], msg[1:]
            if kind == P.CANCEL:
                continue  # a cancel for a reply that has already ended
            handler = getattr(self, f"_on_{kind}", None)
            try:
                if handler is None:
                    raise UserError(f"The model's process does not understand the request {kind!r}.")
                handler(*args)
            except _Shutdown:
                break
            except UserError as exc:
                self._send((P.ERROR, str(exc)))
            except MemoryError:
                self._send((P.ERROR, "The model's process ran out of the memory it is allowed "
                                     f"({self._limit_words()})."))
            except Exception as exc:
                # The traceback, and the message cut short: an exception may carry megabytes of a template's text.
                log.error("request %r failed: %s: %s\n%s", kind, type(exc).__name__, shorten(exc, 2000),
                          "".join(traceback.format_tb(exc.__traceback__)))
                self._send((P.ERROR, f"The model's process hit an unexpected error ({type(exc).__name__}: "
                                     f"{shorten(exc, 300)})."))
        self._close_model()

    def _next(self):
        if self._pending:
            return self._pending.popleft()
        try:
            return self.conn.recv()
        except (EOFError, OSError):  # the app has gone
            return None

    def _send(self, msg) -> None:
        try:
            with self._send_lock:
                self.conn.send(msg)
                self._last_sent = time.monotonic()
        except (BrokenPipeError, OSError):
            raise _Shutdown() from None

    def _tick(self) -> None:
        """Tell the app this process is still at work, if it has heard nothing for PROGRESS_SECONDS."""
        if time.monotonic() - self._last_sent >= P.PROGRESS_SECONDS:
            self._send((P.PROGRESS,))

    @contextmanager
    def _heartbeat(self) -> Iterator[None]:
        """Ticks from a thread while the main thread is in C code that calls nothing back (loading)."""
        done = threading.Event()

        def beat() -> None:
            while not done.wait(P.PROGRESS_SECONDS / 2):
                try:
                    self._tick()
                except _Shutdown:
                    return

        thread = threading.Thread(target=beat, name="runner-heartbeat", daemon=True)
        thread.start()
        try:
            yield
        finally:
            done.set()
            thread.join()

    def should_stop(self) -> bool:
        """Has the app asked to stop the reply in flight?

        Asked once per token; the pipe is looked at most once every POLL_INTERVAL_SECONDS (a small model
        makes several tokens a millisecond, and the app shows nothing produced after its stop anyway).
        """
        if self._cancelled:
            return True
        now = time.perf_counter()
        if now - self._last_poll < POLL_INTERVAL_SECONDS:
            return False
        self._last_poll = now
        # Asked between llama.cpp's graph nodes and once per token: the natural place to say "still working".
        self._tick()
        try:
            while self.conn.poll():
                msg = self.conn.recv()
                if msg[0] == P.CANCEL:
                    if msg[1] == self._request_id:
                        self._cancelled = True
                elif msg[0] == P.SHUTDOWN:
                    self._cancelled = self._shutdown = True
                else:
                    self._pending.append(msg)
        except (EOFError, OSError):
            self._cancelled = self._shutdown = True
        return self._cancelled

    # --- Loading
    def _on_load(self, request: dict[str, Any]) -> None:
        self._close_model()
        n_gpu = request["n_gpu_layers"]
        if n_gpu is None:
            n_gpu = -1 if rt.supports_gpu_offload() else 0
        if not (rt.supports_gpu_offload() and n_gpu):
            # GPU drivers reserve large address ranges: the ceiling is for CPU runs only.
            self.memory_limit = set_memory_ceiling(request.get("memory_limit"))
        t0 = time.perf_counter()
        with self._heartbeat():
            try:
                model = LoadedModel(request["path"], n_ctx=request["n_ctx"], n_threads=request["n_threads"],
                                    n_gpu_layers=n_gpu, n_batch=request["n_batch"],
                                    kv_cache_type=request.get("kv_cache_type") or "f16",
                                    flash_attn=request.get("flash_attn") or "auto",
                                    max_checkpoint_bytes=request.get("checkpoint_bytes_max"))
            except rt.ContextSettingsError as exc:
                name = request.get("name") or request["path"]
                raise UserError(f"{name} cannot be loaded with these settings: {exc}.") from exc
            except rt.LlamaLoadError as exc:
                raise UserError(f"The model file {request['path']} cannot be used: {exc}; the file may be damaged "
                                "or need a newer llama.cpp.") from exc
            try:
                if request.get("projector"):
                    self._load_projector(model, request["projector"],
                                         use_gpu=bool(n_gpu) and rt.supports_gpu_offload())
                renderer = self._renderer(model, request)
                if renderer is not None:
                    rendered = render_safely(renderer, _PROBE)
                    if not model.tokenize(rendered.text, rendered.add_bos):
                        raise TemplateRefused("The model's chat template renders a conversation as no tokens at all.")
            except BaseException:
                model.close()
                raise
            if request.get("draft"):  # a draft that cannot be used leaves the model loaded, with a sentence
                self.drafting, self.draft_error = load_drafting(model, request["draft"], request)
        self.model, self.renderer = model, renderer
        self.thinking_format = thinking.detect_format(
            renderer.template if renderer is not None else None, request.get("architecture"),
            request.get("catalogue_thinking")) if renderer is not None else None
        summary = self._summary()
        summary["load_ms"] = round((time.perf_counter() - t0) * 1000, 1)
        self._send((P.LOADED, summary))

    @staticmethod
    def _load_projector(model: LoadedModel, projector: dict[str, Any], *, use_gpu: bool) -> None:
        from assistant.engine.runner.vision import Projector, ProjectorLoadError

        try:
            model.projector = Projector(projector["path"], model, n_threads=model.n_threads, use_gpu=use_gpu,
                                        max_side=projector.get("max_side"))
        except ProjectorLoadError as exc:
            raise UserError(f"The image projector {projector['path']} cannot be used: {exc}.") from None
        except OSError as exc:  # the library itself is missing from this build of llama-cpp-python
            raise UserError(f"This build of llama.cpp cannot load image projectors ({exc}).") from None

    def _renderer(self, model: LoadedModel, request: dict[str, Any]) -> ChatRenderer | None:
        bos, eos = model.bos_eos_text()
        try:
            with time_limit(5.0):  # compiling a hostile template must not hang the load either
                return choose_renderer(
                    gguf_template=model.chat_template(), arch=request["architecture"], vocab_size=model.n_vocab,
                    bos_token=bos, eos_token=eos, override_template=request.get("chat_template"),
                    override_format=request.get("chat_format"), catalogue_format=request.get("catalogue_format"))
        except (TimeLimitExceeded, RecursionError, MemoryError) as exc:
            # Jinja compiles a template before it renders, folding constants: 'x' * 10**9 is built here.
            why = {TimeLimitExceeded: "takes too long to read", RecursionError: "is nested too deeply to read",
                   MemoryError: "needs more memory than the model is allowed just to read"}[type(exc)]
            raise TemplateRefused(f"The model's chat template {why}, so it is broken or hostile. Choose a chat "
                                  "format instead (for example --chat-format chatml).") from None

    def _summary(self) -> dict[str, Any]:
        m = self._require_model()
        backend = rt.backend_record(m.n_gpu_layers)
        return {
            "n_ctx": m.n_ctx, "n_ctx_train": m.n_ctx_train(), "n_params": m.n_params(), "n_threads": m.n_threads,
            "n_gpu_layers": m.n_gpu_layers, "chat_format": self.renderer.label if self.renderer else "completion",
            "has_chat_template": bool(m.chat_template()), "backend": backend, "memory": self._memory(),
            "pid": os.getpid(), "memory_limit": self.memory_limit, "kv_cache": m.kv_cache_record(),
            "draft": self._draft_summary(),
            "vision": m.projector is not None, "projector": m.projector.record() if m.projector else None,
            "thinking": self.thinking_format,
        }

    def _draft_summary(self) -> dict[str, Any] | None:
        if self.drafting is not None:
            return {**self.drafting.describe(), **self.drafting.memory()}
        return dict(self.draft_error) if self.draft_error else None

    def _memory(self) -> dict[str, Any]:
        m = self._require_model()
        memory = {"weights_bytes": m.weights_bytes(), "kv_bytes": m.buffers.kv, "compute_bytes": m.buffers.compute,
                  "checkpoint_bytes": m.checkpoints.bytes,
                  "rss_bytes": rss_bytes(), "rss_peak_bytes": rss_peak_bytes(), "vram_bytes": vram_bytes(),
                  "projector_bytes": m.projector.memory_bytes if m.projector else None}
        if self.drafting is not None:  # the draft model's share of the process (in its RSS too)
            memory.update({f"draft_{k}": v for k, v in self.drafting.memory().items()})
        return memory

    def _require_model(self) -> LoadedModel:
        if self.model is None:
            raise UserError("No model is loaded in the model's process.")
        return self.model

    def _close_model(self) -> None:
        if self.drafting is not None:
            self.drafting.close()
            self.drafting = None
        self.draft_error = None
        if self.model is not None:
            self.model.close()
            self.model = None
            self.renderer = None
            self.thinking_format = None

    def _limit_words(self) -> str:
        return f"about {format_bytes(self.memory_limit)}" if self.memory_limit else "what the system allows"

    # --- Replies
    def _on_chat(self, request_id: int, messages: list[dict], settings: dict, prefix: str | None = None) -> None:
        self._reply(request_id, messages, None, settings, prefix)

    def _on_complete(self, request_id: int, prompt: str, settings: dict) -> None:
        self._reply(request_id, None, prompt, settings)

    def _reply(self, request_id: int, messages, prompt, settings: dict, prefix: str | None = None) -> None:
        t_request = time.perf_counter()
        model = self._require_model()
        gen = GenerationSettings.from_dict(settings)
        if messages is not None and self.renderer is None:
            raise UserError("This model has no chat template; use text completion.")
        if messages is not None:
            messages = self._with_decoded_images(model, messages)
        self._request_id, self._cancelled, self._last_poll = request_id, False, 0.0
        sink = _PipeSink(self)
        try:
            outcome = generate(model, self.renderer if messages is not None else None, messages, prompt, gen, sink,
                               t_request=t_request, prefix=prefix, thinking_format=self.thinking_format,
                               drafting=self.drafting)
            if outcome.draft is None and self.draft_error:
                outcome.draft = {**self.draft_error, "drafted": 0, "accepted": 0}
            sink.flush()
            record = asdict(outcome)
            record.update(memory=self._memory(), n_ctx=model.n_ctx, n_threads=model.n_threads,
                          backend=rt.backend_record(model.n_gpu_layers),
                          chat_format=self.renderer.label if (self.renderer and messages is not None) else "completion",
                          sampling={**gen.to_dict(), "seed": outcome.seed})
            self._send((P.DONE, record))
        finally:
            self._request_id = None
            if self._shutdown:
                raise _Shutdown()

    def _on_count(self, request_id: int, messages: list[dict]) -> None:
        model = self._require_model()
        if self.renderer is None:
            raise UserError("This model has no chat template; use text completion.")
        messages = self._with_decoded_images(model, messages)
        self._send((P.RESULT, PromptBuilder(model, self.renderer).count(messages)))

    def _with_decoded_images(self, model: LoadedModel, messages: list[dict]) -> list[dict]:
        """The messages with each image's file decoded into pixels here, in this process (images.py)."""
        if not any(m.get("images") for m in messages):
            return messages
        if model.projector is None:
            raise UserError(CANNOT_SEE)
        out = []
        for m in messages:
            if m.get("images"):
                m = {**m, "images": [self.images.get(image, model.projector.max_side) for image in m["images"]]}
            out.append(m)
        return out

    # --- Benchmarks (the native baseline runs here, next to the model)
    def _on_bench_pp(self, n_tokens: int) -> None:
        self._send((P.RESULT, native_bench.prompt_processing(self._require_model(), n_tokens)))

    def _on_bench_native(self, n_tokens: int) -> None:
        self._send((P.RESULT, native_bench.native_generation(self._require_model(), self.renderer, n_tokens)))

    def _on_reset(self) -> None:
        self._require_model().reset_cache()
        self._send((P.RESULT, None))

    def _on_shutdown(self) -> None:
        self._shutdown = True
        raise _Shutdown()


class _PipeSink:
    """Text on its way to the app: the first piece at once, then batches every TEXT_BATCH_SECONDS.
    A batch holds one kind of text (thinking or answer): a change of kind sends what is gathered."""

    def __init__(self, server: RunnerServer) -> None:
        self.server = server
        self.parts: list[str] = []
        self.kind = thinking.ANSWER
        self.n_tokens = 0
        self.last_sent = 0.0

    def rendered(self, n_prompt_tokens: int) -> None:
        self.server._send((P.RENDERED, n_prompt_tokens))

    def first_token(self) -> None:
        self.last_sent = 0.0  # the first text goes out at once

    def text(self, text: str, n_tokens: int, kind: str = thinking.ANSWER) -> None:
        if kind != self.kind:
            if self.parts:
                self.server._send((P.TEXT, "".join(self.parts), self.n_tokens, self.kind))
                self.parts = []
            self.kind = kind
        self.parts.append(text)
        self.n_tokens = n_tokens
        now = time.perf_counter()
        if now - self.last_sent >= P.TEXT_BATCH_SECONDS:
            self.flush(now)

    def flush(self, now: float | None = None) -> None:
        if self.parts:
            self.server._send((P.TEXT, "".join(self.parts), self.n_tokens, self.kind))
            self.parts = []
        self.last_sent = now if now is not None else time.perf_counter()

    def should_stop(self) -> bool:
        return self.server.should_stop()
