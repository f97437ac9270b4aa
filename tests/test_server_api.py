"""The local API server, as editors and scripts use it: the official `openai` client against the real
server on loopback, the real engine and the starter model (Gemma 3 270M, a base model: the words do
not matter, the protocol does). Raw `httpx` checks what the client hides."""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
from dataclasses import dataclass

import httpx
import openai
import pytest

from assistant.chat_service import ModelLoading, TurnStarted
from assistant.engine import LoadSettings, LocalEngine
from assistant.server import ServerConfig, ServerController
from assistant.server.config import save_settings
from models import registry
from tests.support.window import open_services

pytestmark = pytest.mark.llama_cpp

KEY = "sk-test-0123456789abcdef"
ALLOWED_ORIGIN = "http://localhost:3000"
HI = [{"role": "user", "content": "Say hello."}]


@dataclass
class Served:
    services: object
    controller: ServerController
    model: str  # the loaded model's name, as clients see it
    starter_path: str

    @property
    def url(self) -> str:
        return self.controller.url

    def client(self, key: str = KEY, **kw) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.url, api_key=key, max_retries=0, timeout=60, **kw)

    def post(self, path: str, body, headers: dict | None = None, **kw) -> httpx.Response:
        content = body if isinstance(body, bytes) else json.dumps(body).encode()
        return httpx.post(self.url + path, content=content, headers={"Authorization": f"Bearer {KEY}",
                                                                     **(headers or {})}, **{"timeout": 60, **kw})


@pytest.fixture(scope="module")
def served(tmp_path_factory, starter_model_path):
    with pytest.MonkeyPatch.context() as mp:
        home = tmp_path_factory.mktemp("server-home")
        mp.setenv("ASSISTANT_HOME", str(home / "data"))
        services = open_services(home, LocalEngine())
        # One thread: these tests check the protocol, not speed, and a spinning second thread on a shared
        # 2-core machine can slow generation twentyfold (field notes).
        summary = services.chat.load(str(starter_model_path), LoadSettings(n_threads=1)).result(120)
        controller = ServerController(services, ServerConfig(port=0, api_key=KEY, allowed_origins=[ALLOWED_ORIGIN]))
        controller.start()
        try:
            yield Served(services, controller, summary.name, str(starter_model_path))
        finally:
            controller.stop()
            services.close()


def _error(response: httpx.Response) -> dict:
    body = response.json()
    assert set(body) == {"error"} and set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"].endswith(".")  # one sentence for a person
    return body["error"]


# --- The API


def test_lists_the_installed_models_and_the_loaded_one(served):
    models = served.client().models.list().data
    ids = [m.id for m in models]
    assert served.model in ids and "starter" in ids
    loaded = next(m for m in models if m.id == served.model)
    assert loaded.object == "model" and loaded.model_extra["hearth"]["loaded"] is True
    starter = next(m for m in models if m.id == "starter")
    assert starter.model_extra["hearth"]["quant"] == "Q4_1"  # built-in models say their quantization too
    assert served.client().models.retrieve(served.model).id == served.model
    raw = httpx.get(served.url + "/models", headers={"Authorization": f"Bearer {KEY}"})
    assert raw.headers["x-powered-by"] == "Hearth"  # how another Hearth's remote backend recognises this one


def test_streams_a_reply_with_usage_then_done(served):
    client = served.client()
    chunks = list(client.chat.completions.create(model=served.model, messages=HI, max_tokens=8, seed=1,
                                                 stream=True, stream_options={"include_usage": True}))
    assert chunks[0].choices[0].delta.role == "assistant"
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert text and finishes in (["length"], ["stop"])
    last = chunks[-1]  # include_usage: one more chunk, no choices, the figures
    assert last.choices == [] and 1 <= last.usage.completion_tokens <= 8 and last.usage.prompt_tokens > 0
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert last.model_extra["timings"]["predicted_n"] == last.usage.completion_tokens
    assert last.model_extra["hearth"]["memory"]["weights_bytes"] > 0
    assert all(c.usage is None for c in chunks[:-1])

    # The same conversation again: its prompt is already in the KV cache, and usage says so.
    again = list(client.chat.completions.create(model=served.model, messages=HI, max_tokens=2, stream=True,
                                                stream_options={"include_usage": True}))
    assert again[-1].usage.prompt_tokens_details.cached_tokens > 0

    # On the wire: server-sent events, ending with data: [DONE].
    with httpx.stream("POST", served.url + "/chat/completions", headers={"Authorization": f"Bearer {KEY}"},
                      json={"model": served.model, "messages": HI, "max_tokens": 3, "stream": True},
                      timeout=60) as response:
        assert response.status_code == 200 and response.headers["content-type"].startswith("text/event-stream")
        events = [line for line in response.iter_lines() if line]
    assert all(e.startswith("data: ") for e in events) and events[-1] == "data: [DONE]"
    assert "timings" in json.loads(events[-2][6:])  # the finish chunk carries llama-server's timings


