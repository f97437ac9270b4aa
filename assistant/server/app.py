"""The OpenAI-compatible API over the chat service, as a Starlette app.

    GET  /v1/models               the installed models (and the loaded one)
    GET  /v1/models/{id}          one of them
    POST /v1/chat/completions     a chat reply, streamed as server-sent events or whole
    POST /v1/completions          a text continuation (base models), likewise
    GET  /health                  {"status": "ok", "model": ...}

The same paths answer without the `/v1` prefix, as llama-server's do. Every API
request is one turn in the chat service's queue, with the window's and the CLI's:
in arrival order, on the one engine. A client that disconnects cancels its turn
within a token, whether it is waiting, streaming or waiting for a whole reply.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Any

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route
from starlette.types import ASGIApp

from assistant.chat_service import (ChatService, ModelFailed, ModelLoading, QueueFull, TurnFailed, TurnFinished,
                                    TurnRequest, TurnStarted, TurnText)
from assistant.engine import ContextPolicy, GenerationSettings, LoadSettings
from assistant.server import openai_reply as reply
from assistant.server.config import ServerConfig, saved_settings
from assistant.server.connections import BODY_SECONDS
from assistant.server.errors import ApiError
from assistant.server.openai_request import ApiCall, parse_chat, parse_completion, parse_json
from assistant.server.request_log import RequestLog, RequestRecord
from assistant.server.security import guarded
from assistant.server.turns import ApiTurn, TurnRouter
from common.formatting import format_bytes
from models import registry

log = logging.getLogger(__name__)

SSE_HEADERS = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
IDENTITY = {"X-Powered-By": "Hearth"}  # another Hearth using this one as a remote reads its record (`hearth`)


@dataclass
class ServerContext:
    """What the API needs from the core, and the server's own state."""

    chat: ChatService
    config: ServerConfig
    router: TurnRouter
    request_log: RequestLog
    settings: Any = None  # a SettingsStore: the user's defaults and whether API turns are saved
    history: Any = None  # read to mark saved API conversations
    default_settings: Callable[[], GenerationSettings] = GenerationSettings
    load_settings: Callable[[], LoadSettings | None] = lambda: None

    def save_conversations(self) -> bool:
        if self.config.save_conversations is not None:
            return self.config.save_conversations
        return bool(saved_settings(self.settings)["save_conversations"])


def create_app(context: ServerContext) -> ASGIApp:
    api = _Api(context)
    routes = []
    for prefix in ("/v1", ""):
        routes += [Route(f"{prefix}/models", api.list_models, methods=["GET"]),
                   Route(f"{prefix}/models/{{model_id:path}}", api.get_model, methods=["GET"]),
                   Route(f"{prefix}/chat/completions", api.chat_completions, methods=["POST"]),
                   Route(f"{prefix}/completions", api.completions, methods=["POST"])]
    routes.append(Route("/health", api.health, methods=["GET"]))
    app = Starlette(routes=routes, exception_handlers={ApiError: _api_error, HTTPException: _http_error,
                                                       Exception: _unexpected})
    return guarded(app, context.config, context.request_log)


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return exc.response()


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    message = {404: f"There is no {request.url.path} here; the API is under /v1 (e.g. /v1/chat/completions).",
               405: f"{request.method} is not allowed on {request.url.path}."}.get(exc.status_code, str(exc.detail))
    return ApiError(exc.status_code, message, code="not_found" if exc.status_code == 404 else None).response()


async def _unexpected(request: Request, exc: Exception) -> Response:
    log.error("the API failed on %s %s", request.method, request.url.path, exc_info=exc)
    return ApiError(500, f"The server hit an unexpected error ({type(exc).__name__}); its log has the details.",
                    code="internal_error").response()


def _client(request: Request) -> str:
    return f"{request.client.host}:{request.client.port}" if request.client else "?"


