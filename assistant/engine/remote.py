"""RemoteEngine: a model served by another machine, over the OpenAI chat-completions protocol.

The same `Engine` interface as the local runner, so the chat service, the window,
compare and the local API server work with it unchanged. What differs is where
the figures come from: time to first token and tokens/s are measured here, where
the text arrives; token counts come from the server's `usage` (or are counted
from the stream, and marked so); the server's own figures (llama-server's
`timings`, another Hearth's record) are kept beside ours, so network time shows.
Memory is never taken from this machine for a remote model.
"""

from __future__ import annotations

import json
import logging
import math
import re
import socket
import threading
import time
import zlib
from collections.abc import Generator, Iterable, Iterator
from typing import Any

import httpx

from assistant.engine import thinking
from assistant.engine.interface import Engine, ModelSummary, Response
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.engine.thinking import ANSWER, THINKING, Piece, ThinkingParser
from assistant.remotes import Remote
from assistant.stats import MemoryStats, ModelRef, ResponseStats, tps
from common.errors import ModelNotFoundError, UserError
from common.formatting import format_bytes
from common.terminal import safe_text, shorten

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0
READ_SECONDS = 300.0  # a big model's prompt on a busy server may take minutes before the first token
LIST_SECONDS = 30.0  # a model list needs no model to run
LISTING_SECONDS = 3.0  # `models list` shows every server's models: a dead one must not hold it up
COUNT_SECONDS = 3.0  # a token count is worth a short wait, not a long one: the estimate is there
# Once text flows, a server that sends nothing useful (no text, no thinking) for this long has stalled:
# blank lines, SSE comments or a byte a second keep a socket busy but are no reply.
PIECE_STALL_SECONDS = 60.0
CAP_GRACE_SECONDS = 2.0  # after -n pieces, how long the server's closing chunks (usage, finish) are awaited
# The most time one reply may take, all told, is GenerationSettings.reply_deadline_s (30 minutes unless the
# user sets another: the `reply_deadline_s` setting, `--reply-deadline`): a drip that never stalls still ends.
_MAX_ERROR_BODY = 64_000
# A server is not trusted to keep its answers small: a model list, a server's details, one line of a stream
# and a whole reply are read up to these sizes, counted after decompression, and a longer one ends the
# request with a sentence. A reply of 8,192 tokens is ~3 MB of server-sent events.
MAX_LIST_BYTES = 8_000_000
MAX_DETAILS_BYTES = 1_000_000
MAX_LINE_BYTES = 1_000_000
MAX_REPLY_BYTES = 64_000_000
_DECODE_PIECE = 64 * 1024  # a compressed chunk is inflated this much at a time: a bomb never lands in memory at once
# Only what can be inflated under a limit is offered; a server that answers in another encoding gets a sentence.
_ACCEPT = {"Accept-Encoding": "gzip, deflate"}


class RemoteError(UserError):
    """A remote server could not be reached, refused, or stopped mid-reply."""


def _client(timeout_read: float | None = None, connect: float = CONNECT_SECONDS) -> httpx.Client:
    read = READ_SECONDS if timeout_read is None else timeout_read
    return httpx.Client(timeout=httpx.Timeout(connect=connect, read=read, write=30.0, pool=5.0),
                        follow_redirects=False, headers=_ACCEPT)


class _TooLarge(Exception):
    pass


class _LineTooLong(_TooLarge):
    pass


class _Unreadable(Exception):
    """The body is in an encoding this client does not inflate."""


class _Overdue(Exception):
    """The body did not arrive within its deadline."""


def _inflater(encoding: str) -> Any:
    """A zlib decompressor for the Content-Encoding, None for none; _Unreadable for anything else."""
    encoding = encoding.strip().lower()
    if encoding in ("", "identity"):
        return None
    if encoding in ("gzip", "x-gzip"):
        return zlib.decompressobj(zlib.MAX_WBITS | 16)
    if encoding == "deflate":
        return _Deflate()
    raise _Unreadable(encoding)


class _Deflate:
    """HTTP's deflate is zlib-wrapped by the standard and raw by some servers: the first byte tells."""

    def __init__(self) -> None:
        self._inner: Any = None

    def decompress(self, data: bytes, max_length: int) -> bytes:
        if self._inner is None:
            zlib_header = bool(data) and data[0] & 0x0F == 8
            self._inner = zlib.decompressobj(zlib.MAX_WBITS if zlib_header else -zlib.MAX_WBITS)
        return self._inner.decompress(data, max_length)

    @property
    def unconsumed_tail(self) -> bytes:
        return self._inner.unconsumed_tail if self._inner is not None else b""