def test_a_whole_reply_has_usage_timings_and_the_full_record(served):
    r = served.client().chat.completions.create(model=served.model, messages=HI, max_tokens=8, seed=3,
                                                temperature=0.5, top_p=0.9, stop=["\n\n\n"])
    assert r.object == "chat.completion" and r.model == served.model and r.id.startswith("chatcmpl-")
    assert r.choices[0].message.role == "assistant" and r.choices[0].finish_reason in ("length", "stop")
    usage = r.usage
    assert 1 <= usage.completion_tokens <= 8 and usage.prompt_tokens_details.cached_tokens >= 0
    timings = r.model_extra["timings"]
    assert set(timings) >= {"prompt_n", "prompt_ms", "prompt_per_second", "predicted_n", "predicted_ms",
                            "predicted_per_second", "cache_n"}
    assert timings["predicted_n"] == usage.completion_tokens
    assert timings["prompt_n"] + timings["cache_n"] == usage.prompt_tokens
    record = r.model_extra["hearth"]
    assert record["completion_tokens"] == usage.completion_tokens and "reply" not in record
    assert record["model"]["file"].endswith(".gguf") and "/" not in record["model"]["file"]  # no local folders
    assert record["memory"]["weights_bytes"] > 0 and record["memory"]["rss_bytes"] > 0
    assert record["sampling"]["temperature"] == 0.5 and record["sampling"]["seed"] == 3
    assert record["context"]["policy"] == "stop"  # an API client's conversation is never cut short silently
    assert record["server"]["queued_ms"] is not None and record["server"]["first_token_ms"] > 0


def test_text_completion_continues_a_prompt(served):
    client = served.client()
    r = client.completions.create(model=served.model, prompt="The capital of France is", max_tokens=5, seed=2)
    assert r.object == "text_completion" and r.choices[0].text and r.usage.completion_tokens <= 5
    assert r.model_extra["hearth"]["context"]["mode"] == "completion"
    chunks = list(client.completions.create(model=served.model, prompt="Once upon a time", max_tokens=4,
                                            stream=True, stream_options={"include_usage": True}))
    assert "".join(c.choices[0].text for c in chunks if c.choices) and chunks[-1].usage.completion_tokens <= 4


# --- Refusals


def test_a_missing_or_wrong_key_is_refused_and_never_logged(served, caplog):
    caplog.set_level(logging.DEBUG)
    with pytest.raises(openai.AuthenticationError) as wrong:
        served.client(key="sk-wrong-key-000000").models.list()
    assert wrong.value.status_code == 401 and wrong.value.code == "invalid_api_key"
    missing = httpx.get(served.url + "/models")
    assert missing.status_code == 401 and _error(missing)["code"] == "missing_api_key"
    served.client().models.list()  # the right key works
    assert KEY not in caplog.text and "sk-wrong-key-000000" not in caplog.text


def test_a_foreign_host_header_is_refused(served):
    auth = {"Authorization": f"Bearer {KEY}"}
    port = served.controller.port
    for host in (f"evil.example:{port}", "attacker.test", f"127.0.0.1.nip.io:{port}", ""):
        refused = httpx.get(served.url + "/models", headers={**auth, "Host": host})
        assert refused.status_code == 403 and _error(refused)["code"] == "host_not_allowed", host
    for host in (f"localhost:{port}", f"[::1]:{port}", f"LOCALHOST.:{port}"):
        assert httpx.get(served.url + "/models", headers={**auth, "Host": host}).status_code == 200, host


