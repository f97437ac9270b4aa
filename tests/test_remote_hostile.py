"""A remote server that misbehaves (endless answers, silence, TLS where there is none) costs one
sentence and never the app's memory or a frozen request. The servers here are real sockets."""

from __future__ import annotations

import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistant.engine import GenerationSettings
from assistant.engine import remote as remote_engine
from assistant.engine.remote import RemoteEngine, RemoteError
from assistant.remotes import Remote


class _Hostile(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "endless"

    def log_message(self, *args):  # quiet
        pass

    def _endless(self, unit: bytes) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        try:
            for _ in range(10_000):  # 640 MB if nobody stops reading
                self.wfile.write(b"%x\r\n%s\r\n" % (len(unit), unit))
        except OSError:
            pass  # the client hung up: what it should do

    def do_GET(self):
        if self.path.endswith("/v1/models") and self.mode == "endless":
            self._endless(b"[" * 65536)
        elif self.path.endswith("/v1/models") and self.mode == "endless-reply":
            body = b'{"object": "list", "data": [{"id": "m", "object": "model"}]}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        elif self.mode == "silent":
            time.sleep(5)
        else:
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        if self.mode == "silent":
            time.sleep(5)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        first = b'data: {"choices": [{"delta": {"content": "Hi"}, "index": 0}]}\n\n'
        self.wfile.write(b"%x\r\n%s\r\n" % (len(first), first))
        unit = b"data: " + b"x" * 65536  # then one line that never ends
        try:
            for _ in range(10_000):
                self.wfile.write(b"%x\r\n%s\r\n" % (len(unit), unit))
        except OSError:
            pass


@pytest.fixture
def hostile():
    servers = []

    def start(mode: str) -> Remote:
        handler = type("Handler", (_Hostile,), {"mode": mode})
        httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        httpd.daemon_threads = True
        threading.Thread(target=httpd.serve_forever, daemon=True).start()
        servers.append(httpd)
        return Remote("odd", f"http://127.0.0.1:{httpd.server_address[1]}")

    yield start
    for httpd in servers:
        httpd.shutdown()
        httpd.server_close()


def test_an_endless_model_list_is_one_sentence(hostile):
    engine = RemoteEngine(hostile("endless"))
    with pytest.raises(RemoteError, match="more than 8.0 MB; that is not a model list"):
        engine.list_models()


def test_an_endless_line_in_a_reply_stops_it_with_what_came_before(hostile):
    engine = RemoteEngine(hostile("endless-reply"))
    engine.load("m")
    response = engine.chat([{"role": "user", "content": "Hi"}], GenerationSettings(max_tokens=8))
    assert "".join(response) == "Hi"
    assert "sent a line of more than 1.0 MB" in response.stats.error


def test_a_silent_server_is_one_sentence_after_the_read_timeout(hostile, monkeypatch):
    monkeypatch.setattr(remote_engine, "LIST_SECONDS", 0.5)
    engine = RemoteEngine(hostile("silent"))
    started = time.monotonic()
    with pytest.raises(RemoteError, match="stopped sending for 0.5 s while listing its models"):
        engine.list_models()
    assert time.monotonic() - started < 4


def test_https_to_a_plain_http_server_says_tls(hostile):
    plain = hostile("endless")
    engine = RemoteEngine(Remote("odd", plain.url.replace("http://", "https://")))
    with pytest.raises(RemoteError, match="TLS connection to odd .* failed"):
        engine.list_models()


def test_a_server_that_never_accepts_is_one_sentence():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # bound, never listening: connection refused
        engine = RemoteEngine(Remote("gone", f"http://127.0.0.1:{port}"))
        with pytest.raises(RemoteError, match="cannot be reached"):
            engine.list_models()