class _Api:
    def __init__(self, context: ServerContext) -> None:
        self.ctx = context

    # --- Models
    async def list_models(self, request: Request) -> Response:
        data = [self._model_object(**m) for m in await run_in_threadpool(self._models)]
        return JSONResponse({"object": "list", "data": data}, headers=IDENTITY)

    async def get_model(self, request: Request) -> Response:
        wanted = request.path_params["model_id"]
        for m in await run_in_threadpool(self._models):
            if m["name"] == wanted:
                return JSONResponse(self._model_object(**m), headers=IDENTITY)
        raise _unknown_model(wanted)

    async def health(self, request: Request) -> Response:
        summary = self.ctx.chat.summary()
        return JSONResponse({"status": "loading" if self.ctx.router.loading else "ok",
                             "model": summary.name if summary else None,
                             "waiting": self.ctx.router.waiting()})

    def _models(self) -> list[dict[str, Any]]:
        summary = self.ctx.chat.summary()
        found = []
        for entry in registry.list_installed():
            loaded = summary is not None and entry.path == summary.path
            found.append({"name": entry.name, "created": entry.added_at, "loaded": loaded, "quant": entry.quant,
                          "source": entry.source})
        if summary is not None and not any(m["loaded"] for m in found):
            found.insert(0, {"name": summary.name, "created": None, "loaded": True, "quant": summary.quant,
                             "source": "remote" if summary.kind == "remote" else "file"})
        return found

    @staticmethod
    def _model_object(name: str, created: str | None, loaded: bool, quant: str | None, source: str) -> dict:
        return {"id": name, "object": "model", "created": _epoch(created), "owned_by": "hearth",
                reply.EXTENSION_KEY: {"loaded": loaded, "quant": quant, "source": source}}

    async def _resolve_model(self, name: str | None) -> tuple[str, str]:
        """(what the chat service loads, the name clients see) for a request's `model`; 404 or 503 otherwise."""
        summary = self.ctx.chat.summary()
        if name is None or (summary is not None and name in (summary.name, summary.spec, summary.path)):
            if summary is None:
                raise ApiError(503, "No model is loaded yet; name an installed one in 'model' "
                                    "(GET /v1/models lists them).", code="no_model_loaded",
                               headers={"Retry-After": "5"})
            target = (summary.spec or summary.path, summary.name)
        else:
            installed = await run_in_threadpool(lambda: [e.name for e in registry.list_installed()])
            if name not in installed:
                raise _unknown_model(name)
            target = (name, name)
        if self.ctx.router.loading:
            raise ApiError(503, f"The model {self.ctx.router.loading} is loading; try again in a few seconds.",
                           code="model_loading", headers={"Retry-After": "5"})
        return target

    # --- Completions
    async def chat_completions(self, request: Request) -> Response:
        return await self._serve(request, parse_chat)

    async def completions(self, request: Request) -> Response:
        return await self._serve(request, parse_completion)

    async def _serve(self, request: Request, parse: Callable[..., ApiCall]) -> Response:
        ctx = self.ctx
        record = ctx.request_log.start(_client(request), request.method, request.url.path)
        t0 = time.perf_counter()
        try:
            call = parse(parse_json(await _read_body(request, ctx.config.max_body_bytes)), ctx.config)
            spec, model_name = await self._resolve_model(call.model)
            record.model, record.stream = model_name, call.stream
            ctx.request_log.update(record)
            turn = self._submit(call, spec, _client(request))
        except ClientDisconnect:
            ctx.request_log.finish(record, 499, cancelled=True)
            return Response(status_code=400)  # nobody reads it
        except ApiError as exc:
            ctx.request_log.finish(record, exc.status, error=exc.message)
            return exc.response()
        exchange = _Exchange(ctx, call, turn, record, model_name, t0)
        exchange.watch(request)
        try:
            await exchange.wait_for_start()
        except ApiError as exc:
            exchange.stop_watching()
            exchange.end(exc.status, error=exc.message)
            return exc.response()
        except BaseException:  # cancelled (the server forced to stop) or a bug: the turn must not run on
            exchange.turn.cancel()
            exchange.stop_watching()
            exchange.end(500, error="the request ended before its reply started")
            raise
        if call.stream:
            return StreamingResponse(exchange.stream(), media_type="text/event-stream", headers=SSE_HEADERS)
        try:
            return await exchange.whole()
        except ApiError as exc:
            exchange.end(exc.status, error=exc.message)
            return exc.response()
        finally:
            exchange.stop_watching()

    def _submit(self, call: ApiCall, spec: str, client: str) -> ApiTurn:
        ctx = self.ctx
        base = ctx.default_settings()
        limit = ctx.config.max_tokens_limit
        sampling = dict(call.sampling)
        if sampling.get("ignore_eos"):  # llama-server's benchmark switch: exactly max_tokens, so no loop guard
            sampling["stop_on_repetition"] = False
        settings = dataclasses.replace(
            base, **sampling, max_tokens=min(call.max_tokens or base.max_tokens or limit, limit),
            # A conversation that does not fit is an error, as with OpenAI and llama-server: an API client keeps
            # its own history, so silently dropping its oldest turns would answer a different conversation.
            context_policy=ContextPolicy.STOP)
        request = TurnRequest(kind=call.kind, messages=call.messages if call.kind == "messages" else None,
                              text=call.prompt if call.kind == "complete" else None, model=spec, settings=settings,
                              load_settings=ctx.load_settings(), save=ctx.save_conversations(), source="api",
                              client=client)
        try:
            return ctx.router.submit(request, ctx.config.max_waiting)
        except QueueFull as exc:
            raise ApiError(429, str(exc), code="queue_full", headers={"Retry-After": "2"}) from None


