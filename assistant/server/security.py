"""Who may talk to the server: the Host header, the browser's Origin, the API key.

Checked in this order, before a request reaches the API:

1. **Host** must name this machine (localhost, 127.0.0.1, [::1], the bound address,
   names the user added). A web page that rebinds its own domain to 127.0.0.1 sends
   its domain here and is refused (DNS rebinding, Ollama's CVE-2024-28224).
2. **Origin**, when a browser sends one, must be this server itself or an origin the
   user allowed. Other pages are refused outright, so they can neither read replies
   (no CORS headers) nor make the model work blind with a form or a simple POST.
   Allowed origins get CORS headers from Starlette's CORSMiddleware.
3. **API key**, when one is set: `Authorization: Bearer KEY`, compared in constant
   time (`hmac.compare_digest`). The key never appears in a log or an error.
"""

from __future__ import annotations

import hmac
import logging
import re
from collections.abc import Callable

from starlette.datastructures import Headers
from starlette.middleware.cors import CORSMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from assistant.server.config import ServerConfig, ServerConfigError, normalize_origin
from assistant.server.errors import ApiError
from assistant.server.request_log import RequestLog

log = logging.getLogger(__name__)


Refused = Callable[[str, str, str, int, str], None]  # client, method, path, status, sentence


def guarded(app: ASGIApp, config: ServerConfig, request_log: RequestLog | None = None) -> ASGIApp:
    """`app` behind the three checks; refusals go to the request log too."""
    on_refused: Refused = request_log.refused if request_log is not None else (lambda *args: None)
    inner: ASGIApp = ApiKeyCheck(app, config.api_key, on_refused)
    origins = config.origin_allow_list()
    if origins:
        inner = CORSMiddleware(inner, allow_origins=origins, allow_methods=["GET", "POST", "OPTIONS"],
                               allow_headers=["*"], max_age=600)  # OpenAI's JS client sends x-stainless-*
    return HostAndOriginGuard(inner, config, on_refused)


_HOST = re.compile(r"(?:\[(?P<ip6>[0-9a-f:.%]+)\]|(?P<name>[^\[\]:/@\s]+))(?::(?P<port>[0-9]{1,5}))?")


def host_name(header: str) -> str:
    """The name in a Host header, without port, brackets or a final dot, in lower case; "" for anything that
    is not `name`, `name:port`, `[ipv6]` or `[ipv6]:port` (so `[::1]evil.com` names nothing allowed)."""
    match = _HOST.fullmatch(header.strip().lower())
    if match is None:
        return ""
    return match.group("ip6") or match.group("name").rstrip(".")


class HostAndOriginGuard:
    def __init__(self, app: ASGIApp, config: ServerConfig, on_refused: Refused) -> None:
        self.app = app
        self.on_refused = on_refused
        self.hosts = config.host_allow_list()
        self.origins = set(config.origin_allow_list())

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        hosts = headers.getlist("host")
        if len(hosts) != 1 or host_name(hosts[0]) not in self.hosts:
            log.info("refused a request with Host %r from %s", hosts[:1], _client(scope))
            await _refuse(self.on_refused, scope, receive, send, ApiError(
                403, "This server answers only requests addressed to this machine (localhost); the Host header "
                     "named another site.", code="host_not_allowed"))
            return
        origins = headers.getlist("origin")
        if origins and not self._origin_allowed(origins, hosts[0]):
            log.info("refused a cross-origin request from %r (%s)", origins[0][:200], _client(scope))
            await _refuse(self.on_refused, scope, receive, send, ApiError(
                403, "Requests from other web pages are refused; allow this origin in the server's settings "
                     "(--allow-origin) if you trust it.", code="origin_not_allowed"))
            return
        await self.app(scope, receive, send)

    def _origin_allowed(self, origins: list[str], host_header: str) -> bool:
        if len(origins) != 1:
            return False
        try:
            origin = normalize_origin(origins[0])
        except ServerConfigError:
            return False  # "null" (a file or a sandbox) and anything malformed
        if origin in self.origins:
            return True
        return origin == f"http://{host_header.strip().lower()}"  # this server's own origin


class ApiKeyCheck:
    def __init__(self, app: ASGIApp, api_key: str | None, on_refused: Refused) -> None:
        self.app = app
        self.on_refused = on_refused
        self.key = api_key.encode("utf-8") if api_key else None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.key is None:
            await self.app(scope, receive, send)
            return
        given = Headers(scope=scope).get("authorization", "")
        scheme, _, token = given.partition(" ")
        if not given:
            await _refuse(self.on_refused, scope, receive, send, ApiError(
                401, "This server needs an API key: send it as the header 'Authorization: Bearer KEY'.",
                code="missing_api_key", headers={"WWW-Authenticate": "Bearer"}))
            return
        # Both sides as bytes: compare_digest takes any bytes, and the time does not depend on where they differ.
        if scheme.lower() != "bearer" or not hmac.compare_digest(token.strip().encode("utf-8", "replace"), self.key):
            log.info("refused a request with a wrong API key from %s", _client(scope))
            await _refuse(self.on_refused, scope, receive, send, ApiError(401, "The API key is not correct.", code="invalid_api_key",
                                                         headers={"WWW-Authenticate": "Bearer"}))
            return
        await self.app(scope, receive, send)


async def _refuse(on_refused: Refused, scope: Scope, receive: Receive, send: Send, error: ApiError) -> None:
    on_refused(_client(scope), scope.get("method", "?"), scope.get("path", "?"), error.status, error.message)
    await error.response()(scope, receive, send)


def _client(scope: Scope) -> str:
    client = scope.get("client")
    return f"{client[0]}:{client[1]}" if client else "?"