def _body_pieces(response: httpx.Response, limit: int, deadline: float | None = None) -> Iterator[bytes]:
    """The body as it arrives, decompressed here a bounded piece at a time, at most `limit` bytes in all
    (_TooLarge beyond: counted after decompression, so a gzip bomb stops at the limit, not at the end of
    memory), and by `deadline` (time.monotonic(); _Overdue after: a server dripping a byte a second
    never trips a read timeout)."""
    declared = response.headers.get("content-length", "")
    inflater = _inflater(response.headers.get("content-encoding", ""))
    if inflater is None and declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    total = 0
    for raw in response.iter_raw():
        if deadline is not None and time.monotonic() > deadline:
            raise _Overdue
        data = raw
        while data:
            if inflater is None:
                piece, data = data, b""
            else:
                try:
                    piece = inflater.decompress(data, _DECODE_PIECE)
                except zlib.error as exc:
                    raise httpx.DecodingError(f"the compressed body is damaged ({exc})") from None
                data = inflater.unconsumed_tail
            total += len(piece)
            if total > limit:
                raise _TooLarge
            if piece:
                yield piece
            if inflater is not None and not piece and data:
                break  # nothing more comes out of this input (the end of the stream): stop, do not spin


def _read_limited(response: httpx.Response, limit: int, deadline: float | None = None) -> bytes:
    """The whole body, up to `limit` bytes after decompression; _TooLarge beyond, _Overdue after `deadline`."""
    return b"".join(_body_pieces(response, limit, deadline))


def _get_limited(client: httpx.Client, url: str, headers: dict[str, str], limit: int,
                 deadline: float | None = None) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", url, headers=headers) as response:
        return response, _read_limited(response, limit, deadline)


def _post_json_limited(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str],
                       limit: int, deadline: float | None = None) -> Any:
    """The JSON a POST answers with, or None for any status but 200; raises _TooLarge past `limit` bytes."""
    with client.stream("POST", url, json=body, headers=headers) as response:
        raw = _read_limited(response, limit, deadline)
        return json.loads(raw) if response.status_code == 200 else None


_LINE_BREAKS = re.compile(rb"[\r\n]+")


def _lines_limited(pieces: Iterable[bytes], limit: int) -> Generator[str, None, None]:
    """The stream's lines with something on them, as they arrive, none longer than `limit` bytes (else
    _LineTooLong). Blank lines (which only separate events) are skipped in C: a server sending millions
    of them costs one regular expression, not a Python loop each (JSON carries no raw CR or LF, so every
    one in a stream ends a line)."""
    pending = bytearray()  # the line so far: appended in place, split only when a newline arrives
    for chunk in pieces:
        pending += chunk
        if b"\n" in chunk:
            *lines, rest = _LINE_BREAKS.sub(b"\n", pending).lstrip(b"\n").split(b"\n")
            for line in lines:
                yield line.decode("utf-8", errors="replace")
            pending = bytearray(rest)
        if len(pending) > limit:
            raise _LineTooLong
    if pending:
        yield pending.decode("utf-8", errors="replace")


def describe_http_error(remote: Remote, exc: Exception, doing: str, read_seconds: float | None = None) -> str:
    """One sentence for what went wrong talking to `remote` (`read_seconds`: the read timeout used)."""
    where = f"{remote.name} ({remote.url})"
    if isinstance(exc, httpx.ConnectTimeout):
        return f"{where} did not answer within {CONNECT_SECONDS:g} s while {doing}; is it running and reachable?"
    if isinstance(exc, httpx.ConnectError):
        text = str(exc).lower()
        if "ssl" in text or "certificate" in text or "tls" in text:
            return f"The TLS connection to {where} failed ({exc}); check the address (http or https) and its certificate."
        if "name or service not known" in text or "nodename nor servname" in text or "getaddrinfo" in text:
            return f"The host of {where} cannot be found; check the address."
        return f"{where} cannot be reached ({exc or 'connection refused'}); is the server running?"
    if isinstance(exc, httpx.ReadTimeout):
        waited = READ_SECONDS if read_seconds is None else read_seconds
        return f"{where} stopped sending for {waited:g} s while {doing}."
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError)):
        return f"{where} closed the connection while {doing} ({type(exc).__name__})."
    return f"Talking to {where} failed while {doing} ({type(exc).__name__}: {exc})."


def _unreadable_sentence(remote: Remote, encoding: str) -> str:
    return (f"{remote.name} answered in an encoding this app does not read ({safe_text(shorten(encoding, 40))}), "
            "though it was asked for gzip, deflate or none.")


def _status_sentence(remote: Remote, status: int, body: str, model: str | None) -> str:
    message = ""
    try:
        data = json.loads(body)
        err = data.get("error") if isinstance(data, dict) else None
        message = (err.get("message") if isinstance(err, dict) else err) or data.get("detail") or ""
    except (ValueError, AttributeError):
        message = body.strip()[:200]
    message = str(message)[:300]
    if status == 401 or status == 403:
        return f"{remote.name} refused the API key ({status}); set the right one with `assistant remote add`."
    if status == 404 and model:
        return f"{remote.name} has no model called {model!r} ({message or 'not found'})."
    return f"{remote.name} answered {status}{': ' + message if message else ''}."


