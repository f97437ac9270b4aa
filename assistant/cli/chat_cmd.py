"""`assistant chat`: one question, or an interactive multi-turn chat, through the chat service."""

from __future__ import annotations

import sys

from assistant import remotes
from assistant.chat_service import ChatService, TurnFailed, TurnFinished, TurnRequest, TurnText
from assistant.cli.common import (add_generation_options, add_model_options, cache_words, ctrl_c_cancels, dim,
                                  draft_words, generation_settings, load_settings, show_load_notices,
                                  show_model_list_notices)
from assistant.engine import EngineRouter
from assistant.images import ImageAttachment, read_image_file
from assistant.stats_format import STOPPED_WHILE_THINKING, format_images_line, format_stats_line
from common.errors import UserError
from common.terminal import json_text, safe_text

HELP = """commands: /new  start a new conversation
          /image FILE  attach an image to your next message (a model that sees images reads it)
          /model NAME  switch model (the conversation stays); MODEL@REMOTE for a remote server's
          /quit  leave (Ctrl-D too);  Ctrl-C stops a reply"""


def add_parser(sub) -> None:
    p = sub.add_parser("chat", help="chat with a model", description="Chat with a local model.")
    p.add_argument("prompt", nargs="?", help="ask one question and exit; leave out for an interactive chat")
    p.add_argument("--json", action="store_true",
                   help="print one JSON object when done: the reply (the answer), its thinking, and the statistics")
    p.add_argument("-s", "--system", help="system prompt")
    p.add_argument("--conversation", metavar="ID", help="continue a saved conversation")
    p.add_argument("--no-save", action="store_true", help="do not keep this conversation in the history")
    p.add_argument("--remote", metavar="NAME", help="use -m MODEL on this remote server (see `assistant remote`)")
    p.add_argument("--image", action="append", metavar="FILE", default=[],
                   help="attach an image to the (first) message; repeat for several (the model must see images)")
    add_model_options(p)
    add_generation_options(p)
    p.set_defaults(func=run)


def _open_history(args):
    if args.no_save:
        return None
    from assistant.history import HistoryStore

    store = HistoryStore.open()
    for warning in store.warnings:  # e.g. a damaged database was moved aside
        print(dim(safe_text(warning)), file=sys.stderr)
    return store


_STDOUT = object()  # turn()'s default: sys.stdout when the turn runs, not when this module was imported


class _Chat:
    """The CLI's side of a conversation: which one it is, and (unsaved) its messages."""

    def __init__(self, service: ChatService, args) -> None:
        self.service = service
        self.args = args
        self.settings = generation_settings(args)
        self.saving = service.history is not None
        self.conversation_id: int | None = None
        self.messages: list[dict] = []  # only for --no-save, where nothing is kept in the history
        self.pending_images: list[ImageAttachment] = []  # go with the next message (--image, /image)

    def take_images(self) -> list[ImageAttachment]:
        images, self.pending_images = self.pending_images, []
        return images

    def request(self, text: str, images: list[ImageAttachment] | None = None) -> TurnRequest:
        if self.saving:
            return TurnRequest(kind="send", text=text, conversation_id=self.conversation_id,
                               system_prompt=self.args.system, settings=self.settings, source="cli",
                               images=images or None)
        system = [{"role": "system", "content": self.args.system}] if self.args.system else []
        message: dict = {"role": "user", "content": text}
        if images:
            message["images"] = images
        return TurnRequest(kind="messages", messages=system + self.messages + [message],
                           settings=self.settings, source="cli", save=False)

    def turn(self, text: str, out=_STDOUT, images: list[ImageAttachment] | None = None) -> dict | None:
        """One turn, Ctrl-C stopping the reply; the text goes to `out` as it streams (None: nowhere).

        By default `out` is sys.stdout as it is now: the terminal stream main() installed, which
        escapes what the model or the server sent, piece by piece."""
        out = sys.stdout if out is _STDOUT else out
        handle = self.service.submit(self.request(text, images))
        outcome = None
        thinking = _ThinkingPrinter() if out is not None else None
        with ctrl_c_cancels(handle.cancel):
            for event in handle.events():
                if isinstance(event, TurnText) and event.kind == "thinking":
                    if thinking is not None:
                        thinking.write(event.text)
                elif isinstance(event, TurnText) and out is not None:
                    if thinking is not None:
                        thinking.end()
                    out.write(event.text)
                    out.flush()
                elif isinstance(event, (TurnFinished, TurnFailed)):
                    outcome = event
        if thinking is not None:
            thinking.end()
        if isinstance(outcome, TurnFailed):
            raise UserError(outcome.sentence)
        assert isinstance(outcome, TurnFinished)
        if self.saving:
            self.conversation_id = outcome.conversation_id
        else:
            sent: dict = {"role": "user", "content": text}
            if images:
                sent["images"] = images
            self.messages += [sent, {"role": "assistant", "content": outcome.text}]
        return outcome.stats or None

    def new(self) -> None:
        self.conversation_id, self.messages = None, []


class _ThinkingPrinter:
    """A reasoning model's thinking, dimmed on stderr as it streams: stdout keeps the answer alone.
    Like the answer, it goes through the terminal stream main() installed, which escapes it."""

    def __init__(self, stream=None) -> None:
        self.stream = stream
        self.started = self.ended = False

    def write(self, text: str) -> None:
        stream = self.stream or sys.stderr
        if not self.started:
            self.started = True
            stream.write(dim("Thinking…", stream) + "\n")
        stream.write(dim(text, stream))  # the installed terminal stream escapes what the model wrote
        stream.flush()

    def end(self) -> None:
        if self.started and not self.ended:
            self.ended = True
            stream = self.stream or sys.stderr
            stream.write(dim("\n…done thinking.", stream) + "\n\n")
            stream.flush()


