"""LocalEngine: llama.cpp on this machine, in a supervised runner process.

Callers see the `Engine` interface and nothing of the process. What the process
boundary adds is safety: a model file that aborts, crashes, loops or allocates
without end costs one sentence, never the app or a saved word.

- One runner per loaded model. Unloading ends it, so its memory really returns.
- One request at a time, in the caller's thread: `chat()` returns a lazy
  `LocalResponse`; iterating it sends the request and reads text as it streams.
- Cancel acts within one token (the runner polls for it) and within a fraction
  of a second during a long prompt (llama.cpp's abort callback). A runner that
  does not answer a cancel within 2 s is ended, and says so.
- A runner that dies is described in one sentence (`supervisor.Death`), the
  reply keeps what streamed with stop reason `error`, and the file is remembered
  (`crash_registry`) so the app does not open it again on its own.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.engine import crash_registry
from assistant.engine import protocol as P
from assistant.engine.draft_plan import DraftPlan, plan_draft
from assistant.engine.interface import Engine, ModelSummary, Response
from assistant.engine.runner.context_fit import least_tokens, prefit, reply_reserve
from assistant.engine.settings import ContextPolicy, GenerationSettings, LoadSettings
from assistant.engine.thinking import ANSWER, Piece
from assistant.engine.stream_priority import yielding_to_the_runner
from assistant.engine.supervisor import RunnerDied, RunnerProcess, RunnerTimeout
from assistant.stats import MemoryStats, ModelRef, ResponseStats, rss_bytes, tps, vram_bytes
from common.errors import ModelFileError, UserError
from common.formatting import format_bytes
from common.memory import trim_heap
from models import fit, registry
from models.gguf_file import GGUFInfo, read_gguf_info
from models import projector
from models.projector import ProjectorInfo
from models.shape import from_gguf
from models.speed import record_measured_speed

log = logging.getLogger(__name__)

DEFAULT_MAX_CTX = 4096  # a sensible default; the user can raise it up to the training context
MIN_CTX = 64
# The runner's address-space ceiling beyond what the model needs: Python, llama.cpp's code,
# thread stacks and allocator slack (measured: ~160 MB of address space before a model loads).
CEILING_BASE_BYTES = 1536 << 20
CEILING_PER_THREAD_BYTES = 16 << 20
# Beside a projector: decoding one image of the largest size allowed (50 MP as RGBA, its RGB copy and a
# resized one) and the decoded images kept between turns.
IMAGE_DECODE_BYTES = 768 << 20
# Context checkpoints (runner/checkpoints.py) may take up to a quarter of the KV estimate, at least this:
# enough for the few a chat needs, and counted in the ceiling so that saving one never hits it.
MIN_CHECKPOINT_BUDGET_BYTES = 64 << 20


class ModelCrashError(UserError):
    """llama.cpp ended the model's process (abort, crash, out of memory)."""


# A vocabulary the header did not measure: no real one has a token near this long (SmolLM2's longest is 162).
_UNKNOWN_LONGEST_TOKEN = 4096
# The most characters of prompt the runner is sent, whatever the context: tokenizing takes about 40 bytes of
# its memory per character, and what fits any context is far less (a 128k context is ~1M characters).
MAX_PROMPT_CHARS = 16_000_000


class _Stalled(Exception):
    """The runner sent nothing, not even a progress tick, for STALL_SECONDS."""


class _CrashedWithDraft(ModelCrashError):
    """A load with a draft model crashed: the model or its draft may be to blame."""


def _draft_summary(plan: LoadPlan, loaded: dict[str, Any] | None) -> dict[str, Any] | None:
    """What the summary says of drafting: the runner's account, or the app's reason for leaving the draft out."""
    if loaded:
        return dict(loaded)
    if plan.draft.notice:
        return {"kind": "model", "model": plan.settings.draft, "error": plan.draft.notice}
    return None


@dataclass
class LoadPlan:
    """Everything needed to start a runner on one model: checked before any process starts."""

    entry: registry.InstalledModel
    info: GGUFInfo
    settings: LoadSettings
    n_ctx: int
    memory_limit: int | None
    request: dict[str, Any] = field(default_factory=dict)
    projector: ProjectorInfo | None = None
    notices: list[str] = field(default_factory=list)  # settings that could not be used as given, and why
    draft: DraftPlan = field(default_factory=DraftPlan)  # the draft model or prompt lookup beside it, if any

    def without_draft(self, notice: str) -> LoadPlan:
        """The same load with the draft left out (it crashed the load), saying why."""
        request = {k: v for k, v in self.request.items() if k != "draft"}
        if self.memory_limit is not None:
            request["memory_limit"] = self.memory_limit - self.draft.ceiling_bytes
        return LoadPlan(entry=self.entry, info=self.info, settings=self.settings, n_ctx=self.n_ctx,
                        memory_limit=request.get("memory_limit"), request=request, projector=self.projector,
                        notices=list(self.notices), draft=DraftPlan(notice=notice))

    @property
    def load_deadline(self) -> float:
        # mmap makes loading fast; a slow disk reading a large file still must finish.
        return 120.0 + 60.0 * self.info.size_bytes / 1e9


