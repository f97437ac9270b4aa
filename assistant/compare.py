"""Compare: the same prompt on several models, one after another, through the chat service.

"Is the small model enough?" is answered on the user's own prompts. Every model
gets the same prompt, system prompt, sampling settings and seed (a random seed is
drawn once when none is given, so the models still share it). The turns go into
the chat service's one queue (`source="compare"`, not saved as chats), so one
model is loaded at a time and the window's chat waits its turn; a local model
runs in its own runner process, whose memory figures its reply records, and a
`MODEL@REMOTE` runs on its server.

A prompt set runs as a batch: all its prompts on the first model, then all on the
next (one load per model, not one per prompt), each prompt saved as one comparison
of the batch. Answers are saved as each finishes, so a cancelled or crashed batch
keeps what ran.

    service = CompareService(chat, history)
    run = service.start(CompareRequest(prompts=["Why is the sky blue?"], models=["starter", "gemma3-270m-base"]),
                        listener=print)
    result = run.wait()          # CompareResult: answers[prompt][model], each with its stats record

Events reach `listener` in the order they happened, on the run's own thread:
AnswerLoading, AnswerStarted, AnswerText, AnswerDone (per model), then RunDone (or
RunFailed, should the run itself break).
"""

from __future__ import annotations

import logging
import queue
import secrets
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field, replace
from typing import Any

from assistant import remotes
from assistant.chat_service import (
    ChatService,
    ModelLoading,
    TurnFailed,
    TurnFinished,
    TurnRequest,
    TurnStarted,
    TurnText,
)
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.prompt_sets import PromptSetService
from common.errors import UserError

log = logging.getLogger(__name__)

MAX_MODELS = 8  # side by side beyond that, no one reads the columns
MAX_SEED = 2**31 - 1


class CompareError(UserError):
    """A comparison that cannot run as asked (no prompt, one model, a model named twice)."""


@dataclass
class CompareRequest:
    prompts: list[str]
    models: list[str]  # specs as -m takes them: installed names, paths, MODEL@REMOTE
    system_prompt: str | None = None
    settings: GenerationSettings = field(default_factory=GenerationSettings)
    load_settings: LoadSettings | None = None
    save: bool = True
    prompt_set: str | None = None  # the set's name, when the prompts are a prompt set
    rerun_of: str | None = None  # the uid of a saved comparison this one runs again
    restore_model: bool = False  # put back the model that was loaded before (the window)


@dataclass
class AnswerResult:
    model: str
    text: str
    status: str  # complete, stopped or error (as a saved message's status)
    error: str | None
    stats: dict[str, Any]
    answer_id: int | None = None  # in the history, once saved

    @property
    def ok(self) -> bool:
        return self.status != "error"


@dataclass
class CompareResult:
    prompts: list[str]
    models: list[str]
    system_prompt: str | None
    settings: GenerationSettings
    answers: list[list[AnswerResult | None]]  # [prompt][model]; None: never ran (cancelled)
    comparison_ids: list[int | None]  # [prompt], once saved
    batch: str | None
    cancelled: bool = False
    save_error: str | None = None  # the history could not keep it (a full disk): the run itself stands

    def column(self, model_index: int) -> list[AnswerResult]:
        """One model's answers (those that ran)."""
        return [a for a in (row[model_index] for row in self.answers) if a is not None]


# --- Events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CompareEvent:
    prompt_index: int
    model_index: int
    model: str


@dataclass(frozen=True)
class AnswerLoading(CompareEvent):
    """The model is being loaded for this answer (the previous one's process has ended)."""


@dataclass(frozen=True)
class AnswerStarted(CompareEvent):
    """The model is answering."""


@dataclass(frozen=True)
class AnswerText(CompareEvent):
    text: str = ""
    kind: str = "answer"  # "thinking": a reasoning model's thinking (its figures come with the answer's record)


@dataclass(frozen=True)
class AnswerDone(CompareEvent):
    answer: AnswerResult | None = None


@dataclass(frozen=True)
class RunDone:
    result: CompareResult


@dataclass(frozen=True)
class RunFailed:
    """The comparison itself broke (a bug, never a model's failure, which is its answer's): one sentence."""

    sentence: str


Listener = Callable[[Any], None]


# --- Checking a request -------------------------------------------------------------------------------------


def check_request(request: CompareRequest) -> CompareRequest:
    """The request cleaned up, or a CompareError saying what is wrong; a seed drawn when none is given."""
    prompts = [p for p in (request.prompts or []) if isinstance(p, str) and p.strip()]
    if not prompts:
        raise CompareError("Compare needs a prompt.")
    models = [m.strip() for m in request.models if isinstance(m, str) and m.strip()]
    if len(models) < 2:
        raise CompareError("Compare needs at least two models (-m A -m B).")
    if len(models) > MAX_MODELS:
        raise CompareError(f"Compare takes at most {MAX_MODELS} models at a time; {len(models)} were named.")
    seen: set[str] = set()
    for m in models:
        if m in seen:
            raise CompareError(f"{m} is named twice; with the same prompt and seed it would answer the same.")
        seen.add(m)
    settings = request.settings
    if settings.seed is None:  # the same seed for every model, so sampling differs only by the model
        settings = replace(settings, seed=secrets.randbelow(MAX_SEED))
    return replace(request, prompts=prompts, models=models, settings=settings)


