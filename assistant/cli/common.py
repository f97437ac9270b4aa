"""Options and helpers shared by the commands that load a model."""

import argparse
import signal
import sys
from contextlib import contextmanager

from assistant.engine import ContextPolicy, GenerationSettings, LoadSettings
from assistant.engine.settings import FLASH_ATTN_MODES, KV_CACHE_TYPES
from common.terminal import safe_text, style_marks, styled


# Search matches are marked with two private-use characters, which pass through safe_text untouched,
# and only then turned into bold (** when not a terminal): the styling is the app's alone.
SEARCH_MARKS = ("\ue000", "\ue001")


def terminal_snippet(snippet: str) -> str:
    """A search hit's snippet on one line, escaped for the terminal, its matches in bold."""
    text = safe_text(" ".join(snippet.split()))
    on, off = style_marks("bold", sys.stdout) or ("**", "**")
    return text.replace(SEARCH_MARKS[0], on).replace(SEARCH_MARKS[1], off)


def positive_int(value: str) -> int:
    """An argparse type: a whole number of 1 or more."""
    n = int(value)
    if n < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return n


def add_model_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("-m", "--model", default="starter",
                   help="starter, an installed model's name, or a path to a .gguf file (default: starter)")
    p.add_argument("-t", "--threads", type=positive_int, help="CPU threads (default: the physical cores)")
    p.add_argument("-c", "--ctx", type=positive_int, help="context length in tokens (default: the model's, at most 4096)")
    p.add_argument("--gpu-layers", type=int, help="layers to offload to the GPU (default: all, when the build can)")
    p.add_argument("--chat-format", help="a named chat format (gemma, llama-3, chatml, ...) instead of the model's")
    p.add_argument("--chat-template", metavar="FILE", help="a Jinja chat template file instead of the model's")
    p.add_argument("--draft", metavar="MODEL|lookup|off",
                   help="speculative decoding: a smaller model of the same family drafts and the model checks "
                        "(an installed name or a .gguf path), or 'lookup' drafts from the conversation itself "
                        "(default: off); drafting pauses itself when it does not pay")
    p.add_argument("--draft-max", type=positive_int, default=LoadSettings().draft_max, metavar="N",
                   help=f"tokens drafted at most per round (default {LoadSettings().draft_max})")
    add_cache_options(p)


def add_cache_options(p: argparse.ArgumentParser) -> None:
    """The KV cache's type and flash attention, as llama-server's -ctk/-ctv and -fa."""
    p.add_argument("--kv-cache-type", choices=KV_CACHE_TYPES, default=None,
                   help="KV cache type for K and V: f16 (default), q8_0 (about half the memory) or q4_0 "
                        "(about a quarter; a quantized cache turns flash attention on)")
    p.add_argument("--flash-attn", choices=FLASH_ATTN_MODES, default=None,
                   help="flash attention: auto (default: where the backend supports it), on or off")


def cache_settings(args) -> dict:
    """The cache options given on the command line, as LoadSettings fields (the defaults where left out)."""
    values = {"kv_cache_type": getattr(args, "kv_cache_type", None), "flash_attn": getattr(args, "flash_attn", None)}
    return {k: v for k, v in values.items() if v is not None}


def _max_tokens(value: str) -> int:
    n = int(value)
    if n < 0:
        raise argparse.ArgumentTypeError("must be 0 (no limit) or more")
    return n


def add_generation_options(p: argparse.ArgumentParser) -> None:
    """Sampling options; their defaults are GenerationSettings' own, as the window's are."""
    d = GenerationSettings()
    p.add_argument("-n", "--max-tokens", type=_max_tokens, default=d.max_tokens, metavar="N",
                   help=f"stop the reply after N tokens (default {d.max_tokens}; 0 lifts the limit)")
    p.add_argument("--no-repetition-guard", action="store_true",
                   help="let a reply that repeats itself run on (by default a loop ends it, stop reason 'repetition')")
    p.add_argument("--temperature", type=float, default=d.temperature, help=f"default {d.temperature}; 0 is greedy")
    p.add_argument("--top-k", type=int, default=d.top_k, help=f"default {d.top_k}")
    p.add_argument("--top-p", type=float, default=d.top_p, help=f"default {d.top_p}")
    p.add_argument("--min-p", type=float, default=d.min_p, help=f"default {d.min_p}")
    p.add_argument("--repeat-penalty", type=float, default=d.repeat_penalty, help=f"default {d.repeat_penalty} (off)")
    p.add_argument("--seed", type=int, help="a fixed seed makes replies repeatable")
    p.add_argument("--context-policy", choices=["stop", "drop-oldest"],
                   default=d.context_policy.value.replace("_", "-"),
                   help="when the context is full: stop there, or drop the oldest turns (default)")
    p.add_argument("--reply-deadline", type=_seconds, metavar="SECONDS",
                   help="a remote server's reply is stopped after this many seconds in all, however it trickles in "
                        f"(default: the reply_deadline_s setting, else {d.reply_deadline_s:g}; 0 lifts the limit)")
    add_thinking_options(p)


def add_thinking_options(p: argparse.ArgumentParser) -> None:
    """A reasoning model's thinking: on or off, effort, a budget, and the format if detection is wrong."""
    from assistant.engine.thinking import FORMATS
    from assistant.engine.thinking_controls import EFFORTS, THINKING_CHOICES

    g = p.add_argument_group("thinking (reasoning models)")
    g.add_argument("--thinking", choices=THINKING_CHOICES,
                   help="let the model think before it answers, or not (default: the model's own default)")
    g.add_argument("--thinking-effort", choices=EFFORTS,
                   help="how long to think: gpt-oss's own reasoning effort; for other models a budget of "
                        "512, 2048 or 8192 tokens")
    g.add_argument("--thinking-budget", type=_max_tokens, metavar="N",
                   help="at most N tokens of thinking, then the model is made to answer")
    g.add_argument("--thinking-format", choices=[*FORMATS, "none"], metavar="FORMAT",
                   help=f"how the model marks its thinking, if not detected right: {', '.join(FORMATS)}, or "
                        "none (show everything as the answer)")