class RemoteEngine(Engine):
    def __init__(self, remote: Remote, api_key: str | None = None) -> None:
        self.remote = remote
        self.api_key = api_key
        self._summary: ModelSummary | None = None
        self._current: RemoteResponse | None = None
        self._server: dict[str, Any] = {}
        self._counts: dict[str, int] = {}  # messages (as JSON) -> the server's token count

    # --- The server and its models
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}

    def list_models(self, timeout: float | None = None) -> list[str]:
        """The model ids the server offers (GET /v1/models); `timeout`: the most seconds to wait (a listing
        beside others uses a short one), else LIST_SECONDS."""
        wait = LIST_SECONDS if timeout is None else timeout
        connect = min(CONNECT_SECONDS, wait)
        deadline = time.monotonic() + connect + wait
        try:
            with _client(wait, connect=connect) as client:
                resp, raw = _get_limited(client, f"{self.remote.api_base}/models", self.headers(), MAX_LIST_BYTES,
                                         deadline)
        except httpx.ConnectTimeout as exc:
            raise RemoteError(f"{self.remote.name} ({self.remote.url}) did not answer within {connect:g} s while "
                              "listing its models; is it running and reachable?") from exc
        except httpx.HTTPError as exc:
            raise RemoteError(describe_http_error(self.remote, exc, "listing its models", wait)) from exc
        except _TooLarge:
            raise RemoteError(f"{self.remote.name} answered /v1/models with more than "
                              f"{format_bytes(MAX_LIST_BYTES)}; that is not a model list.") from None
        except _Overdue:
            raise RemoteError(f"{self.remote.name} was still sending its model list after {wait:g} s, "
                              "so the app stopped waiting.") from None
        except _Unreadable as exc:
            raise RemoteError(_unreadable_sentence(self.remote, str(exc))) from None
        text = raw.decode("utf-8", errors="replace")
        if resp.status_code != 200:
            raise RemoteError(_status_sentence(self.remote, resp.status_code, text[:_MAX_ERROR_BODY], None))
        self._server.setdefault("software", _software_from(resp.headers, text))
        try:
            listed = json.loads(text).get("data", [])
            if not isinstance(listed, list):
                raise TypeError("data is not a list")
            return [m["id"] for m in listed if isinstance(m, dict) and isinstance(m.get("id"), str)]
        except (ValueError, AttributeError, TypeError) as exc:
            raise RemoteError(f"{self.remote.name} answered /v1/models with something that is not a model list.") from exc

    def probe(self) -> dict[str, Any]:
        """What the server is and how far away: its models, software and a measured round trip."""
        t0 = time.perf_counter()
        models = self.list_models()
        round_trip = (time.perf_counter() - t0) * 1000
        return {"models": models, "round_trip_ms": round(round_trip, 1), **self._server_info()}

    def _server_info(self) -> dict[str, Any]:
        """Best effort, once: llama-server's /props, Ollama's /api/version."""
        if "probed" in self._server:
            return {k: v for k, v in self._server.items() if k != "probed"}
        self._server["probed"] = True
        deadline = time.monotonic() + 6.0  # details are a nicety: a slow or dripping server gets no more
        try:
            with _client(3.0) as client:
                props, raw = _get_limited(client, f"{self.remote.root}/props", self.headers(), MAX_DETAILS_BYTES,
                                          deadline)
                if props.status_code == 200 and "application/json" in props.headers.get("content-type", ""):
                    data = json.loads(raw)
                    if isinstance(data, dict):
                        self._server["software"] = "llama.cpp"
                        build = data.get("build_info")
                        if isinstance(build, str):
                            self._server["version"] = shorten(build, 80)
                        settings = data.get("default_generation_settings")
                        n_ctx = settings.get("n_ctx") if isinstance(settings, dict) else None
                        if isinstance(n_ctx, int) and not isinstance(n_ctx, bool) and 0 < n_ctx < 1 << 31:
                            self._server["n_ctx"] = n_ctx
                version, raw = _get_limited(client, f"{self.remote.root}/api/version", {}, MAX_DETAILS_BYTES,
                                            deadline)
                if version.status_code == 200 and "application/json" in version.headers.get("content-type", ""):
                    data = json.loads(raw)
                    if isinstance(data, dict) and isinstance(data.get("version"), str):
                        self._server.update(software="ollama", version=shorten(data["version"], 80))
        except (httpx.HTTPError, ValueError, _TooLarge, _Overdue, _Unreadable) as exc:
            log.debug("%s: no server details (%s)", self.remote.name, type(exc).__name__)
        return {k: v for k, v in self._server.items() if k != "probed"}

    # --- Engine
    def load(self, spec: Any, settings: LoadSettings | None = None, *, automatic: bool = False) -> ModelSummary:
        """Select a model on the server (nothing is loaded here: the server holds it)."""
        model = str(spec)
        models = self.list_models()
        if models and model not in models:
            shown = ", ".join(models[:8]) + (" …" if len(models) > 8 else "")
            raise ModelNotFoundError(f"{self.remote.name} has no model called {model!r}; it offers: {shown}.")
        info = self._server_info()
        self._summary = ModelSummary(
            name=f"{model}@{self.remote.name}", path=self.remote.url, quant=None, architecture=None, n_params=None,
            size_bytes=None, n_ctx=info.get("n_ctx") or 0, n_ctx_train=None, n_threads=None, n_gpu_layers=0,
            chat_format="server", has_chat_template=True,
            backend={"kind": "remote", "host": self.remote.host, "software": info.get("software"),
                     "version": info.get("version"), "remote": self.remote.name},
            memory={}, kind="remote", vision=None,  # only the server knows; an image it cannot take is its 400
            remote={"name": self.remote.name, "url": self.remote.url, "host": self.remote.host, "model": model,
                    "software": info.get("software"), "version": info.get("version")},
            spec=f"{model}@{self.remote.name}")
        return self._summary

    @property
    def model(self) -> str:
        if self._summary is None or not self._summary.remote:
            raise UserError("No remote model is selected.")
        return self._summary.remote["model"]

    def unload(self) -> None:
        self._summary = None

    def summary(self) -> ModelSummary | None:
        return self._summary

    def chat(self, messages: list[dict], settings: GenerationSettings | None = None, *,
             prefix: str | None = None) -> RemoteResponse:
        self.model  # noqa: B018 - raises when nothing is selected
        messages = [openai_message(m) for m in messages]
        if prefix:  # llama-server (and others) continue a trailing assistant message
            messages.append({"role": "assistant", "content": prefix})
        return RemoteResponse(self, messages, None, settings or GenerationSettings())

    def complete(self, prompt: str, settings: GenerationSettings | None = None) -> RemoteResponse:
        self.model  # noqa: B018
        return RemoteResponse(self, None, prompt, settings or GenerationSettings())

    def count_tokens(self, messages: list[dict]) -> int:
        """The exact count where the server can give it (llama-server: its chat template, then its
        tokenizer), else an estimate of about four characters a token: servers share no way to count a chat."""
        if self._server.get("software") == "llama.cpp" and not any(m.get("images") for m in messages):
            exact = self._count_on_llama_server(messages)
            if exact is not None:
                return exact
        return sum(len(str(m.get("content") or "")) for m in messages) // 4 + 4 * len(messages)

    def _count_on_llama_server(self, messages: list[dict]) -> int | None:
        key = json.dumps(messages, sort_keys=True, ensure_ascii=False)
        if key in self._counts:
            return self._counts[key]
        try:
            deadline = time.monotonic() + 2 * COUNT_SECONDS
            with _client(COUNT_SECONDS) as client:
                limit = MAX_DETAILS_BYTES + 16 * len(key)  # a prompt, or its tokens as numbers
                rendered = _post_json_limited(client, f"{self.remote.root}/apply-template", {"messages": messages},
                                              self.headers(), limit, deadline)
                prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
                if not isinstance(prompt, str):
                    return None
                tokenized = _post_json_limited(client, f"{self.remote.root}/tokenize", {"content": prompt},
                                               self.headers(), limit, deadline)
                tokens = tokenized.get("tokens") if isinstance(tokenized, dict) else None
        except (httpx.HTTPError, ValueError, _TooLarge, _Overdue, _Unreadable) as exc:
            log.debug("%s: no token count from the server (%s)", self.remote.name, type(exc).__name__)
            return None
        if not isinstance(tokens, list):
            return None
        if len(self._counts) > 64:  # the context meter asks again for each draft: keep the recent ones
            self._counts.clear()
        self._counts[key] = len(tokens)
        return len(tokens)

    def cancel(self) -> None:
        current = self._current
        if current is not None:
            current.cancel()


