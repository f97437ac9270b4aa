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
import threading
import time
from collections.abc import Generator
from typing import Any

import httpx

from assistant.engine.interface import Engine, ModelSummary, Response
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.remotes import Remote
from assistant.stats import MemoryStats, ModelRef, ResponseStats, tps
from common.errors import ModelNotFoundError, UserError
from common.formatting import format_bytes

log = logging.getLogger(__name__)

CONNECT_SECONDS = 5.0
READ_SECONDS = 300.0  # a big model's prompt on a busy server may take minutes before the first token
LIST_SECONDS = 30.0  # a model list needs no model to run
COUNT_SECONDS = 3.0  # a token count is worth a short wait, not a long one: the estimate is there
_MAX_ERROR_BODY = 64_000
# A server is not trusted to keep its answers small: a model list, a server's details and one line
# of a stream are read up to these sizes, and a longer one ends the request with a sentence.
MAX_LIST_BYTES = 8_000_000
MAX_DETAILS_BYTES = 1_000_000
MAX_LINE_BYTES = 1_000_000


class RemoteError(UserError):
    """A remote server could not be reached, refused, or stopped mid-reply."""


def _client(timeout_read: float | None = None) -> httpx.Client:
    read = READ_SECONDS if timeout_read is None else timeout_read
    return httpx.Client(timeout=httpx.Timeout(connect=CONNECT_SECONDS, read=read, write=30.0, pool=5.0),
                        follow_redirects=False)


class _TooLarge(Exception):
    pass


def _read_limited(response: httpx.Response, limit: int) -> bytes:
    """The body, up to `limit` bytes; raises _TooLarge beyond (checked as it arrives, not after)."""
    declared = response.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise _TooLarge
    body = bytearray()
    for chunk in response.iter_bytes():
        body += chunk
        if len(body) > limit:
            raise _TooLarge
    return bytes(body)


def _get_limited(client: httpx.Client, url: str, headers: dict[str, str], limit: int) -> tuple[httpx.Response, bytes]:
    with client.stream("GET", url, headers=headers) as response:
        return response, _read_limited(response, limit)


def _post_json_limited(client: httpx.Client, url: str, body: dict[str, Any], headers: dict[str, str],
                       limit: int) -> Any:
    """The JSON a POST answers with, or None for any status but 200; raises _TooLarge past `limit` bytes."""
    with client.stream("POST", url, json=body, headers=headers) as response:
        raw = _read_limited(response, limit)
        return json.loads(raw) if response.status_code == 200 else None


