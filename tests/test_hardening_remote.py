"""Issue 20, remote replies: every way a server can misbehave ends in bounded memory and time, with a
sentence; nothing it sends reaches the terminal as a control sequence.

The server (tests/support/hostile_remote.py) is a real socket server; the client is the app's own
RemoteEngine, and the command line in-process where the exit code and the terminal matter.
"""

from __future__ import annotations

import threading
import time

import psutil
import pytest

from assistant import remotes
from assistant.cli.main import main
from assistant.engine import GenerationSettings
from assistant.engine import remote as remote_engine
from assistant.engine.remote import RemoteEngine, RemoteError
from assistant.remotes import Remote
from common.terminal import is_inert
from tests.support.hostile_remote import serve


class PeakRss:
    """This process's resident memory, sampled every 10 ms while the block runs: the peak above the start."""

    def __enter__(self) -> PeakRss:
        self._proc = psutil.Process()
        self.start = self.peak = self._proc.memory_info().rss
        self._done = threading.Event()
        self._thread = threading.Thread(target=self._sample, daemon=True)
        self._thread.start()
        self.t0 = time.monotonic()
        return self

    def _sample(self) -> None:
        while not self._done.wait(0.01):
            self.peak = max(self.peak, self._proc.memory_info().rss)

    def __exit__(self, *exc) -> None:
        self.seconds = time.monotonic() - self.t0
        self._done.set()
        self._thread.join()

    @property
    def grew_mb(self) -> float:
        return (self.peak - self.start) / 1e6


@pytest.fixture
def hostile():
    servers = []

    def start(mode: str) -> Remote:
        httpd, url = serve(mode)
        servers.append(httpd)
        return Remote("odd", url)

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def _reply(remote: Remote, **settings) -> tuple[str, object]:
    engine = RemoteEngine(remote)
    engine.load("m")
    response = engine.chat([{"role": "user", "content": "Hi"}], GenerationSettings(**settings))
    return "".join(response), response.stats


def test_a_gzip_bomb_stops_at_the_reply_limit_counted_after_inflating(hostile):
    with PeakRss() as peak:
        text, stats = _reply(hostile("gzip-bomb"))
    assert text == "" and stats.stop_reason == "error"
    assert "sent more than 64.0 MB for one reply" in stats.error
    # Generous: the client reads 64 MB of newlines a 64 kB piece at a time (measured: ~10 MB, ~1 s).
    assert peak.grew_mb < 150 and peak.seconds < 30, (peak.grew_mb, peak.seconds)


def test_a_gzip_bomb_as_a_model_list_is_one_sentence(hostile):
    with PeakRss() as peak, pytest.raises(RemoteError, match="more than 8.0 MB; that is not a model list"):
        RemoteEngine(hostile("list-gzip-bomb")).list_models()
    assert peak.grew_mb < 100 and peak.seconds < 20, (peak.grew_mb, peak.seconds)


def test_an_endless_reply_stops_at_max_tokens_on_this_side(hostile):
    with PeakRss() as peak:
        text, stats = _reply(hostile("endless"), max_tokens=50)
    assert stats.stop_reason == "length" and stats.completion_tokens == 50 and text == "tok " * 50
    assert peak.seconds < 10


@pytest.mark.parametrize("mode", ["drip", "blank-lines", "comments"])
def test_a_server_that_keeps_the_socket_busy_but_sends_nothing_is_given_up_on(hostile, monkeypatch, mode):
    monkeypatch.setattr(remote_engine, "PIECE_STALL_SECONDS", 1.5)
    started = time.monotonic()
    text, stats = _reply(hostile(mode))
    assert text == "Hi" and stats.stop_reason == "error"
    assert "stopped sending its reply: nothing for 1.5 s" in stats.error
    assert time.monotonic() - started < 8


def test_the_overall_deadline_ends_a_reply_that_never_stalls(hostile):
    started = time.monotonic()
    text, stats = _reply(hostile("endless"), max_tokens=None, reply_deadline_s=1.0)
    assert stats.stop_reason == "error" and "took more than 1 s for this reply" in stats.error
    assert text.startswith("tok ") and time.monotonic() - started < 6


@pytest.mark.parametrize("mode, what", [("number-content", "the text is a number"),
                                        ("string-choices", "'choices' is text, not a list"),
                                        ("not-json", "an event that is not JSON")])
def test_wrong_types_are_a_broken_reply(hostile, mode, what):
    text, stats = _reply(hostile(mode))
    assert text == "" and stats.stop_reason == "error"
    assert f"odd sent a broken reply ({what})" in stats.error


def test_an_encoding_never_asked_for_is_one_sentence(hostile):
    _, stats = _reply(hostile("brotli"))
    assert "answered in an encoding this app does not read (br)" in stats.error


def test_an_endless_error_body_is_read_only_as_far_as_a_sentence(hostile):
    with PeakRss() as peak:
        _, stats = _reply(hostile("huge-error"))
    assert stats.error.startswith("odd answered 500") and len(stats.error) < 400
    assert peak.seconds < 10 and peak.grew_mb < 100


# --- The command line: the exit code and the terminal -----------------------------------------------------


def _chat(capsys, remote: Remote, *args: str) -> tuple[int, str, str]:
    remotes.add("odd", remote.url)
    code = main(["chat", "--no-save", "--remote", "odd", "-m", "m", *args, "Hi"])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_reply_full_of_escapes_reaches_the_terminal_inert(hostile, capsys):
    code, out, err = _chat(capsys, hostile("escapes"))
    assert code == 0 and is_inert(out) and is_inert(err), (out, err)
    assert "Hello \\e]0;pwned\\x07\\e[2J\\e[?1049h\\e[8m hidden \\u202eevil café 日本 😀\n\\x9b31m" in out
    assert "\\u2028end" in out


@pytest.mark.parametrize("mode", ["number-content", "string-choices"])
def test_a_broken_reply_exits_non_zero_with_a_sentence(hostile, capsys, mode):
    code, _, err = _chat(capsys, hostile(mode))
    assert code == 1 and "odd sent a broken reply" in err


def test_max_tokens_ends_an_endless_remote_reply_from_the_command_line(hostile, capsys):
    started = time.monotonic()
    code, out, _ = _chat(capsys, hostile("endless"), "-n", "50")
    assert code == 0 and out.count("tok") == 50 and time.monotonic() - started < 15


def test_the_reply_deadline_flag_ends_a_drip(hostile, capsys):
    started = time.monotonic()
    code, out, err = _chat(capsys, hostile("drip"), "--reply-deadline", "2")
    assert code == 1 and out.startswith("Hi") and "took more than 2 s for this reply" in err
    assert time.monotonic() - started < 10


def test_models_list_does_not_wait_long_for_a_dead_remote(monkeypatch, capsys):
    import socket

    with socket.socket() as s:  # listening, never accepting: a server that hangs
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        remotes.add("dead", f"http://127.0.0.1:{s.getsockname()[1]}")
        started = time.monotonic()
        code = main(["models", "list", "--installed"])
        waited = time.monotonic() - started
    out, _ = capsys.readouterr()
    assert code == 0 and "dead:" in out and waited < 12, (waited, out)
