"""The one generic way the window runs slow work off the UI thread.

In the manner of superqt's thread workers: `run_in_background(fn, on_done, on_error)`
calls `fn()` on a worker thread and hands its result (or its exception) back on
the UI thread, through a queued signal. Every slow call the window makes (the
Hub, the disk, fit figures, a model load through the chat service) goes through
here rather than through a thread written by hand for each feature.
"""

from __future__ import annotations

import logging
import threading
import time

import shiboken6
from PySide6.QtCore import QObject, Signal, Slot

from common.errors import UserError

log = logging.getLogger(__name__)
_RELAYS: set = set()
_THREADS: set = set()


class _Relay(QObject):
    """Lives on the UI thread; the worker emits into it and the queued slot calls back there."""

    delivered = Signal(bool, object)

    def __init__(self, on_done, on_error, context):
        super().__init__()
        self.on_done, self.on_error, self.context = on_done, on_error, context
        self.delivered.connect(self._deliver)

    @Slot(bool, object)
    def _deliver(self, ok: bool, value) -> None:
        _RELAYS.discard(self)
        if self.context is not None and not shiboken6.isValid(self.context):
            return  # the widget that asked is gone
        callback = self.on_done if ok else self.on_error
        if callback is not None:
            callback(value)
        self.deleteLater()


def run_in_background(fn, on_done=None, on_error=None, *, context: QObject | None = None) -> threading.Thread:
    """Call `fn()` on a worker thread; `on_done(result)` or `on_error(exception)` then run on the UI thread.

    With `context`, the callbacks are skipped if that object was deleted meanwhile.
    """
    relay = _Relay(on_done, on_error, context)
    _RELAYS.add(relay)

    def work():
        try:
            result, ok = fn(), True
        except Exception as exc:  # handed to the UI thread, never swallowed
            if not isinstance(exc, UserError):
                log.exception("a background call failed")
            result, ok = exc, False
        try:
            relay.delivered.emit(ok, result)
        except RuntimeError:  # the application is shutting down
            pass
        finally:
            _THREADS.discard(threading.current_thread())

    thread = threading.Thread(target=work, name="ui-background", daemon=True)
    _THREADS.add(thread)
    thread.start()
    return thread


def wait_for_background(timeout_s: float = 3.0) -> bool:
    """Join the background calls still running (at most `timeout_s` in all); True if none is left."""
    deadline = time.monotonic() + timeout_s
    for thread in list(_THREADS):
        thread.join(max(0.0, deadline - time.monotonic()))
    return not any(t.is_alive() for t in list(_THREADS))


def background_busy() -> bool:
    """True while a run_in_background call has not delivered yet (tests wait on it)."""
    return bool(_RELAYS)


