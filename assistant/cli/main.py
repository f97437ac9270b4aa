"""`assistant` command line: one argparse tree, one module per command group.

Each command module exposes `add_parser(subparsers)`, which registers its
sub-command and sets `func` on the parsed namespace. A `UserError` raised anywhere
becomes one sentence on stderr and exit code 1, never a traceback. Everything printed
goes through `common.terminal`'s escaping (`install()`), whatever it came from.
"""

import argparse
import logging
import os
import sys

from common import terminal
from common.errors import UserError
from common.logs import debug_enabled, setup_logging
from common.terminal import safe_text, shorten

# An error message is a sentence: one quoting a template's or a server's text is cut to this.
MAX_ERROR_CHARS = 2000

log = logging.getLogger("assistant.cli")


def build_parser() -> argparse.ArgumentParser:
    from assistant.cli import bench_cmd, chat_cmd, compare_cmd, history_cmd, models_cmd, remote_cmd, serve_cmd

    parser = argparse.ArgumentParser(prog="assistant", description="A local, private LLM assistant.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (chat_cmd, bench_cmd, compare_cmd, models_cmd, history_cmd, remote_cmd, serve_cmd):
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    with terminal.install():
        try:
            return _main(argv)
        except BrokenPipeError:  # `assistant history list | head`: the reader has gone, which is no error
            _silence_stdout()
            return 141  # as a shell reports a program ended by SIGPIPE


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so the interpreter's last flush does not fail again on the closed pipe."""
    if sys.__stdout__ is None:
        return
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.__stdout__.fileno())
    except (OSError, ValueError):
        pass


def _main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    log_path = setup_logging()
    try:
        return args.func(args) or 0
    except BrokenPipeError:
        log.info("%s: the output was closed before the end", args.command)
        raise
    except UserError as exc:
        log.info("%s failed: %s", args.command, shorten(exc, MAX_ERROR_CHARS))
        print(f"error: {safe_text(shorten(exc, MAX_ERROR_CHARS))}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one sentence; the log keeps the traceback
        log.exception("%s failed unexpectedly", args.command)
        if debug_enabled():
            raise
        where = f"the log ({log_path}) has the details" if log_path else "run again with ASSISTANT_DEBUG=1 for details"
        print(f"error: something went wrong that the app did not expect ({type(exc).__name__}: "
              f"{safe_text(shorten(exc, MAX_ERROR_CHARS))}); "
              f"{where}.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
