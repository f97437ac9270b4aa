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

from assistant.engine import thinking, thinking_controls
from assistant.engine.runner.chat_template import ChatRenderer, RenderedPrompt, render_safely
from assistant.engine.runner.context_fit import FittedPrompt, fit_conversation, reply_reserve
from assistant.engine.runner.llama_model import Cancelled, DecodeError, GrammarError, LoadedModel, Sampler
from assistant.engine.runner.repetition import RepetitionGuard
from assistant.engine.runner.text_stream import TextStream
from assistant.engine.runner.vision import PromptChunks
from assistant.engine.settings import GenerationSettings
from assistant.engine.thinking import ANSWER, THINKING, ThinkingParser
from common.errors import UserError
from models.speed import CpuLoadMeter

if TYPE_CHECKING:
    from assistant.engine.runner.drafting import DraftSetup


class Sink(Protocol):
    def rendered(self, n_prompt_tokens: int) -> None: ...
    def first_token(self) -> None: ...
    def text(self, text: str, n_tokens: int, kind: str = ANSWER) -> None: ...
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
    # A reasoning model's thinking (the text itself reaches the app as "thinking" pieces): its tokens,
    # counted in completion_tokens too, and the time from the first token to the thinking's end.
    thinking_tokens: int = 0
    thinking_ms: float = 0.0
    thinking_format: str | None = None  # the format the reply was parsed with; None: not a thinking reply
    thinking_budget: int | None = None  # the budget this reply had
    thinking_closed_by_budget: bool = False  # the runner closed the thinking at the budget
    thinking_unfinished: bool = False  # the reply ended inside its thinking
    # Speculative decoding: {"kind", "model", "drafted", "accepted", "paused", "break_even"}; None without it.
    draft: dict | None = None
    # Images in the prompt: {"count", "tokens", "encode_ms", "projector_bytes", "encoded", "reused"}.
    images: dict = field(default_factory=dict)
    # The KV cache as allocated (type, flash attention, window-sized or full sliding-window layers) and its
    # context checkpoints; "resumed_from": the checkpoint this reply's prompt resumed from, if one was used.
    kv_cache: dict = field(default_factory=dict)


