"""OpenAI request bodies in, checked values out: every field the server uses is validated here.

Unknown fields are ignored (clients send many: `user`, `tools`, `metadata` ...), as
OpenAI-compatible servers do; a field we use that has the wrong type or range is a
400 that names the field. Nothing here trusts a client: numbers are bounded, text
must be valid Unicode, nesting and size are limited before anything is parsed.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from assistant.engine.grammar import grammar_problem
from assistant.images import MAX_IMAGES_PER_MESSAGE, ImageError, from_data_url
from assistant.server.config import MAX_STOP_STRINGS, ServerConfig
from assistant.server.errors import ApiError, bad_request

INT64 = (-(2**63), 2**63 - 1)
MAX_MODEL_NAME = 512
MAX_STOP_LENGTH = 1000
# Roles a chat template knows; "developer" is OpenAI's newer name for "system".
ROLES = {"system": "system", "developer": "system", "user": "user", "assistant": "assistant"}


@dataclass
class ApiCall:
    """One checked request: what to generate and how."""

    kind: str  # "messages" (chat) or "complete" (text completion)
    model: str | None
    messages: list[dict] = field(default_factory=list)
    prompt: str = ""
    stream: bool = False
    include_usage: bool = False
    sampling: dict[str, Any] = field(default_factory=dict)  # GenerationSettings fields the client set
    max_tokens: int | None = None  # as asked; the server caps it


def parse_json(raw: bytes) -> dict[str, Any]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise bad_request("The request body is not UTF-8 text.") from None
    if not text.strip():
        raise bad_request("The request body is empty; send a JSON object.")
    try:
        data = json.loads(text, parse_constant=_no_constants)
    except RecursionError:
        raise bad_request("The request body is nested too deeply.") from None
    except ValueError as exc:
        detail = f" ({exc.msg} at line {exc.lineno}, column {exc.colno})" if isinstance(exc, json.JSONDecodeError) \
            else f" ({exc})"
        raise bad_request(f"The request body is not valid JSON{detail}.") from None
    if not isinstance(data, dict):
        raise bad_request("The request body must be a JSON object.")
    return data


def _no_constants(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")


def parse_chat(body: dict[str, Any], config: ServerConfig) -> ApiCall:
    call = ApiCall(kind="messages", model=_model(body))
    call.messages = _messages(body.get("messages"), config)
    call.max_tokens = _max_tokens(body, ("max_completion_tokens", "max_tokens"))
    _common(body, call)
    _thinking(body, call.sampling)
    return call


EFFORTS = ("low", "medium", "high")


def _thinking(body: dict[str, Any], out: dict[str, Any]) -> None:
    """A reasoning model's controls, in the names other servers read: `chat_template_kwargs.enable_thinking`
    (llama-server, vLLM), `reasoning_effort` (OpenAI; "none" switches thinking off, as llama-server reads it),
    `thinking_budget_tokens` (llama-server; `reasoning_budget_tokens` too)."""
    kwargs = body.get("chat_template_kwargs")
    if kwargs is not None:
        if not isinstance(kwargs, dict):
            raise bad_request("'chat_template_kwargs' must be an object.", "chat_template_kwargs")
        enable = kwargs.get("enable_thinking")
        if enable is not None:
            if not isinstance(enable, bool):
                raise bad_request("'chat_template_kwargs.enable_thinking' must be true or false.",
                                  "chat_template_kwargs.enable_thinking")
            out["thinking"] = "on" if enable else "off"
    effort = body.get("reasoning_effort")
    if effort is not None:
        if effort == "none":
            out["thinking"] = "off"
        elif effort == "minimal":  # OpenAI's least effort: the least there is here
            out["thinking_effort"] = "low"
        elif effort in EFFORTS:
            out["thinking_effort"] = effort
        else:
            raise bad_request("'reasoning_effort' must be one of none, minimal, low, medium or high.",
                              "reasoning_effort")
    for key in ("thinking_budget_tokens", "reasoning_budget_tokens"):
        if body.get(key) is not None:
            budget = body[key]
            if isinstance(budget, bool) or not isinstance(budget, int) or not -1 <= budget <= 10_000_000:
                raise bad_request(f"'{key}' must be a whole number of tokens (-1 for no budget).", key)
            if budget >= 0:
                out["thinking_budget"] = budget
            break


def parse_completion(body: dict[str, Any], config: ServerConfig) -> ApiCall:
    call = ApiCall(kind="complete", model=_model(body))
    prompt = body.get("prompt")
    if isinstance(prompt, list) and len(prompt) == 1 and isinstance(prompt[0], str):
        prompt = prompt[0]
    if not isinstance(prompt, str):
        raise bad_request("'prompt' must be a string (one text to continue; token arrays and batches are not "
                          "supported).", "prompt")
    call.prompt = _text(prompt, "prompt")
    if not call.prompt:
        raise bad_request("'prompt' is empty; give the text to continue.", "prompt")
    if body.get("echo"):
        raise bad_request("'echo' is not supported.", "echo")
    if body.get("suffix"):
        raise bad_request("'suffix' (fill-in-the-middle) is not supported.", "suffix")
    if body.get("best_of") not in (None, 1):
        raise bad_request("'best_of' must be 1.", "best_of")
    if body.get("logprobs") not in (None, 0, False):
        raise bad_request("'logprobs' is not supported.", "logprobs")
    call.max_tokens = _max_tokens(body, ("max_tokens",))
    _common(body, call)
    return call


# --- Shared fields


def _model(body: dict[str, Any]) -> str | None:
    model = body.get("model")
    if model is None:
        return None  # the loaded model, as llama-server does
    if not isinstance(model, str) or not model.strip():
        raise bad_request("'model' must be the name of an installed model (GET /v1/models lists them).", "model")
    if len(model) > MAX_MODEL_NAME:
        raise bad_request("'model' is too long to be a model's name.", "model")
    return _text(model, "model")


def _common(body: dict[str, Any], call: ApiCall) -> None:
    call.stream = _bool(body, "stream", False)
    options = body.get("stream_options")
    if options is not None:
        if not isinstance(options, dict):
            raise bad_request("'stream_options' must be an object.", "stream_options")
        call.include_usage = _bool(options, "include_usage", False, "stream_options.include_usage")
    n = body.get("n")
    if n is not None and (isinstance(n, bool) or n != 1):
        raise bad_request("'n' must be 1: one model generates one reply at a time here.", "n")
    if body.get("logprobs") is True or body.get("top_logprobs"):
        raise bad_request("'logprobs' is not supported.", "logprobs")
    s = call.sampling
    _number(body, "temperature", 0.0, 2.0, s)
    _number(body, "top_p", 0.0, 1.0, s)
    _number(body, "min_p", 0.0, 1.0, s)  # llama-server's extension
    _number(body, "repeat_penalty", 0.0, 10.0, s)  # llama-server's extension
    _number(body, "presence_penalty", -2.0, 2.0, {})  # accepted for compatibility, not applied
    _number(body, "frequency_penalty", -2.0, 2.0, {})
    _integer(body, "top_k", 0, 1_000_000, s)  # llama-server's extension
    _integer(body, "seed", *INT64, s)
    if "ignore_eos" in body and body["ignore_eos"] is not None:  # llama-server's extension (benchmarks)
        s["ignore_eos"] = _bool(body, "ignore_eos", False)
    stop = _stop(body.get("stop"))
    if stop:
        s["stop"] = stop
    grammar = body.get("grammar")  # llama-server's extension: a GBNF grammar the reply must follow
    if grammar is not None:
        if not isinstance(grammar, str):
            raise bad_request("'grammar' must be a GBNF grammar (a string).", "grammar")
        problem = grammar_problem(grammar)
        if problem:
            raise bad_request(problem, "grammar")
        if grammar.strip():
            s["grammar"] = _text(grammar, "grammar")


def _messages(raw: Any, config: ServerConfig) -> list[dict]:
    if not isinstance(raw, list) or not raw:
        raise bad_request("'messages' must be a non-empty array of {role, content} objects.", "messages")
    if len(raw) > config.max_messages:
        raise bad_request(f"'messages' has {len(raw):,} entries; this server takes at most {config.max_messages:,}.",
                          "messages")
    messages = []
    for i, m in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(m, dict):
            raise bad_request(f"'{where}' must be an object with 'role' and 'content'.", where)
        role = m.get("role")
        if role in ("tool", "function") or m.get("tool_calls") or m.get("function_call"):
            raise bad_request(f"'{where}' is a tool call or result; this server does not run tools.", f"{where}.role")
        if not isinstance(role, str) or role not in ROLES:
            raise bad_request(f"'{where}.role' must be one of system, developer, user or assistant.", f"{where}.role")
        text, images = _content(m.get("content"), f"{where}.content")
        if images and ROLES[role] != "user":
            raise bad_request(f"'{where}' is a {role} message with an image; only user messages may hold images.",
                              f"{where}.content")
        message: dict[str, Any] = {"role": ROLES[role], "content": text}
        if images:
            message["images"] = images
        reasoning = m.get("reasoning_content")
        if ROLES[role] == "assistant" and isinstance(reasoning, str) and reasoning:
            message["thinking"] = _text(reasoning, f"{where}.reasoning_content")  # the template may keep it
        messages.append(message)
    turns = [m for m in messages if m["role"] != "system"]  # system messages become the system prompt
    if not turns or turns[-1]["role"] != "user":
        raise bad_request("The last message must come from the user: it is what the model answers.", "messages")
    return messages


def _content(raw: Any, where: str) -> tuple[str, list]:
    """The text, and the images (data URLs only: the server never fetches a web address)."""
    if isinstance(raw, str):
        return _text(raw, where), []
    if isinstance(raw, list):  # content parts: text and images
        texts: list[str] = []
        images: list[Any] = []
        for j, part in enumerate(raw):
            at = f"{where}[{j}]"
            kind = part.get("type") if isinstance(part, dict) else type(part).__name__
            if kind == "text" and isinstance(part.get("text"), str):
                texts.append(_text(part["text"], f"{at}.text"))
            elif kind == "image_url":
                if len(images) >= MAX_IMAGES_PER_MESSAGE:
                    raise bad_request(f"'{where}' holds more than {MAX_IMAGES_PER_MESSAGE} images; send at most "
                                      f"{MAX_IMAGES_PER_MESSAGE} in one message.", at)
                images.append(_image(part.get("image_url"), at))
            else:
                raise bad_request(f"'{at}' is a {kind!s} part; this server takes text and image_url parts.", at)
        return "".join(texts), images
    raise bad_request(f"'{where}' must be text (a string or text and image parts).", where)


def _image(raw: Any, where: str):
    url = raw.get("url") if isinstance(raw, dict) else raw
    if not isinstance(url, str) or not url:
        raise bad_request(f"'{where}.image_url.url' must be a data URL (data:image/png;base64,...).",
                          f"{where}.image_url")
    if url[:8].lower().startswith(("http://", "https://")):
        raise bad_request(f"'{where}' is an image at a web address; this server never fetches URLs (that would let "
                          "any web page make it reach the network), so send the image itself as a data URL "
                          "(data:image/png;base64,...).", f"{where}.image_url", code="image_url_not_allowed")
    try:
        return from_data_url(url)
    except ImageError as exc:
        raise bad_request(f"'{where}': {exc}", f"{where}.image_url", code="invalid_image") from None


def _text(value: str, where: str) -> str:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate sent as \\ud800
        raise bad_request(f"'{where}' holds text that is not valid Unicode.", where) from None
    return value


def _stop(raw: Any) -> list[str]:
    if raw is None:
        return []
    items = [raw] if isinstance(raw, str) else raw
    if not isinstance(items, list) or not all(isinstance(x, str) for x in items):
        raise bad_request("'stop' must be a string or an array of strings.", "stop")
    if len(items) > MAX_STOP_STRINGS:
        raise bad_request(f"'stop' may hold at most {MAX_STOP_STRINGS} strings.", "stop")
    if any(len(x) > MAX_STOP_LENGTH for x in items):
        raise bad_request(f"Each 'stop' string may be at most {MAX_STOP_LENGTH} characters.", "stop")
    return [_text(x, "stop") for x in items if x]


def _max_tokens(body: dict[str, Any], keys: tuple[str, ...]) -> int | None:
    for key in keys:
        value = body.get(key)
        if value is None:
            continue
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise bad_request(f"'{key}' must be a whole number of 1 or more.", key)
        return value
    return None


def _bool(body: dict[str, Any], key: str, default: bool, where: str | None = None) -> bool:
    value = body.get(key)
    if value is None:
        return default
    if not isinstance(value, bool):
        raise bad_request(f"'{where or key}' must be true or false.", where or key)
    return value


def _number(body: dict[str, Any], key: str, lo: float, hi: float, out: dict[str, Any]) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) \
            or not lo <= value <= hi:
        raise bad_request(f"'{key}' must be a number from {lo:g} to {hi:g}.", key)
    out[key] = float(value)


def _integer(body: dict[str, Any], key: str, lo: int, hi: int, out: dict[str, Any]) -> None:
    value = body.get(key)
    if value is None:
        return
    if isinstance(value, float) and value.is_integer() and lo <= value <= hi:
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int) or not lo <= value <= hi:
        raise bad_request(f"'{key}' must be a whole number from {lo:,} to {hi:,}.", key)
    out[key] = value


__all__ = ["ApiCall", "ApiError", "parse_chat", "parse_completion", "parse_json"]