def test_a_foreign_origin_gets_no_cors_headers(served):
    auth = {"Authorization": f"Bearer {KEY}"}
    for origin in ("http://evil.example", "null", "http://localhost:3001", "https://localhost:3000"):
        r = served.post("/chat/completions", {"model": served.model, "messages": HI, "max_tokens": 1},
                        headers={"Origin": origin})
        assert r.status_code == 403 and "access-control-allow-origin" not in r.headers, origin
        pre = httpx.options(served.url + "/chat/completions",
                            headers={"Origin": origin, "Access-Control-Request-Method": "POST"})
        assert "access-control-allow-origin" not in pre.headers, origin
    # An origin the user allowed gets CORS headers, preflight included.
    pre = httpx.options(served.url + "/chat/completions",
                        headers={"Origin": ALLOWED_ORIGIN, "Access-Control-Request-Method": "POST",
                                 "Access-Control-Request-Headers": "authorization, content-type"})
    assert pre.status_code == 200 and pre.headers["access-control-allow-origin"] == ALLOWED_ORIGIN
    ok = httpx.get(served.url + "/models", headers={**auth, "Origin": ALLOWED_ORIGIN})
    assert ok.status_code == 200 and ok.headers["access-control-allow-origin"] == ALLOWED_ORIGIN


