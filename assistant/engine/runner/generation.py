"""One reply, generated inside the runner: prompt in, text out through a sink, a record at the end.

The loop is the benchmark's native loop plus text handling: sample, check for the
end of turn, turn the token into text, hand it to the sink, decode. The sink
batches text for the trip to the app and answers "should I stop?" (a cancel from
the app), which is checked once per token; while a long prompt is evaluated,
llama.cpp's abort callback asks the same question between micro-batches.
"""

from __future__ import annotations

import random
import time
from collections import deque
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Protocol

from assistant.engine.runner.chat_template import ChatRenderer, RenderedPrompt, render_safely
from assistant.engine.runner.context_fit import FittedPrompt, fit_conversation, reply_reserve
from assistant.engine.runner.llama_model import Cancelled, DecodeError, LoadedModel, Sampler
from assistant.engine.runner.repetition import RepetitionGuard
from assistant.engine.runner.text_stream import TextStream
from assistant.engine.runner.vision import PromptChunks
from assistant.engine.settings import GenerationSettings
from common.errors import UserError
from models.speed import CpuLoadMeter

if TYPE_CHECKING:
    from assistant.engine.runner.drafting import DraftSetup


class Sink(Protocol):
    def rendered(self, n_prompt_tokens: int) -> None: ...
    def first_token(self) -> None: ...
    def text(self, text: str, n_tokens: int) -> None: ...
    def flush(self) -> None: ...
    def should_stop(self) -> bool: ...


@dataclass
class Outcome:
    """The runner's half of a reply's statistics record; the app adds what it measured."""

    prompt_tokens: int = 0
    cached_tokens: int = 0
    prompt_ms: float = 0.0
    ttft_ms: float | None = None  # from the request reaching the runner to the first token
    completion_tokens: int = 0
    gen_ms: float = 0.0
    total_ms: float = 0.0
    stop_reason: str = "error"
    error: str | None = None
    context: dict = field(default_factory=dict)
    seed: int = 0
    cpu_other_busy: float | None = None  # share of the CPU other programs used meanwhile (0..1)
    # Time this loop spent per reply on what the benchmark's native loop does not do (text, stop
    # strings, the loop guard, the sink): the app's own cost per token, free of the machine's noise.
    bookkeeping_ms: float = 0.0
    # Speculative decoding: {"kind", "model", "drafted", "accepted", "paused", "break_even"}; None without it.
    draft: dict | None = None
    # Images in the prompt: {"count", "tokens", "encode_ms", "projector_bytes", "encoded", "reused"}.
    images: dict = field(default_factory=dict)
    # The KV cache as allocated (type, flash attention, window-sized or full sliding-window layers) and its
    # context checkpoints; "resumed_from": the checkpoint this reply's prompt resumed from, if one was used.
    kv_cache: dict = field(default_factory=dict)


