"""A small JSON file of settings in the data directory (so ASSISTANT_HOME isolates them too).

Written atomically under a file lock: read, change, write a unique temporary file,
fsync, rename. Two windows, or a window and a CLI, never lose each other's
change, and a crash never leaves half a file. A damaged file is moved aside with
a warning in the log and the defaults are used; nothing else depends on it.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from common.paths import data_dir

log = logging.getLogger(__name__)


class SettingsStore:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "settings.json"
        self._lock = threading.Lock()

    def load(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            self._set_aside(exc)
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.load().get(key, default)

    def update(self, values: dict[str, Any]) -> None:
        """Set several keys at once (read-modify-write under the lock). A read-only data folder is logged, not fatal."""
        with self._lock:
            try:
                self.path.parent.mkdir(parents=True, exist_ok=True)
                with FileLock(str(self.path) + ".lock", timeout=10):
                    data = self.load()
                    data.update(values)
                    self._write(data)
            except (OSError, Timeout) as exc:
                log.warning("settings could not be saved to %s: %s", self.path, exc)

    def set(self, key: str, value: Any) -> None:
        self.update({key: value})

    def _write(self, data: dict[str, Any]) -> None:
        tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
        with open(tmp, "w", encoding="utf-8") as f:
            json.dump(data, f, indent=2, ensure_ascii=False)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)

    def _set_aside(self, exc: Exception) -> None:
        target = self.path.with_name(f"{self.path.stem}.damaged-{time.strftime('%Y%m%dT%H%M%S')}{self.path.suffix}")
        try:
            os.replace(self.path, target)
            log.warning("the settings file %s was damaged (%s); moved to %s, defaults in use", self.path, exc, target)
        except OSError:
            log.warning("the settings file %s cannot be read (%s); defaults in use", self.path, exc)