class _Exchange:
    """One request's turn from submission to the last byte: events in, response out, the log kept."""

    def __init__(self, ctx: ServerContext, call: ApiCall, turn: ApiTurn, record: RequestRecord, model: str,
                 t0: float) -> None:
        self.ctx, self.call, self.turn, self.record, self.model, self.t0 = ctx, call, turn, record, model, t0
        self.id = ("chatcmpl-" if call.kind == "messages" else "cmpl-") + uuid.uuid4().hex[:24]
        self.created = int(time.time())
        self.client_gone = False
        self.t_started: float | None = None
        self.t_first: float | None = None
        self.model_failed: str | None = None
        self._watcher: asyncio.Task | None = None
        self._drain: asyncio.Task | None = None  # keeps the task alive: the loop holds tasks weakly

    # --- The client walking away
    def watch(self, request: Request) -> None:
        self._watcher = asyncio.create_task(self._watch(request))

    async def _watch(self, request: Request) -> None:
        """The body is read; the next thing the connection says is that it closed. Then the turn stops."""
        while True:
            message = await request.receive()
            if message["type"] == "http.disconnect":
                if not self.turn.finished:
                    self.client_gone = True
                    log.info("client %s went away: cancelling request %s", self.record.client, self.record.id)
                    self.turn.cancel()
                return

    def stop_watching(self) -> None:
        if self._watcher is not None:
            self._watcher.cancel()

    # --- Events
    async def wait_for_start(self) -> None:
        """Until the turn starts (headers can then say 200) or fails (and the status says why)."""
        while True:
            event = await self.turn.next_event()
            if isinstance(event, TurnStarted):
                self.t_started = time.perf_counter()
                if event.model:
                    self.model = event.model
                if event.conversation_id is not None:
                    self._mark_saved_conversation(event.conversation_id)
                return
            if isinstance(event, ModelLoading):
                log.info("request %s loads %s first", self.record.id, event.name)
            elif isinstance(event, ModelFailed):
                self.model_failed = event.sentence
            elif isinstance(event, TurnFailed):
                if event.code in ("invalid_image", "model_cannot_see") and not self.client_gone:
                    raise ApiError(400, event.sentence, code=event.code, param="messages")
                raise self._failure(event.sentence)
            elif isinstance(event, TurnFinished):  # cannot finish before it starts; be safe all the same
                raise ApiError(500, "The reply ended before it started.", code="internal_error")

    def _failure(self, sentence: str) -> ApiError:
        if self.client_gone:
            return ApiError(499, "The client closed the connection.", code="client_closed")
        if self.model_failed:
            return ApiError(500, self.model_failed, code="model_load_failed")
        if self.turn.handle.cancelled:
            return ApiError(503, "The server is stopping; the request was cancelled.", code="server_stopping")
        return ApiError(500, sentence, code="turn_failed")

    async def whole(self) -> Response:
        parts: list[str] = []
        while True:
            event = await self.turn.next_event()
            if isinstance(event, TurnText):
                if self.t_first is None:
                    self.t_first = time.perf_counter()
                if event.kind != "thinking":  # the thinking comes from the record, as reasoning_content
                    parts.append(event.text)
            elif isinstance(event, TurnFailed):
                raise self._failure(event.sentence)
            elif isinstance(event, TurnFinished):
                stats = event.stats or {}
                problem = _problem(stats)
                if self.client_gone:
                    self.end(499, stats=stats)
                    return Response(status_code=499)
                if problem is not None:
                    raise problem
                text = "".join(parts)
                make = reply.chat_completion if self.call.kind == "messages" else reply.completion
                body = make(self.id, self.created, self.model, text, stats, self._server_figures())
                self.end(200, stats=stats)
                return JSONResponse(body)

    async def stream(self) -> AsyncIterator[bytes]:
        chat = self.call.kind == "messages"
        usage = self.call.include_usage
        stats: dict = {}
        status, error = 200, None
        try:
            if chat:
                yield reply.sse(reply.chat_chunk(self.id, self.created, self.model, {"role": "assistant",
                                                                                      "content": ""},
                                                 include_usage=usage))
            while True:
                event = await self.turn.next_event()
                if isinstance(event, TurnText):
                    if self.t_first is None:
                        self.t_first = time.perf_counter()
                    key = "reasoning_content" if event.kind == "thinking" else "content"
                    if event.kind == "thinking" and not chat:
                        continue  # a text completion has no thinking (nothing parses it); never in its text
                    chunk = (reply.chat_chunk(self.id, self.created, self.model, {key: event.text},
                                              include_usage=usage) if chat else
                             reply.completion_chunk(self.id, self.created, self.model, event.text,
                                                    include_usage=usage))
                    yield reply.sse(chunk)
                elif isinstance(event, TurnFailed):
                    failure = self._failure(event.sentence)
                    status, error = failure.status, failure.message
                    yield reply.sse(failure.body())
                    break
                elif isinstance(event, TurnFinished):
                    stats = event.stats or {}
                    problem = _problem(stats)
                    if problem is not None:
                        status, error = problem.status, problem.message
                        yield reply.sse(problem.body())
                        break
                    finish = reply.finish_reason(stats)
                    last = (reply.chat_chunk(self.id, self.created, self.model, {}, finish, include_usage=usage)
                            if chat else reply.completion_chunk(self.id, self.created, self.model, "", finish,
                                                                include_usage=usage))
                    yield reply.sse(reply.final_chunk(last, stats))
                    if usage:
                        yield reply.sse(reply.usage_chunk(self.id, self.created, self.model,
                                                          "chat.completion.chunk" if chat else "text_completion",
                                                          stats, self._server_figures()))
                    break
            yield reply.DONE
        finally:
            # However the stream ends (done, the client gone, the server stopping), the turn ends with it.
            self.stop_watching()
            if self.turn.finished:
                self.end(499 if self.client_gone else status, stats=stats, error=error)
            else:
                self.client_gone = True
                self.turn.cancel()
                self._drain = asyncio.get_running_loop().create_task(self._end_when_stopped())

    async def _end_when_stopped(self) -> None:
        """After a walk-away: the log gets the cancelled turn's figures once the engine has stopped it."""
        stats: dict = {}
        while not self.turn.finished:
            event = await self.turn.next_event()
            if isinstance(event, TurnFinished):
                stats = event.stats or {}
        self.end(499, stats=stats)

    # --- Bookkeeping
    def _server_figures(self) -> dict[str, Any]:
        def ms(t: float | None) -> float | None:
            return round((t - self.t0) * 1000, 2) if t is not None else None
        return {"request_id": self.record.id, "queued_ms": ms(self.t_started), "first_token_ms": ms(self.t_first),
                "total_ms": ms(time.perf_counter())}

    def end(self, status: int, *, stats: dict | None = None, error: str | None = None) -> None:
        self.ctx.request_log.finish(self.record, status, stats=stats, error=error, cancelled=self.client_gone)

    def _mark_saved_conversation(self, conversation_id: int) -> None:
        """A saved API conversation says where it came from, in its settings (no schema change)."""
        chat, history = self.ctx.chat, self.ctx.history

        def mark() -> None:
            current = history.get_conversation(conversation_id).settings if history is not None else {}
            chat.set_conversation_settings(conversation_id, {**current, "source": "api"})

        def report(done: asyncio.Future) -> None:
            if not done.cancelled() and done.exception() is not None:
                log.warning("could not mark conversation %s as an API conversation: %s", conversation_id,
                            done.exception())

        asyncio.get_running_loop().run_in_executor(None, mark).add_done_callback(report)


