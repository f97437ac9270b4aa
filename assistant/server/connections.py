"""The server's connections: none held open idle for long, none able to crowd out the others.

uvicorn's own HTTP protocol (h11) gives every connection as long as it likes to send a request's
head, and answers past `limit_concurrency` with a plain-text 503 to everyone. A few hundred
connections that send nothing would lock every client out. Here, instead:

- a request's head must arrive within HEAD_SECONDS of its first byte (or of the connection):
  a connection that sends nothing, or a head a byte at a time, is closed with a JSON 408;
- after a response, an idle keep-alive connection closes after IDLE_SECONDS (uvicorn's timer);
- one client address may hold PER_CLIENT connections, and all clients TOTAL: a connection past
  either limit makes room by closing the oldest *idle* connection (one with no request under
  way), of that address first, and among those one that never carried a request (a flood's)
  before a kept-alive one that did (a client's pool). A request under way is never cut. Only
  when every connection is busy is the newcomer refused, with a JSON 503;
- what uvicorn answers itself (a malformed request) is JSON in OpenAI's format too.

(A request's body is bounded in time by the app: `app._read_body`.)
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections import OrderedDict

import h11
from uvicorn.protocols.http.h11_impl import H11Protocol

from assistant.server.errors import error_body

log = logging.getLogger(__name__)

HEAD_SECONDS = 10.0
IDLE_SECONDS = 5
BODY_SECONDS = 20.0  # the app's bound on a request body's arrival (4 MiB over a slow link)
PER_CLIENT = 128
TOTAL = 1024


class ConnectionBook:
    """Every open connection, oldest first, overall and per client address."""

    def __init__(self, per_client: int = PER_CLIENT, total: int = TOTAL) -> None:
        self.per_client = per_client
        self.total = total
        self._all: OrderedDict[int, GuardedH11Protocol] = OrderedDict()
        self._by_client: dict[str, OrderedDict[int, GuardedH11Protocol]] = {}
        self.evicted = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._all)

    def admit(self, conn: GuardedH11Protocol) -> bool:
        """Make room for `conn` (closing the oldest idle connections past the limits); False when none is idle."""
        mine = self._by_client.setdefault(conn.client_address, OrderedDict())
        if len(mine) >= self.per_client and not self._evict_from(mine):
            return False
        if len(self._all) >= self.total and not self._evict_from(self._all):
            return False
        self._all[id(conn)] = conn
        mine[id(conn)] = conn
        return True

    def leave(self, conn: GuardedH11Protocol) -> None:
        self._all.pop(id(conn), None)
        mine = self._by_client.get(conn.client_address)
        if mine is not None:
            mine.pop(id(conn), None)
            if not mine:
                del self._by_client[conn.client_address]

    def _evict_from(self, conns: OrderedDict[int, GuardedH11Protocol]) -> bool:
        """Close the oldest idle connection that never carried a request (a flood's), else the oldest idle
        kept-alive one (a client that reconnects); False when every connection has a request under way."""
        idle = [conn for conn in conns.values() if conn.idle]
        victim = next((conn for conn in idle if not conn.served), idle[0] if idle else None)
        if victim is None:
            return False
        self.leave(victim)
        victim.close_idle()
        self.evicted += 1
        return True


def connection_limit(wanted: int = TOTAL) -> int:
    """How many connections this process can hold: TOTAL, within the open-file limit (raised towards its hard
    limit first: 1,024 is a common default, and each connection is a file)."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        target = wanted + 256 if hard == resource.RLIM_INFINITY else min(hard, wanted + 256)
        if soft != resource.RLIM_INFINITY and soft < target:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            soft = target
    except (ImportError, ValueError, OSError):  # Windows, or a limit that cannot be raised
        return min(wanted, 400)
    room = soft - 128 if soft != resource.RLIM_INFINITY else wanted  # the model, the history, the logs
    return max(32, min(wanted, room))


def _raw_response(status: int, reason: str, message: str, code: str) -> bytes:
    """A whole HTTP response with an OpenAI-style JSON error, for a connection h11 cannot answer through."""
    body = json.dumps(error_body(status, message, code=code)).encode()
    return (f"HTTP/1.1 {status} {reason}\r\ncontent-type: application/json\r\ncontent-length: {len(body)}\r\n"
            "connection: close\r\n\r\n").encode() + body


def guarded_protocol(book: ConnectionBook, head_seconds: float | None = None) -> type[GuardedH11Protocol]:
    """uvicorn's h11 protocol class bound to `book` (uvicorn makes one instance per connection)."""
    return type("BoundGuardedH11Protocol", (GuardedH11Protocol,),
                {"book": book, "head_seconds": head_seconds if head_seconds is not None else HEAD_SECONDS})


class GuardedH11Protocol(H11Protocol):
    book: ConnectionBook
    head_seconds: float = HEAD_SECONDS

    def connection_made(self, transport: asyncio.Transport) -> None:  # type: ignore[override]
        super().connection_made(transport)
        self._head_timer: asyncio.TimerHandle | None = None
        self._admitted = False
        self.served = 0  # responses sent on this connection
        self.client_address = self.client[0] if self.client else "?"
        if not self.book.admit(self):
            self.book.refused += 1
            log.warning("refused a connection from %s: all %d connections are busy", self.client_address,
                        len(self.book))
            transport.write(_raw_response(503, "Service Unavailable", "The server is busy with other requests on "
                                          "every connection it takes; try again in a moment.", "server_busy"))
            transport.close()
            return
        self._admitted = True
        self._arm_head_timer()

    def connection_lost(self, exc: Exception | None) -> None:
        self._cancel_head_timer()
        if getattr(self, "_admitted", False):
            self.book.leave(self)
        super().connection_lost(exc)

    def data_received(self, data: bytes) -> None:
        if self._head_timer is None and self.conn.their_state is h11.IDLE:
            self._arm_head_timer()  # the first byte of a next request on a kept-alive connection
        super().data_received(data)
        if self.conn.their_state is not h11.IDLE:
            self._cancel_head_timer()  # the head is in: the app bounds the body

    def on_response_complete(self) -> None:
        self.served += 1
        super().on_response_complete()

    @property
    def idle(self) -> bool:
        """No request under way: nothing is lost by closing it (a client reopens a kept-alive connection)."""
        return self.cycle is None or self.cycle.response_complete

    def close_idle(self) -> None:
        if not self.transport.is_closing():
            self.transport.close()

    def send_400_response(self, msg: str) -> None:
        """A malformed request: OpenAI's JSON, not uvicorn's plain text."""
        self.transport.write(_raw_response(400, "Bad Request", "The request is not valid HTTP.", "invalid_http"))
        self.transport.close()

    # --- The head's timer
    def _arm_head_timer(self) -> None:
        self._cancel_head_timer()
        self._head_timer = self.loop.call_later(self.head_seconds, self._head_overdue)

    def _cancel_head_timer(self) -> None:
        timer = getattr(self, "_head_timer", None)
        if timer is not None:
            timer.cancel()
            self._head_timer = None

    def _head_overdue(self) -> None:
        self._head_timer = None
        if self.transport.is_closing() or self.conn.their_state is not h11.IDLE:
            return
        log.info("closed a connection from %s: no request within %.0f s", self.client_address, self.head_seconds)
        self.transport.write(_raw_response(408, "Request Timeout", f"No request arrived within "
                                           f"{self.head_seconds:g} s, so the connection was closed.",
                                           "request_timeout"))
        self.transport.close()
