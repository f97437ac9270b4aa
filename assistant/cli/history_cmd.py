"""`assistant history`: list, search, show, export, import, rename and delete conversations."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from assistant.cli.common import SEARCH_MARKS, terminal_snippet
from common.errors import UserError
from common.terminal import raw_stream, safe_text
from common.user_files import file_name


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("history", help="list, search, show, export, import and delete saved conversations",
                              description="The saved conversations (kept in history.db in the app's data folder).")
    p.set_defaults(func=lambda args: _help(p))
    sub = p.add_subparsers(dest="history_command", metavar="ACTION")

    s = sub.add_parser("list", help="the most recent conversations")
    s.add_argument("-n", "--limit", type=int, default=30, help="how many (default 30)")
    s.add_argument("--offset", type=int, default=0, help="skip this many of the most recent first")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("search", help="full-text search in titles and messages")
    s.add_argument("query", nargs="+", help="words to find (any text works; \"quote\" a phrase)")
    s.add_argument("-n", "--limit", type=int, default=20)
    s.add_argument("--thinking", action="store_true",
                   help="search replies' thinking too (a reasoning model's, kept apart from its answers)")
    s.set_defaults(func=cmd_search)

    s = sub.add_parser("show", help="print a conversation (the branch on show) as Markdown")
    s.add_argument("id", type=int)
    s.set_defaults(func=cmd_show)

    s = sub.add_parser("export", help="export one conversation, or all, to Markdown or JSON")
    s.add_argument("id", type=int, nargs="?", help="the conversation (default: all of them)")
    s.add_argument("--format", choices=("md", "json"), help="md (readable) or json (complete, re-importable); "
                   "default: from the -o file's extension, else md")
    s.add_argument("-o", "--output", metavar="FILE", help="write here instead of standard output")
    s.add_argument("--images", choices=("embed", "files"), default="embed",
                   help="JSON to a file: images inside it (embed, the default) or as files in a folder beside it "
                        "(files); Markdown to a file always puts them beside it")
    s.set_defaults(func=cmd_export)

    s = sub.add_parser("import", help="import a JSON export (conversations already here are skipped)")
    s.add_argument("file", help="the .json file, or - for standard input")
    s.set_defaults(func=cmd_import)

    s = sub.add_parser("rename", help="give a conversation a new title")
    s.add_argument("id", type=int)
    s.add_argument("title", nargs="+")
    s.set_defaults(func=cmd_rename)

    s = sub.add_parser("rm", help="delete a conversation for good")
    s.add_argument("id", type=int)
    s.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    s.set_defaults(func=cmd_rm)

    s = sub.add_parser("check", help="check the database file: rebuild a damaged search index, "
                       "move a damaged file aside")
    s.set_defaults(func=cmd_check)

    s = sub.add_parser("dismiss", help="stop showing a notice (such as a damaged file moved aside)")
    s.add_argument("notice", type=int, nargs="?", help="the notice's number (default: all of them)")
    s.set_defaults(func=cmd_dismiss)


def _help(parser) -> int:
    parser.print_help()
    return 2


def open_store():
    """The history store, with its warnings on stderr: notices not yet dismissed (a
    damaged file moved aside), and why nothing can be saved when it is read-only."""
    from assistant.history import HistoryStore

    store = HistoryStore.open()
    for warning in store.warnings:
        print(f"warning: {safe_text(warning)}", file=sys.stderr)
    return store


def cmd_list(args) -> int:
    with open_store() as store:
        rows = store.list_conversations(limit=args.limit, offset=args.offset)
        total = store.count_conversations()
    if not rows:
        print("No saved conversations yet." if total == 0 else "No more conversations.")
        return 0
    width = max(len(str(r.id)) for r in rows)
    for r in rows:
        when = r.updated_at[:16].replace("T", " ")
        model = f"  [{safe_text(r.model)}]" if r.model else ""
        print(f"{r.id:>{width}}  {safe_text(when)}  {r.message_count:>4} msg  {safe_text(r.display_title)}{model}")
    if total > args.offset + len(rows):
        print(f"({total - args.offset - len(rows)} older; use --limit or --offset to see them)")
    return 0


def cmd_search(args) -> int:
    with open_store() as store:
        hits = store.search(" ".join(args.query), limit=args.limit, highlight=SEARCH_MARKS,
                            thinking=getattr(args, "thinking", False))
    if not hits:
        print("No matches.")
        return 0
    for h in hits:
        where = "title" if h.message_id is None else f"message {h.message_id} ({safe_text(h.role)})"
        if h.in_thinking:
            where += ", in its thinking"
        snippet = terminal_snippet(h.snippet)
        print(f"{h.conversation_id}  {safe_text(h.display_title)}  — {where}")
        print(f"    {snippet}")
    return 0


def cmd_show(args) -> int:
    with open_store() as store:
        print(safe_text(store.export_markdown([store.get_conversation(args.id).id]), keep_newlines=True))
    return 0


def cmd_export(args) -> int:
    from assistant.history.export import dumps

    fmt = args.format or ("json" if args.output and args.output.lower().endswith(".json") else "md")
    with open_store() as store:
        ids = [store.get_conversation(args.id).id] if args.id is not None else None
        if ids:  # a folder as -o gets the file inside it, named after the conversation
            name = file_name(store.get_conversation(ids[0]).display_title, f"conversation-{ids[0]}")
        else:
            name = f"hearth-history-{time.strftime('%Y-%m-%d')}"
        if args.output and args.output != "-":
            from assistant.history.image_export import write_export

            # Images embedded or beside it (Markdown: beside it); the file as common.user_files writes it.
            written = write_export(store, Path(args.output).expanduser(), fmt, ids, images=args.images,
                                   name_in_folder=f"{name}.{fmt}")
            n = written.conversations
            extra = (f", and {written.images} image{'' if written.images == 1 else 's'} to "
                     f"{safe_text(written.images_folder)}" if written.images else "")
            print(f"Exported {n} conversation{'' if n == 1 else 's'} to {safe_text(written.path)}{extra}.",
                  file=sys.stderr)
            return 0
        if fmt == "json":
            doc = store.export_json(ids)
            text = dumps(doc)
        else:
            text = store.export_markdown(ids if ids is not None else store.conversation_ids()) + "\n"
    # On a terminal, escapes in titles or replies must not act (the terminal stream escapes them);
    # a pipe gets the data as it is: an export is data.
    (sys.stdout if sys.stdout.isatty() else raw_stream(sys.stdout)).write(text)
    return 0


def cmd_import(args) -> int:
    from assistant.history import importing

    # Read within the size limit before anything else: `/dev/zero` or an endless pipe stops at once.
    data = importing.read_stream(sys.stdin.buffer) if args.file == "-" else importing.read_file(args.file)
    with open_store() as store:
        # Images exported as files are read from beside the export (never from anywhere else).
        result = store.import_json(data, folder=None if args.file == "-" else Path(args.file).expanduser().parent)
    n, k = len(result.imported), len(result.skipped)
    msg = f"Imported {n} conversation{'' if n == 1 else 's'}"
    if k:
        msg += f"; skipped {k} already in the history"
    print(msg + ".")
    return 0


def cmd_rename(args) -> int:
    with open_store() as store:
        store.rename(args.id, " ".join(args.title))
    print(f"Renamed conversation {args.id}.")
    return 0


def cmd_rm(args) -> int:
    with open_store() as store:
        conv = store.get_conversation(args.id)
        if not args.yes and sys.stdin.isatty():
            answer = input(f"Delete conversation {conv.id} \"{safe_text(conv.display_title)}\" and its "
                           f"{len(conv.messages)} messages for good? [y/N] ")
            if answer.strip().lower() not in ("y", "yes"):
                print("Nothing deleted.")
                return 1
        n = store.delete(conv.id)
    print(f"Deleted conversation {conv.id} \"{safe_text(conv.display_title)}\" ({n} message{'' if n == 1 else 's'}).")
    return 0


def cmd_check(args) -> int:
    """Say what was found and what was done; never point back at this same command."""
    with open_store() as store:
        print(f"Checking {safe_text(store.path)}: every page is read, which takes a while on a large history.",
              file=sys.stderr)
        result = store.check()
    print(safe_text(result.message))
    return 0 if result.outcome in ("sound", "repaired") else 1


def cmd_dismiss(args) -> int:
    with open_store() as store:
        gone = store.dismiss_notice(args.notice)
    if not gone:
        print("There is no such notice." if args.notice is not None else "There are no notices.")
        return 1 if args.notice is not None else 0
    for notice in gone:
        print(f"Dismissed notice {notice.id}: {safe_text(notice.text)}")
    return 0