def _seconds(value: str) -> float:
    try:
        n = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError("must be a number of seconds") from None
    if not 0 <= n <= 7 * 24 * 3600:  # also refuses nan and inf
        raise argparse.ArgumentTypeError("must be from 0 (no limit) to 604800 seconds (a week)")
    return n


def saved_preferences() -> dict:
    """The user's saved defaults (settings.json), checked; what was wrong in the file is said on stderr."""
    from assistant.preferences import load_preferences
    from common.settings_store import SettingsStore

    store = SettingsStore()
    preferences = load_preferences(store)
    for notice in store.take_notices():
        print(f"notice: {safe_text(notice)}", file=sys.stderr)
    return preferences


def show_load_notices(summary) -> None:
    """Load settings that could not be used as given (a quantized cache without flash attention, a value
    from a settings file that is not one of the choices), one line each."""
    for notice in getattr(summary, "notices", None) or []:
        print(f"notice: {safe_text(notice)}", file=sys.stderr)


def cache_words(kv_cache: dict | None) -> str:
    """'KV q8_0, flash attention' from a summary's or a record's kv_cache ('' when not known)."""
    if not isinstance(kv_cache, dict) or not kv_cache.get("type"):
        return ""
    fa = kv_cache.get("flash_attn")
    attention = ", flash attention" if fa is True else ", no flash attention" if fa is False else ""
    return f"KV {kv_cache['type']}{attention}"


def saved_cache_settings(model: str | None) -> dict:
    """The cache settings `model` keeps for itself (`assistant models set`), {} when none."""
    if not model:
        return {}
    from assistant.preferences import load_preferences, model_load_settings
    from common.settings_store import SettingsStore

    return model_load_settings(load_preferences(SettingsStore()), model)


def load_settings(args, model: str | None = None) -> LoadSettings:
    """LoadSettings from the options; the cache settings the model keeps for itself where none are given.
    `model`: the model being loaded, when it is not -m's (a /model switch)."""
    template = None
    if getattr(args, "chat_template", None):
        from assistant.preferences import MAX_TEMPLATE_CHARS
        from common.user_files import read_text

        # Only a regular file, and at most 1 MiB (real templates are a few kB): /dev/zero, a FIFO or a
        # 300 MB file named by mistake is one sentence at once.
        template = read_text(args.chat_template, MAX_TEMPLATE_CHARS, "The chat template file")
    return LoadSettings(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers,
                        chat_format=args.chat_format, chat_template=template, draft=getattr(args, "draft", None),
                        draft_max=getattr(args, "draft_max", None) or LoadSettings().draft_max,
                        **{**saved_cache_settings(model or getattr(args, "model", None)), **cache_settings(args)})


def draft_words(summary) -> tuple[str | None, str | None]:
    """(what drafts for the loaded model, for its status line; why a draft asked for was left out)."""
    draft = getattr(summary, "draft", None) or {}
    if draft.get("error"):
        return None, str(draft["error"])
    if draft.get("kind") == "lookup":
        return f"draft: prompt lookup (up to {draft.get('draft_max')})", None
    if draft.get("kind") == "model":
        return f"draft: {draft.get('model')} (up to {draft.get('draft_max')})", None
    return None, None


def generation_settings(args) -> GenerationSettings:
    return GenerationSettings(
        max_tokens=args.max_tokens or None, stop_on_repetition=not args.no_repetition_guard,
        temperature=args.temperature, top_k=args.top_k, top_p=args.top_p, min_p=args.min_p,
        repeat_penalty=args.repeat_penalty, seed=args.seed,
        context_policy=ContextPolicy(args.context_policy.replace("-", "_")),
        thinking=getattr(args, "thinking", None), thinking_effort=getattr(args, "thinking_effort", None),
        thinking_budget=getattr(args, "thinking_budget", None), thinking_format=getattr(args, "thinking_format", None),
        reply_deadline_s=(args.reply_deadline if getattr(args, "reply_deadline", None) is not None
                          else saved_preferences()["reply_deadline_s"]),
    )


@contextmanager
def ctrl_c_cancels(cancel):
    """While streaming, Ctrl-C stops the reply (within one token) instead of the program."""
    if not sys.stdin or signal.getsignal(signal.SIGINT) is None:
        yield
        return
    previous = signal.signal(signal.SIGINT, lambda *_: cancel())
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def dim(text: str, stream=None) -> str:
    """`text` dimmed on a terminal (the app's own styling: common.terminal turns it into SGR there)."""
    return styled(text, "dim", stream if stream is not None else sys.stderr)  # looked up now: tests replace it


def show_model_list_notices() -> None:
    """What happened to the installed-models list that the user has not seen (a damaged list rebuilt), once."""
    import logging

    from common.errors import UserError
    from common.terminal import safe_text
    from models import registry

    notices = registry.pending_notices()
    for message in notices:
        print(f"notice: {safe_text(message)}", file=sys.stderr)
    if notices:
        try:
            registry.dismiss_notices()
        except (OSError, UserError) as exc:  # a read-only data directory: shown again next time, no harm
            logging.getLogger(__name__).warning("the notices could not be marked as seen: %s", exc)
