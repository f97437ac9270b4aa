"""One line that sums up a reply's statistics record, for people.

    41.2 tok/s · 312 tokens · 0.21 s to first token · 1.3 GB RAM · gemma-3-270m Q4_K_M
    12.5 tok/s (busy CPU) · …      other programs held the cores meanwhile (assistant.busy)

Shared by the chat loop, the Markdown export and the window. Tolerant by design: a
record from an older engine, or one cut short by an error, just gives a shorter line.
"""

from __future__ import annotations

import math
from typing import Any

from assistant.busy import BUSY_MARK, is_busy
from common.formatting import format_bytes, format_tps

SEP = " · "
STOPPED_WHILE_THINKING = "stopped while thinking: raise the length limit or the budget"
STOP_WORDS = {"length": "max tokens reached", "stopped": "stopped", "context_full": "context full",
              "error": "error", "repetition": "stopped a loop (repetition)"}


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def model_label(model: dict[str, Any]) -> str:
    """What a person calls the model: its file name without the quant ("gemma-3-270m"),
    rather than an alias like "starter" or a long Hub id."""
    file, quant = str(model.get("file") or ""), str(model.get("quant") or "")
    stem = file.replace("\\", "/").rsplit("/", 1)[-1].removesuffix(".gguf")
    if stem and quant and stem.lower().endswith(quant.lower()):
        stem = stem[: -len(quant)].rstrip("-_.")
    return stem or str(model.get("name") or "")


def format_stats_line(stats: dict[str, Any] | None) -> str:
    """The one-line summary of an engine statistics record ('' when there is nothing)."""
    if not isinstance(stats, dict):
        return ""
    parts = []
    tps = _num(stats.get("gen_tps"))
    transport: dict[str, Any] = stats["transport"] if isinstance(stats.get("transport"), dict) else {}
    remote = transport.get("kind") == "remote"
    server_tps = _num(transport.get("server_gen_tps")) if remote else None
    if server_tps is not None:  # the server's own figure beside ours: the difference is the network
        server = format_tps(server_tps, precise=True)
        parts.append(f"server {server}, received {format_tps(tps, precise=True)}" if tps is not None
                     else f"server {server}")
    elif tps is not None:
        parts.append(format_tps(tps, precise=True) + (" received" if remote else "")
                     + (f" ({BUSY_MARK})" if is_busy(stats) else ""))
    tokens = _num(stats.get("completion_tokens"))
    thinking = _num(stats.get("thinking_tokens"))
    if tokens is not None and thinking:
        answer = _num(stats.get("answer_tokens"))
        answer = answer if answer is not None else max(0.0, tokens - thinking)
        parts.append(f"{int(tokens)} tokens ({int(thinking)} thinking, {int(answer)} answer)")
    elif tokens is not None:
        parts.append(f"{int(tokens)} token{'' if tokens == 1 else 's'}")
    thinking_ms = _num(stats.get("thinking_ms"))
    if thinking and thinking_ms:
        parts.append(f"thought {thinking_ms / 1000:.1f} s")
    ttft = _num(stats.get("ttft_ms"))
    if ttft is not None:
        parts.append(f"{ttft / 1000:.2f} s to first token")
    memory: dict[str, Any] = stats["memory"] if isinstance(stats.get("memory"), dict) else {}
    rss = _num(memory.get("rss_bytes")) or _num(memory.get("rss_peak_bytes"))  # now, not the lifetime peak
    if remote:
        parts.append(f"on {transport.get('remote') or transport.get('host') or 'a remote server'}")
    elif rss:
        parts.append(f"{format_bytes(rss)} RAM")
    vram = _num(memory.get("vram_bytes"))
    if vram:
        parts.append(f"{format_bytes(vram)} VRAM")
    draft = draft_words(stats.get("draft"))
    if draft:
        parts.append(draft)
    kv_cache = stats.get("kv_cache")
    if isinstance(kv_cache, dict) and kv_cache.get("type") not in (None, "f16"):  # the default goes unsaid
        parts.append(f"KV {str(kv_cache['type'])[:8]}")
    model = stats.get("model")
    if isinstance(model, dict):
        name = " ".join(x for x in (model_label(model), model.get("quant")) if x)
    else:
        name = str(model) if model else ""
    if name:
        parts.append(name)
    stop = stats.get("stop_reason")
    if stop and stop not in ("stop", "eos"):  # say why only when it was not the natural end
        parts.append(STOP_WORDS.get(stop, f"stopped: {stop}"))
    return SEP.join(parts)


def draft_words(draft: Any) -> str:
    """A reply's drafting in a few words: "draft 71% accepted" ('' without drafting)."""
    if not isinstance(draft, dict):
        return ""
    if draft.get("error"):
        return "draft not loaded"
    drafted, accepted = _num(draft.get("drafted")), _num(draft.get("accepted"))
    if not drafted or accepted is None:
        return "draft paused" if draft.get("paused") else "nothing drafted"
    return f"draft {round(100 * accepted / drafted)}% accepted" + (" (paused)" if draft.get("paused") else "")
def format_images_line(stats: dict[str, Any] | None) -> str:
    """What the prompt's images cost: '2 images · 512 tokens · 0.9 s to encode' ('' without images)."""
    images = stats.get("images") if isinstance(stats, dict) else None
    if not isinstance(images, dict):
        return ""
    count = _num(images.get("count"))
    if not count:
        return ""
    parts = [f"{int(count)} image{'' if count == 1 else 's'}"]
    tokens = _num(images.get("tokens"))
    if tokens is not None:
        parts.append(f"{int(tokens)} token{'' if tokens == 1 else 's'}")
    encoded = _num(images.get("encoded"))
    ms = _num(images.get("encode_ms"))
    if encoded == 0 and _num(images.get("reused")):
        parts.append("reused from the cache")
    elif ms is not None:
        parts.append(f"{ms / 1000:.1f} s to encode" if ms >= 100 else f"{ms:.0f} ms to encode")
    return SEP.join(parts)