def generate(model: LoadedModel, renderer: ChatRenderer | None, messages: list[dict] | None, prompt: str | None,
             settings: GenerationSettings, sink: Sink, *, t_request: float, prefix: str | None = None,
             drafting: DraftSetup | None = None) -> Outcome:
    """Generate one reply; `renderer` None with `prompt` set means text completion (no template).

    `prefix`: the reply's start, already written (a stopped reply being continued): it follows the
    rendered prompt, so the model goes on from it; only new text reaches the sink.
    `drafting`: a draft model or prompt lookup (drafting.py): where the loop would decode one token it
    lets the speculator decode it with verified drafts after it, which the loop then emits one by one.
    """
    s = settings
    out = Outcome(seed=s.seed if s.seed is not None else random.getrandbits(32))
    sampler = None
    speculator = None
    resumed_from = None
    t_first = t_last = None
    bookkeeping = 0.0
    load = CpuLoadMeter()  # other programs' use of the CPU meanwhile: a busy run must not teach the estimates
    builder = PromptBuilder(model, renderer)
    try:
        fitted = _fit(model, renderer, messages, prompt, s, prefix, builder)
        out.context = fitted.info
        out.prompt_tokens = len(fitted.tokens)
        chunks = builder.chunks
        if chunks is not None and chunks.spans:
            out.images = {"count": len(chunks.spans), "tokens": chunks.image_tokens, "encode_ms": 0.0,
                          "projector_bytes": model.projector.memory_bytes if model.projector else None,
                          "encoded": 0, "reused": 0}
        sink.rendered(out.prompt_tokens)
        if not fitted.fits:
            out.stop_reason = "context_full"
            return out
        tp = time.perf_counter()
        try:
            evaluated = model.eval_prompt(fitted.tokens, should_abort=sink.should_stop,
                                          images=chunks.spans if chunks is not None else None)
        finally:
            out.prompt_ms = round((time.perf_counter() - tp) * 1000, 2)
        out.cached_tokens, resumed_from = evaluated.n_cached, evaluated.restored
        if out.images:
            out.images.update(encode_ms=evaluated.encode_ms, encoded=evaluated.images_encoded,
                              reused=out.images["count"] - evaluated.images_encoded)
        sampler = Sampler(model, s, out.seed)
        stream = TextStream(fitted.stop)
        stop_ids = model.stop_tokens(fitted.stop)
        guard = RepetitionGuard() if s.stop_on_repetition else None
        if drafting is not None and s.use_draft:
            speculator = drafting.start(model, sampler, s, out.seed, sink.should_stop)
        verified: deque[int] = deque()  # tokens a draft round verified: all but the last already in the cache
        while True:
            if sink.should_stop():
                out.stop_reason = "stopped"
                break
            token = verified.popleft() if verified else sampler.sample()
            now = time.perf_counter()
            if not s.ignore_eos and (model.is_eog(token) or token in stop_ids):
                out.stop_reason = "eos"
                break
            out.completion_tokens += 1
            n_out = out.completion_tokens
            if t_first is None:
                t_first = now
                sink.first_token()
            t_last = now
            text = stream.feed(model.piece(token))
            if text:
                sink.text(text, n_out)
            if stream.stopped:
                out.stop_reason = "eos"
                break
            if guard is not None and guard.repeating(token):
                out.stop_reason = "repetition"
                break
            if s.max_tokens and n_out >= s.max_tokens:
                out.stop_reason = "length"
                break
            if len(model.kv_tokens) - len(verified) >= model.n_ctx:  # as if the verified tokens came one by one
                out.stop_reason = "context_full"
                out.context = {**out.context, "applied": True,
                               "message": f"The reply reached the end of the context ({model.n_ctx} tokens)."}
                break
            bookkeeping += time.perf_counter() - now
            if verified:
                continue  # this token is in the cache already
            if speculator is not None:
                room = (s.max_tokens - n_out) if s.max_tokens else model.n_ctx
                verified.extend(speculator.step(token, n_out, room))
            else:
                model.decode_one(token)
        tail = stream.flush()
        if tail:
            sink.text(tail, out.completion_tokens)
        sink.flush()  # the last batch leaves now, before any bookkeeping: it must not arrive late
    except Cancelled:
        out.stop_reason = "stopped"
    except (DecodeError, UserError) as exc:
        out.stop_reason, out.error = "error", str(exc)
    finally:
        builder.close()
        if speculator is not None:
            out.draft = speculator.record()
        if sampler is not None:
            sampler.close()
        end = time.perf_counter()
        out.ttft_ms = round((t_first - t_request) * 1000, 2) if t_first else None
        out.gen_ms = round((t_last - t_first) * 1000, 2) if (t_first and t_last and out.completion_tokens > 1) else 0.0
        out.total_ms = round((end - t_request) * 1000, 2)
        out.context = {**out.context, "used_tokens": len(model.kv_tokens)}
        out.cpu_other_busy = round(load.busy_fraction(), 3)
        out.bookkeeping_ms = round(bookkeeping * 1000, 3)
        out.kv_cache = {**model.kv_cache_record(), "resumed_from": resumed_from}
    return out