def generate(model: LoadedModel, renderer: ChatRenderer | None, messages: list[dict] | None, prompt: str | None,
             settings: GenerationSettings, sink: Sink, *, t_request: float, prefix: str | None = None,
             thinking_format: str | None = None, drafting: DraftSetup | None = None) -> Outcome:
    """Generate one reply; `renderer` None with `prompt` set means text completion (no template).

    `prefix`: the reply's start, already written (a stopped reply being continued): it follows the
    rendered prompt, so the model goes on from it; only new text reaches the sink.
    `thinking_format`: the model's detected thinking format (thinking.detect_format); the settings
    may override it. Thinking and answer reach the sink as pieces of their own kind.
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
    plan = (thinking_controls.plan(s, thinking_format, renderer.template) if renderer is not None
            else thinking_controls.ThinkingPlan(format=None))
    reading: _ThinkingReader | None = None
    builder = PromptBuilder(model, renderer)
    try:
        fitted = _fit(model, renderer, messages, prompt, s, prefix, builder, plan)
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
        # Only a cache that cannot be cut back keeps checkpoints: only it needs the reply's opening found.
        opening = _reply_opening(model, plan, fitted) if model.checkpoints.limit > 0 else None
        tp = time.perf_counter()
        try:
            evaluated = model.eval_prompt(fitted.tokens, should_abort=sink.should_stop, checkpoint_at=opening,
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
        reading = _ThinkingReader(model, plan, fitted.text, sink, continuing=bool(prefix))
        out.thinking_format, out.thinking_budget = reading.format, reading.budget
        if drafting is not None and s.use_draft:
            speculator = drafting.start(model, sampler, s, out.seed, sink.should_stop)
        verified: deque[int] = deque()  # tokens a draft round verified: all but the last already in the cache
        while True:
            if sink.should_stop():
                out.stop_reason = "stopped"
                break
            # The budget is checked between draft rounds only: verified tokens already sit in the cache.
            if not verified and reading.over_budget():
                # The budget is spent: the model's own closing delimiter goes into the context, then it answers.
                closing = reading.closing_tokens()
                if len(model.kv_tokens) + len(closing) >= model.n_ctx:
                    out.stop_reason = "context_full"
                    break
                for tok in closing:
                    out.completion_tokens += 1
                    reading.take(tok, stream.feed(reading.bytes_of(tok)), out.completion_tokens, time.perf_counter())
                model.decode(closing)  # a drafter catches up from the target's tokens
                out.thinking_closed_by_budget = True
                continue
            token = verified.popleft() if verified else sampler.sample()
            now = time.perf_counter()
            if not s.ignore_eos and (model.is_eog(token) or token in stop_ids):
                out.stop_reason = "eos"
                break
            out.completion_tokens += 1
            n_out = out.completion_tokens
            if t_first is None:
                t_first = now
                reading.started(now)
                sink.first_token()
            t_last = now
            reading.take(token, stream.feed(reading.bytes_of(token)), n_out, now)
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
        reading.finish(stream.flush(), out.completion_tokens)
        sink.flush()  # the last batch leaves now, before any bookkeeping: it must not arrive late
    except Cancelled:
        out.stop_reason = "stopped"
    except (DecodeError, GrammarError, UserError) as exc:
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
        if reading is not None:
            reading.account(out, t_last)
    return out


def _reply_opening(model: LoadedModel, plan: thinking_controls.ThinkingPlan, fitted: FittedPrompt) -> int | None:
    """The token where this reply's thinking markup begins in the prompt (see thinking.reply_opening):
    the next turn renders this reply back without it, so its prompt parts from this one there. A
    checkpoint at that token lets a cache that cannot be cut back (recurrent, window-sized) resume
    exactly there. None when there is no such markup or its text does not end on a token boundary."""
    at = thinking.reply_opening(plan.format, fitted.text)
    if at is None:
        return None
    head = model.tokenize(fitted.text[:at], fitted.add_bos)
    return len(head) if head and fitted.tokens[:len(head)] == head else None


def _fit(model: LoadedModel, renderer: ChatRenderer | None, messages: list[dict] | None, prompt: str | None,
         s: GenerationSettings, prefix: str | None = None, builder: PromptBuilder | None = None,
         plan: thinking_controls.ThinkingPlan | None = None) -> FittedPrompt:
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

    plan = plan or thinking_controls.ThinkingPlan(format=None)

    def render(msgs: list[dict]) -> RenderedPrompt:
        msgs = thinking_controls.with_system_note(msgs, plan.system_note)
        rendered = builder.render(msgs, plan.template_kwargs)
        text = rendered.text
        if plan.format and (plan.close_prompt or prefix):
            # Thinking off without a template switch, or a continued reply (its thinking is over):
            # the prompt ends with the thinking closed, and the model goes on with the answer.
            text += thinking.close_block(plan.format, text)
        return replace(rendered, text=text + (prefix or ""))

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

    def render(self, messages: list[dict], template_kwargs: dict | None = None) -> RenderedPrompt:
        """`template_kwargs`: what the template reads besides the messages (enable_thinking, reasoning_effort)."""
        assert self.renderer is not None
        plain, self._images = with_image_markers(messages, self.model.projector)
        return render_safely(self.renderer, plain, template_kwargs=template_kwargs)

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
        message = {"role": m["role"], "content": content}
        if m.get("reasoning_content"):  # a reply's thinking: the template keeps it or drops it
            message["reasoning_content"] = m["reasoning_content"]
        plain.append(message)
    return plain, images


CANNOT_SEE = ("This model cannot see images: no image projector (mmproj file) is loaded with it. Choose a model "
              "marked as seeing images, or import this one with its projector (--projector FILE).")


def _require_tokens(tokens: list[int], reason: str) -> None:
    # An empty batch makes llama.cpp abort the process (GGML_ASSERT logits != nullptr).
    if not tokens:
        raise UserError(reason)


class _ThinkingReader:
    """A reply's text on its way to the sink, thinking told apart from the answer (one per reply).

    Marker tokens of the format render as their text (plain detokenizing drops special tokens), the
    parser keeps them out of what is shown, and each token is counted as thinking or answer by the
    part of the reply it belongs to (a delimiter goes with the thinking it opens or closes).
    """

    def __init__(self, model: LoadedModel, plan: thinking_controls.ThinkingPlan, prompt_text: str, sink: Sink,
                 *, continuing: bool = False) -> None:
        self.model, self.sink = model, sink
        self.format = plan.format
        self.parser: ThinkingParser | None = None
        if plan.format:  # a continued reply goes on with its answer: its thinking is over
            self.parser = (ThinkingParser(plan.format, answering=True) if continuing
                           else ThinkingParser.for_prompt(plan.format, prompt_text))
        self.budget = plan.budget if plan.format else None
        self.markers = model.marker_pieces(thinking.MARKERS[plan.format]) if plan.format else {}
        self.n_thinking = 0
        self._undecided = 0  # tokens whose text the parser holds back (part of a delimiter, perhaps)
        self.t_first: float | None = None
        self.t_thinking_end: float | None = None
        self._closing: list[int] | None = None

    def started(self, now: float) -> None:
        self.t_first = now

    def bytes_of(self, token: int) -> bytes:
        marker = self.markers.get(token)
        return marker if marker is not None else self.model.piece(token)

    def over_budget(self) -> bool:
        return (self.parser is not None and self.budget is not None and self.parser.state == THINKING
                and self.n_thinking >= self.budget and self._closing is None)

    def closing_tokens(self) -> list[int]:
        assert self.format is not None
        self._closing = self.model.tokenize(thinking.CLOSING[self.format], add_bos=False)
        return self._closing

    def take(self, token: int, text: str, n_out: int, now: float) -> None:
        if self.parser is None:
            if text:
                self.sink.text(text, n_out, ANSWER)
            return
        before = self.parser.phase
        pieces = self.parser.feed(text)
        after = self.parser.phase
        if self.parser.holding and before == after and not pieces:
            self._undecided += 1  # the start of a delimiter, perhaps: counted once the parser knows
        else:
            if THINKING in (before, after):
                self.n_thinking += 1 + self._undecided
            self._undecided = 0
        if before == THINKING and after != THINKING:
            self.t_thinking_end = now
        for piece in pieces:
            self.sink.text(piece.text, n_out, piece.kind)

    def finish(self, tail: str, n_out: int) -> None:
        if self.parser is None:
            if tail:
                self.sink.text(tail, n_out, ANSWER)
            return
        for piece in self.parser.feed(tail) + self.parser.finish():
            self.sink.text(piece.text, n_out, piece.kind)

    def account(self, out: Outcome, t_last: float | None) -> None:
        """The thinking's share of the record. A reply with no thinking text (an empty block, Harmony's
        final header alone) spent nothing on thinking: its few markup tokens count with the answer."""
        if self.parser is None:
            return
        out.thinking_unfinished = self.parser.unfinished and bool(self.parser.thinking)
        if not self.parser.thinking:
            return
        out.thinking_tokens = self.n_thinking
        end = self.t_thinking_end or t_last
        if self.t_first is not None and end is not None:
            out.thinking_ms = round((end - self.t_first) * 1000, 2)