def openai_message(m: dict) -> dict:
    """A message as OpenAI's API takes it: its images as `image_url` parts with data URLs, ahead of its text."""
    images = m.get("images")
    if not images:
        return {"role": m["role"], "content": m["content"]}
    parts: list[dict[str, Any]] = [{"type": "image_url", "image_url": {"url": image.data_url()}} for image in images]
    if m["content"]:
        parts.append({"type": "text", "text": m["content"]})
    return {"role": m["role"], "content": parts}


def _software_from(headers: httpx.Headers, body: str) -> str | None:
    server = headers.get("server", "")
    if "llama.cpp" in server:
        return "llama.cpp"
    if "owned_by\": \"vllm" in body or '"owned_by":"vllm"' in body:
        return "vllm"
    if "hearth" in headers.get("x-powered-by", "").lower() or '"owned_by": "hearth"' in body:
        return "hearth"
    return None


class RemoteResponse(Response):
    def __init__(self, engine: RemoteEngine, messages: list[dict] | None, prompt: str | None,
                 settings: GenerationSettings) -> None:
        super().__init__(messages, settings, prompt)
        self.engine = engine
        self._http: httpx.Response | None = None
        self._lock = threading.Lock()
        self._ended_by: str | None = None  # why the app ended the stream itself (a stall, the deadline)

    def cancel(self) -> None:
        """Close the stream at once: the server sees the client go and stops."""
        with self._lock:
            super().cancel()
            self._close_http()

    def end(self, sentence: str | None) -> None:
        """End the stream from another thread (the watch), keeping what arrived; `sentence` says why (None:
        the reply is complete as far as the app is concerned)."""
        with self._lock:
            if sentence is not None and self._ended_by is None and not self.cancelled:
                self._ended_by = sentence
            self._close_http()

    def _close_http(self) -> None:
        http = self._http
        if http is None:
            return
        # A reader blocked in recv() is not woken by close() on Linux; shutting the socket down wakes it.
        sock = _socket_of(http)
        if sock is not None:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        try:
            http.close()
        except Exception:  # closing from another thread may race the reader; it stops either way
            log.debug("closing the remote stream raced its reader")

    def _body(self) -> tuple[str, dict[str, Any]]:
        s = self.settings
        body: dict[str, Any] = {"model": self.engine.model, "stream": True, "stream_options": {"include_usage": True},
                                "temperature": s.temperature, "top_p": s.top_p}
        if s.max_tokens:
            body["max_tokens"] = s.max_tokens
        if s.seed is not None:
            body["seed"] = s.seed
        if s.stop:
            body["stop"] = list(s.stop)
        if s.ignore_eos:  # benchmarks: llama-server, vLLM and Hearth take it; others ignore an unknown field
            body["ignore_eos"] = True
        if self.messages is not None:
            body.update(thinking_fields(s))
            return f"{self.engine.remote.api_base}/chat/completions", {**body, "messages": self.messages}
        return f"{self.engine.remote.api_base}/completions", {**body, "prompt": self.prompt}

    def _stream(self) -> Generator[str | Piece, None, None]:
        eng = self.engine
        receipt = _RemoteReceipt(time.perf_counter(), self.settings.thinking_format if self.messages is not None
                                 else thinking.NONE)
        eng._current = self
        url, body = self._body()
        deadline = self.settings.reply_deadline_s or 0.0  # 0: no overall deadline
        watch = _StallWatch(self, receipt, deadline)
        most = self.settings.max_tokens or None
        read = min(READ_SECONDS, deadline) if deadline else READ_SECONDS
        try:
            with _client(read) as client, client.stream("POST", url, json=body, headers=eng.headers()) as http:
                with self._lock:
                    self._http = http
                    if self.cancelled or self._ended_by:
                        self._close_http()
                watch.start()
                if http.status_code != 200:
                    receipt.error = _status_sentence(eng.remote, http.status_code, _error_body(http), eng.model)
                    return
                for line in _lines_limited(_body_pieces(http, MAX_REPLY_BYTES), MAX_LINE_BYTES):
                    if self.cancelled or self._ended_by:
                        break
                    chunk = _parse_event(line)
                    if chunk is None:
                        continue
                    if isinstance(chunk, _Broken):
                        receipt.error = _broken_sentence(eng.remote, chunk.what)
                        return
                    if chunk == _DONE:
                        receipt.done = True
                        break
                    assert isinstance(chunk, dict)
                    capped = receipt.capped_at is not None
                    pieces = receipt.take(chunk, eng.remote)
                    if receipt.error:
                        return
                    if capped and pieces:
                        receipt.uncount()  # not shown, not counted
                        break  # past -n: a server that ignores max_tokens is cut off here
                    receipt.shown(pieces)
                    yield from pieces
                    if most is not None and receipt.pieces >= most and not capped:
                        # -n is kept here too. The server's last chunks (finish, usage, its record) may follow
                        # for a moment (CAP_GRACE_SECONDS); more text ends the stream at once.
                        receipt.capped_at = time.monotonic()
                        receipt.finish = receipt.finish or "length"
            held = receipt.flush()  # what the inline thinking parser held back (the start of a tag, perhaps)
            receipt.shown(held)
            yield from held
        except _LineTooLong:
            receipt.error = (f"{eng.remote.name} sent a line of more than {format_bytes(MAX_LINE_BYTES)} "
                             "in its reply; the reply was stopped there.")
        except _TooLarge:
            receipt.error = (f"{eng.remote.name} sent more than {format_bytes(MAX_REPLY_BYTES)} for one reply; "
                             "the reply was stopped there.")
        except _Unreadable as exc:
            receipt.error = _unreadable_sentence(eng.remote, str(exc))
        except httpx.DecodingError as exc:
            receipt.error = f"{eng.remote.name} sent a reply that cannot be decompressed ({shorten(exc, 120)})."
        except Exception as exc:
            # Closed by cancel() or the watch from another thread: whatever the reader then meets.
            if not (self.cancelled or self._ended_by or receipt.capped_at is not None):
                if not isinstance(exc, (httpx.HTTPError, httpx.StreamError, RuntimeError, OSError)):
                    raise
                receipt.error = describe_http_error(eng.remote, exc, "answering", read)
        finally:
            watch.stop()
            eng._current = None
            if self._ended_by and not self.cancelled:
                receipt.error = self._ended_by
            self.stats = receipt.stats(self)

    @property
    def stop_requested(self) -> bool:
        return self.cancelled


