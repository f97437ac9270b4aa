"""Issue 20, the local API server under abuse: idle and half-sent connections time out within seconds, one
client cannot hold every slot, refusals are JSON in OpenAI's format, and a settings file with wrong values
does not turn every request into a 500. The real server on loopback, the real `openai` client."""

from __future__ import annotations

import json
import socket
import time

import httpx
import openai
import pytest

from assistant.engine import LoadSettings, LocalEngine
from assistant.server import ServerConfig, ServerController
from assistant.server import connections
from assistant.server.security import host_name
from tests.support.window import open_services

pytestmark = pytest.mark.llama_cpp

HI = [{"role": "user", "content": "Say hello."}]


@pytest.fixture
def server(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.setattr(connections, "HEAD_SECONDS", 1.5)
    monkeypatch.setattr(connections, "BODY_SECONDS", 1.5)
    monkeypatch.setattr("assistant.server.app.BODY_SECONDS", 1.5)
    # A settings file edited by hand, with values of the wrong type: the defaults stand in, with a notice.
    (tmp_path / "settings.json").write_text(json.dumps(
        {"defaults": {"temperature": "hot", "top_k": 1e309, "seed": "abc", "max_tokens": "many"},
         "server": {"port": "eighty", "save_conversations": "yes"}}).replace("Infinity", "1e309"))
    services = open_services(tmp_path, LocalEngine())
    model = services.chat.load(str(tiny_model_path), LoadSettings(n_ctx=256, n_threads=1)).result(120)
    controller = ServerController(services, ServerConfig(port=0))
    controller.start()
    try:
        yield controller, model.name
    finally:
        controller.stop()
        services.close()


def _port(controller: ServerController) -> int:
    assert controller.port is not None
    return controller.port


def _client(controller: ServerController) -> openai.OpenAI:
    return openai.OpenAI(base_url=controller.url, api_key="none", max_retries=0, timeout=30)


def test_a_normal_request_is_answered_while_300_idle_connections_are_open(server):
    controller, model = server
    client = _client(controller)  # no retries: its kept-alive connection must survive the flood
    client.chat.completions.create(model=model, messages=HI, max_tokens=2, seed=1)
    idle = []
    try:
        for _ in range(300):
            s = socket.create_connection(("127.0.0.1", _port(controller)))
            idle.append(s)
        t0 = time.monotonic()
        reply = client.chat.completions.create(model=model, messages=HI, max_tokens=4, seed=1)
        took = time.monotonic() - t0
        assert reply.choices[0].message.content is not None and took < 20, took
        health = httpx.get(controller.url.replace("/v1", "/health"), timeout=10)
        assert health.status_code == 200 and health.json()["status"] == "ok"
    finally:
        for s in idle:
            s.close()


def test_one_client_past_its_limit_evicts_its_own_oldest_idle_connection(server):
    controller, model = server
    book = controller.connections
    book.per_client = 20  # the same rule as 128 or 1,024, at a size a test can reach quickly
    idle = [socket.create_connection(("127.0.0.1", _port(controller))) for _ in range(20)]
    try:
        time.sleep(0.2)
        reply = _client(controller).chat.completions.create(model=model, messages=HI, max_tokens=2, seed=1)
        assert reply.choices and book.evicted >= 1
        idle[0].settimeout(2)
        assert idle[0].recv(1) == b""  # the oldest idle one was closed to make room
    finally:
        for s in idle:
            s.close()


def test_a_connection_that_sends_nothing_is_closed_within_seconds_with_json(server):
    controller, _ = server
    with socket.create_connection(("127.0.0.1", _port(controller))) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        answer = _read_all(s)
        waited = time.monotonic() - t0
    assert 1.0 < waited < 5, waited
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and json.loads(body)["error"]["code"] == "request_timeout"


def test_a_head_sent_a_byte_at_a_time_is_cut_off(server):
    controller, _ = server
    with socket.create_connection(("127.0.0.1", _port(controller))) as s:
        s.settimeout(10)
        t0 = time.monotonic()
        try:
            for byte in b"GET /health HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + b"a" * 100:
                s.sendall(bytes([byte]))
                time.sleep(0.1)
        except OSError:
            pass  # closed under us: what should happen
        answer = _read_all(s)
        assert time.monotonic() - t0 < 6 and answer.startswith(b"HTTP/1.1 408")


def test_a_body_never_finished_is_a_json_408(server):
    controller, _ = server
    with socket.create_connection(("127.0.0.1", _port(controller))) as s:
        s.settimeout(10)
        s.sendall(b"POST /v1/chat/completions HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\n"
                  b"Content-Length: 1000\r\n\r\n{\"model\": ")
        t0 = time.monotonic()
        answer = _read_response(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408") and time.monotonic() - t0 < 6
    assert json.loads(body)["error"]["code"] == "request_timeout"


def test_malformed_http_is_answered_in_json(server):
    controller, _ = server
    with socket.create_connection(("127.0.0.1", _port(controller))) as s:
        s.settimeout(10)
        s.sendall(b"\x16\x03\x01 this is not http\r\n\r\n")
        answer = _read_all(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 400") and json.loads(body)["error"]["code"] == "invalid_http"


def test_when_every_connection_is_busy_a_newcomer_gets_a_json_503(server):
    controller, _ = server
    book = controller.connections
    book.total = len(book)  # every slot taken; none of them idle
    busy = [c for c in list(book._all.values())]
    for c in busy:
        c.cycle = type("Busy", (), {"response_complete": False})()
    with socket.create_connection(("127.0.0.1", _port(controller))) as s:
        s.settimeout(10)
        answer = _read_all(s)
    head, _, body = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 503") and json.loads(body)["error"]["code"] == "server_busy"


def test_wrong_settings_values_do_not_fail_requests(server):
    controller, model = server
    reply = _client(controller).chat.completions.create(model=model, messages=HI, max_tokens=3)
    assert reply.choices[0].finish_reason in ("length", "stop")
    notices = controller.services.settings.take_notices()
    assert any("defaults.temperature is \"hot\"" in n and "settings.json" in n for n in notices), notices
    assert any("defaults.top_k is an endless number" in n for n in notices), notices
    assert any("server.port is \"eighty\"" in n for n in notices), notices


@pytest.mark.parametrize("origin", ["http://localhost:abc", "http://localhost:99999", "http://[::1"])
def test_an_origin_with_a_malformed_port_is_a_json_403_not_a_500(server, origin):
    controller, _ = server
    r = httpx.get(controller.url + "/models", headers={"Origin": origin}, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "origin_not_allowed"


@pytest.mark.parametrize("host", ["[::1]evil.com", "[::1]evil.com:80", "localhost:abc", "127.0.0.1:80:80",
                                  "evil.com@localhost"])
def test_a_host_that_only_starts_like_this_machine_is_refused(server, host):
    controller, _ = server
    r = httpx.get(controller.url + "/models", headers={"Host": host}, timeout=10)
    assert r.status_code == 403 and r.json()["error"]["code"] == "host_not_allowed"
    assert host_name(host) == ""


def _read_all(s: socket.socket) -> bytes:
    data = b""
    while True:
        try:
            piece = s.recv(65536)
        except (ConnectionResetError, socket.timeout):
            return data
        if not piece:
            return data
        data += piece


def _read_response(s: socket.socket) -> bytes:
    """One response, by its Content-Length (the connection may stay open)."""
    data = b""
    while b"\r\n\r\n" not in data:
        data += s.recv(65536)
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length"))
    while len(body) < length:
        body += s.recv(65536)
    return head + b"\r\n\r\n" + body
