"""The server's log of requests: who asked, for which model, what it cost; front ends listen to it.

Each request is one `RequestRecord`, announced when it starts and again when it
ends (`on_change(record)`). The window shows them live; the command line prints a
line per finished request. Records hold no key and no text of the conversation.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import asdict, dataclass, field

from common.terminal import safe_text

log = logging.getLogger(__name__)


@dataclass
class RequestRecord:
    id: int
    client: str  # host:port of the caller
    method: str
    path: str
    started_at: float = field(default_factory=time.time)
    model: str | None = None
    stream: bool = False
    status: int | None = None  # None while it runs
    state: str = "running"  # running, done, failed, cancelled
    prompt_tokens: int | None = None
    completion_tokens: int | None = None
    gen_tps: float | None = None
    duration_ms: float | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


Listener = Callable[[RequestRecord], None]


class RequestLog:
    def __init__(self, keep: int = 500) -> None:
        self._records: deque[RequestRecord] = deque(maxlen=keep)
        self._listeners: list[Listener] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every start and end; `listener` runs on the server's thread. Returns the unsubscriber."""
        with self._lock:
            self._listeners.append(listener)

        def unsubscribe() -> None:
            with self._lock:
                if listener in self._listeners:
                    self._listeners.remove(listener)
        return unsubscribe

    def records(self) -> list[RequestRecord]:
        with self._lock:
            return list(self._records)

    def start(self, client: str, method: str, path: str) -> RequestRecord:
        record = RequestRecord(id=next(self._ids), client=client, method=method, path=path)
        with self._lock:
            self._records.append(record)
        self._announce(record)
        return record

    def finish(self, record: RequestRecord, status: int, *, stats: dict | None = None, error: str | None = None,
               cancelled: bool = False) -> None:
        if record.status is not None:
            return  # already ended
        record.status = status
        record.duration_ms = round((time.time() - record.started_at) * 1000, 1)
        record.state = "cancelled" if cancelled else ("done" if status < 400 and not error else "failed")
        record.error = error
        if stats:
            record.prompt_tokens = stats.get("prompt_tokens")
            record.completion_tokens = stats.get("completion_tokens")
            record.gen_tps = stats.get("gen_tps")
        log.info("%s %s %s from %s: %s %s, %s tokens in %.0f ms", record.id, record.method, safe_text(record.path),
                 record.client, status, record.state, record.completion_tokens, record.duration_ms)
        self._announce(record)

    def refused(self, client: str, method: str, path: str, status: int, sentence: str) -> None:
        """A request turned away before the API saw it (Host, Origin, key)."""
        self.finish(self.start(client, method, path), status, error=sentence)

    def update(self, record: RequestRecord) -> None:
        """Announce a change to a running record (its model became known)."""
        self._announce(record)

    def _announce(self, record: RequestRecord) -> None:
        with self._lock:
            listeners = list(self._listeners)
        for listener in listeners:
            try:
                listener(record)
            except Exception:  # a front end's bug must not fail the request
                log.exception("a request-log listener failed")