def thinking_fields(s: GenerationSettings) -> dict[str, Any]:
    """The thinking settings in the names servers read: `chat_template_kwargs.enable_thinking` (llama-server,
    vLLM), `reasoning_effort` (OpenAI; gpt-oss's "Reasoning: low"), `thinking_budget_tokens` (llama-server)."""
    fields: dict[str, Any] = {}
    if s.thinking in ("on", "off"):
        fields["chat_template_kwargs"] = {"enable_thinking": s.thinking == "on"}
    if s.thinking_effort:
        fields["reasoning_effort"] = s.thinking_effort
    if s.thinking_budget is not None:
        fields["thinking_budget_tokens"] = s.thinking_budget
    return fields


def _socket_of(http: httpx.Response) -> socket.socket | None:
    stream = http.extensions.get("network_stream")
    try:
        sock = stream.get_extra_info("socket") if stream is not None else None
    except Exception:  # a transport without one (tests, proxies)
        return None
    return sock if isinstance(sock, socket.socket) else None


def _error_body(http: httpx.Response) -> str:
    """The start of an error response's body (a sentence's worth), however much the server sends."""
    body = bytearray()
    try:
        for piece in _body_pieces(http, 1 << 62):
            body += piece
            if len(body) >= _MAX_ERROR_BODY:
                break
    except (httpx.HTTPError, httpx.StreamError, _Unreadable, _Overdue):
        pass
    return bytes(body[:_MAX_ERROR_BODY]).decode("utf-8", errors="replace")


