"""`assistant` command line: one argparse tree, one module per command group.

Each command module exposes `add_parser(subparsers)`, which registers its
sub-command and sets `func` on the parsed namespace. A `UserError` raised anywhere
becomes one sentence on stderr and exit code 1, never a traceback.
"""

import argparse
import logging
import sys

from common.errors import UserError
from common.logs import debug_enabled, setup_logging
from common.terminal import safe_text

log = logging.getLogger("assistant.cli")


def build_parser() -> argparse.ArgumentParser:
    from assistant.cli import bench_cmd, chat_cmd, compare_cmd, history_cmd, models_cmd, remote_cmd, serve_cmd

    parser = argparse.ArgumentParser(prog="assistant", description="A local, private LLM assistant.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (chat_cmd, bench_cmd, compare_cmd, models_cmd, history_cmd, remote_cmd, serve_cmd):
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    log_path = setup_logging()
    try:
        return args.func(args) or 0
    except UserError as exc:
        log.info("%s failed: %s", args.command, exc)
        print(f"error: {safe_text(exc)}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one sentence; the log keeps the traceback
        log.exception("%s failed unexpectedly", args.command)
        if debug_enabled():
            raise
        where = f"the log ({log_path}) has the details" if log_path else "run again with ASSISTANT_DEBUG=1 for details"
        print(f"error: something went wrong that the app did not expect ({type(exc).__name__}: {safe_text(exc)}); "
              f"{where}.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
