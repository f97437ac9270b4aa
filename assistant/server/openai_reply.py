"""Replies in OpenAI's shapes, with llama-server's `timings` and this app's record beside them.

- `usage`: prompt, completion and total tokens, `prompt_tokens_details.cached_tokens`, and a reasoning
  model's `completion_tokens_details.reasoning_tokens` (OpenAI's name; completion_tokens includes them).
- A reasoning model's thinking: `message.reasoning_content` and `delta.reasoning_content` (llama-server's
  and vLLM's names), never inside `content`.
- `timings`: llama-server's object (`prompt_n` counts the prompt tokens evaluated, the
  cached ones are `cache_n`; `predicted_per_second` is the reply's `gen_tps`: the tokens
  after the first over the time after the first), so dashboards built for it read ours.
- `hearth`: the reply's full statistics record (memory, backend, context, sampling,
  transport), without the reply's text and thinking, which are already in the message; plus what the
  server measured (`server`: time queued, time to the first byte, the request's id).
"""

from __future__ import annotations

import json
import math
from pathlib import PurePath
from typing import Any

EXTENSION_KEY = "hearth"
DONE = b"data: [DONE]\n\n"

# The app's stop reasons in OpenAI's words: a loop cut short and a cancel both ended the text normally.
FINISH_REASONS = {"eos": "stop", "length": "length", "context_full": "length", "repetition": "stop",
                  "stopped": "stop", "error": "stop"}


def finish_reason(stats: dict[str, Any]) -> str:
    return FINISH_REASONS.get(stats.get("stop_reason") or "", "stop")


def usage(stats: dict[str, Any]) -> dict[str, Any]:
    prompt, completion = int(stats.get("prompt_tokens") or 0), int(stats.get("completion_tokens") or 0)
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": int(stats.get("cached_tokens") or 0)},
            "completion_tokens_details": {"reasoning_tokens": int(stats.get("thinking_tokens") or 0)}}


def timings(stats: dict[str, Any]) -> dict[str, Any]:
    cached = int(stats.get("cached_tokens") or 0)
    prompt_n = max(0, int(stats.get("prompt_tokens") or 0) - cached)
    prompt_ms = float(stats.get("prompt_ms") or 0.0)
    predicted_n = int(stats.get("completion_tokens") or 0)
    predicted_ms = float(stats.get("gen_ms") or 0.0)
    return {
        "prompt_n": prompt_n, "prompt_ms": prompt_ms,
        "prompt_per_token_ms": round(prompt_ms / prompt_n, 3) if prompt_n else None,
        "prompt_per_second": round(prompt_n / prompt_ms * 1000, 2) if prompt_n and prompt_ms else None,
        "predicted_n": predicted_n, "predicted_ms": predicted_ms,
        "predicted_per_token_ms": round(predicted_ms / (predicted_n - 1), 3) if predicted_n > 1 and predicted_ms
        else None,
        "predicted_per_second": stats.get("gen_tps"),
        "cache_n": cached,
    }


def extension(stats: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    record = {k: v for k, v in stats.items() if k not in ("reply", "thinking")}  # both already in the message
    model = record.get("model")
    if isinstance(model, dict) and isinstance(model.get("file"), str):
        # The file's name, not where it lives: the folders of this machine are not the client's business.
        record["model"] = {**model, "file": PurePath(model["file"]).name}
    record["server"] = server
    return finite(record)


def finite(value: Any) -> Any:
    """The same data with NaN and infinities as null: JSON has no such numbers."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [finite(v) for v in value]
    return value


def _figures(stats: dict[str, Any], server: dict[str, Any]) -> dict[str, Any]:
    return {"usage": usage(stats), "timings": finite(timings(stats)), EXTENSION_KEY: extension(stats, server)}


# --- Chat completions


def chat_completion(reply_id: str, created: int, model: str, text: str, stats: dict[str, Any],
                    server: dict[str, Any]) -> dict[str, Any]:
    message: dict[str, Any] = {"role": "assistant", "content": text, "refusal": None}
    if stats.get("thinking"):
        message["reasoning_content"] = stats["thinking"]
    return {"id": reply_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": finish_reason(stats)}],
            **_figures(stats, server)}


def chat_chunk(reply_id: str, created: int, model: str, delta: dict[str, Any], finish: str | None = None,
               *, include_usage: bool = False) -> dict[str, Any]:
    chunk = {"id": reply_id, "object": "chat.completion.chunk", "created": created, "model": model,
             "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
    if include_usage:
        chunk["usage"] = None  # OpenAI's shape: null on every chunk but the last
    return chunk


# --- Text completions


def completion(reply_id: str, created: int, model: str, text: str, stats: dict[str, Any],
               server: dict[str, Any]) -> dict[str, Any]:
    return {"id": reply_id, "object": "text_completion", "created": created, "model": model,
            "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish_reason(stats)}],
            **_figures(stats, server)}


def completion_chunk(reply_id: str, created: int, model: str, text: str, finish: str | None = None,
                     *, include_usage: bool = False) -> dict[str, Any]:
    chunk = {"id": reply_id, "object": "text_completion", "created": created, "model": model,
             "choices": [{"index": 0, "text": text, "logprobs": None, "finish_reason": finish}]}
    if include_usage:
        chunk["usage"] = None
    return chunk


def final_chunk(chunk: dict[str, Any], stats: dict[str, Any]) -> dict[str, Any]:
    """The chunk that carries the finish reason also carries `timings`, as llama-server's does."""
    chunk["timings"] = finite(timings(stats))
    return chunk


def usage_chunk(reply_id: str, created: int, model: str, obj: str, stats: dict[str, Any],
                server: dict[str, Any]) -> dict[str, Any]:
    """`stream_options.include_usage`: one more chunk with no choices and the figures."""
    return {"id": reply_id, "object": obj, "created": created, "model": model, "choices": [],
            **_figures(stats, server)}


def sse(data: dict[str, Any]) -> bytes:
    """One server-sent event."""
    return b"data: " + json.dumps(data, ensure_ascii=False, separators=(",", ":")).encode("utf-8") + b"\n\n"