class _StallWatch:
    """Ends a reply that stalls or overruns, from its own thread: no text (or thinking) for READ_SECONDS
    before the first piece or PIECE_STALL_SECONDS between pieces, or more than the whole reply's deadline.
    A server that keeps the socket busy with blank lines, comments or a byte a second still ends."""

    TICK = 0.25

    def __init__(self, response: RemoteResponse, receipt: _RemoteReceipt, deadline_s: float) -> None:
        self.response, self.receipt, self.deadline_s = response, receipt, deadline_s
        self.started = time.monotonic()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="remote-stall-watch", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        name = self.response.engine.remote.name
        while not self._stop.wait(self.TICK):
            now = time.monotonic()
            capped = self.receipt.capped_at
            if capped is not None and now - capped > CAP_GRACE_SECONDS:
                self.response.end(None)  # -n reached and the server did not end: stopped, not an error
                return
            if self.deadline_s and now - self.started > self.deadline_s:
                self.response.end(f"{name} took more than {self.deadline_s:g} s for this reply, so it was stopped "
                                  "there (the reply deadline: --reply-deadline, or the reply_deadline_s setting).")
                return
            last = self.receipt.t_progress
            if last is None and now - self.started > READ_SECONDS:
                self.response.end(f"{name} sent no reply within {READ_SECONDS:g} s, so the app stopped waiting.")
                return
            if last is not None and now - last > PIECE_STALL_SECONDS:
                self.response.end(f"{name} stopped sending its reply: nothing for {PIECE_STALL_SECONDS:g} s, so "
                                  "the app stopped waiting; the reply so far is kept.")
                return


class _Broken:
    """A stream event that is not what the OpenAI protocol says it is."""

    def __init__(self, what: str) -> None:
        self.what = what


_DONE = "[DONE]"


def _broken_sentence(remote: Remote, what: str) -> str:
    return (f"{remote.name} sent a broken reply ({what}), not what an OpenAI-compatible server sends; "
            "the reply was stopped there.")


def _kind(value: Any) -> str:
    return {bool: "true/false", int: "a number", float: "a number", str: "text", list: "a list",
            dict: "an object", type(None): "null"}.get(type(value), type(value).__name__)


def _parse_event(line: str) -> dict | str | _Broken | None:
    """One server-sent event line: a chunk, "[DONE]", a _Broken, or None for what carries nothing
    (blank lines, comments, event names)."""
    line = line.strip()
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if not data:
        return None
    if data == _DONE:
        return _DONE
    try:
        value = json.loads(data)
    except ValueError:
        return _Broken("an event that is not JSON")
    return value if isinstance(value, dict) else _Broken(f"an event that is {_kind(value)}, not an object")


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _count(value: Any) -> int | None:
    """A token count as a server should send it (a whole number, not true/false), else None."""
    return value if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 1 << 53 else None


def _rate(count: Any, seconds: float | None) -> float | None:
    n = _number(count)
    return round(n / seconds, 2) if n is not None and seconds else None


