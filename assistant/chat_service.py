"""The chat service: one engine, one queue of turns from every front end, the only writer of chat history.

The window, the command line and the local API server all hand their turns to a
`ChatService`. One thread owns the engine (in the manner of gpt4all-chat's
queued calls): turns run in arrival order, each can be cancelled, and whoever
is interested hears what happens through callbacks, never Qt signals:

    TurnStarted  -> the conversation and reply ids (and the saved user message)
    TurnText     -> a piece of the reply as it streams (kind "thinking" or "answer")
    TurnFinished -> the saved reply with its stats: no front end reads it back
    TurnFailed   -> one sentence

Sessions stay open per conversation, so a turn does not read its conversation
from the database again. Model loads, token counts for the context meter and
benchmark-style work (`run_on_engine`) take their place in the same queue.
"""

from __future__ import annotations

import itertools
import logging
import queue
import threading
from collections import deque
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from dataclasses import dataclass
from typing import Any

from assistant.engine import Engine, GenerationSettings, LoadSettings, ModelSummary, Response
from assistant.images import MAX_IMAGES_PER_MESSAGE, ImageError
from assistant.session import ChatSession, ReplyStream
from common.errors import UserError

log = logging.getLogger(__name__)


# --- Requests -----------------------------------------------------------------------------------------------


@dataclass
class TurnRequest:
    """One turn. `kind`: send (a new user message), regenerate (a reply again), edit (a user message
    rewritten), messages (an API client's own conversation, not read from the history), or complete
    (text completion: `text` is continued as it is, with no chat template), or continue (a stopped reply,
    `message_id`, goes on: a new version of it that starts with its text)."""

    kind: str = "send"
    text: str | None = None
    conversation_id: int | None = None
    message_id: int | None = None  # regenerate / edit: the message it acts on
    messages: list[dict] | None = None  # kind "messages"
    settings: GenerationSettings | None = None
    system_prompt: str | None = None  # for a new conversation
    conversation_settings: dict[str, Any] | None = None  # for a new conversation: its own overrides, saved with it
    model: str | None = None  # load this model first if another one is loaded
    load_settings: LoadSettings | None = None
    save: bool = True  # kept in the history (API turns only when the user chose so)
    source: str = "window"  # who asked: window, cli, api, compare
    client: str | None = None  # e.g. an API client's address, for the request log
    images: list | None = None  # kind "send": the message's images (assistant.images.ImageAttachment)


_PAST = {"regenerate": "regenerated", "edit": "edited", "continue": "continued"}


class QueueFull(UserError):
    """More turns are waiting than the service accepts."""


# --- Events -------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TurnQueued:
    request_id: int
    source: str
    waiting: int  # turns waiting ahead of it, this one included


@dataclass(frozen=True)
class TurnStarted:
    request_id: int
    source: str
    conversation_id: int | None
    reply_id: int | None
    user_message: Any = None  # the saved user message (history Message), when there is one
    model: str | None = None
    initial_text: str = ""  # the text the reply starts with (a continued reply's earlier part)


@dataclass(frozen=True)
class TurnText:
    request_id: int
    conversation_id: int | None
    reply_id: int | None
    text: str
    kind: str = "answer"  # "thinking": a reasoning model's thinking, shown apart (and never sent as the answer)
    tokens: int | None = None  # tokens the reply has generated so far, where the engine says (a live count)


@dataclass(frozen=True)
class TurnFinished:
    request_id: int
    source: str
    conversation_id: int | None
    reply_id: int | None
    message: Any  # the saved reply (history Message), or None when not saved
    stats: dict[str, Any]
    text: str


@dataclass(frozen=True)
class TurnFailed:
    request_id: int
    source: str
    conversation_id: int | None
    sentence: str
    code: str | None = None  # what the request got wrong, when it did: "invalid_image", "model_cannot_see"


@dataclass(frozen=True)
class ModelLoading:
    request_id: int
    name: str


@dataclass(frozen=True)
class ModelLoaded:
    request_id: int
    summary: ModelSummary