def plan_load(entry: registry.InstalledModel, info: GGUFInfo, settings: LoadSettings) -> LoadPlan:
    """Check the context against the model and the machine; size the runner's memory ceiling."""
    settings, notices = settings.checked()
    for notice in notices:
        log.warning("%s: %s", entry.name, notice)
    train = info.context_length
    n_ctx = settings.n_ctx
    if n_ctx is not None:
        if n_ctx < MIN_CTX:
            raise UserError(f"A context of {n_ctx} tokens is too small to chat in; use at least 256.")
        if train and n_ctx > train:
            raise UserError(f"A context of {n_ctx:,} tokens is more than {entry.name} was trained for "
                            f"({train:,} tokens); choose {train:,} or less.")
    else:
        n_ctx = min(train or DEFAULT_MAX_CTX, DEFAULT_MAX_CTX)
    estimate = fit.estimate_memory(from_gguf(info), n_ctx, kv_cache_type=settings.kv_cache_type,
                                   flash_attn={"on": True, "off": False}.get(settings.flash_attn))
    draft = plan_draft(settings.draft, n_ctx, draft_max=settings.draft_max, adaptive=not settings.draft_always,
                       target_path=entry.path, target_name=entry.name, kv_cache_type=settings.kv_cache_type,
                       flash_attn={"on": True, "off": False}.get(settings.flash_attn))
    vision = projector_for(entry)
    projector_bytes = vision.memory_bytes if vision else 0
    machine = fit.this_machine()
    on_gpu = bool(machine.gpus) and settings.n_gpu_layers != 0
    if not on_gpu and draft.extra_bytes and estimate.total + projector_bytes + draft.extra_bytes > machine.total_ram:
        draft = DraftPlan(notice=f"With its draft model, {entry.name} would need about "
                                 f"{format_bytes(estimate.total + projector_bytes + draft.extra_bytes)} of memory, "
                                 f"more than this machine's {format_bytes(machine.total_ram)}; it loads without "
                                 "drafting.")
    if not on_gpu and estimate.total + projector_bytes > machine.total_ram:
        raise UserError(f"A context of {n_ctx:,} tokens needs about {format_bytes(estimate.total)} of memory for "
                        f"{entry.name} (its KV cache alone {format_bytes(estimate.kv_cache)}), more than this "
                        f"machine's {format_bytes(machine.total_ram)} of RAM; choose a smaller context.")
    threads = settings.resolved_threads()
    checkpoint_budget = max(MIN_CHECKPOINT_BUDGET_BYTES, estimate.kv_cache // 4)
    memory_limit = (estimate.weights + estimate.kv_cache + estimate.compute + checkpoint_budget + CEILING_BASE_BYTES
                    + threads * CEILING_PER_THREAD_BYTES + draft.ceiling_bytes)
    if vision is not None:
        memory_limit += vision.memory_bytes + IMAGE_DECODE_BYTES
    request = {
        "path": entry.path, "name": entry.name, "architecture": info.architecture, "n_ctx": n_ctx,
        "n_threads": threads, "n_gpu_layers": settings.n_gpu_layers, "n_batch": settings.n_batch,
        "chat_format": settings.chat_format, "chat_template": settings.chat_template,
        "catalogue_format": entry.chat_format, "memory_limit": memory_limit,
        "catalogue_thinking": _catalogue_thinking(entry),
        "kv_cache_type": settings.kv_cache_type, "flash_attn": settings.flash_attn,
        "checkpoint_bytes_max": checkpoint_budget,
        "projector": {"path": str(vision.path), "max_side": vision.max_side} if vision else None,
    }
    if draft.request:
        request["draft"] = draft.request
    return LoadPlan(entry=entry, info=info, settings=settings, n_ctx=n_ctx, memory_limit=memory_limit,
                    request=request, projector=vision, notices=notices, draft=draft)


def projector_for(entry: registry.InstalledModel) -> ProjectorInfo | None:
    """The image projector to load with a model: its own (pulled or imported with it), else an `mmproj*.gguf`
    beside its file. A projector it was given but that cannot be used is a sentence, not a silently blind model."""
    if entry.is_builtin or not entry.path:
        return None
    try:
        return projector.for_model(entry.path, entry.projector)
    except ModelFileError as exc:
        raise UserError(f"The image projector of {entry.name} ({exc.path}) cannot be used: {exc.reason}.") from None


def _catalogue_thinking(entry: registry.InstalledModel) -> str | None:
    """The thinking format the catalogue records for this model's family, if it knows the model."""
    try:
        listed = registry.catalogue_entry(entry.name)
    except (UserError, OSError):  # an unreadable model list: the template still tells
        return None
    return getattr(listed, "thinking", None) if listed is not None else None


class LocalEngine(Engine):
    def __init__(self) -> None:
        self._lock = threading.RLock()  # one load or request on the runner at a time
        self._runner: RunnerProcess | None = None
        self._summary: ModelSummary | None = None
        self._plan: LoadPlan | None = None  # what is loaded: to start again after the app ended a stuck runner
        self._relaunch = False
        self._current: LocalResponse | None = None
        self._starting: RunnerProcess | None = None  # a runner being loaded, which cancel() may end
        self._load_cancelled = False
        self._ids = itertools.count(1)

    # --- Loading
    def load(self, spec: Any, settings: LoadSettings | None = None, *, automatic: bool = False) -> ModelSummary:
        settings = settings or LoadSettings()
        entry = spec if isinstance(spec, registry.InstalledModel) else registry.resolve(spec)
        info = read_gguf_info(entry.path)  # a defect the header shows never reaches llama.cpp
        if automatic:
            crash = crash_registry.crash_record(entry.path, entry.sha256)
            if crash:
                raise ModelCrashError(f"{entry.name} was not opened: it crashed the model's process before "
                                      f"({crash.get('reason', 'no reason kept')}). Choose it again to retry.")
        plan = plan_load(entry, info, settings)
        with self._lock:
            previous = self._plan if self._summary is not None else None
            self._end_runner()
            try:
                try:
                    summary = self._start(plan)
                except _CrashedWithDraft as crash:
                    plan, summary = self._load_without_draft(plan, crash)
                self._summary, self._plan = summary, plan
            except UserError:
                self._summary, self._plan = None, None
                if previous is not None and previous.entry.path != plan.entry.path:
                    self._restore(previous)  # keep the user chatting on what they had
                raise
            return summary

    def _load_without_draft(self, plan: LoadPlan, crash: _CrashedWithDraft) -> tuple[LoadPlan, ModelSummary]:
        """A load with a draft model crashed: load the model alone. If that works, the draft was the cause
        (remembered, so it is not opened again on its own); if not, the model is, as for any crash."""
        draft = plan.draft.request or {}
        sentence = (f"The draft model {draft.get('name')} crashed the model's process while loading, so "
                    f"{plan.entry.name} was loaded without it.")
        alone = plan.without_draft(sentence)
        summary = self._start(alone)
        log.warning("%s (%s)", sentence, crash)
        if draft.get("path") and draft.get("path") != plan.entry.path:
            crash_registry.remember(draft["path"], str(crash))
        return alone, summary

    def _restore(self, previous: LoadPlan) -> None:
        try:
            self._summary = self._start(previous)
            self._plan = previous
        except UserError as exc:
            log.warning("could not reopen %s after a failed load: %s", previous.entry.name, exc)

    def _start(self, plan: LoadPlan) -> ModelSummary:
        name = plan.entry.name
        self._load_cancelled = False
        try:
            runner = RunnerProcess()
        except (RunnerDied, RunnerTimeout) as exc:
            raise UserError(f"The model's process could not start ({exc or 'no answer'}).") from exc
        self._starting = runner
        try:
            runner.send((P.LOAD, plan.request))
            msg = self._await_load(runner, plan)
        except _Stalled:
            runner.kill()
            runner.death()
            raise UserError(f"The model's process made no progress for {P.STALL_SECONDS:g} s while loading {name} "
                            "(it was stopped, or the machine is too busy), so it was ended; nothing is wrong with "
                            "the file. Try again.") from None
        except RunnerDied:
            death = runner.death()
            if self._load_cancelled:
                raise UserError(f"Loading {name} was cancelled.") from None
            sentence = death.describe(name, "loading", plan.memory_limit)
            if plan.draft.is_model and not death.killed_by_app:
                raise _CrashedWithDraft(sentence) from None  # which of the two files? load() tries the model alone
            self._remember_crash(plan.entry, sentence)
            raise ModelCrashError(sentence) from None
        except RunnerTimeout:
            runner.kill()
            runner.death()
            raise UserError(f"Loading {name} took longer than {plan.load_deadline:.0f} s, so it was stopped; the "
                            "file may be damaged or hostile, or the disk very slow.") from None
        finally:
            self._starting = None
        if msg[0] != P.LOADED:
            runner.stop()
            raise UserError(msg[1] if msg[0] == P.ERROR else f"The model's process answered {msg[0]!r}.")
        self._runner, self._relaunch = runner, False
        return self._make_summary(plan, msg[1], runner)

    @staticmethod
    def _await_load(runner: RunnerProcess, plan: LoadPlan) -> Any:
        """The load's answer: RunnerTimeout past the load's deadline, _Stalled after STALL_SECONDS of silence
        (the runner ticks every second while it loads, so silence means it is stopped or starved)."""
        deadline = time.monotonic() + plan.load_deadline
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise RunnerTimeout()
            try:
                msg = runner.recv(min(left, P.STALL_SECONDS))
            except RunnerTimeout:
                if deadline - time.monotonic() <= 0:
                    raise
                raise _Stalled() from None
            if msg[0] != P.PROGRESS:
                return msg

    def _make_summary(self, plan: LoadPlan, data: dict[str, Any], runner: RunnerProcess) -> ModelSummary:
        entry, info = plan.entry, plan.info
        backend = dict(data["backend"], runner_startup_ms=runner.startup_ms)
        return ModelSummary(
            name=entry.name, path=entry.path, quant=info.quant, architecture=info.architecture,
            n_params=data.get("n_params") or info.n_params, size_bytes=info.size_bytes, n_ctx=data["n_ctx"],
            n_ctx_train=data.get("n_ctx_train") or info.context_length, n_threads=data["n_threads"],
            n_gpu_layers=data["n_gpu_layers"], chat_format=data["chat_format"],
            has_chat_template=data["has_chat_template"], backend=backend, memory=data["memory"], kind="local",
            pid=runner.pid, load_ms=data.get("load_ms"),
            is_base=not data["has_chat_template"] or bool(getattr(entry, "is_base", False)),
            spec=entry.name if entry.source == "starter" or registry.get(entry.name) else entry.path,
            thinking=data.get("thinking"),
            vision=bool(data.get("vision")), projector=data.get("projector"),
            kv_cache=dict(data.get("kv_cache") or {}), notices=list(plan.notices),
            draft=_draft_summary(plan, data.get("draft")),
        )

    def _remember_crash(self, entry: registry.InstalledModel, sentence: str) -> None:
        crash_registry.remember(entry.path, sentence, sha256=entry.sha256)

    def unload(self) -> None:
        with self._lock:
            self._end_runner()
            self._summary, self._plan, self._relaunch = None, None, False
        trim_heap()  # the header read and the load's bookkeeping leave freed heap that glibc would keep

    def _end_runner(self) -> None:
        runner, self._runner = self._runner, None
        if runner is not None:
            runner.stop()

    def summary(self) -> ModelSummary | None:
        """What is loaded, with the model process's memory as it is now (read from outside it)."""
        s = self._summary
        if s is None:
            return None
        if s.pid:
            rss = rss_bytes(s.pid)
            if rss is not None:
                s.memory = dict(s.memory, rss_bytes=rss, vram_bytes=vram_bytes(s.pid))
        return s

    # --- Requests
    def chat(self, messages: list[dict], settings: GenerationSettings | None = None, *,
             prefix: str | None = None) -> LocalResponse:
        self._require_summary()
        return LocalResponse(self, wire_messages(messages), None, settings or GenerationSettings(), prefix=prefix)

    def complete(self, prompt: str, settings: GenerationSettings | None = None) -> LocalResponse:
        self._require_summary()
        return LocalResponse(self, None, prompt, settings or GenerationSettings())

    def count_tokens(self, messages: list[dict]) -> int:
        """Exact, from the runner; for a conversation that certainly cannot fit the context, the lower bound
        counted from its characters instead (no render or tokenization of 300,000 messages for a meter)."""
        summary = self._require_summary()
        bound = prefit(messages, n_ctx=summary.n_ctx, policy=ContextPolicy.STOP, reserve=0,
                       longest_token=self._longest_token())
        if bound.refusal is not None:
            return bound.at_least
        return int(self.call(P.COUNT, next(self._ids), wire_messages(messages), doing="counting the tokens of",
                             timeout=P.RENDER_DEADLINE_SECONDS,
                             reading=sum(len(str(m.get("content") or "")) for m in messages)))

    def _longest_token(self) -> int:
        """The vocabulary's longest token in bytes (the header's figure), which bounds a token's characters."""
        plan = self._plan
        longest = plan.info.longest_token_bytes if plan is not None else None
        return longest or _UNKNOWN_LONGEST_TOKEN

    def call(self, kind: str, *args: Any, doing: str = "working with", timeout: float | None = None,
             reading: int | None = None) -> Any:
        """One request with one answer (counting tokens, a benchmark step), under the engine's lock;
        `reading`: the characters of conversation it reads (a death for want of memory is then theirs)."""
        with self._lock:
            runner = self._ready_runner()
            try:
                runner.send((kind, *args))
                msg = runner.recv(timeout)
                while msg[0] == P.PROGRESS:  # a tick is not the answer
                    msg = runner.recv(timeout)
            except RunnerDied:
                raise self._runner_died(runner, doing, reading=reading) from None
            except RunnerTimeout:
                runner.kill()
                self._runner_died(runner, doing)
                raise UserError(f"The model's process did not answer within {timeout:.0f} s while {doing} "
                                f"{self._name()}, so it was ended.") from None
            if msg[0] == P.ERROR:
                raise UserError(msg[1])
            return msg[1]

    def cancel(self) -> None:
        """Stop the reply in flight, or a load in progress, from any thread."""
        current = self._current
        if current is not None:
            current.cancel()
        starting = self._starting
        if starting is not None:
            self._load_cancelled = True
            starting.kill()

    def close(self) -> None:
        self.cancel()
        self.unload()

    # --- Internals shared with LocalResponse
    def _require_summary(self) -> ModelSummary:
        if self._summary is None:
            raise UserError("No model is loaded; pick one with -m or /model NAME.")
        return self._summary

    def _name(self) -> str:
        return self._summary.name if self._summary else "the model"

    def _ready_runner(self) -> RunnerProcess:
        """The runner, started again if the app ended it after an unanswered cancel."""
        if self._runner is None and self._relaunch and self._plan is not None:
            log.info("starting %s again after its process was ended", self._plan.entry.name)
            self._summary = self._start(self._plan)
        if self._runner is None:
            raise UserError("No model is loaded; pick one with -m or /model NAME.")
        return self._runner

    def _runner_died(self, runner: RunnerProcess, doing: str, *, reading: int | None = None) -> UserError:
        """Account for a runner that ended; the sentence that says so.

        `reading`: it died while reading a conversation of this many characters (rendering, tokenizing),
        before any of it was evaluated. Out of memory then is the conversation's size, not the model's fault:
        the file is not marked as crashed, and the next request starts it again."""
        death = runner.death()
        name = self._name()
        if runner is self._runner:
            self._runner = None
        sentence = death.describe(name, doing, self._plan.memory_limit if self._plan else None)
        if reading is not None and death.out_of_memory:
            self._relaunch = self._plan is not None
            limit = self._plan.memory_limit if self._plan else None
            allowance = f" (it may use about {format_bytes(limit)})" if limit else ""
            return UserError(f"The model's process ran out of memory while reading this conversation "
                             f"({reading:,} characters){allowance}; the conversation is too large for it. Nothing "
                             f"is wrong with {name}.")
        if death.killed_by_app or death.signal_name == "SIGKILL":
            # Ended by the app (a cancel that went unanswered) or from outside (the system's out-of-memory
            # killer, a user's kill): not the file's fault, so the next request starts it again.
            self._relaunch = self._plan is not None
            return UserError(f"The model's process was ended while {doing} {name}." if death.killed_by_app
                             else sentence)
        if self._plan is not None:
            self._remember_crash(self._plan.entry, sentence)
        self._summary, self._plan, self._relaunch = None, None, False
        return ModelCrashError(sentence)


def wire_messages(messages: list[dict]) -> list[dict]:
    """Messages as the runner takes them: role and content, and each image as its file's bytes (decoded there);
    a reply's thinking as `reasoning_content`, which a chat template may keep (Qwen3.5 does after the last
    user turn) or drop (most do: earlier thinking is not sent back to the model)."""
    out = []
    for m in messages:
        msg = {"role": m["role"], "content": m["content"]}
        if m.get("thinking") and m["role"] == "assistant":
            msg["reasoning_content"] = m["thinking"]
        if m.get("images"):
            msg["images"] = [image.wire() if hasattr(image, "wire") else dict(image) for image in m["images"]]
        out.append(msg)
    return out


class LocalResponse(Response):
    def __init__(self, engine: LocalEngine, messages: list[dict] | None, prompt: str | None,
                 settings: GenerationSettings, prefix: str | None = None) -> None:
        super().__init__(messages, settings, prompt, prefix)
        self.engine = engine
        self._request_id: int | None = None
        self._runner: RunnerProcess | None = None
        self._cancel_lock = threading.Lock()
        self._watchdog: threading.Timer | None = None

    def cancel(self) -> None:
        with self._cancel_lock:
            super().cancel()
            if self._request_id is None or self.done or self._runner is None:
                return
            try:
                self._runner.send((P.CANCEL, self._request_id))
            except RunnerDied:
                return
            if self._watchdog is None:
                self._watchdog = threading.Timer(P.CANCEL_GRACE_SECONDS, self._cancel_overdue, args=(self._runner,))
                self._watchdog.daemon = True
                self._watchdog.start()

    def _cancel_overdue(self, runner: RunnerProcess) -> None:
        if not self.done:
            log.warning("runner %s did not stop within %.1f s of a cancel; ending it", runner.pid,
                        P.CANCEL_GRACE_SECONDS)
            runner.kill()

    def _stream(self) -> Generator[str | Piece, None, None]:
        eng = self.engine
        receipt = _Receipt(time.perf_counter())
        with eng._lock:
            summary = eng._summary
            try:
                runner = eng._ready_runner()
                summary = eng._summary
            except UserError as exc:
                receipt.error = str(exc)
                self.stats = receipt.stats(self, summary)
                return
            eng._current = self
            try:
                with yielding_to_the_runner():  # its wake-ups must not preempt llama.cpp's threads
                    yield from self._exchange(runner, receipt)
            finally:
                eng._current = None
                if self._watchdog is not None:
                    self._watchdog.cancel()
                self.stats = receipt.stats(self, summary)
                self._record_speed(summary)

    def _exchange(self, runner: RunnerProcess, receipt: _Receipt) -> Iterator[Piece]:
        eng = self.engine
        bounded = self._bounded_input(receipt)
        if bounded is None:
            return  # refused before the runner saw it: it cannot fit (receipt.record says so, with figures)
        with self._cancel_lock:
            if self.cancelled:
                receipt.forced_stop = True
                return
            request_id = next(eng._ids)
            if self.messages is not None:
                runner.send((P.CHAT, request_id, bounded, self.settings.to_dict(), self.prefix))
            else:
                runner.send((P.COMPLETE, request_id, self.prompt, self.settings.to_dict()))
            self._request_id, self._runner = request_id, runner
        reading = len(bounded) if isinstance(bounded, str) else sum(len(str(m.get("content") or "")) for m in bounded)
        timeout: float | None = P.RENDER_DEADLINE_SECONDS
        rendered = False
        try:
            while True:
                msg = runner.recv(timeout)
                kind = msg[0]
                if kind == P.PROGRESS:
                    continue
                if kind == P.TEXT:
                    if self.cancelled:
                        continue  # produced before the runner saw the cancel: the user pressed stop, show no more
                    receipt.text(msg[2])
                    if msg[1]:
                        yield Piece(msg[3] if len(msg) > 3 else ANSWER, msg[1], msg[2])
                elif kind == P.RENDERED:
                    receipt.prompt_tokens = msg[1]
                    # A prompt evaluation may take minutes, but the runner ticks every second meanwhile:
                    # silence now means it has stalled, not that it is busy.
                    timeout, rendered = P.STALL_SECONDS, True
                elif kind == P.DONE:
                    receipt.record = msg[1]
                    return
                elif kind == P.ERROR:
                    receipt.error = msg[1]
                    return
        except GeneratorExit:
            self._abandon(runner, receipt)
            raise
        except RunnerDied:
            # Before the prompt was rendered the runner was reading this conversation: a death for want of
            # memory then is the conversation's size, never the model's fault.
            error = eng._runner_died(runner, "answering with", reading=None if rendered else reading)
            if self.cancelled:
                receipt.forced_stop = True
                receipt.error = (f"The model did not stop within {P.CANCEL_GRACE_SECONDS:g} s, so its process was "
                                 "ended; the reply so far is kept.")
            else:
                receipt.error = str(error)
        except RunnerTimeout:
            runner.kill()
            if rendered:
                eng._runner_died(runner, "answering with")
                receipt.error = (f"The model's process made no progress for {P.STALL_SECONDS:g} s (it was stopped, "
                                 "or the machine is too busy), so it was ended; the reply so far is kept.")
            else:
                eng._runner_died(runner, "rendering the chat template of")
                receipt.error = (f"The model's chat template did not render within "
                                 f"{P.RENDER_DEADLINE_SECONDS:.0f} s, so the model's process was ended.")

    def _bounded_input(self, receipt: _Receipt) -> list[dict] | str | None:
        """What goes to the runner: the conversation without what certainly cannot fit the context, counted
        from characters (no tokenizer); None, with receipt.record saying why with figures, when nothing can."""
        eng = self.engine
        summary = eng._require_summary()
        n_ctx, s = summary.n_ctx, self.settings
        longest = eng._longest_token()
        if self.messages is None:
            text = self.prompt or ""
            at_least = least_tokens(text, longest)
            if at_least <= n_ctx - 1 and len(text) <= MAX_PROMPT_CHARS:
                return text
            receipt.refuse(at_least, {
                "policy": "completion", "n_ctx": n_ctx, "dropped_messages": 0, "applied": True,
                "prompt_tokens": at_least, "at_least": True, "counted": "characters", "mode": "completion",
                "message": f"The text to continue needs at least {at_least:,} tokens but the context holds "
                           f"{n_ctx:,}. Shorten it or raise the context length."})
            return None
        bound = prefit(self.messages, n_ctx=n_ctx, policy=s.context_policy,
                       reserve=reply_reserve(s.max_tokens, n_ctx), longest_token=longest,
                       extra=least_tokens(self.prefix or "", longest))
        if bound.refusal is not None:
            receipt.refuse(bound.at_least, bound.refusal)
            return None
        chars = sum(len(str(m.get("content") or "")) for m in bound.messages)
        if chars > MAX_PROMPT_CHARS:
            receipt.refuse(bound.at_least, {
                "policy": s.context_policy.value, "n_ctx": n_ctx, "dropped_messages": bound.dropped,
                "applied": True, "prompt_tokens": bound.at_least, "at_least": True, "counted": "characters",
                "message": f"The conversation is {chars:,} characters long, more than the model's process reads "
                           f"at once ({MAX_PROMPT_CHARS:,}). Start a new chat or shorten it."})
            return None
        receipt.pre_dropped = bound.dropped
        return bound.messages

    def _abandon(self, runner: RunnerProcess, receipt: _Receipt) -> None:
        """The caller stopped reading: stop the runner's reply and read to its end, so the next request starts clean."""
        self.cancel()
        receipt.forced_stop = True
        deadline = time.monotonic() + P.CANCEL_GRACE_SECONDS
        try:
            while True:
                msg = runner.recv(max(0.0, deadline - time.monotonic()))
                if msg[0] in (P.DONE, P.ERROR):
                    if msg[0] == P.DONE:
                        receipt.record = msg[1]
                    return
        except (RunnerDied, RunnerTimeout):
            runner.kill()
            self.engine._runner_died(runner, "stopping")

    def _record_speed(self, summary: ModelSummary | None) -> None:
        """Feed a measured speed to the catalogue's estimates (only long enough local replies count)."""
        st = self.stats
        if summary is None or st is None or st.completion_tokens < 16 or not st.gen_tps:
            return
        if st.draft and st.draft.get("drafted"):  # drafted tokens come faster than the model's own speed
            return
        try:
            record_measured_speed(Path(summary.path), st.gen_tps, st.n_threads or 1,
                                  cpu_busy_fraction=st.transport.get("cpu_other_busy"))
        except OSError as exc:  # a statistic we could not save must not cost the user their reply
            log.warning("could not record the measured speed: %s", exc)


class _Receipt:
    """What the app saw of one reply: its own clock around the runner's record."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.n_first = 0
        self.n_last = 0
        self.batches = 0
        self.prompt_tokens = 0
        self.record: dict[str, Any] | None = None
        self.error: str | None = None
        self.forced_stop = False  # stopped by the app (a cancel), whatever the runner said
        self.pre_dropped = 0  # messages dropped in the app before the runner counted (they could not fit)

    def refuse(self, at_least: int, context: dict[str, Any]) -> None:
        """The reply ends before the runner sees it: the prompt cannot fit (figures from its characters)."""
        self.prompt_tokens = at_least
        self.record = {"stop_reason": "context_full", "prompt_tokens": at_least, "completion_tokens": 0,
                       "context": context}

    def context(self, r: dict[str, Any]) -> dict[str, Any]:
        """The runner's context record, with the messages the app dropped before it counted."""
        context = dict(r.get("context") or {})
        if self.pre_dropped:
            dropped = int(context.get("dropped_messages") or 0) + self.pre_dropped
            context.update(dropped_messages=dropped, applied=True)
            if context.get("message", "").startswith("Dropped") or "message" not in context:
                context["message"] = (f"Dropped the {dropped} oldest messages to fit the context of "
                                      f"{context.get('n_ctx', '?')} tokens.")
        return context

    def text(self, n_tokens: int) -> None:
        now = time.perf_counter()
        if self.t_first is None:
            self.t_first, self.n_first = now, n_tokens
        self.t_last, self.n_last = now, n_tokens
        self.batches += 1

    def stats(self, response: LocalResponse, summary: ModelSummary | None) -> ResponseStats:
        end = time.perf_counter()
        r = self.record or {}
        mem = r.get("memory") or {}
        stop_reason = r.get("stop_reason") or ("stopped" if self.forced_stop and not self.error else "error")
        if self.forced_stop and stop_reason == "error" and self.error and "did not stop" in self.error:
            stop_reason = "stopped"
        completion = r.get("completion_tokens", self.n_last)
        gen_ms = r.get("gen_ms") or 0.0
        if response.cancelled and self.record is not None and completion > self.n_last:
            # The runner ran ahead of what was shown before the stop: count what the user got.
            stop_reason = "stopped"
            gen_ms = gen_ms * max(0, self.n_last - 1) / max(1, completion - 1)
            completion = self.n_last
        thinking_tokens = min(int(r.get("thinking_tokens") or 0), completion)
        thinking = "".join(response.thinking_chunks).strip() or None
        if thinking is None:
            thinking_tokens = 0  # nothing of the thinking reached the user (stopped at its start)
        received = None
        if self.t_first is not None and self.t_last is not None and self.t_last > self.t_first:
            received = tps(self.n_last - self.n_first, (self.t_last - self.t_first) * 1000)
        settings = response.settings
        return ResponseStats(
            reply="".join(response.chunks),
            model=ModelRef(name=summary.name if summary else "?", file=summary.path if summary else None,
                           quant=summary.quant if summary else None,
                           size_bytes=summary.size_bytes if summary else None,
                           n_params=summary.n_params if summary else None),
            prompt_tokens=r.get("prompt_tokens", self.prompt_tokens),
            cached_tokens=r.get("cached_tokens", 0),
            prompt_ms=r.get("prompt_ms", 0.0),
            prompt_tps=tps(r.get("prompt_tokens", 0) - r.get("cached_tokens", 0), r.get("prompt_ms", 0.0)),
            ttft_ms=round((self.t_first - self.t0) * 1000, 2) if self.t_first else None,
            completion_tokens=completion,
            gen_ms=gen_ms,
            gen_tps=tps(completion - 1, gen_ms),
            total_ms=round((end - self.t0) * 1000, 2),
            stop_reason=stop_reason,
            n_ctx=r.get("n_ctx", summary.n_ctx if summary else None),
            n_threads=r.get("n_threads", summary.n_threads if summary else None),
            memory=MemoryStats(
                weights_bytes=mem.get("weights_bytes"), kv_bytes=mem.get("kv_bytes"),
                compute_bytes=mem.get("compute_bytes"), rss_bytes=mem.get("rss_bytes"),
                rss_peak_bytes=mem.get("rss_peak_bytes"), vram_bytes=mem.get("vram_bytes"),
                app_rss_bytes=rss_bytes(), projector_bytes=mem.get("projector_bytes"),
                checkpoint_bytes=mem.get("checkpoint_bytes"), draft_bytes=_draft_bytes(mem),
            ),
            backend=r.get("backend") or (dict(summary.backend) if summary else {}),
            context=self.context(r),
            sampling=r.get("sampling") or {**settings.to_dict()},
            chat_format=r.get("chat_format") or (summary.chat_format if summary else None),
            error=self.error or r.get("error"),
            images=r.get("images") or {},
            transport={"runner_pid": summary.pid if summary else None, "runner_ttft_ms": r.get("ttft_ms"),
                       "received_gen_tps": received, "batches": self.batches,
                       "cpu_other_busy": r.get("cpu_other_busy"), "bookkeeping_ms": r.get("bookkeeping_ms")},
            thinking=thinking, thinking_tokens=thinking_tokens,
            thinking_ms=float(r.get("thinking_ms") or 0.0) if thinking else 0.0,
            answer_tokens=completion - thinking_tokens, thinking_format=r.get("thinking_format"),
            thinking_unfinished=bool(r.get("thinking_unfinished")) and thinking is not None,
            thinking_closed_by_budget=bool(r.get("thinking_closed_by_budget")),
            kv_cache=r.get("kv_cache") or (dict(summary.kv_cache) if summary else {}),
            draft=r.get("draft") or _draft_refusal(summary),
        )


def _draft_bytes(memory: dict[str, Any]) -> int | None:
    """The draft model's weights, KV cache and compute buffer in the model's process (None without one)."""
    parts = [memory.get(k) for k in ("draft_weights_bytes", "draft_kv_bytes", "draft_compute_bytes")]
    return sum(p for p in parts if p) if any(parts) else None


def _draft_refusal(summary: ModelSummary | None) -> dict[str, Any] | None:
    """A draft asked for but left out at load: each reply's record says so (drafted nothing)."""
    draft = summary.draft if summary is not None else None
    if draft and draft.get("error"):
        return {**draft, "drafted": 0, "accepted": 0}
    return None
