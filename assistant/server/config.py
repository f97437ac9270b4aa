"""What the local API server listens on and what it lets through, checked before it binds.

Safe by default: it binds to 127.0.0.1. Any other address is refused unless an
API key is set *and* the user asked for it explicitly (`allow_network`): an open
port on a network is how most local-LLM servers get attacked. The `Host` header
must name this machine (DNS rebinding), and browsers from other origins get no
CORS headers unless the user allows their origin.
"""

from __future__ import annotations

import ipaddress
import secrets
import socket
from dataclasses import dataclass, field
from urllib.parse import urlsplit

from common.errors import UserError
from common.settings_store import Setting

# 4327 spells HEAR on a phone keypad. The peers' ports are taken on many machines:
# LM Studio 1234, Ollama 11434, Jan 1337, GPT4All 4891, llama-server 8080, vLLM 8000,
# text-generation-webui 5000, koboldcpp 5001; 8765 is AnkiConnect's.
DEFAULT_PORT = 4327
DEFAULT_HOST = "127.0.0.1"
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")

# Limits: generous for a person's tools, small enough that one client cannot exhaust the machine.
# 4 MiB of JSON is ~1M tokens of text, far beyond any local context; images come as base64 data URLs
# (a 20 MB photo is 27 MB of text), so a request may be as large as one of those and its words.
MAX_BODY_BYTES = 32 << 20
MAX_MESSAGES = 1024
MAX_TOKENS_LIMIT = 8192  # a larger max_tokens is lowered to this (and to the context)
MAX_WAITING = 16  # API requests waiting for the model beyond this answer 429
MAX_STOP_STRINGS = 16


class ServerConfigError(UserError):
    """A server setting that would be unsafe or cannot work."""


@dataclass
class ServerConfig:
    host: str = DEFAULT_HOST
    port: int = DEFAULT_PORT  # 0: any free port (tests)
    api_key: str | None = None  # required on every request when set
    allow_network: bool = False  # the explicit "yes, listen beyond this machine"
    allowed_hosts: list[str] = field(default_factory=list)  # extra names accepted in the Host header
    allowed_origins: list[str] = field(default_factory=list)  # browser origins given CORS headers
    max_body_bytes: int = MAX_BODY_BYTES
    max_messages: int = MAX_MESSAGES
    max_tokens_limit: int = MAX_TOKENS_LIMIT
    max_waiting: int = MAX_WAITING
    save_conversations: bool | None = None  # None: the user's setting decides, per request

    def check(self) -> ServerConfig:
        """Refuse what is unsafe or malformed, in one sentence each. Returns self."""
        if not isinstance(self.port, int) or not 0 <= self.port <= 65535:
            raise ServerConfigError(f"The port must be a number from 1 to 65535, not {self.port!r}.")
        if self.api_key is not None:
            if not self.api_key.strip():
                raise ServerConfigError("The API key is empty; leave it out or give at least 8 characters.")
            if len(self.api_key) < 8:
                raise ServerConfigError("The API key is too short to protect anything; use at least 8 characters.")
            if not self.api_key.isprintable() or not self.api_key.isascii() or " " in self.api_key:
                raise ServerConfigError("The API key must be printable ASCII without spaces "
                                        "(it travels in an HTTP header).")
        if not is_loopback(self.host):
            if not self.api_key:
                raise ServerConfigError(f"Listening on {self.host} would open the model to the network without a "
                                        "key; set an API key as well, or stay on 127.0.0.1.")
            if not self.allow_network:
                raise ServerConfigError(f"{self.host} is not this machine's loopback address; listening there "
                                        "needs the explicit --allow-network flag (and an API key).")
        for origin in self.allowed_origins:
            normalize_origin(origin)  # raises on a malformed one
        for name in self.allowed_hosts:
            if not name or any(c in name for c in "/ \t@?#"):
                raise ServerConfigError(f"{name!r} is not a host name to allow.")
        for name, value in (("body size", self.max_body_bytes), ("message count", self.max_messages),
                            ("max_tokens limit", self.max_tokens_limit)):
            if value < 1:
                raise ServerConfigError(f"The {name} limit must be 1 or more.")
        if self.max_waiting < 0:
            raise ServerConfigError("The queue limit must be 0 or more.")
        return self

    def host_allow_list(self) -> set[str]:
        """Names the Host header may carry: loopback, the bound address, and the user's own names."""
        names = {n.lower() for n in LOOPBACK_NAMES}
        names.update(n.lower().strip("[]") for n in self.allowed_hosts)
        bound = self.host.strip("[]").lower()
        if bound not in ("0.0.0.0", "::"):
            names.add(bound)
        else:
            names.update(_this_machines_addresses())
        return names

    def base_url(self, port: int | None = None) -> str:
        """The URL clients use as their OpenAI `base_url`."""
        return f"http://{url_host(self.host)}:{port or self.port}/v1"

    def origin_allow_list(self) -> list[str]:
        return [normalize_origin(o) for o in self.allowed_origins]