def _lines_limited(response: httpx.Response, limit: int) -> Generator[str, None, None]:
    """The stream's lines as they arrive, none longer than `limit` bytes (else _TooLarge)."""
    pending = bytearray()  # the line so far: appended in place, split only when a newline arrives
    for chunk in response.iter_bytes():
        pending += chunk
        if b"\n" in chunk:
            *lines, rest = pending.split(b"\n")
            for line in lines:
                yield line.rstrip(b"\r").decode("utf-8", errors="replace")
            pending = bytearray(rest)
        if len(pending) > limit:
            raise _TooLarge
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

    def list_models(self) -> list[str]:
        """The model ids the server offers (GET /v1/models)."""
        try:
            with _client(LIST_SECONDS) as client:
                resp, raw = _get_limited(client, f"{self.remote.api_base}/models", self.headers(), MAX_LIST_BYTES)
        except httpx.HTTPError as exc:
            raise RemoteError(describe_http_error(self.remote, exc, "listing its models", LIST_SECONDS)) from exc
        except _TooLarge:
            raise RemoteError(f"{self.remote.name} answered /v1/models with more than "
                              f"{format_bytes(MAX_LIST_BYTES)}; that is not a model list.") from None
        text = raw.decode("utf-8", errors="replace")
        if resp.status_code != 200:
            raise RemoteError(_status_sentence(self.remote, resp.status_code, text[:_MAX_ERROR_BODY], None))
        self._server.setdefault("software", _software_from(resp.headers, text))
        try:
            return [str(m["id"]) for m in json.loads(text).get("data", []) if isinstance(m, dict) and "id" in m]
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
        try:
            with _client(3.0) as client:
                props, raw = _get_limited(client, f"{self.remote.root}/props", self.headers(), MAX_DETAILS_BYTES)
                if props.status_code == 200 and "application/json" in props.headers.get("content-type", ""):
                    data = json.loads(raw)
                    if isinstance(data, dict):
                        self._server["software"] = "llama.cpp"
                        build = data.get("build_info")
                        if isinstance(build, str):
                            self._server["version"] = build
                        n_ctx = (data.get("default_generation_settings") or {}).get("n_ctx")
                        if isinstance(n_ctx, int):
                            self._server["n_ctx"] = n_ctx
                version, raw = _get_limited(client, f"{self.remote.root}/api/version", {}, MAX_DETAILS_BYTES)
                if version.status_code == 200 and "application/json" in version.headers.get("content-type", ""):
                    data = json.loads(raw)
                    if isinstance(data, dict) and isinstance(data.get("version"), str):
                        self._server.update(software="ollama", version=data["version"])
        except (httpx.HTTPError, ValueError, _TooLarge) as exc:
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
            with _client(COUNT_SECONDS) as client:
                limit = MAX_DETAILS_BYTES + 16 * len(key)  # a prompt, or its tokens as numbers
                rendered = _post_json_limited(client, f"{self.remote.root}/apply-template", {"messages": messages},
                                              self.headers(), limit)
                prompt = rendered.get("prompt") if isinstance(rendered, dict) else None
                if not isinstance(prompt, str):
                    return None
                tokenized = _post_json_limited(client, f"{self.remote.root}/tokenize", {"content": prompt},
                                               self.headers(), limit)
                tokens = tokenized.get("tokens") if isinstance(tokenized, dict) else None
        except (httpx.HTTPError, ValueError, _TooLarge) as exc:
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

    def cancel(self) -> None:
        """Close the stream at once: the server sees the client go and stops."""
        with self._lock:
            super().cancel()
            if self._http is not None:
                try:
                    self._http.close()
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
            return f"{self.engine.remote.api_base}/chat/completions", {**body, "messages": self.messages}
        return f"{self.engine.remote.api_base}/completions", {**body, "prompt": self.prompt}

    def _stream(self) -> Generator[str, None, None]:
        eng = self.engine
        receipt = _RemoteReceipt(time.perf_counter())
        eng._current = self
        url, body = self._body()
        try:
            with _client() as client, client.stream("POST", url, json=body, headers=eng.headers()) as http:
                with self._lock:
                    self._http = http
                    if self.cancelled:
                        http.close()
                if http.status_code != 200:
                    text = http.read()[:_MAX_ERROR_BODY].decode("utf-8", errors="replace")
                    receipt.error = _status_sentence(eng.remote, http.status_code, text, eng.model)
                    return
                for line in _lines_limited(http, MAX_LINE_BYTES):
                    if self.cancelled:
                        break
                    chunk = _parse_event(line)
                    if chunk is None:
                        continue
                    if isinstance(chunk, str):  # "[DONE]"
                        receipt.done = True
                        break
                    for text in receipt.take(chunk):
                        yield text
                    if receipt.error:
                        return
        except httpx.HTTPError as exc:
            if not self.cancelled:
                receipt.error = describe_http_error(eng.remote, exc, "answering")
        except _TooLarge:
            receipt.error = (f"{eng.remote.name} sent a line of more than {format_bytes(MAX_LINE_BYTES)} "
                             "in its reply; the reply was stopped there.")
        except (httpx.StreamError, RuntimeError) as exc:  # closed by cancel() from another thread
            if not self.cancelled:
                receipt.error = describe_http_error(eng.remote, exc, "answering")
        finally:
            eng._current = None
            self.stats = receipt.stats(self)

    @property
    def stop_requested(self) -> bool:
        return self.cancelled


