"""When Python's cyclic garbage collector may run in the window: between events, never inside one.

A closed dialog or page is kept alive by reference cycles (slots that capture the objects owning its
widgets), so the cyclic collector reclaims it, at a moment of its choosing: any allocation can trigger
it, including one inside Qt's event dispatch or a style sheet's repolish, where destroying a widget
tree (pyqtgraph's scenes above all) crashes the process. So the window turns automatic collection off
and collects from a timer, which fires between events, and code that repolishes every widget (a theme
change) holds collection off while it does.
"""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager

from PySide6.QtCore import QObject, QTimer

YOUNG_EVERY_MS = 1000  # the youngest generation, where most cyclic garbage dies
FULL_EVERY = 30  # young collections between two full ones


class CollectBetweenEvents(QObject):
    """Owns the timer; automatic collection stays off while it lives (`stop` gives it back)."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._was_enabled = gc.isenabled()
        gc.disable()
        self._ticks = 0
        self._timer = QTimer(self, interval=YOUNG_EVERY_MS)
        self._timer.timeout.connect(self._collect)
        self._timer.start()

    def _collect(self) -> None:
        self._ticks += 1
        gc.collect(2 if self._ticks % FULL_EVERY == 0 else 0)

    def stop(self) -> None:
        self._timer.stop()
        gc.collect()
        if self._was_enabled:
            gc.enable()


@contextmanager
def no_collection() -> Iterator[None]:
    """No cyclic collection while the block runs (a repolish of every widget); what was garbage before goes
    first, so the block starts with nothing left to reclaim."""
    was_enabled = gc.isenabled()
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            gc.enable()