def _problem(stats: dict[str, Any]) -> ApiError | None:
    """A finished turn that is really an error for the client: the prompt did not fit, or the engine failed."""
    reason = stats.get("stop_reason")
    if reason == "context_full" and not stats.get("completion_tokens"):
        at_least = "at least " if (stats.get("context") or {}).get("at_least") else ""
        return ApiError(400, f"The conversation needs {at_least}{stats.get('prompt_tokens') or 'more'} tokens but the "
                             f"model's context holds {stats.get('n_ctx') or 'fewer'}; shorten it, or load the model "
                             "with a longer context.", code="context_length_exceeded", param="messages")
    if reason == "error":
        return ApiError(500, stats.get("error") or "The model failed while answering.", code="generation_failed")
    return None


async def _read_body(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it is known to be larger than `limit`, before it is all read.

    (Starlette's own `max_body_size` answers in plain text, replacing the response; clients expect OpenAI's JSON.)
    """
    declared = request.headers.get("content-length")
    if declared is not None:
        if not declared.strip().isdigit():
            raise ApiError(400, "The Content-Length header is not a number.")
        if int(declared) > limit:
            raise _too_large(limit)
    size, chunks = 0, []
    try:
        # A body sent a byte at a time, or never finished, must not hold the connection: the whole of it
        # has BODY_SECONDS to arrive (4 MiB take a fraction of that on any link a person uses).
        async with asyncio.timeout(BODY_SECONDS):
            async for chunk in request.stream():
                size += len(chunk)
                if size > limit:
                    raise _too_large(limit)
                chunks.append(chunk)
    except TimeoutError:
        raise ApiError(408, f"The request's body did not arrive within {BODY_SECONDS:g} s.",
                       code="request_timeout") from None
    return b"".join(chunks)


def _too_large(limit: int) -> ApiError:
    return ApiError(413, f"The request body is larger than this server's limit of {format_bytes(limit)}.",
                    code="request_too_large")


def _unknown_model(name: str) -> ApiError:
    return ApiError(404, f"The model {name!r} is not installed here; GET /v1/models lists the installed ones.",
                    code="model_not_found", param="model")


def _epoch(iso: str | None) -> int:
    from datetime import datetime

    if iso:
        try:
            return int(datetime.fromisoformat(iso).timestamp())
        except ValueError:
            pass
    return int(time.time())
