"""`assistant serve`: the loaded model for other apps, through an OpenAI-compatible API on this machine."""

from __future__ import annotations

import argparse
import os
import sys

from assistant.cli.common import add_model_options, dim, load_settings, positive_int, show_load_notices
from assistant.server.config import (DEFAULT_HOST, DEFAULT_PORT, MAX_BODY_BYTES, MAX_MESSAGES, MAX_TOKENS_LIMIT,
                                     MAX_WAITING, ServerConfig, new_api_key)
from assistant.server.request_log import RequestRecord
from common.formatting import format_tps
from common.terminal import safe_text

KEY_ENV = "ASSISTANT_API_KEY"


def _port(value: str) -> int:
    n = int(value)
    if not 0 <= n <= 65535:
        raise argparse.ArgumentTypeError("must be from 1 to 65535 (0: any free port)")
    return n



def add_parser(sub) -> None:
    p = sub.add_parser(
        "serve", help="serve the model to other apps (an OpenAI-compatible API)",
        description="Serve a local model to editors, scripts and agents through an OpenAI-compatible API "
                    "(GET /v1/models, POST /v1/chat/completions, POST /v1/completions). It listens on this machine "
                    "only unless you say otherwise; Ctrl-C stops it.")
    p.add_argument("--host", default=DEFAULT_HOST,
                   help=f"address to listen on (default {DEFAULT_HOST}: this machine only; any other address needs "
                        "--api-key and --allow-network)")
    p.add_argument("--port", type=_port, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--api-key", metavar="KEY",
                   help=f"require this key from clients (Authorization: Bearer KEY); ${KEY_ENV} works too and keeps "
                        "the key out of the process list")
    p.add_argument("--new-api-key", action="store_true", help="make a random key, print it, and require it")
    p.add_argument("--allow-network", action="store_true",
                   help="really listen on a non-loopback address (needs an API key)")
    p.add_argument("--allow-host", action="append", default=[], metavar="NAME",
                   help="another name clients may use for this machine in the Host header (repeatable)")
    p.add_argument("--allow-origin", action="append", default=[], metavar="ORIGIN",
                   help="a web page's origin allowed to call the API from a browser, e.g. http://localhost:3000")
    p.add_argument("--save-history", action="store_true",
                   help="keep API conversations in the history, marked as from the API (default: the app's "
                        "setting, off unless you turned it on)")
    p.add_argument("--max-waiting", type=positive_int, default=MAX_WAITING, metavar="N",
                   help=f"requests that may wait for the model; more are answered 429 (default {MAX_WAITING})")
    p.add_argument("--max-tokens-limit", type=positive_int, default=MAX_TOKENS_LIMIT, metavar="N",
                   help=f"the most tokens one reply may ask for (default {MAX_TOKENS_LIMIT})")
    p.add_argument("--max-messages", type=positive_int, default=MAX_MESSAGES, metavar="N", help=argparse.SUPPRESS)
    p.add_argument("--max-body-bytes", type=positive_int, default=MAX_BODY_BYTES, metavar="N", help=argparse.SUPPRESS)
    add_model_options(p)
    p.set_defaults(func=run)


def config_from_args(args) -> ServerConfig:
    key = args.api_key or os.environ.get(KEY_ENV) or None
    if args.new_api_key:
        key = new_api_key()
    return ServerConfig(host=args.host, port=args.port, api_key=key, allow_network=args.allow_network,
                        allowed_hosts=args.allow_host, allowed_origins=args.allow_origin,
                        max_waiting=args.max_waiting, max_tokens_limit=args.max_tokens_limit,
                        max_messages=args.max_messages, max_body_bytes=args.max_body_bytes,
                        save_conversations=True if args.save_history else None).check()


def run(args) -> int:
    from assistant.server.controller import ServerController
    from assistant.services import AppServices

    config = config_from_args(args)  # an unsafe address is refused before anything loads
    services = AppServices.open()
    try:
        _say_settings_notices(services.settings)
        controller = ServerController(services, config, load_settings=lambda: load_settings(args))
        controller.prepare()  # a port in use is said now, not after the model has loaded
        print(dim(f"Loading {safe_text(args.model)}…"), file=sys.stderr)
        summary = services.chat.load(args.model, load_settings(args)).result()
        show_load_notices(summary)
        controller.request_log.subscribe(_print_request)

        def ready(url: str) -> None:
            print(f"Serving {safe_text(summary.name)} at {url}", flush=True)
            if config.api_key and args.new_api_key:
                print(f"API key: {config.api_key}", flush=True)
            print(dim("Clients send the key as 'Authorization: Bearer KEY'." if config.api_key else
                      "No API key: any program on this machine may use it."), file=sys.stderr)
            print(dim("Ctrl-C stops the server."), file=sys.stderr, flush=True)

        controller.serve_forever(on_ready=ready)
    finally:
        services.close()  # the model's process ends with the server
    print(dim("Stopped."), file=sys.stderr)
    return 0


def _say_settings_notices(store) -> None:
    """Wrong values in settings.json (the defaults every API request uses) are said once, at start."""
    from assistant.preferences import load_preferences
    from assistant.server.config import saved_settings

    load_preferences(store)
    saved_settings(store)
    for notice in store.take_notices():
        print(f"notice: {safe_text(notice)}", file=sys.stderr)


def _print_request(record: RequestRecord) -> None:
    if record.status is None:
        return
    parts = [record.client, f"{record.method} {record.path}", str(record.status)]
    if record.model:
        parts.append(record.model)
    if record.completion_tokens is not None:
        parts.append(f"{record.completion_tokens} tokens")
    if record.gen_tps:
        parts.append(format_tps(record.gen_tps))
    if record.state == "cancelled":
        parts.append("client went away")
    elif record.error:
        parts.append(record.error)
    print(dim(safe_text(" · ".join(parts))), file=sys.stderr, flush=True)
