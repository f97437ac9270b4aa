"""A remote server's own figures for a reply, in whichever format it sends them, land beside the
figures measured here. The servers are real sockets on loopback that answer as each peer does."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistant.engine import GenerationSettings
from assistant.engine.remote import RemoteEngine
from assistant.remotes import Remote
from assistant.stats_format import format_stats_line as stats_line

LAST_CHUNKS = {
    "llama-server timings": {"timings": {"predicted_per_second": 41.0, "prompt_per_second": 300.0,
                                         "prompt_ms": 12.0, "predicted_n": 3}},
    "LM Studio stats": {"stats": {"tokens_per_second": 41.0, "time_to_first_token": 0.05,
                                  "generation_time": 0.07, "stop_reason": "eosFound"}},
    "Ollama durations": {"eval_count": 3, "eval_duration": 73_170_732, "prompt_eval_count": 9,
                         "prompt_eval_duration": 30_000_000},
    None: {},  # vLLM, Ollama's /v1: usage only
}


def _server(extra: dict):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _send(self, body: bytes, kind: str):
            self.send_response(200)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            self._send(b'{"object": "list", "data": [{"id": "m", "object": "model"}]}', "application/json")

        def do_POST(self):
            self.rfile.read(int(self.headers.get("Content-Length", 0)))
            events = [{"choices": [{"index": 0, "delta": {"content": word}}]} for word in ("One", " two", " three")]
            events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}],
                           "usage": {"prompt_tokens": 9, "completion_tokens": 3, "total_tokens": 12}, **extra})
            body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(body.encode(), "text/event-stream")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.mark.parametrize("source", list(LAST_CHUNKS))
def test_the_servers_own_speed_is_kept_beside_ours(source):
    httpd = _server(LAST_CHUNKS[source])
    try:
        engine = RemoteEngine(Remote("box", f"http://127.0.0.1:{httpd.server_address[1]}"))
        engine.load("m")
        response = engine.chat([{"role": "user", "content": "Count."}], GenerationSettings(max_tokens=8))
        assert "".join(response) == "One two three"
    finally:
        httpd.shutdown()
        httpd.server_close()
    stats = response.stats.to_dict()
    transport = stats["transport"]
    assert stats["completion_tokens"] == 3 and stats["stop_reason"] == "eos"
    assert transport["server_figures_from"] == source
    if source is None:
        assert transport["server_gen_tps"] is None
        assert "server" not in stats_line(stats)
    else:
        assert transport["server_gen_tps"] == pytest.approx(41.0, rel=0.01)
        assert stats_line(stats).startswith("server 41.0 tok/s, received ")
    assert all(v is None for v in stats["memory"].values())  # never this machine's memory for a remote model


def _llama_server_like(tokens: list[int] | None):
    """Answers /props, /apply-template and /tokenize as llama-server does (tokens None: /tokenize fails)."""
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def _json(self, value, status=200):
            body = json.dumps(value).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            if self.path == "/props":
                self._json({"build_info": "b9999", "default_generation_settings": {"n_ctx": 4096}})
            else:
                self._json({"object": "list", "data": [{"id": "m", "object": "model"}]})

        def do_POST(self):
            body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))))
            if self.path == "/apply-template":
                self._json({"prompt": "".join(f"<{m['role']}>{m['content']}" for m in body["messages"])})
            elif self.path == "/tokenize" and tokens is not None:
                self._json({"tokens": tokens})
            else:
                self._json({"error": "no"}, 404)

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd


@pytest.mark.parametrize("tokens, expected", [([1, 2, 3, 4, 5, 6, 7], 7), (None, "estimate")])
def test_llama_server_counts_a_chats_tokens_itself(tokens, expected):
    httpd = _llama_server_like(tokens)
    messages = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]
    try:
        engine = RemoteEngine(Remote("box", f"http://127.0.0.1:{httpd.server_address[1]}"))
        summary = engine.load("m")
        assert summary.backend["software"] == "llama.cpp" and summary.n_ctx == 4096
        count = engine.count_tokens(messages)
    finally:
        httpd.shutdown()
        httpd.server_close()
    estimate = sum(len(m["content"]) for m in messages) // 4 + 4 * len(messages)
    assert count == (estimate if expected == "estimate" else expected)