def is_loopback(host: str) -> bool:
    """True only when every address `host` names is a loopback address."""
    host = host.strip("[]")
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        pass
    try:
        infos = socket.getaddrinfo(host, None, type=socket.SOCK_STREAM)
    except OSError:
        return False
    addresses = {str(info[4][0]).split("%")[0] for info in infos}
    return bool(addresses) and all(ipaddress.ip_address(a).is_loopback for a in addresses)


def normalize_origin(origin: str) -> str:
    """`scheme://host[:port]` in lower case, as browsers send it; anything else is refused."""
    wrong = ServerConfigError(f"{origin[:200]!r} is not an origin; write it as a browser sends it, "
                              "e.g. http://localhost:3000.")
    try:
        parts = urlsplit(origin.strip())
        port = parts.port  # raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise wrong from None
    if parts.scheme not in ("http", "https") or not parts.hostname or parts.path not in ("", "/") \
            or parts.query or parts.fragment or parts.username:
        raise wrong
    host = parts.hostname.lower()
    host = f"[{host}]" if ":" in host else host
    return f"{parts.scheme}://{host}" + (f":{port}" if port else "")


def new_api_key() -> str:
    """A fresh random key (192 bits), in the `sk-` shape OpenAI clients expect."""
    return "sk-hearth-" + secrets.token_urlsafe(24)


def url_host(host: str) -> str:
    """The host as it goes into a URL (IPv6 in brackets; 0.0.0.0 shown as 127.0.0.1 for a local client)."""
    host = host.strip("[]")
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _this_machines_addresses() -> set[str]:
    """Every address of this machine's interfaces: a client on the network names one of them."""
    import psutil

    names = {socket.gethostname().lower()}
    for addresses in psutil.net_if_addrs().values():
        for a in addresses:
            if a.family in (socket.AF_INET, socket.AF_INET6):
                names.add(a.address.split("%")[0].lower())
    return names


# --- The window's server settings, kept in the user's settings store (settings.json in the data directory)

SETTINGS_KEY = "server"


SETTINGS_RULES = {
    "enabled": Setting(bool), "port": Setting(int, 0, 65535), "save_conversations": Setting(bool),
    "api_key": Setting(str, optional=True, max_chars=4096),
}


def saved_settings(store) -> dict:
    """The stored server settings over their defaults: off, port 4327, no key yet, API turns not saved.
    Each is checked as it is read: a wrong one is replaced by its default, with a notice naming the file."""
    defaults = {"enabled": False, "port": DEFAULT_PORT, "api_key": None, "save_conversations": False}
    stored = store.get(SETTINGS_KEY) if store is not None else None
    if not isinstance(stored, dict):
        return defaults
    known = {k: v for k, v in stored.items() if k in defaults}
    return {**defaults, **store.checked(known, SETTINGS_RULES, defaults, SETTINGS_KEY)}


def save_settings(store, **changes) -> dict:
    values = {**saved_settings(store), **changes}
    store.set(SETTINGS_KEY, values)
    return values
