"""`assistant` command line: one argparse tree, one module per command group.

Each command module exposes `add_parser(subparsers)`, which registers its
sub-command and sets `func` on the parsed namespace. A `UserError` raised anywhere
becomes one sentence on stderr and exit code 1, never a traceback.
"""

import argparse
import os
import sys

from common.errors import UserError


def build_parser() -> argparse.ArgumentParser:
    from assistant.cli import bench_cmd, chat_cmd, history_cmd, models_cmd

    parser = argparse.ArgumentParser(prog="assistant", description="A local, private LLM assistant.")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for module in (chat_cmd, bench_cmd, models_cmd, history_cmd):
        module.add_parser(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return args.func(args) or 0
    except UserError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(file=sys.stderr)
        return 130
    except Exception as exc:  # a bug: still one sentence, with a way to see the details
        if os.environ.get("ASSISTANT_DEBUG"):
            raise
        print(f"error: something went wrong that the app did not expect ({type(exc).__name__}: {exc}); "
              "run again with ASSISTANT_DEBUG=1 to see the details.", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
