"""A small JSON file of settings in the data directory (so ASSISTANT_HOME isolates them too).

Written atomically under a file lock: read, change, write a unique temporary file,
fsync, rename. Two windows, or a window and a CLI, never lose each other's
change, and a crash never leaves half a file. A damaged file is moved aside with
a warning in the log and the defaults are used; nothing else depends on it.

Values are checked when they are read (`SettingsStore.checked`): a hand-edited
`"temperature": "hot"` or `"top_k": 1e309` is replaced by the default, with a notice that
names the file, rather than failing every request that uses it.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from filelock import FileLock, Timeout

from common.paths import data_dir

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Setting:
    """What one setting may hold: its type, a range or a list of choices, and whether it may be empty."""

    kind: type  # bool, int, float or str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    optional: bool = False  # None (and "") stand for "not set"
    max_chars: int = 1_000_000

    def normalized(self, value: Any) -> tuple[bool, Any]:
        """(True, the value as the app uses it) when it is allowed, else (False, None)."""
        if value is None or (self.optional and value == ""):
            return self.optional, None
        if self.kind is bool:
            return (True, value) if isinstance(value, bool) else (False, None)
        if self.kind is str:
            ok = isinstance(value, str) and len(value) <= self.max_chars
            ok = ok and (self.choices is None or value in self.choices)
            return (True, value) if ok else (False, None)
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            return False, None
        if isinstance(value, float):
            if not math.isfinite(value) or (self.kind is int and not value.is_integer()):
                return False, None
        number = int(value) if self.kind is int else float(value)
        if (self.low is not None and number < self.low) or (self.high is not None and number > self.high):
            return False, None
        return True, number

    def describe(self) -> str:
        if self.kind is bool:
            return "true or false"
        if self.kind is str:
            return ("one of " + ", ".join(self.choices)) if self.choices else \
                f"text of at most {self.max_chars:,} characters"
        what = "a whole number" if self.kind is int else "a number"
        shown = (lambda n: f"{int(n):,}") if self.kind is int else (lambda n: f"{n:g}")
        if self.low is not None and self.high is not None:
            what += f" from {shown(self.low)} to {shown(self.high)}"
        elif self.low is not None:
            what += f" of {shown(self.low)} or more"
        return what + (" (or empty)" if self.optional else "")


_notified: set[tuple[str, str, str]] = set()  # (file, key, value): each problem is told once per process
_notified_lock = threading.Lock()


class SettingsStore:
    def __init__(self, path: str | os.PathLike | None = None) -> None:
        self.path = Path(path) if path is not None else data_dir() / "settings.json"
        self._lock = threading.Lock()
        self._notices: list[str] = []

    def checked(self, values: dict[str, Any], rules: dict[str, Setting], defaults: dict[str, Any],
                section: str | None = None) -> dict[str, Any]:
        """`values` with every one that breaks its rule replaced by its default, and a notice for each
        (logged, and kept for `take_notices`). Keys without a rule pass as they are."""
        clean = dict(values)
        for key, rule in rules.items():
            if key not in values:
                continue
            ok, value = rule.normalized(values[key])
            if ok:
                clean[key] = value
                continue
            clean[key] = defaults.get(key)
            self._notice(f"{section}.{key}" if section else key, values[key], rule, defaults.get(key))
        return clean

    def _notice(self, name: str, value: Any, rule: Setting, default: Any) -> None:
        if isinstance(value, float) and not math.isfinite(value):
            shown = "an endless number" if not math.isnan(value) else "not a number"
        else:
            shown = json.dumps(value, ensure_ascii=False, default=str)
        if len(shown) > 60:
            shown = shown[:60] + "…"
        key = (str(self.path), name, shown)
        with _notified_lock:
            if key in _notified:
                return
            _notified.add(key)
        default_text = "not set" if default in (None, "") else json.dumps(default, ensure_ascii=False)
        message = (f"In {self.path}, the setting {name} is {shown}, which is not {rule.describe()}; "
                   f"the default ({default_text}) is used instead.")
        log.warning("%s", message)
        self._notices.append(message)

    def take_notices(self) -> list[str]:
        """The settings problems found since the last call (each told once per process), for a front end to show."""
        notices, self._notices = self._notices, []
        return notices

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