def _parse_event(line: str) -> dict | str | None:
    line = line.strip()
    if not line.startswith("data:"):
        return None
    data = line[5:].strip()
    if data == "[DONE]":
        return "[DONE]"
    try:
        value = json.loads(data)
    except ValueError:
        return None
    return value if isinstance(value, dict) else None


def _number(value: Any) -> float | None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    return float(value) if ok else None


def _rate(count: Any, seconds: float | None) -> float | None:
    n = _number(count)
    return round(n / seconds, 2) if n is not None and seconds else None


def server_figures(chunk: dict[str, Any]) -> tuple[dict[str, Any], str] | None:
    """A server's own figures for a reply, in llama-server's `timings` names, and whose format they
    came in: llama-server's `timings` (another Hearth sends them too), LM Studio's `stats`, or
    Ollama's durations (nanoseconds) where a server passes them through. None when there are none:
    vLLM's OpenAI API and Ollama's `/v1` send only `usage`."""
    timings = chunk.get("timings")
    if isinstance(timings, dict):
        return timings, "llama-server timings"
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
        return {"predicted_n": chunk.get("eval_count"), "predicted_ms": round(eval_ns / 1e6, 2),
                "predicted_per_second": _rate(chunk.get("eval_count"), eval_ns / 1e9),
                "prompt_n": chunk.get("prompt_eval_count"),
                "prompt_ms": round(prompt_s * 1000, 2) if prompt_s else None,
                "prompt_per_second": _rate(chunk.get("prompt_eval_count"), prompt_s)}, "Ollama durations"
    return None


class _RemoteReceipt:
    """What arrived of one remote reply, and when (our clock), plus the server's own figures."""

    def __init__(self, t0: float) -> None:
        self.t0 = t0
        self.t_first: float | None = None
        self.t_last: float | None = None
        self.pieces = 0
        self.usage: dict[str, Any] = {}
        self.timings: dict[str, Any] = {}
        self.server_record: dict[str, Any] = {}
        self.figures_from: str | None = None  # whose format the server's own figures came in
        self.finish: str | None = None
        self.error: str | None = None
        self.done = False

    def take(self, chunk: dict[str, Any]) -> list[str]:
        if "error" in chunk:
            err = chunk["error"]
            self.error = f"The server reported an error mid-reply: {err.get('message') if isinstance(err, dict) else err}."
            return []
        if isinstance(chunk.get("usage"), dict):
            self.usage = chunk["usage"]
        figures = server_figures(chunk)
        if figures:
            self.timings, self.figures_from = figures
        if isinstance(chunk.get("hearth"), dict):  # another Hearth's full record
            self.server_record = chunk["hearth"]
        out = []
        for choice in chunk.get("choices") or []:
            if not isinstance(choice, dict):
                continue
            delta = choice.get("delta") if isinstance(choice.get("delta"), dict) else {}
            text = delta.get("content") if delta else choice.get("text")
            if isinstance(text, str) and text:
                now = time.perf_counter()
                self.t_first = self.t_first or now
                self.t_last = now
                self.pieces += 1
                out.append(text)
            if choice.get("finish_reason"):
                self.finish = choice["finish_reason"]
        return out

    def stats(self, response: RemoteResponse) -> ResponseStats:
        end = time.perf_counter()
        eng = response.engine
        summary = eng.summary()
        counted = not isinstance(self.usage.get("completion_tokens"), int)
        completion = self.pieces if counted else self.usage["completion_tokens"]
        prompt_tokens: int = self.usage["prompt_tokens"] if isinstance(self.usage.get("prompt_tokens"), int) else 0
        cached = ((self.usage.get("prompt_tokens_details") or {}).get("cached_tokens") or 0) if self.usage else 0
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
        )
