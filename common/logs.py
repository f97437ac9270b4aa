"""Logging for the whole app: a rotating log file in the data directory.

A person reads one sentence; the log keeps the details (tracebacks, llama.cpp's
own last words before an abort). `ASSISTANT_DEBUG=1` also shows the log on the
terminal.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

from common.paths import data_dir

LOG_NAME = "hearth.log"
_FORMAT = "%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"
_configured: set[str] = set()


def logs_dir() -> Path:
    path = data_dir() / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


def debug_enabled() -> bool:
    return os.environ.get("ASSISTANT_DEBUG", "").strip().lower() not in ("", "0", "false", "no")


class _QuietFileHandler(logging.handlers.RotatingFileHandler):
    """The log file, which may stop taking records (a full disk): then they are lost, quietly. Logging's own
    default prints a traceback on stderr for each one, over whatever sentence the user should be reading."""

    def handleError(self, record: logging.LogRecord) -> None:
        if debug_enabled():
            super().handleError(record)


def setup_logging() -> Path | None:
    """Send the app's log records to the rotating file (and the terminal when debugging).

    Idempotent per data directory; a data directory that cannot be written leaves
    logging on the terminal only, which must not stop the app.
    """
    root = logging.getLogger()
    root.setLevel(logging.DEBUG if debug_enabled() else logging.INFO)
    path: Path | None = None
    try:
        path = logs_dir() / LOG_NAME
        if str(path) not in _configured:
            handler = _QuietFileHandler(path, maxBytes=2_000_000, backupCount=3, encoding="utf-8")
            handler.setFormatter(logging.Formatter(_FORMAT))
            root.addHandler(handler)
            _configured.add(str(path))
    except OSError:
        path = None
    if debug_enabled() and "stderr" not in _configured:
        terminal = logging.StreamHandler(sys.stderr)
        terminal.setFormatter(logging.Formatter(_FORMAT))
        root.addHandler(terminal)
        _configured.add("stderr")
    return path