MALFORMED = {
    "not JSON": b"{",
    "empty": b"",
    "not UTF-8": b'\xff\xfe{"messages": []}',
    "an array": b"[]",
    "null": b"null",
    "NaN temperature": b'{"messages": [{"role": "user", "content": "hi"}], "temperature": NaN}',
    "deep nesting": b'{"messages": ' + b"[" * 100_000 + b"]" * 100_000 + b"}",
    "lone surrogate": b'{"messages": [{"role": "user", "content": "\\ud800"}]}',
    "messages a string": {"messages": "hi"},
    "no messages": {"messages": []},
    "a message not an object": {"messages": ["hi"]},
    "unknown role": {"messages": [{"role": "robot", "content": "hi"}]},
    "tool result": {"messages": [{"role": "tool", "content": "42", "tool_call_id": "x"}]},
    "content a number": {"messages": [{"role": "user", "content": 5}]},
    "content null": {"messages": [{"role": "user", "content": None}]},
    "an image part": {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": "x"}}]}]},
    "ends with the assistant": {"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]},
    "only a system message": {"messages": [{"role": "system", "content": "be brief"}]},
    "max_tokens negative": {"messages": HI, "max_tokens": -1},
    "max_tokens zero": {"messages": HI, "max_tokens": 0},
    "max_tokens a string": {"messages": HI, "max_tokens": "12"},
    "max_tokens true": {"messages": HI, "max_tokens": True},
    "max_completion_tokens fractional": {"messages": HI, "max_completion_tokens": 3.5},
    "temperature too high": {"messages": HI, "temperature": 3},
    "top_p a string": {"messages": HI, "top_p": "high"},
    "seed too large": {"messages": HI, "seed": 2**70},
    "stop a number": {"messages": HI, "stop": 5},
    "too many stops": {"messages": HI, "stop": ["a"] * 40},
    "n of 2": {"messages": HI, "n": 2},
    "stream a string": {"messages": HI, "stream": "yes"},
    "stream_options a list": {"messages": HI, "stream_options": []},
    "model a number": {"model": 7, "messages": HI},
    "too many messages": {"messages": [{"role": "user", "content": "hi"}] * 2000},
}


@pytest.mark.parametrize("body", MALFORMED.values(), ids=MALFORMED.keys())
def test_a_malformed_body_is_a_400_in_openai_format(served, body):
    r = served.post("/chat/completions", body)
    assert r.status_code == 400
    assert _error(r)["type"] == "invalid_request_error"


@pytest.mark.parametrize("body", [{"prompt": ""}, {"prompt": ["a", "b"]}, {"prompt": [1, 2, 3]}, {"prompt": None},
                                  {"prompt": "x", "echo": True}, {"prompt": "x", "suffix": "y"}],
                         ids=["empty", "a batch", "token ids", "missing", "echo", "suffix"])
def test_a_malformed_completion_body_is_a_400(served, body):
    assert served.post("/completions", body).status_code == 400


def test_an_unknown_model_is_a_404_and_a_file_path_is_not_a_model(served, tiny_model_path):
    client = served.client()
    for name in ("gpt-4o", str(tiny_model_path), "../../etc/passwd"):
        with pytest.raises(openai.NotFoundError) as missing:
            client.chat.completions.create(model=name, messages=HI, max_tokens=1)
        assert missing.value.code == "model_not_found"
    assert served.services.chat.summary().name == served.model  # nothing was loaded


def test_a_body_too_large_is_a_413_before_it_is_read(served):
    from assistant.server.config import MAX_BODY_BYTES

    big = {"messages": [{"role": "user", "content": "x" * (MAX_BODY_BYTES + 1)}]}
    r = served.post("/chat/completions", big)
    assert r.status_code == 413 and _error(r)["code"] == "request_too_large"


def test_unknown_paths_and_methods_answer_in_openai_format(served):
    auth = {"Authorization": f"Bearer {KEY}"}
    assert _error(httpx.get(served.url + "/embeddings", headers=auth))["code"] == "not_found"
    assert _error(httpx.get(served.url + "/models/no-such-model", headers=auth))["code"] == "model_not_found"
    assert httpx.get(served.url + "/chat/completions", headers=auth).status_code == 405


# --- Sharing the one engine


def test_six_concurrent_streams_all_complete(served):
    client = openai.AsyncOpenAI(base_url=served.url, api_key=KEY, max_retries=0, timeout=120)

    async def one(i: int):
        stream = await client.chat.completions.create(
            model=served.model, messages=[{"role": "user", "content": f"Count to {i}."}], max_tokens=6, seed=i,
            stream=True, stream_options={"include_usage": True})
        return [chunk async for chunk in stream]

    async def all_six():
        try:
            return await asyncio.gather(*(one(i) for i in range(6)))
        finally:
            await client.close()

    results = asyncio.run(all_six())
    assert len(results) == 6
    for chunks in results:
        assert chunks[-1].usage is not None and 1 <= chunks[-1].usage.completion_tokens <= 6
        assert any(c.choices and c.choices[0].finish_reason for c in chunks)


def test_a_client_that_walks_away_frees_the_engine_for_the_next(served):
    log = served.controller.request_log
    long = {"model": served.model, "messages": HI, "max_tokens": 4000, "ignore_eos": True, "stream": True}
    with httpx.stream("POST", served.url + "/chat/completions", json=long, timeout=60,
                      headers={"Authorization": f"Bearer {KEY}"}) as response:
        seen = 0
        for line in response.iter_lines():
            seen += '"content"' in line
            if seen >= 4:
                break  # leave mid-stream: the connection closes
    walked_away = log.records()[-1]
    t0 = time.monotonic()
    r = served.client().chat.completions.create(model=served.model, messages=HI, max_tokens=2)
    waited = time.monotonic() - t0
    assert r.usage.completion_tokens >= 1
    assert waited < 10, f"the next request waited {waited:.1f} s"  # 4000 tokens would take minutes
    assert walked_away.state == "cancelled" and walked_away.completion_tokens < 1000


def test_a_waiting_client_that_walks_away_never_starts(served):
    started: list[int] = []
    unsubscribe = served.services.chat.subscribe(
        lambda e: started.append(e.request_id) if isinstance(e, TurnStarted) else None)
    long = {"model": served.model, "messages": HI, "max_tokens": 4000, "ignore_eos": True, "stream": True}
    try:
        with httpx.stream("POST", served.url + "/chat/completions", json=long, timeout=60,
                          headers={"Authorization": f"Bearer {KEY}"}) as running:
            lines = running.iter_lines()  # held: a dropped iterator would close the connection
            next(line for line in lines if '"content"' in line)  # it runs
            with pytest.raises(httpx.ReadTimeout):  # a second request queues behind it; its client gives up
                served.post("/chat/completions", {"model": served.model, "messages": HI, "max_tokens": 4},
                            timeout=0.5)
            deadline = time.monotonic() + 5
            while served.controller._router.waiting() and time.monotonic() < deadline:
                time.sleep(0.05)
            assert served.controller._router.waiting() == 0  # it left the queue at once
        assert len(started) == 1  # only the stream ever started
    finally:
        unsubscribe()


def test_a_full_queue_answers_429(served):
    """A second server on the same services, allowing one waiting request."""
    small = ServerController(served.services, ServerConfig(port=0, api_key=KEY, max_waiting=1))
    small.start()
    long = {"model": served.model, "messages": HI, "max_tokens": 4000, "ignore_eos": True, "stream": True}
    headers = {"Authorization": f"Bearer {KEY}"}
    try:
        with httpx.stream("POST", small.url + "/chat/completions", json=long, headers=headers, timeout=60) as a:
            lines = a.iter_lines()  # held: a dropped iterator would close the connection
            next(line for line in lines if '"content"' in line)  # running
            waiting = threading.Thread(target=lambda: httpx.post(small.url + "/chat/completions", json={
                "model": served.model, "messages": HI, "max_tokens": 1}, headers=headers, timeout=60))
            waiting.start()
            deadline = time.monotonic() + 5
            while small._router.waiting() < 1 and time.monotonic() < deadline:
                time.sleep(0.02)
            full = httpx.post(small.url + "/chat/completions", json={"model": served.model, "messages": HI},
                              headers=headers, timeout=10)
            assert full.status_code == 429 and _error(full)["code"] == "queue_full"
            assert "retry-after" in full.headers
        waiting.join(30)  # the stream's end lets the waiting one run
    finally:
        small.stop()


def test_api_conversations_are_saved_only_when_the_setting_says_so_and_marked(served):
    history = served.services.history
    before = history.count_conversations()
    served.client().chat.completions.create(model=served.model, messages=HI, max_tokens=2)
    assert history.count_conversations() == before  # off by default
    save_settings(served.services.settings, save_conversations=True)
    try:
        served.client().chat.completions.create(
            model=served.model, max_tokens=2,
            messages=[{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"},
                      {"role": "assistant", "content": "Hello."}, {"role": "user", "content": "Bye"}])
    finally:
        save_settings(served.services.settings, save_conversations=False)
    assert history.count_conversations() == before + 1
    conv = history.get_conversation(history.list_conversations(limit=1)[0].id)
    deadline = time.monotonic() + 5
    while conv.settings.get("source") != "api" and time.monotonic() < deadline:
        time.sleep(0.05)
        conv = history.get_conversation(conv.id)
    assert conv.settings["source"] == "api" and conv.system_prompt == "Be brief."
    assert [m.role for m in conv.thread if m.role != "system"] == ["user", "assistant", "user", "assistant"]


def test_503_while_a_model_loads_then_a_request_naming_another_model_loads_it(served, tiny_model_path):
    """Last in the module: it switches models, then puts the starter back."""
    chat = served.services.chat
    loading, release = threading.Event(), threading.Event()

    def hold(event) -> None:  # keeps the engine thread at "loading" until the test has asked
        if isinstance(event, ModelLoading) and not release.is_set():
            loading.set()
            release.wait(30)

    unsubscribe = chat.subscribe(hold)
    try:
        future = chat.load(str(tiny_model_path), LoadSettings(n_threads=1))
        assert loading.wait(30)
        busy = served.post("/chat/completions", {"model": served.model, "messages": HI, "max_tokens": 1})
        assert busy.status_code == 503 and _error(busy)["code"] == "model_loading" and "retry-after" in busy.headers
    finally:
        release.set()
        unsubscribe()
    future.result(60)
    registry.register(registry.InstalledModel(name="tiny-installed", path=str(tiny_model_path), source="local"))
    try:
        r = served.client().chat.completions.create(model="tiny-installed", messages=HI, max_tokens=2)
        assert r.model == "tiny-installed" and chat.summary().name == "tiny-installed"
    finally:
        registry.unregister("tiny-installed")
        chat.load(served.starter_path, LoadSettings(n_threads=1)).result(120)


def test_another_hearth_uses_this_server_as_a_remote_backend(served):
    """The remote backend (assistant.engine.remote) against this server: it recognises Hearth and keeps its record."""
    from assistant.engine import GenerationSettings
    from assistant.engine.remote import RemoteEngine
    from assistant.remotes import Remote

    engine = RemoteEngine(Remote("self", served.url), KEY)
    summary = engine.load(served.model)
    assert summary.backend["software"] == "hearth"
    response = engine.chat(HI, GenerationSettings(max_tokens=4, seed=1))
    assert response.text()
    transport = response.stats.transport
    assert response.stats.completion_tokens >= 1
    assert transport["server_record"]["memory"]["weights_bytes"] > 0  # this server's own record, carried across
