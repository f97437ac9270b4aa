"""`assistant chat`: one question, or an interactive multi-turn chat."""

import json
import sys

from assistant.cli.common import (add_generation_options, add_model_options, ctrl_c_cancels, dim,
                                  generation_settings, load_settings)
from assistant.engine import LocalEngine
from common.errors import UserError
from assistant.session import ChatSession
from assistant.stats_format import format_stats_line
from common.terminal import safe_text

HELP = """commands: /new  start a new conversation
          /model NAME  switch model (the conversation stays)
          /quit  leave (Ctrl-D too);  Ctrl-C stops a reply"""


def add_parser(sub) -> None:
    p = sub.add_parser("chat", help="chat with a model", description="Chat with a local model.")
    p.add_argument("prompt", nargs="?", help="ask one question and exit; leave out for an interactive chat")
    p.add_argument("--json", action="store_true", help="print one JSON object (reply and statistics) when done")
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("--conversation", metavar="ID", help="continue a saved conversation")
    p.add_argument("--no-save", action="store_true", help="do not keep this conversation in the history")
    add_model_options(p)
    add_generation_options(p)
    p.set_defaults(func=run)


def _open_history(args):
    if args.no_save:
        return None
    from assistant.history import HistoryStore

    store = HistoryStore.open()
    for warning in store.warnings:  # e.g. a damaged database was moved aside
        print(dim(warning), file=sys.stderr)
    return store


def run(args) -> int:
    engine = LocalEngine()
    history = _open_history(args)
    session = ChatSession(engine, system_prompt=args.system, settings=generation_settings(args), history=history)
    if args.conversation:
        if history is None:
            raise UserError("--conversation needs the history; leave out --no-save.")
        session.resume(args.conversation)
    _say_if_preparing_starter(args.model)
    engine.load(args.model, load_settings(args))
    if args.prompt is not None:
        return _one_shot(session, args.prompt, as_json=args.json)
    return _interactive(session, args)


def _say_if_preparing_starter(spec: str) -> None:
    from models.starter import STARTER_NAME, starter_path

    if spec == STARTER_NAME and not starter_path().exists():
        print(dim("Preparing the starter model (once, a few seconds)…"), file=sys.stderr)


def _stream_turn(session: ChatSession, text: str, out=sys.stdout) -> dict | None:
    """One turn, Ctrl-C stopping the reply; the text goes to `out` as it streams (None: nowhere)."""
    with ctrl_c_cancels(session.cancel):
        for chunk in session.send(text):
            if out is not None:
                out.write(chunk)
                out.flush()
    stats = session.last_response.stats
    return stats.to_dict() if stats else None


def _report(stats: dict | None) -> None:
    if not stats:
        return
    if stats.get("error"):
        print(f"error: {stats['error']}", file=sys.stderr)
    message = (stats.get("context") or {}).get("message")
    if message:
        print(dim(f"[{message}]"), file=sys.stderr)
    print(dim(format_stats_line(stats)), file=sys.stderr)


def _one_shot(session: ChatSession, prompt: str, as_json: bool) -> int:
    if as_json:
        stats = _stream_turn(session, prompt, out=None)
        if session.conversation_id is not None:
            stats["conversation_id"] = session.conversation_id
        print(json.dumps(stats, ensure_ascii=False))
    else:
        stats = _stream_turn(session, prompt)
        print()
        _report(stats)
    return 1 if stats and stats["stop_reason"] == "error" else 0


def _interactive(session: ChatSession, args) -> int:
    s = session.engine.summary()
    print(dim(f"{safe_text(s.name)} · {s.quant} · {s.n_threads} threads · "
              f"context {s.n_ctx} · type /help for commands"), file=sys.stderr)
    while True:
        try:
            line = input(">>> ")
        except (EOFError, KeyboardInterrupt):
            print(file=sys.stderr)
            return 0
        text = line.strip()
        if not text:
            continue
        if text.startswith("/"):
            if _command(session, text, args):
                return 0
            continue
        stats = _stream_turn(session, text)
        print()
        _report(stats)


def _command(session: ChatSession, text: str, args) -> bool:
    """Run a /command; True means quit."""
    name, _, rest = text.partition(" ")
    if name in ("/quit", "/exit", "/bye"):
        return True
    if name == "/new":
        session.new()
        print(dim("[new conversation]"), file=sys.stderr)
    elif name == "/model" and rest.strip():
        try:
            s = session.engine.load(rest.strip(), load_settings(args))
            print(dim(f"[now using {safe_text(s.name)} · {s.quant}; the conversation stays]"), file=sys.stderr)
        except UserError as exc:
            print(f"error: {exc}", file=sys.stderr)
    elif name in ("/help", "/?"):
        print(HELP, file=sys.stderr)
    else:
        print(f"error: unknown command {name}; /help lists them.", file=sys.stderr)
    return False