def check_models(models: list[str]) -> None:
    """Fail before anything runs on a name that is neither installed, a file, nor a known remote's model.

    A comparison of a big model should not run for minutes before a typo in the last name shows.
    """
    from models import registry

    for spec in models:
        if "@" in spec and remotes.split_spec(spec) is None and registry.get(spec) is None:
            model, _, name = spec.rpartition("@")
            raise CompareError(f"{spec}: there is no remote server named {name!r}; `assistant remote list` "
                               "shows them." if model else f"{spec} is not a model name.")
        if remotes.split_spec(spec) is None and registry.get(spec) is None:
            registry.resolve(spec)  # the sentence for a missing name or file


# --- Running ------------------------------------------------------------------------------------------------


def _same_model(summary, spec: str) -> bool:
    return spec in (summary.spec, summary.name, summary.path)


class CompareRun:
    """A comparison in progress: `cancel()` stops it (what finished is kept); `wait()` gives the result."""

    def __init__(self, request: CompareRequest) -> None:
        self.request = request
        self.future: Future[CompareResult] = Future()
        self._handles: list = []
        self._cancelled = threading.Event()

    def cancel(self) -> None:
        self._cancelled.set()
        for handle in list(self._handles):
            handle.cancel()

    @property
    def cancelled(self) -> bool:
        return self._cancelled.is_set()

    def wait(self, timeout: float | None = None) -> CompareResult:
        return self.future.result(timeout)

    @property
    def done(self) -> bool:
        return self.future.done()