@dataclass(frozen=True)
class ModelFailed:
    request_id: int
    name: str
    sentence: str
    summary: ModelSummary | None  # what is loaded now (the previous model, when it was put back)


Event = TurnQueued | TurnStarted | TurnText | TurnFinished | TurnFailed | ModelLoading | ModelLoaded | ModelFailed
Listener = Callable[[Any], None]


# --- Handles ------------------------------------------------------------------------------------------------


class TurnHandle:
    """A submitted turn: its events in order, its result, and a way to cancel it."""

    def __init__(self, service: ChatService, request_id: int, request: TurnRequest) -> None:
        self.service = service
        self.id = request_id
        self.request = request
        self.conversation_id: int | None = request.conversation_id
        self.reply_id: int | None = None
        self.cancelled = False
        self.response: Response | None = None  # the engine's Response while it runs
        self._events: queue.Queue = queue.Queue()
        self._done = threading.Event()
        self.outcome: TurnFinished | TurnFailed | None = None

    def cancel(self) -> None:
        """Stop it: a waiting turn never starts; a running one stops within a token, keeping what it said."""
        self.service.cancel(self.id)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def events(self, timeout: float | None = None) -> Iterator[Any]:
        """This turn's events as they happen, ending with TurnFinished or TurnFailed."""
        while True:
            event = self._events.get(timeout=timeout)
            yield event
            if isinstance(event, (TurnFinished, TurnFailed)):
                return

    def result(self, timeout: float | None = None) -> TurnFinished | TurnFailed:
        if not self._done.wait(timeout):
            raise TimeoutError("the turn did not finish in time")
        assert self.outcome is not None
        return self.outcome

    def _deliver(self, event: Any) -> None:
        self._events.put(event)
        if isinstance(event, (TurnFinished, TurnFailed)):
            self.outcome = event
            self._done.set()


@dataclass
class _Job:
    id: int
    run: Callable[[], None]
    turn: TurnHandle | None = None
    future: Future | None = None
    kind: str = "call"


# --- The service --------------------------------------------------------------------------------------------