def _fit(model: LoadedModel, renderer: ChatRenderer | None, messages: list[dict] | None, prompt: str | None,
         s: GenerationSettings, prefix: str | None = None, builder: PromptBuilder | None = None) -> FittedPrompt:
    if renderer is None:
        tokens = model.tokenize(prompt or "", add_bos=True)
        _require_tokens(tokens, "The text to continue is empty.")
        fits = len(tokens) <= model.n_ctx - 1
        info = {"policy": "completion", "n_ctx": model.n_ctx, "dropped_messages": 0, "applied": not fits,
                "prompt_tokens": len(tokens), "mode": "completion"}
        if not fits:
            info["message"] = (f"The text to continue needs {len(tokens)} tokens but the context holds {model.n_ctx}."
                               " Shorten it or raise the context length.")
        return FittedPrompt(tokens=tokens, stop=list(s.stop or []), messages=[], fits=fits, info=info)

    builder = builder or PromptBuilder(model, renderer)

    def tokenize(text: str, add_bos: bool) -> list[int]:
        tokens = builder.tokenize(text, add_bos)
        _require_tokens(tokens, "The model's chat template renders this conversation as no tokens at all.")
        return tokens

    def render(msgs: list[dict]) -> RenderedPrompt:
        rendered = builder.render(msgs)
        return replace(rendered, text=rendered.text + prefix) if prefix else rendered

    fitted = fit_conversation(messages or [], render=render, tokenize=tokenize, n_ctx=model.n_ctx,
                              policy=s.context_policy, reply_reserve=reply_reserve(s.max_tokens, model.n_ctx))
    if s.stop:
        fitted.stop = list(fitted.stop) + [x for x in s.stop if x]
    return fitted


class PromptBuilder:
    """Renders messages and tokenizes the result, images included.

    A message's `images` (DecodedImage, decoded by the server) become the projector's markers ahead of
    its text; tokenizing a text with markers gives text tokens and image placeholders (vision.py), and
    `chunks` keeps the last such split, whose image spans the prompt's evaluation needs.
    """

    def __init__(self, model: LoadedModel, renderer: ChatRenderer | None) -> None:
        self.model = model
        self.renderer = renderer
        self.chunks: PromptChunks | None = None
        self._images: list = []

    def render(self, messages: list[dict]) -> RenderedPrompt:
        assert self.renderer is not None
        plain, self._images = with_image_markers(messages, self.model.projector)
        return render_safely(self.renderer, plain)

    def tokenize(self, text: str, add_bos: bool) -> list[int]:
        self.close()
        projector = self.model.projector
        if not self._images or projector is None:
            return self.model.tokenize(text, add_bos)
        try:
            self.chunks = projector.tokenize(text, self._images, add_bos)
        except ValueError as exc:
            raise UserError(f"The images could not be placed in the prompt: {exc}.") from None
        return self.chunks.tokens

    def count(self, messages: list[dict]) -> int:
        rendered = self.render(messages)
        try:
            return len(self.tokenize(rendered.text, rendered.add_bos))
        finally:
            self.close()

    def close(self) -> None:
        if self.chunks is not None:
            self.chunks.close()
            self.chunks = None


def with_image_markers(messages: list[dict], projector) -> tuple[list[dict], list]:
    """Plain {role, content} messages for the template, each image a marker ahead of its message's text;
    and the images in the order their markers appear."""
    plain: list[dict] = []
    images: list = []
    for m in messages:
        found = m.get("images") or []
        content = m.get("content") or ""
        if found:
            if projector is None:
                raise UserError(CANNOT_SEE)
            content = "".join(projector.marker for _ in found) + ("\n" + content if content else "")
            images.extend(found)
        plain.append({"role": m["role"], "content": content})
    return plain, images


CANNOT_SEE = ("This model cannot see images: no image projector (mmproj file) is loaded with it. Choose a model "
              "marked as seeing images, or import this one with its projector (--projector FILE).")


def _require_tokens(tokens: list[int], reason: str) -> None:
    # An empty batch makes llama.cpp abort the process (GGML_ASSERT logits != nullptr).
    if not tokens:
        raise UserError(reason)
