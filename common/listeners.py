"""Callbacks that a service calls with its events: added and removed from any thread, and one that
raises is logged instead of stopping the service or the other listeners."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)


class Listeners:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._items: list[Callable[[Any], None]] = []

    def add(self, listener: Callable[[Any], None]) -> Callable[[], None]:
        """Start calling `listener`; returns the function that stops it."""
        with self._lock:
            self._items.append(listener)

        def remove() -> None:
            with self._lock:
                if listener in self._items:
                    self._items.remove(listener)

        return remove

    def emit(self, event: Any) -> None:
        with self._lock:
            items = list(self._items)
        for listener in items:
            try:
                listener(event)
            except Exception:  # a front end's bug must not stop the service
                log.exception("a listener failed on %s", type(event).__name__)
