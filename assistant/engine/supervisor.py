"""Starting, talking to and ending a runner process, and saying what happened when it died.

The runner is a fresh interpreter (`python -m assistant.engine.runner`, started with
subprocess: safe from a Qt app with threads, and independent of how the app itself
was started), talking over a socket pair wrapped in multiprocessing's Connection
(pickled, length-framed messages). Its stderr goes to its own log file, which is
where llama.cpp writes its last words (a GGML_ASSERT) before it aborts.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path

import assistant
from assistant.engine import protocol as P
from common.formatting import format_bytes
from common.logs import debug_enabled, logs_dir

log = logging.getLogger(__name__)
_KEEP_LOGS = 20
_counter = iter(range(1, 1 << 62))


class RunnerDied(Exception):
    """The runner process ended while the app was waiting for it."""


class RunnerTimeout(Exception):
    """The runner did not answer in time."""


@dataclass
class Death:
    exitcode: int | None  # negative: the signal that ended it
    log_tail: str
    killed_by_app: bool

    @property
    def signal_name(self) -> str | None:
        if self.exitcode is None or self.exitcode >= 0:
            return None
        try:
            return signal.Signals(-self.exitcode).name
        except ValueError:
            return f"signal {-self.exitcode}"

    @property
    def out_of_memory(self) -> bool:
        """It ran out of memory: llama.cpp said so before it aborted, or the system killed it."""
        tail = self.log_tail.lower()
        said = any(w in tail for w in ("bad_alloc", "failed to allocate", "cannot allocate", "out of memory",
                                       "memoryerror"))
        return (said and self.signal_name in ("SIGABRT", "SIGSEGV", "SIGKILL", None)) or \
            (self.signal_name == "SIGKILL" and not self.killed_by_app)

    def describe(self, name: str, doing: str, memory_limit: int | None = None) -> str:
        """One sentence for the user: what happened to the model's process, and what it means."""
        sig = self.signal_name
        tail = self.log_tail.lower()
        out_of_memory = any(w in tail for w in ("bad_alloc", "failed to allocate", "cannot allocate", "out of memory"))
        if out_of_memory and sig in ("SIGABRT", "SIGSEGV", "SIGKILL", None):
            allowance = f" (it may use about {format_bytes(memory_limit)})" if memory_limit else ""
            return f"llama.cpp ran out of memory while {doing} {name}{allowance}: the file asks for more than it should, or this machine has too little free memory."
        if sig == "SIGABRT":
            return f"llama.cpp aborted while {doing} {name}: the file is damaged or hostile."
        if sig in ("SIGSEGV", "SIGBUS", "SIGILL", "SIGFPE"):
            return f"llama.cpp crashed ({sig}) while {doing} {name}: the file is damaged or hostile, or this llama.cpp build has a bug."
        if sig == "SIGKILL":
            return (f"The model's process was killed while {doing} {name}, most likely because the system ran "
                    "out of memory.")
        if sig:
            return f"The model's process was ended ({sig}) while {doing} {name}."
        return f"The model's process stopped unexpectedly (exit code {self.exitcode}) while {doing} {name}."


def _runner_log_path() -> Path | None:
    try:
        folder = logs_dir() / "runner"
        folder.mkdir(parents=True, exist_ok=True)
        old = sorted(folder.glob("runner-*.log"), key=lambda p: p.stat().st_mtime)
        for p in old[:-_KEEP_LOGS]:
            p.unlink(missing_ok=True)
        return folder / f"runner-{time.strftime('%Y%m%d-%H%M%S')}-{os.getpid()}-{next(_counter)}.log"
    except OSError:  # a read-only data directory: the runner's stderr stays with the app's
        return None


