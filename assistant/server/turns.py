"""The chat service's events, delivered to the server's asyncio loop without a thread per request.

The chat service runs turns on its engine thread and tells listeners what happens.
The router is one listener for the whole server: it hands each event of an API
turn to that request's `asyncio.Queue` with `loop.call_soon_threadsafe`, so a token
costs one wake-up of the loop, not a thread. It also knows whether a model is
loading (the server answers 503 meanwhile) and how many API requests wait.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from typing import Any

from assistant.chat_service import (ChatService, ModelFailed, ModelLoaded, ModelLoading, QueueFull, TurnFailed,
                                    TurnFinished, TurnHandle, TurnRequest, TurnStarted)

log = logging.getLogger(__name__)


class ApiTurn:
    """One API request's turn, seen from the event loop."""

    def __init__(self, handle: TurnHandle, queue: asyncio.Queue) -> None:
        self.handle = handle
        self.queue = queue
        self.finished = False

    @property
    def id(self) -> int:
        return self.handle.id

    async def next_event(self) -> Any:
        event = await self.queue.get()
        if isinstance(event, (TurnFinished, TurnFailed)):
            self.finished = True
        return event

    def cancel(self) -> None:
        """Stop it (thread-safe, quick): a waiting turn never starts; a running one stops within a token."""
        if not self.finished:
            self.handle.cancel()


class TurnRouter:
    def __init__(self, chat: ChatService) -> None:
        self.chat = chat
        self.loading: str | None = None  # the model being loaded now, by anyone
        # An RLock held across submit-and-register: the engine thread may emit a turn's first events before
        # submit() returns, and must find its route; submit() itself calls listeners on this thread.
        self._lock = threading.RLock()
        self._routes: dict[int, tuple[asyncio.AbstractEventLoop, asyncio.Queue]] = {}
        self._waiting: set[int] = set()  # API turns not started yet
        self._unsubscribe = chat.subscribe(self._on_event)

    def submit(self, request: TurnRequest, max_waiting: int) -> ApiTurn:
        """Queue an API turn; QueueFull when `max_waiting` API requests already wait."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue = asyncio.Queue()
        with self._lock:
            if len(self._waiting) >= max_waiting:
                raise QueueFull(f"{len(self._waiting)} requests are already waiting for the model; "
                                "try again shortly.")
            handle = self.chat.submit(request)
            if not handle.done:
                self._routes[handle.id] = (loop, queue)
                self._waiting.add(handle.id)
        if handle.done:  # finished while submitting (cancelled at once): hand over its outcome
            queue.put_nowait(handle.outcome)
        return ApiTurn(handle, queue)

    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def active(self) -> int:
        with self._lock:
            return len(self._routes)

    def cancel_all(self) -> None:
        """Stop every API turn (the server is stopping); the window's own turns go on."""
        with self._lock:
            ids = list(self._routes)
        for request_id in ids:
            self.chat.cancel(request_id)

    def close(self) -> None:
        self._unsubscribe()

    # --- On the engine thread (or whichever thread submitted)
    def _on_event(self, event: Any) -> None:
        if isinstance(event, ModelLoading):
            self.loading = event.name
        elif isinstance(event, (ModelLoaded, ModelFailed)):
            self.loading = None
        request_id = getattr(event, "request_id", None)
        if not isinstance(request_id, int):
            return
        with self._lock:
            route = self._routes.get(request_id)
            if route is None:
                return
            if isinstance(event, (TurnStarted, TurnFinished, TurnFailed)):
                self._waiting.discard(request_id)
            if isinstance(event, (TurnFinished, TurnFailed)):
                del self._routes[request_id]
        loop, queue = route
        try:
            loop.call_soon_threadsafe(queue.put_nowait, event)
        except RuntimeError:  # the loop has closed: the server stopped, nobody reads this turn
            log.debug("dropped %s for request %s: the server's loop is closed", type(event).__name__, request_id)