def server_figures(chunk: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """A server's own figures for a reply, in llama-server's `timings` names, and whose format they
    came in: llama-server's `timings` (another Hearth sends them too), LM Studio's `stats`, or
    Ollama's durations (nanoseconds) where a server passes them through. None when there are none:
    vLLM's OpenAI API and Ollama's `/v1` send only `usage`."""
    timings = chunk.get("timings")
    if isinstance(timings, dict):  # numbers only: a figure of the wrong type is left out, not shown
        return {k: v for k, v in list(timings.items())[:64]
                if isinstance(k, str) and _number(v) is not None}, "llama-server timings"
    stats = chunk.get("stats")
    if isinstance(stats, dict) and _number(stats.get("tokens_per_second")) is not None:
        ttft = _number(stats.get("time_to_first_token"))
        gen = _number(stats.get("generation_time"))
        return {"predicted_per_second": _number(stats["tokens_per_second"]),
                "prompt_ms": round(ttft * 1000, 2) if ttft is not None else None,
                "predicted_ms": round(gen * 1000, 2) if gen is not None else None}, "LM Studio stats"
    eval_ns = _number(chunk.get("eval_duration"))
    if eval_ns:
        prompt_ns = _number(chunk.get("prompt_eval_duration"))
        prompt_s = prompt_ns / 1e9 if prompt_ns else None
        return {"predicted_n": _count(chunk.get("eval_count")), "predicted_ms": round(eval_ns / 1e6, 2),
                "predicted_per_second": _rate(chunk.get("eval_count"), eval_ns / 1e9),
                "prompt_n": _count(chunk.get("prompt_eval_count")),
                "prompt_ms": round(prompt_s * 1000, 2) if prompt_s else None,
                "prompt_per_second": _rate(chunk.get("prompt_eval_count"), prompt_s)}, "Ollama durations"
    return None


class _RemoteReceipt:
    """What arrived of one remote reply, and when (our clock), plus the server's own figures."""

    def __init__(self, t0: float, thinking_format: str | None = None) -> None:
        self.t0 = t0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.pieces = 0
        # A server's thinking comes as `reasoning_content` (llama-server, vLLM, DeepSeek) or `reasoning`
        # (Ollama, OpenRouter) beside the content, or inline in the content (a server that does not parse it).
        fmt = thinking_format or thinking.AUTO
        self.parser = ThinkingParser(fmt) if fmt != thinking.NONE else None
        self.thinking_pieces = 0  # stream pieces that carried thinking: its token count when usage says none
        self.thinking: list[str] = []
        self.t_thinking_end: float | None = None
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}
        self.server_record: dict[str, Any] = {}
        self.figures_from: str | None = None  # whose format the server's own figures came in
        self.finish: str | None = None
        self.error: str | None = None
        self.done = False
        self.t_progress: float | None = None  # time.monotonic() of the last text or thinking (the stall watch)
        self.capped_at: float | None = None  # when -n was reached on this side

    def take(self, chunk: dict[str, Any], remote: Remote | None = None) -> list[Piece]:
        """The pieces of one chunk, thinking and answer; a chunk whose fields have the wrong types (content
        as a number, choices as text) sets `error`: a broken server reply, not an empty one."""
        if "error" in chunk:
            err = chunk["error"]
            said = err.get("message") if isinstance(err, dict) else err
            self.error = f"The server reported an error mid-reply: {shorten(said, 300)}."
            return []
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        figures = server_figures(chunk)
        if figures:
            self.timings, self.figures_from = figures
        if isinstance(chunk.get("hearth"), dict):  # another Hearth's full record
            self.server_record = chunk["hearth"]
        choices = chunk.get("choices")
        if choices is None:
            return []
        if not isinstance(choices, list):
            return self._broken(remote, f"'choices' is {_kind(choices)}, not a list")
        out: list[Piece] = []
        self._counted_now = self._thinking_now = 0
        for choice in choices:
            if not isinstance(choice, dict):
                return self._broken(remote, f"a choice is {_kind(choice)}, not an object")
            delta = choice.get("delta")
            if delta is not None and not isinstance(delta, dict):
                return self._broken(remote, f"'delta' is {_kind(delta)}, not an object")
            text = delta.get("content") if delta else choice.get("text")
            if text is not None and not isinstance(text, str):
                return self._broken(remote, f"the text is {_kind(text)}")
            # A server's separated thinking: llama-server's and vLLM's name, or Ollama's and OpenRouter's.
            reasoning = None
            if delta:
                reasoning = delta.get("reasoning_content")
                reasoning = delta.get("reasoning") if reasoning is None else reasoning
                if reasoning is not None and not isinstance(reasoning, str):
                    return self._broken(remote, f"the reasoning is {_kind(reasoning)}")
            finish = choice.get("finish_reason")
            if finish is not None and not isinstance(finish, str):
                return self._broken(remote, f"'finish_reason' is {_kind(finish)}")
            now = time.perf_counter()
            if text or (delta and any(isinstance(v, str) and v for v in delta.values())):
                self.t_progress = time.monotonic()  # text or thinking: the server is working on it
            if text or reasoning:
                self.t_first = self.t_first or now
                self.t_last = now
                self.pieces += 1
                self._counted_now += 1
            if reasoning:
                self.thinking_pieces += 1
                self._thinking_now += 1
                out.append(Piece(THINKING, reasoning, self.pieces))
            if text:
                out += self._content(text)
            if finish:
                self.finish = finish
        return out

    def _content(self, text: str) -> list[Piece]:
        """Content text through the inline thinking parser (a server that sends tags in the content)."""
        if self.parser is None:
            return [Piece(ANSWER, text, self.pieces)]
        before = self.parser.phase if self.parser.thinking_seen else ANSWER
        pieces = self.parser.feed(text)
        if THINKING in (before, self.parser.phase) and self.parser.thinking_seen:
            self.thinking_pieces += 1
            self._thinking_now += 1
        return [Piece(p.kind, p.text, self.pieces) for p in pieces]

    def uncount(self) -> None:
        """The chunk just taken is not shown (past -n): its pieces are not counted either."""
        self.pieces -= self._counted_now
        self.thinking_pieces -= self._thinking_now

    def shown(self, pieces: list[Piece]) -> None:
        """Pieces that reached the reply: the thinking kept, and when it ended (the first answer after it)."""
        for p in pieces:
            if p.kind == THINKING:
                self.thinking.append(p.text)
            elif self.thinking and self.t_thinking_end is None:
                self.t_thinking_end = self.t_last

    def flush(self) -> list[Piece]:
        """What the inline parser held back, at the end of the stream."""
        return self.parser.finish() if self.parser is not None else []

    def _broken(self, remote: Remote | None, what: str) -> list[Piece]:
        self.error = _broken_sentence(remote, what) if remote is not None else f"A broken reply ({what})."
        return []

    def stats(self, response: RemoteResponse) -> ResponseStats:
        end = time.perf_counter()
        eng = response.engine
        summary = eng.summary()
        reported = _count(self.usage.get("completion_tokens"))
        counted = reported is None
        completion = self.pieces if reported is None else reported
        prompt_tokens = _count(self.usage.get("prompt_tokens")) or 0
        details = self.usage.get("prompt_tokens_details")
        cached = (_count(details.get("cached_tokens")) or 0) if isinstance(details, dict) else 0
        thinking_text = "".join(self.thinking).strip() or None
        completion_details = self.usage.get("completion_tokens_details")
        reasoning = _count(completion_details.get("reasoning_tokens")) if isinstance(completion_details, dict) \
            else None
        thinking_tokens = (reasoning if reasoning is not None else self.thinking_pieces) if thinking_text else 0
        thinking_tokens = min(thinking_tokens, completion)
        thinking_end = self.t_thinking_end or self.t_last
        thinking_ms = (thinking_end - self.t_first) * 1000 if thinking_text and self.t_first and thinking_end else 0.0
        gen_ms = (self.t_last - self.t_first) * 1000 if self.t_first and self.t_last else 0.0
        if response.cancelled:
            stop_reason = "stopped"
        elif self.error:
            stop_reason = "error"
        else:
            stop_reason = {"stop": "eos", "length": "length"}.get(self.finish or "", "eos" if self.done else "error")
        if stop_reason == "error" and not self.error:
            self.error = f"{eng.remote.name} ended the reply without finishing it."
        server_tps = self.timings.get("predicted_per_second")
        prompt_ms: float = self.timings["prompt_ms"] if isinstance(self.timings.get("prompt_ms"), (int, float)) else 0.0
        record = self.server_record
        return ResponseStats(
            reply="".join(response.chunks),
            model=ModelRef(name=summary.name if summary else eng.remote.name, file=None, quant=None, size_bytes=None,
                           n_params=None),
            prompt_tokens=prompt_tokens, cached_tokens=int(cached), prompt_ms=round(float(prompt_ms), 2),
            prompt_tps=self.timings.get("prompt_per_second"),
            ttft_ms=round((self.t_first - self.t0) * 1000, 2) if self.t_first else None,
            completion_tokens=completion, gen_ms=round(gen_ms, 2), gen_tps=tps(completion - 1, gen_ms),
            total_ms=round((end - self.t0) * 1000, 2), stop_reason=stop_reason,
            n_ctx=summary.n_ctx if summary and summary.n_ctx else None, n_threads=None,
            # Never this machine's memory: only what the server says of itself, kept under transport.
            memory=MemoryStats(weights_bytes=None, kv_bytes=None, compute_bytes=None, rss_bytes=None,
                               rss_peak_bytes=None, vram_bytes=None),
            backend=dict(summary.backend) if summary else {"kind": "remote"},
            context={}, sampling={**response.settings.to_dict()}, chat_format="server",
            error=self.error,
            transport={
                "kind": "remote", "remote": eng.remote.name, "host": eng.remote.host,
                "tokens_counted": counted,  # True: counted from the stream, the server sent no usage
                "received_gen_tps": tps(completion - 1, gen_ms),
                "server_gen_tps": server_tps, "server_prompt_tps": self.timings.get("prompt_per_second"),
                "server_timings": self.timings or None, "server_figures_from": self.figures_from,
                "server_memory": record.get("memory") if isinstance(record.get("memory"), dict) else None,
                "server_record": record or None,
            },
            thinking=thinking_text, thinking_tokens=thinking_tokens, thinking_ms=round(thinking_ms, 2),
            answer_tokens=completion - thinking_tokens,
            thinking_format=self.parser.format if self.parser is not None and self.parser.thinking_seen else
            ("server" if thinking_text else None),
            thinking_unfinished=bool(thinking_text) and not "".join(response.chunks).strip()
            and stop_reason != "eos",
        )
