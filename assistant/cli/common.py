"""Options and helpers shared by the commands that load a model."""

import argparse
import signal
import sys
from contextlib import contextmanager

from assistant.engine import ContextPolicy, GenerationSettings, LoadSettings
from common.terminal import safe_text


# Search matches are marked with two private-use characters, which pass through safe_text untouched,
# and only then turned into bold (** when not a terminal): the escapes are ours alone.
SEARCH_MARKS = ("\ue000", "\ue001")


def terminal_snippet(snippet: str) -> str:
    """A search hit's snippet on one line, escaped for the terminal, its matches in bold."""
    bold = ("\x1b[1m", "\x1b[0m") if sys.stdout.isatty() else ("**", "**")
    text = safe_text(" ".join(snippet.split()))
    return text.replace(SEARCH_MARKS[0], bold[0]).replace(SEARCH_MARKS[1], bold[1])


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


def load_settings(args) -> LoadSettings:
    template = None
    if getattr(args, "chat_template", None):
        from common.errors import UserError

        try:
            with open(args.chat_template, encoding="utf-8") as f:
                template = f.read()
        except OSError as exc:
            raise UserError(f"The chat template file {args.chat_template} cannot be read: {exc.strerror}.") from exc
    return LoadSettings(n_ctx=args.ctx, n_threads=args.threads, n_gpu_layers=args.gpu_layers,
                        chat_format=args.chat_format, chat_template=template, draft=getattr(args, "draft", None),
                        draft_max=getattr(args, "draft_max", None) or LoadSettings().draft_max)


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
    stream = stream if stream is not None else sys.stderr  # looked up now: tests and pipes replace it
    return f"\033[2m{text}\033[0m" if stream.isatty() else text


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
