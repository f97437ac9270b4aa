"""An OpenAI-compatible server that misbehaves on purpose, one way per mode, on a real socket.

Its model list is sound (so `assistant remote add` and `chat --remote` get as far as a reply);
its chat replies are not:

    sound          a short, correct reply (the baseline)
    gzip-bomb      a gzip body that inflates to 2 GB of newlines (a few MB on the wire)
    endless        content events, as fast as the socket takes them, forever
    drip           one content event, then one byte a second inside a line that never ends
    blank-lines    one content event, then a blank line every 20 ms, forever
    comments       one content event, then an SSE comment (": ping") every 20 ms, forever
    escapes        a reply that tries to act on the terminal (title, clear screen, bidi override), split
                   across events mid-sequence and mid-character
    number-content content as a number
    string-choices choices as a string
    not-json       a data line that is not JSON
    brotli         a body in an encoding the client never asked for
    huge-error     a 500 with an endless body
    list-gzip-bomb the model list itself is a gzip bomb

`python -m tests.support.hostile_remote MODE` serves one mode and prints its URL (for trying it by hand).
"""

from __future__ import annotations

import json
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODEL = "m"
# A reply that tries to set the window title, clear the screen, switch to the alternate screen, hide text
# and turn a line around; an escape sequence is split across events, and (on the wire) characters across chunks.
ESCAPES = ["Hello \x1b]0;pwned\x07", "\x1b[2J\x1b[?1049h\x1b", "[8m hidden \u202eevil caf\u00e9 ",
           "\u65e5\u672c \U0001f600\r\n", "\x9b31m done\x00\u2028end"]


def _event(content=None, *, raw: dict | None = None) -> bytes:
    data = raw if raw is not None else {"choices": [{"index": 0, "delta": {"content": content}}]}
    return b"data: " + json.dumps(data, ensure_ascii=False).encode() + b"\n\n"


class HostileHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    mode = "endless"

    def log_message(self, *args):  # quiet
        pass

    # --- plumbing
    def _start(self, status: int = 200, content_type: str = "text/event-stream", **headers: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Transfer-Encoding", "chunked")
        for name, value in headers.items():
            self.send_header(name.replace("_", "-"), value)
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:
            self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
            self.wfile.flush()

    def _gzip_bomb(self, unit: bytes, total: int) -> None:
        squeeze = zlib.compressobj(9, zlib.DEFLATED, 31)
        block = unit * (16_000_000 // len(unit))
        sent = 0
        while sent < total:
            self._chunk(squeeze.compress(block) + squeeze.flush(zlib.Z_SYNC_FLUSH))
            sent += len(block)
        self._chunk(squeeze.flush())

    # --- requests
    def do_GET(self):
        if not self.path.endswith("/models"):
            self.send_response(404)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        try:
            if self.mode == "list-gzip-bomb":
                self._start(content_type="application/json", Content_Encoding="gzip")
                self._gzip_bomb(b"[", 2_000_000_000)
                self.wfile.write(b"0\r\n\r\n")
                return
            body = json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)
        except OSError:
            pass  # the client hung up: what it should do

    def do_POST(self):
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        try:
            getattr(self, "_reply_" + self.mode.replace("-", "_"))()
        except OSError:
            pass  # the client hung up

    def _reply_sound(self):
        """A well-behaved reply: the baseline the others are measured against."""
        self._start()
        for piece in ("Hello", " there", "."):
            self._chunk(_event(piece))
        self._chunk(_event(raw={"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}))
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _reply_gzip_bomb(self):
        self._start(Content_Encoding="gzip")
        self._gzip_bomb(b"\n", 2_000_000_000)
        self.wfile.write(b"0\r\n\r\n")

    def _reply_endless(self):
        self._start()
        while True:
            self._chunk(_event("tok ") * 20)

    def _reply_drip(self):
        self._start()
        self._chunk(_event("Hi"))
        self._chunk(b"data: ")
        while True:
            time.sleep(1.0)
            self._chunk(b"x")

    def _reply_blank_lines(self):
        self._start()
        self._chunk(_event("Hi"))
        while True:
            time.sleep(0.02)
            self._chunk(b"\n")

    def _reply_comments(self):
        self._start()
        self._chunk(_event("Hi"))
        while True:
            time.sleep(0.02)
            self._chunk(b": ping\n\n")

    def _reply_escapes(self):
        self._start()
        body = b"".join(_event(piece) for piece in ESCAPES)
        body += _event(raw={"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}]}) + b"data: [DONE]\n\n"
        for i in range(0, len(body), 7):  # 7-byte chunks: multi-byte characters land split across them
            self._chunk(body[i:i + 7])
        self.wfile.write(b"0\r\n\r\n")

    def _reply_number_content(self):
        self._start()
        self._chunk(_event(raw={"choices": [{"index": 0, "delta": {"content": 12345}}]}))
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _reply_string_choices(self):
        self._start()
        self._chunk(_event(raw={"choices": "Hello"}))
        self._chunk(b"data: [DONE]\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _reply_not_json(self):
        self._start()
        self._chunk(b"data: {not json\n\n")
        self.wfile.write(b"0\r\n\r\n")

    def _reply_brotli(self):
        self._start(Content_Encoding="br")
        self._chunk(b"\x8b\x02\x80" * 100)
        self.wfile.write(b"0\r\n\r\n")

    def _reply_huge_error(self):
        self._start(500, "application/json")
        self._chunk(b'{"error": {"message": "' + b"x" * 1000)
        while True:
            self._chunk(b"y" * 65536)


def serve(mode: str) -> tuple[ThreadingHTTPServer, str]:
    """A server in `mode` on a free port, in a daemon thread; returns it and its base URL."""
    handler = type("Handler", (HostileHandler,), {"mode": mode})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, f"http://127.0.0.1:{httpd.server_address[1]}"


if __name__ == "__main__":
    import sys

    server, url = serve(sys.argv[1] if len(sys.argv) > 1 else "endless")
    print(url, flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        server.shutdown()