class CompareService:
    """Runs comparisons on the chat service's engine and keeps them (and verdicts) in the history."""

    def __init__(self, chat: ChatService, history: Any = None) -> None:
        self.chat = chat
        self.history = history
        self.prompt_sets = PromptSetService(history)  # the one writer of prompt sets for every front end
        self._home = None  # the model being put back after a comparison, until it is

    def start(self, request: CompareRequest, listener: Listener | None = None) -> CompareRun:
        """Queue every answer of the comparison (or batch) now; events reach `listener` as they happen."""
        request = check_request(request)
        run = CompareRun(request)
        events: queue.Queue = queue.Queue()
        # Every event the chat service emits, in its order (all from its engine thread); the run's
        # thread keeps those of its own turns. Subscribed before submitting, so none is missed.
        unsubscribe = self.chat.subscribe(lambda e: events.put(e) if hasattr(e, "request_id") else None)
        cells = [(p, m) for m in range(len(request.models)) for p in range(len(request.prompts))]  # model-major
        # The model to put back: one an earlier comparison is still putting back counts, not the compared
        # model still loaded meanwhile.
        previous = (self._home or self.chat.summary()) if request.restore_model else None
        try:
            for p, m in cells:
                messages = ([{"role": "system", "content": request.system_prompt}] if request.system_prompt else [])
                messages.append({"role": "user", "content": request.prompts[p]})
                run._handles.append(self.chat.submit(TurnRequest(
                    kind="messages", messages=messages, model=request.models[m], settings=request.settings,
                    load_settings=request.load_settings, source="compare", save=False)))
        except BaseException:
            unsubscribe()
            run.cancel()
            raise
        if previous is not None and not _same_model(previous, request.models[-1]):
            # Queued right behind the answers, so a chat the user sends meanwhile runs on their own model.
            self._load_back(previous)
        thread = threading.Thread(target=self._follow, args=(run, cells, events, unsubscribe, listener, previous),
                                  name="compare", daemon=True)
        thread.start()
        return run

    def run(self, request: CompareRequest, listener: Listener | None = None,
            timeout: float | None = None) -> CompareResult:
        """start() and wait for the result."""
        return self.start(request, listener).wait(timeout)

    def rerun(self, comparison_id: int, models: list[str], listener: Listener | None = None, *,
              load_settings: LoadSettings | None = None, restore_model: bool = False) -> CompareRun:
        """Run a saved comparison again on other models: its prompt, system prompt, sampling and seed."""
        saved = self._history().get_comparison(comparison_id)
        settings = GenerationSettings.from_dict(saved.settings) if saved.settings else GenerationSettings()
        return self.start(CompareRequest(prompts=[saved.prompt], models=models, system_prompt=saved.system_prompt,
                                         settings=settings, load_settings=load_settings, rerun_of=saved.uid,
                                         prompt_set=saved.prompt_set, restore_model=restore_model), listener)

    def start_set(self, name: str, models: list[str], listener: Listener | None = None, *,
                  settings: GenerationSettings | None = None, load_settings: LoadSettings | None = None,
                  restore_model: bool = False, save: bool = True) -> CompareRun:
        """Run a saved prompt set as a batch over `models`."""
        prompt_set = self.prompt_sets.get(name)
        return self.start(CompareRequest(prompts=prompt_set.prompts, models=models,
                                         system_prompt=prompt_set.system_prompt,
                                         settings=settings or GenerationSettings(), load_settings=load_settings,
                                         prompt_set=prompt_set.name, restore_model=restore_model, save=save),
                          listener)

    def _history(self) -> Any:
        if self.history is None:
            raise UserError("Compare keeps no history here, so there is nothing saved to use.")
        return self.history

    # --- The run's own thread
    def _follow(self, run: CompareRun, cells: list[tuple[int, int]], events: queue.Queue, unsubscribe,
                listener: Listener | None, previous) -> None:
        req = run.request
        result = CompareResult(prompts=list(req.prompts), models=list(req.models), system_prompt=req.system_prompt,
                               settings=req.settings,
                               answers=[[None] * len(req.models) for _ in req.prompts],
                               comparison_ids=[None] * len(req.prompts),
                               batch=uuid.uuid4().hex if len(req.prompts) > 1 else None)
        cell_of = {h.id: cell for h, cell in zip(run._handles, cells, strict=True)}
        handle_of = {h.id: h for h in run._handles}

        def tell(event: Any) -> None:
            if listener is None:
                return
            try:
                listener(event)
            except Exception:  # a front end's bug must not stop the comparison
                log.exception("a compare listener failed on %s", type(event).__name__)

        try:
            pending = set(cell_of)
            while pending:
                event = events.get()
                cell = cell_of.get(getattr(event, "request_id", -1))
                if cell is None:
                    continue
                p, m = cell
                model = req.models[m]
                if isinstance(event, ModelLoading):
                    tell(AnswerLoading(p, m, model))
                elif isinstance(event, TurnStarted):
                    tell(AnswerStarted(p, m, model))
                elif isinstance(event, TurnText):
                    tell(AnswerText(p, m, model, event.text, event.kind))
                elif isinstance(event, (TurnFinished, TurnFailed)):
                    pending.discard(event.request_id)
                    answer = self._answer(model, event, run, handle_of[event.request_id])
                    if answer is not None:
                        result.answers[p][m] = answer
                        self._save(result, p, m, answer, req)
                    tell(AnswerDone(p, m, model, answer))
        except Exception as exc:  # never leave a waiter hanging
            log.exception("a comparison failed")
            unsubscribe()
            run.future.set_exception(exc)
            tell(RunFailed(f"The comparison stopped unexpectedly ({type(exc).__name__}: {exc}); what finished "
                           "is kept."))
            return
        unsubscribe()
        result.cancelled = run.cancelled
        if previous is not None and run.cancelled and _same_model(previous, req.models[-1]):
            current = self.chat.summary()  # stopped before the last model: the one loaded is not theirs
            if current is None or not _same_model(previous, current.spec or current.name):
                self._load_back(previous)
        run.future.set_result(result)
        tell(RunDone(result))

    @staticmethod
    def _answer(model: str, event: Any, run: CompareRun, handle: Any) -> AnswerResult | None:
        if isinstance(event, TurnFailed):
            if run.cancelled or handle.cancelled:
                return None  # cancelled (by the user, or the app closing) before it started: nothing to keep
            return AnswerResult(model, "", "error", event.sentence, {})
        stats = dict(event.stats or {})
        reason = str(stats.get("stop_reason") or "")
        status = {"stopped": "stopped", "error": "error"}.get(reason, "complete")
        return AnswerResult(model, event.text, status, stats.get("error"), stats)

    def _save(self, result: CompareResult, p: int, m: int, answer: AnswerResult, req: CompareRequest) -> None:
        if not req.save or self.history is None or result.save_error:
            return
        try:
            if result.comparison_ids[p] is None:
                saved = self.history.create_comparison(
                    req.prompts[p], system_prompt=req.system_prompt, settings=req.settings.to_dict(),
                    prompt_set=req.prompt_set, batch=result.batch, rerun_of=req.rerun_of)
                result.comparison_ids[p] = saved.id
            answer.answer_id = self.history.add_comparison_answer(
                result.comparison_ids[p], m, answer.model, answer.text, status=answer.status,
                stats=answer.stats or None, error=answer.error).id
        except UserError as exc:  # a full disk, a read-only history: the comparison still shows
            log.warning("could not save the comparison: %s", exc)
            result.save_error = str(exc)

    def _load_back(self, previous) -> None:
        self._home = previous
        future = self.chat.load(previous.spec or previous.name)

        def done(f: Future) -> None:
            if self._home is previous:
                self._home = None
            if not f.cancelled() and f.exception() is not None:
                log.warning("could not put back %s: %s", previous.name, f.exception())

        future.add_done_callback(done)

    # --- Verdicts (the history's; here so every front end marks them the same way)
    def set_verdict(self, answer_id: int, verdict: str | None):
        return self._history().set_verdict(answer_id, verdict)

    def set_best(self, comparison_id: int, answer_id: int | None):
        return self._history().set_best(comparison_id, answer_id)