def run(args) -> int:
    # Every image is read and checked before a model loads or anything is saved: a bad one is one sentence.
    images = [read_image_file(path) for path in args.image]
    history = _open_history(args)
    show_model_list_notices()
    service = ChatService(EngineRouter(), history)
    try:
        chat = _Chat(service, args)
        if args.conversation:
            if history is None:
                raise UserError("--conversation needs the history; leave out --no-save.")
            chat.conversation_id = history.get_conversation(int(args.conversation)).id
        if args.remote:
            remote = remotes.require(args.remote)
            if args.model == "starter":  # no -m: the server's first model
                from assistant.engine.remote import RemoteEngine

                offered = RemoteEngine(remote, remotes.get_key(remote.name)).list_models()
                if not offered:
                    raise UserError(f"{remote.name} offers no models; name one with -m.")
                args.model = offered[0]
                print(dim(f"Using {safe_text(args.model)} on {remote.name} (-m picks another)."), file=sys.stderr)
            args.model = f"{args.model}@{remote.name}"
        else:
            _say_if_preparing_starter(args.model)
        summary = service.load(args.model, load_settings(args)).result()
        show_load_notices(summary)
        _say_draft_notice(summary)
        chat.pending_images = images
        if args.prompt is not None:
            return _one_shot(chat, args.prompt, as_json=args.json)
        return _interactive(chat)
    finally:
        service.close()


def _say_draft_notice(summary) -> None:
    _, notice = draft_words(summary)
    if notice:
        print(f"notice: {safe_text(notice)}", file=sys.stderr)


def _say_if_preparing_starter(spec: str) -> None:
    from models.starter import STARTER_NAME, starter_path

    if spec == STARTER_NAME and not starter_path().exists():
        print(dim("Preparing the starter model (once, a few seconds)…"), file=sys.stderr)


def _report(stats: dict | None) -> None:
    if not stats:
        return
    if stats.get("error"):
        print(f"error: {safe_text(stats['error'])}", file=sys.stderr)
    message = (stats.get("context") or {}).get("message")
    if message:
        print(dim(f"[{message}]"), file=sys.stderr)
    if stats.get("thinking_unfinished"):
        print(dim(f"[{STOPPED_WHILE_THINKING}]"), file=sys.stderr)
    print(dim(safe_text(format_stats_line(stats))), file=sys.stderr)
    images = format_images_line(stats)
    if images:
        print(dim(safe_text(images)), file=sys.stderr)


def _one_shot(chat: _Chat, prompt: str, as_json: bool) -> int:
    if as_json:
        stats: dict | None = chat.turn(prompt, out=None, images=chat.take_images()) or {}
        assert stats is not None
        if chat.conversation_id is not None:
            stats["conversation_id"] = chat.conversation_id
        print(json_text(stats))  # C1 and bidi characters as \u escapes: the same JSON, inert on a terminal
    else:
        stats = chat.turn(prompt, images=chat.take_images())
        print()
        _report(stats)
    return 1 if stats and stats.get("stop_reason") == "error" else 0


def _interactive(chat: _Chat) -> int:
    s = chat.service.summary()
    assert s is not None  # loaded before the loop starts
    cache = cache_words(s.kv_cache)
    drafting, _ = draft_words(s)
    print(dim(f"{safe_text(s.name)} · {s.quant} · {s.n_threads} threads · "
              f"context {s.n_ctx}{' · ' + cache if cache else ''}"
              + (f" · {safe_text(drafting)}" if drafting else "") + " · type /help for commands"), file=sys.stderr)
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
            if _command(chat, text):
                return 0
            continue
        images = chat.take_images()
        try:
            stats = chat.turn(text, images=images)
        except UserError as exc:
            print(f"\nerror: {safe_text(exc)}", file=sys.stderr)
            continue
        print()
        _report(stats)


def _command(chat: _Chat, text: str) -> bool:
    """Run a /command; True means quit."""
    name, _, rest = text.partition(" ")
    if name in ("/quit", "/exit", "/bye"):
        return True
    if name == "/new":
        chat.new()
        print(dim("[new conversation]"), file=sys.stderr)
    elif name == "/model" and rest.strip():
        try:
            s = chat.service.load(rest.strip(), load_settings(chat.args, model=rest.strip())).result()
            show_load_notices(s)
            print(dim(f"[now using {safe_text(s.name)} · {s.quant}; the conversation stays]"), file=sys.stderr)
            _say_draft_notice(s)
        except UserError as exc:
            print(f"error: {safe_text(exc)}", file=sys.stderr)
    elif name == "/image" and rest.strip():
        try:
            chat.pending_images.append(read_image_file(rest.strip()))
            n = len(chat.pending_images)
            print(dim(f"[{n} image{'' if n == 1 else 's'} will go with your next message]"), file=sys.stderr)
        except UserError as exc:
            print(f"error: {safe_text(exc)}", file=sys.stderr)
    elif name in ("/help", "/?"):
        print(HELP, file=sys.stderr)
    else:
        print(f"error: unknown command {safe_text(name)}; /help lists them.", file=sys.stderr)
    return False
