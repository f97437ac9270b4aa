"""A remote's thinking, however the server sends it, lands in the reply's `thinking` with its token
count: llama-server's and vLLM's `reasoning_content`, Ollama's `reasoning`, or tags inline in the
content from a server that does not parse them. The servers are real sockets on loopback."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from assistant.chat_service import ChatService, TurnFinished, TurnRequest, TurnText
from assistant.engine import GenerationSettings
from assistant.engine.remote import RemoteEngine
from assistant.history import HistoryStore
from assistant.remotes import Remote

THOUGHT = ["Let", " me", " add", ":", " 2", "+2", "."]
ANSWER = ["It", " is", " 4", "."]


def _deltas(style: str) -> list[dict]:
    if style in ("reasoning_content", "reasoning"):  # llama-server / vLLM, Ollama / OpenRouter: one token a chunk
        return [{style: t} for t in THOUGHT] + [{"content": t} for t in ANSWER]
    # Inline tags, as a server that passes the model's text through sends them: delimiters split across chunks.
    text = "<think>\n" + "".join(THOUGHT) + "\n</think>\n\n" + "".join(ANSWER)
    return [{"content": text[i:i + 3]} for i in range(0, len(text), 3)]


def _server(style: str, usage_extra: dict | None = None):
    bodies: list[dict] = []

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
            self._send(b'{"object": "list", "data": [{"id": "qwen", "object": "model"}]}', "application/json")

        def do_POST(self):
            bodies.append(json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0)))))
            events = [{"choices": [{"index": 0, "delta": d}]} for d in _deltas(style)]
            usage = {"prompt_tokens": 9, "completion_tokens": len(THOUGHT) + len(ANSWER) + 4,
                     "total_tokens": 9 + len(THOUGHT) + len(ANSWER) + 4, **(usage_extra or {})}
            events.append({"choices": [{"index": 0, "delta": {}, "finish_reason": "stop"}], "usage": usage})
            body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
            self._send(body.encode(), "text/event-stream")

    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.daemon_threads = True
    threading.Thread(target=httpd.serve_forever, daemon=True).start()
    return httpd, bodies


@pytest.fixture(params=["reasoning_content", "reasoning", "inline"])
def style(request):
    return request.param


def test_remote_thinking_lands_in_the_thinking_field(style):
    httpd, bodies = _server(style)
    try:
        engine = RemoteEngine(Remote("box", f"http://127.0.0.1:{httpd.server_address[1]}"))
        engine.load("qwen")
        response = engine.chat([{"role": "user", "content": "2+2?"}],
                               GenerationSettings(max_tokens=64, thinking="on", thinking_effort="low",
                                                  thinking_budget=100))
        pieces = list(response.pieces())
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert "".join(p.text for p in pieces if p.kind == "answer") == "It is 4."
    assert "".join(p.text for p in pieces if p.kind == "thinking").strip() == "Let me add: 2+2."
    stats = response.stats
    assert stats.reply == "It is 4." and stats.thinking == "Let me add: 2+2."
    assert stats.completion_tokens == 15  # the server's usage: every generated token
    if style == "inline":  # counted from the stream: the chunks that carried thinking, delimiters included
        assert 8 <= stats.thinking_tokens <= 11
    else:
        assert stats.thinking_tokens == len(THOUGHT)
    assert stats.answer_tokens == stats.completion_tokens - stats.thinking_tokens
    assert stats.thinking_ms >= 0 and not stats.thinking_unfinished
    # The controls went out in the names servers read.
    body = bodies[0]
    assert body["chat_template_kwargs"] == {"enable_thinking": True}
    assert body["reasoning_effort"] == "low" and body["thinking_budget_tokens"] == 100


def test_the_servers_reasoning_token_count_is_used_when_it_gives_one():
    httpd, _ = _server("reasoning_content", {"completion_tokens_details": {"reasoning_tokens": 9}})
    try:
        engine = RemoteEngine(Remote("box", f"http://127.0.0.1:{httpd.server_address[1]}"))
        engine.load("qwen")
        response = engine.chat([{"role": "user", "content": "2+2?"}], GenerationSettings(max_tokens=64))
        response.text()
    finally:
        httpd.shutdown()
        httpd.server_close()
    assert response.stats.thinking_tokens == 9 and response.stats.answer_tokens == 6


def test_a_remote_reply_is_saved_with_its_thinking(tmp_path, style):
    from assistant import remotes
    from assistant.engine import EngineRouter

    httpd, _ = _server(style)
    store = HistoryStore.open(tmp_path / "history.db")
    remotes.add("box", f"http://127.0.0.1:{httpd.server_address[1]}")
    service = ChatService(EngineRouter(), store)
    try:
        service.load("qwen@box").result(30)
        handle = service.submit(TurnRequest(text="2+2?", settings=GenerationSettings(max_tokens=64)))
        events = list(handle.events(timeout=30))
    finally:
        service.close()
        httpd.shutdown()
        httpd.server_close()
    done = events[-1]
    assert isinstance(done, TurnFinished)
    kinds = [e.kind for e in events if isinstance(e, TurnText)]
    assert kinds[0] == "thinking" and kinds[-1] == "answer"
    saved = store.get_message(done.reply_id)
    assert saved.content == "It is 4." and saved.thinking == "Let me add: 2+2."
    store.close()