class RunnerProcess:
    """One runner: started on construction, ready when the constructor returns."""

    def __init__(self, start_deadline: float = P.START_DEADLINE_SECONDS) -> None:
        self.log_path = _runner_log_path()
        parent_end, child_end = socket.socketpair()
        env = dict(os.environ)
        # The runner must run this very code, however the app was started (tests, a worktree, a zip).
        code_root = str(Path(assistant.__file__).resolve().parent.parent)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (code_root, env.get("PYTHONPATH")) if p)
        if debug_enabled():
            env["ASSISTANT_DEBUG"] = "1"
        t0 = time.perf_counter()
        stderr = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115 - handed to the child
        try:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "assistant.engine.runner", str(child_end.fileno())],
                pass_fds=(child_end.fileno(),), stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                stderr=stderr, env=env, close_fds=True)
        finally:
            if stderr is not None:
                stderr.close()
            child_end.close()  # only the child holds it now: its death reads as EOF here
        self.conn = Connection(parent_end.detach())
        self._send_lock = threading.Lock()
        self.killed_by_app = False
        try:
            msg = self.recv(start_deadline)
        except RunnerTimeout:
            self.kill()
            raise RunnerTimeout(f"no answer within {start_deadline:.0f} s") from None
        except RunnerDied:
            death = self.death()  # logs its last output: an import error, a missing library
            where = f"; {self.log_path} has the details" if self.log_path else ""
            raise RunnerDied(f"exit code {death.exitcode}{where}") from None
        if msg[0] != P.READY:
            self.kill()
            raise RunnerDied(f"unexpected first message {msg[0]!r}")
        self.pid: int = msg[1]
        self.startup_ms = round((time.perf_counter() - t0) * 1000, 1)
        log.info("runner %d started in %.0f ms (log %s)", self.pid, self.startup_ms, self.log_path)

    # --- Talking
    def send(self, msg) -> None:
        with self._send_lock:
            try:
                self.conn.send(msg)
            except (BrokenPipeError, ConnectionResetError, OSError) as exc:
                raise RunnerDied(str(exc)) from exc

    def recv(self, timeout: float | None = None):
        """The next message; RunnerDied if the process ended, RunnerTimeout after `timeout` seconds."""
        try:
            if timeout is not None and not self.conn.poll(timeout):
                raise RunnerTimeout()
            return self.conn.recv()
        except (EOFError, ConnectionResetError, BrokenPipeError) as exc:
            raise RunnerDied(str(exc)) from exc
        except OSError as exc:  # the connection was closed under us (kill from another thread)
            raise RunnerDied(str(exc)) from exc

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def _join(self, timeout: float) -> None:
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            pass

    # --- Ending
    def kill(self) -> None:
        """End it now (SIGKILL): for a runner that does not answer. Safe to call twice, from any thread."""
        self.killed_by_app = True
        if self.alive:
            self.process.kill()
        self._join(5)

    def stop(self, grace: float = 2.0) -> None:
        """Ask it to exit (it frees the model first); kill it if it does not within `grace` seconds."""
        if self.alive:
            try:
                self.send((P.SHUTDOWN,))
            except RunnerDied:
                pass
            self._join(grace)
        if self.alive:
            log.warning("runner %s did not exit within %.1f s; killing it", self.pid_or_none, grace)
            self.kill()
        self._close()

    def _close(self) -> None:
        try:
            self.conn.close()
        except OSError:
            pass
        if self.log_path and self.process.returncode == 0:
            self.log_path.unlink(missing_ok=True)  # a clean exit leaves nothing worth reading

    @property
    def pid_or_none(self) -> int | None:
        return getattr(self, "pid", None) or self.process.pid

    def death(self) -> Death:
        """What ended the process (call after RunnerDied); logs llama.cpp's last words."""
        self._join(2)
        tail = self._log_tail()
        death = Death(exitcode=self.process.returncode, log_tail=tail, killed_by_app=self.killed_by_app)
        if not death.killed_by_app:
            log.error("runner %s ended (exit code %s); its last output:\n%s", self.pid_or_none, death.exitcode,
                      tail or "(none)")
        try:
            self.conn.close()
        except OSError:
            pass
        return death

    def _log_tail(self, n_bytes: int = 4000) -> str:
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as f:
                f.seek(0, os.SEEK_END)
                f.seek(max(0, f.tell() - n_bytes))
                return f.read().decode("utf-8", errors="replace")
        except OSError:
            return ""
