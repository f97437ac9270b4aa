"""`assistant remote`: servers on other machines whose models chat like local ones."""

from __future__ import annotations

import sys

from assistant import remotes
from common.errors import UserError
from common.terminal import safe_text


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "remote", help="OpenAI-compatible servers on other machines (llama-server, vLLM, Ollama, LM Studio, Hearth)",
        description="Remote servers: chat with their models as MODEL@NAME (or --remote NAME -m MODEL). "
                    "API keys are kept in the OS keyring, or a file only you can read; never in the history.")
    p.set_defaults(func=lambda args: (p.print_help(), 2)[1])
    sub = p.add_subparsers(dest="remote_command", metavar="ACTION")

    s = sub.add_parser("add", help="add (or change) a remote server")
    s.add_argument("name", help="a short name, e.g. gpu-box")
    s.add_argument("url", help="its address, e.g. http://192.168.1.20:8080 (the /v1 is optional)")
    s.add_argument("--api-key", help="the server's API key, if it needs one")
    s.set_defaults(func=cmd_add)

    s = sub.add_parser("list", help="the remote servers")
    s.set_defaults(func=cmd_list)

    s = sub.add_parser("test", help="connect: list its models and measure a round trip")
    s.add_argument("name")
    s.set_defaults(func=cmd_test)

    s = sub.add_parser("rm", help="forget a remote server and its key")
    s.add_argument("name")
    s.set_defaults(func=cmd_rm)


def cmd_add(args) -> int:
    remote = remotes.add(args.name, args.url, args.api_key)
    print(f"Added {remote.name}: {safe_text(remote.url)}" + (" (key stored)" if args.api_key else ""))
    try:
        _print_probe(remote)
    except UserError as exc:
        print(f"warning: {safe_text(exc)} It is kept; `assistant remote test {remote.name}` tries again.",
              file=sys.stderr)
    return 0


def _print_probe(remote: remotes.Remote) -> None:
    from assistant.engine.remote import RemoteEngine

    info = RemoteEngine(remote, remotes.get_key(remote.name)).probe()
    software = " ".join(x for x in (info.get("software"), info.get("version")) if x) or "an OpenAI-compatible server"
    print(f"{remote.name} is {safe_text(software)}, {info['round_trip_ms']:.0f} ms away; "
          f"{len(info['models'])} model(s):")
    for model in info["models"]:
        print(f"  {safe_text(model)}@{remote.name}")


def cmd_list(args) -> int:
    items = remotes.list_remotes()
    if not items:
        print("No remote servers yet; `assistant remote add NAME URL` adds one.")
        return 0
    for r in items:
        key = "key stored" if remotes.get_key(r.name) else "no key"
        print(f"{r.name}  {safe_text(r.url)}  ({key})")
    print(f"Keys are kept in {remotes.key_storage()}.")
    return 0


def cmd_test(args) -> int:
    _print_probe(remotes.require(args.name))
    return 0


def cmd_rm(args) -> int:
    remote = remotes.remove(args.name)
    print(f"Removed {remote.name} and its key.")
    return 0