class ChatService:
    def __init__(self, engine: Engine, history: Any = None, *, max_waiting: int | None = None,
                 default_settings: Callable[[], GenerationSettings] | None = None) -> None:
        self.engine = engine
        self.history = history  # an assistant.history store: written only here
        self.max_waiting = max_waiting
        self._default_settings = default_settings or GenerationSettings
        self._jobs: deque[_Job] = deque()
        self._cv = threading.Condition()
        self._listeners: list[Listener] = []
        self._sessions: dict[int, ChatSession] = {}
        self._running: _Job | None = None
        self._draft: tuple[list[dict], Callable[[int, int], None]] | None = None
        self._ids = itertools.count(1)
        self._closed = False
        self._thread = threading.Thread(target=self._serve, name="chat-service", daemon=True)
        self._thread.start()

    # --- Listening
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every event (all turns, all front ends); returns a function that stops it."""
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _emit(self, event: Any, turn: TurnHandle | None = None) -> None:
        if turn is not None:
            turn._deliver(event)
        for listener in list(self._listeners):
            try:
                listener(event)
            except Exception:  # a front end's bug must not stop the engine thread
                log.exception("a listener failed on %s", type(event).__name__)

    # --- Submitting
    def submit(self, request: TurnRequest) -> TurnHandle:
        """Queue a turn; it runs after the turns already waiting. Raises QueueFull beyond `max_waiting`."""
        with self._cv:
            self._check_open()
            waiting = sum(1 for j in self._jobs if j.turn is not None)
            if self.max_waiting is not None and waiting >= self.max_waiting:
                raise QueueFull(f"{waiting} requests are already waiting for the model; try again shortly.")
            handle = TurnHandle(self, next(self._ids), request)
            self._jobs.append(_Job(handle.id, lambda: self._run_turn(handle), turn=handle, kind="turn"))
            self._cv.notify()
        self._emit(TurnQueued(handle.id, request.source, waiting + 1), handle)
        return handle

    def load(self, spec: Any, settings: LoadSettings | None = None, *, automatic: bool = False) -> Future:
        """Queue a model load; the future gives the ModelSummary (or raises the UserError)."""
        name = spec if isinstance(spec, str) else getattr(spec, "name", str(spec))
        return self._queue_call(lambda job_id: self._load(job_id, spec, name, settings, automatic), "load")

    def run_on_engine(self, fn: Callable[[Engine], Any]) -> Future:
        """Run `fn(engine)` on the engine thread, in turn with everything else (benchmarks, comparisons)."""
        return self._queue_call(lambda job_id: fn(self.engine), "call")

    def _queue_call(self, body: Callable[[int], Any], kind: str) -> Future:
        future: Future = Future()
        with self._cv:
            self._check_open()
            job_id = next(self._ids)

            def run() -> None:
                if not future.set_running_or_notify_cancel():
                    return
                try:
                    future.set_result(body(job_id))
                except BaseException as exc:  # handed to whoever waits on the future
                    future.set_exception(exc)

            self._jobs.append(_Job(job_id, run, future=future, kind=kind))
            self._cv.notify()
        return future

    def count_tokens_later(self, messages: list[dict], callback: Callable[[int, int], None]) -> None:
        """Count a draft's tokens when the engine is free; only the latest draft counts.
        `callback(used, n_ctx)` runs on the engine thread."""
        with self._cv:
            self._draft = (messages, callback)
            self._cv.notify()

    def cancel(self, request_id: int) -> None:
        with self._cv:
            for job in list(self._jobs):
                if job.id == request_id:
                    self._jobs.remove(job)
                    if job.turn is not None:
                        job.turn.cancelled = True
                        self._finish_unstarted(job.turn)
                    elif job.future is not None:
                        job.future.cancel()
                    return
            running = self._running
        if running is not None and running.id == request_id:
            if running.turn is not None:
                running.turn.cancelled = True
                if running.turn.response is not None:
                    running.turn.response.cancel()
            self.engine.cancel()

    def cancel_all(self) -> None:
        with self._cv:
            ids = [j.id for j in self._jobs]
            running = self._running
        for job_id in ids + ([running.id] if running else []):
            self.cancel(job_id)

    def waiting(self) -> int:
        with self._cv:
            return sum(1 for j in self._jobs if j.turn is not None)

    def busy(self) -> bool:
        return self._running is not None

    def summary(self) -> ModelSummary | None:
        return self.engine.summary()

    def close(self) -> None:
        """Cancel everything, stop the engine thread and free the model. Safe to call twice."""
        with self._cv:
            if self._closed and not self._thread.is_alive():
                return
            self._closed = True
            self._cv.notify_all()
        self.cancel_all()
        self._thread.join(30)
        self.engine.close()

    def _check_open(self) -> None:
        if self._closed:
            raise UserError("The chat service has been closed.")

    # --- The engine thread
    def _serve(self) -> None:
        while True:
            with self._cv:
                while not self._jobs and self._draft is None and not self._closed:
                    self._cv.wait()
                if self._closed and not self._jobs:
                    return
                draft = None
                if self._jobs:  # turns and loads first; a draft count waits for a free engine
                    job = self._jobs.popleft()
                else:
                    job, draft, self._draft = None, self._draft, None
                self._running = job
            try:
                if job is not None:
                    job.run()
                elif draft is not None:
                    self._count(*draft)
            except Exception:  # never let a bug end the engine thread
                log.exception("the engine thread hit an unexpected error")
            finally:
                self._running = None

    def _count(self, messages: list[dict], callback: Callable[[int, int], None]) -> None:
        summary = self.engine.summary()
        if summary is None:
            return
        try:
            used = self.engine.count_tokens(messages)
        except UserError as exc:
            log.info("could not count the draft's tokens: %s", exc)
            return
        callback(used, summary.n_ctx)

    def _load(self, job_id: int, spec: Any, name: str, settings: LoadSettings | None, automatic: bool) -> ModelSummary:
        self._emit(ModelLoading(job_id, name))
        try:
            summary = self.engine.load(spec, settings, automatic=automatic)
        except UserError as exc:
            self._emit(ModelFailed(job_id, name, str(exc), self.engine.summary()))
            raise
        except Exception as exc:
            log.exception("loading %s failed unexpectedly", name)
            sentence = f"{name} could not be loaded ({type(exc).__name__}: {exc})."
            self._emit(ModelFailed(job_id, name, sentence, self.engine.summary()))
            raise UserError(sentence) from exc
        self._emit(ModelLoaded(job_id, summary))
        return summary

    # --- One turn
    def _finish_unstarted(self, turn: TurnHandle) -> None:
        self._emit(TurnFailed(turn.id, turn.request.source, turn.conversation_id, "The request was cancelled."), turn)

    def _run_turn(self, turn: TurnHandle) -> None:
        req = turn.request
        if turn.cancelled:
            self._finish_unstarted(turn)
            return
        try:
            if req.model:
                current = self.engine.summary()
                if current is None or req.model not in (current.name, current.path):
                    self._load(turn.id, req.model, req.model, req.load_settings, automatic=req.source == "api")
            if self.engine.summary() is None:
                raise UserError("No model is loaded yet; choose one first.")
            session, stream = self._start(req)
        except UserError as exc:
            self._emit(TurnFailed(turn.id, req.source, turn.conversation_id, str(exc),
                                  getattr(exc, "code", None) if isinstance(exc, ImageError) else None), turn)
            return
        except Exception as exc:
            log.exception("a %s turn could not start", req.kind)
            self._emit(TurnFailed(turn.id, req.source, turn.conversation_id,
                                  f"The reply could not start ({type(exc).__name__}: {exc})."), turn)
            return
        turn.conversation_id, turn.reply_id = session.conversation_id, session.reply_id
        turn.response = session.last_response
        if turn.cancelled:
            session.cancel()
        summary = self.engine.summary()
        initial = (session.last_response.prefix or "") if session.last_response is not None else ""
        self._emit(TurnStarted(turn.id, req.source, turn.conversation_id, turn.reply_id, session.user_message,
                               summary.name if summary else None, initial), turn)
        try:
            for piece in stream.pieces():
                self._emit(TurnText(turn.id, turn.conversation_id, turn.reply_id, piece.text, piece.kind, piece.tokens),
                           turn)
        except Exception as exc:  # a storage failure mid-reply (a full disk): the sentence, and what was saved stays
            log.exception("a turn failed while streaming")
            self._forget(session)
            self._emit(TurnFailed(turn.id, req.source, turn.conversation_id, str(exc) if isinstance(exc, UserError)
                                  else f"The reply failed ({type(exc).__name__}: {exc})."), turn)
            return
        response = session.last_response
        stats = response.stats.to_dict() if response and response.stats else {}
        text = ((response.prefix or "") + "".join(response.chunks)) if response else ""
        self._emit(TurnFinished(turn.id, req.source, turn.conversation_id, turn.reply_id, session.saved_reply, stats,
                                text), turn)

    def _start(self, req: TurnRequest) -> tuple[ChatSession, ReplyStream]:
        settings = req.settings or self._default_settings()
        history = self.history if req.save else None
        if req.kind == "messages":
            session = ChatSession(self.engine, settings=settings, history=history)
            system = [m["content"] for m in req.messages or [] if m["role"] == "system"]
            session.system_prompt = "\n\n".join(system) or None
            rest = [m for m in req.messages or [] if m["role"] != "system"]
            if not rest or rest[-1]["role"] != "user":
                raise UserError("The conversation must end with a user message.")
            # Every image of the request is checked at once, before anything is saved.
            for m in rest:
                if len(m.get("images") or []) > MAX_IMAGES_PER_MESSAGE:
                    session.check_images(m["images"])  # says so
            checked = {i.sha256: i for i in session.check_images(
                [i for m in rest for i in m.get("images") or []], per_message=False)}
            session.messages = []
            for m in rest:
                message = {"role": m["role"], "content": m["content"]}
                if m.get("thinking"):  # an API client's earlier reply's reasoning_content: the template may keep it
                    message["thinking"] = m["thinking"]
                if m.get("images"):
                    message["images"] = [checked[i.sha256] for i in m["images"]]
                session.messages.append(message)
            last = session.messages.pop()
            if history is not None:
                session._ensure_conversation()
                for m in session.messages:  # an API client's earlier turns, saved as the conversation's start
                    history.add_message(session.conversation_id, m["role"], m["content"], images=m.get("images"))
            return session, session.send(last["content"], last.get("images"))
        if req.kind == "complete":
            session = ChatSession(self.engine, settings=settings, history=history)
            return session, session.complete(req.text or "")
        if req.kind == "send":
            session = self._session(req.conversation_id, history)
            if req.conversation_id is None and req.system_prompt:
                session.system_prompt = req.system_prompt
            if req.conversation_id is None and req.conversation_settings:
                session.conversation_settings = dict(req.conversation_settings)
            session.settings = settings
            stream = session.send(req.text or "", req.images)
        elif req.kind in ("regenerate", "edit", "continue"):
            if history is None or req.message_id is None:
                raise UserError(f"Only a saved message can be {_PAST[req.kind]}.")
            conv_id = history.get_message(req.message_id).conversation_id
            session = self._session(conv_id, history)
            session.settings = settings
            if req.kind == "regenerate":
                stream = session.regenerate(req.message_id)
            elif req.kind == "continue":
                stream = session.continue_reply(req.message_id)
            else:
                stream = session.edit(req.message_id, req.text or "")
        else:
            raise UserError(f"Unknown kind of turn {req.kind!r}.")
        if session.conversation_id is not None and history is not None:
            self._sessions[session.conversation_id] = session
        return session, stream

    def _session(self, conversation_id: int | None, history: Any) -> ChatSession:
        """The open session of a conversation, or a new one; the conversation is read once, when first used."""
        if conversation_id is None:
            return ChatSession(self.engine, history=history)
        session = self._sessions.get(conversation_id)
        if session is None or (history is not None and self._changed_elsewhere(session)):
            session = ChatSession(self.engine, history=history)
            session.resume(conversation_id)
        return session

    def _changed_elsewhere(self, session: ChatSession) -> bool:
        """Another process (a CLI chat) or a branch switch moved the conversation on: read it again."""
        leaf = getattr(self.history, "current_leaf_id", None)
        return leaf is not None and session.conversation_id is not None and leaf(session.conversation_id) != session.leaf_id

    def _forget(self, session: ChatSession) -> None:
        if session.conversation_id is not None:
            self._sessions.pop(session.conversation_id, None)

    # --- History writes that are not turns (from any thread; the store serialises them)
    def rename(self, conversation_id: int, title: str) -> None:
        self._require_history().rename(conversation_id, title)

    def delete(self, conversation_id: int) -> None:
        self._require_history().delete(conversation_id)
        self._sessions.pop(conversation_id, None)

    def switch_branch(self, message_id: int) -> list:
        history = self._require_history()
        path = history.switch_branch(message_id)
        if path:
            self._sessions.pop(path[-1].conversation_id, None)
        return path

    def set_conversation_settings(self, conversation_id: int, settings: dict[str, Any]) -> None:
        self._require_history().update_conversation(conversation_id, settings=settings)

    def set_system_prompt(self, conversation_id: int, system_prompt: str | None) -> None:
        """The conversation's own system prompt from its next turn on (None or empty: none)."""
        self._require_history().update_conversation(conversation_id, system_prompt=(system_prompt or "").strip() or None)
        self._sessions.pop(conversation_id, None)  # its open session read the old prompt: read it again

    def dismiss_notice(self, notice_id: Any) -> None:
        """A history notice the person has read (a damaged database moved aside, say): not shown again."""
        self._require_history().dismiss_notice(notice_id)

    def save_benchmark(self, result: dict[str, Any]) -> int:
        return self._require_history().save_benchmark(result)

    def _require_history(self) -> Any:
        if self.history is None:
            raise UserError("This chat keeps no history.")
        return self.history
