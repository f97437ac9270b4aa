"""Remote backends against a real OpenAI-compatible server on loopback (llama-cpp-python's own
`llama_cpp.server`), never a mock: chat, statistics marked remote, and every failure in one sentence."""

from __future__ import annotations

import os
import socket
import stat
import subprocess
import sys
import time

import httpx
import pytest

from assistant import remotes
from assistant.chat_service import ChatService, TurnFinished, TurnRequest, TurnText
from assistant.engine import EngineRouter, GenerationSettings
from assistant.engine.remote import RemoteEngine
from assistant.history import HistoryStore
from common.errors import UserError

pytestmark = pytest.mark.llama_cpp
ASSISTANT = os.path.join(os.path.dirname(sys.executable), "assistant")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class LlamaServer:
    """llama_cpp.server in a subprocess, serving one model as `alias`."""

    def __init__(self, model_path, alias: str = "small", api_key: str | None = None, n_ctx: int = 1024):
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        args = [sys.executable, "-m", "llama_cpp.server", "--model", str(model_path), "--model_alias", alias,
                "--host", "127.0.0.1", "--port", str(self.port), "--n_ctx", str(n_ctx), "--n_threads", "1"]
        if api_key:
            args += ["--api_key", api_key]
        self.proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{self.url}/v1/models", timeout=1,
                             headers={"Authorization": f"Bearer {api_key}"} if api_key else {}).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.3)
        self.stop()
        raise RuntimeError("llama_cpp.server did not start")

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def server(starter_model_path):
    srv = LlamaServer(starter_model_path)
    yield srv
    srv.stop()


@pytest.fixture
def history(tmp_path):
    store = HistoryStore.open(tmp_path / "history.db")
    yield store
    store.close()


def test_remotes_are_added_listed_and_removed_with_the_key_kept_privately(tmp_path, monkeypatch):
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home")}
    run = lambda *a: subprocess.run([ASSISTANT, "remote", *a], capture_output=True, text=True, env=env, timeout=60)  # noqa: E731
    added = run("add", "box", "http://127.0.0.1:9", "--api-key", "sk-secret-123")
    assert added.returncode == 0 and "Added box: http://127.0.0.1:9" in added.stdout
    assert "cannot be reached" in added.stderr  # nothing listens there: said, and kept anyway
    listed = run("list")
    assert "box  http://127.0.0.1:9  (key stored)" in listed.stdout
    home = tmp_path / "home"
    assert "sk-secret-123" not in (home / "remotes.json").read_text()  # never beside the list...
    keys = home / "remote-keys.json"
    assert stat.S_IMODE(keys.stat().st_mode) == 0o600  # ...but in a file only the user can read
    removed = run("rm", "box")
    assert removed.returncode == 0 and "sk-secret-123" not in keys.read_text()
    assert run("rm", "box").returncode == 1
    bad = run("add", "../x", "http://h")
    assert bad.returncode == 1 and "name" in bad.stderr


def test_keys_go_to_the_os_keyring_where_there_is_one(tmp_path, monkeypatch):
    import keyring
    from keyring.backend import KeyringBackend

    class Memory(KeyringBackend):
        priority = 1
        store: dict = {}

        def get_password(self, service, username):
            return self.store.get((service, username))

        def set_password(self, service, username, password):
            self.store[(service, username)] = password

        def delete_password(self, service, username):
            self.store.pop((service, username), None)

    previous = keyring.get_keyring()
    keyring.set_keyring(Memory())
    try:
        remotes.add("box", "http://127.0.0.1:9", "sk-abc")
        assert remotes.get_key("box") == "sk-abc"
        assert list(Memory.store.values()) == ["sk-abc"]
        assert not (tmp_path / "assistant-home" / "remote-keys.json").exists()
        monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "another-home"))  # another data directory
        assert remotes.get_key("box") is None
        remotes.set_key("box", "sk-other")
        assert len(Memory.store) == 2
        monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path / "assistant-home"))
        assert remotes.get_key("box") == "sk-abc"
        remotes.remove("box")
        assert list(Memory.store.values()) == ["sk-other"]  # the other data directory's key stays
        Memory.store[(remotes.KEYRING_SERVICE, "old")] = "sk-old"  # stored by an earlier version
        assert remotes.get_key("old") == "sk-old"
        remotes.set_key("old", None)  # removing the key removes the old entry too
        assert remotes.get_key("old") is None and list(Memory.store.values()) == ["sk-other"]
    finally:
        keyring.set_keyring(previous)


def test_a_remote_model_chats_streams_and_is_saved_with_remote_statistics(server, history):
    remotes.add("lab", server.url)
    service = ChatService(EngineRouter(), history)
    try:
        summary = service.load("small@lab").result(60)
        assert summary.kind == "remote" and summary.name == "small@lab" and summary.memory == {}
        handle = service.submit(TurnRequest(text="Hello there", settings=GenerationSettings(max_tokens=12, seed=1)))
        events = list(handle.events(timeout=120))
        texts = [e.text for e in events if isinstance(e, TurnText)]
        finished = events[-1]
        assert isinstance(finished, TurnFinished) and texts and finished.text == "".join(texts)
        st = finished.stats
        assert st["backend"]["kind"] == "remote" and st["transport"]["kind"] == "remote"
        assert st["transport"]["host"] == f"127.0.0.1:{server.port}"
        assert st["ttft_ms"] > 0 and st["completion_tokens"] >= 1 and st["stop_reason"] in ("eos", "length")
        # llama_cpp.server sends no usage when streaming: the tokens were counted from the stream, and say so.
        assert st["transport"]["tokens_counted"] is True
        assert all(v is None for v in st["memory"].values())  # never this machine's memory
        saved = history.get_message(finished.reply_id)
        assert saved.content == finished.text and saved.stats["transport"]["remote"] == "lab"
    finally:
        service.close()


def test_an_unknown_model_and_an_unreachable_server_are_one_sentence_each(server, history):
    remotes.add("lab", server.url)
    remotes.add("nowhere", f"http://127.0.0.1:{_free_port()}")
    router = EngineRouter()
    with pytest.raises(UserError, match=r"lab has no model called 'nope'; it offers: small\."):
        router.load("nope@lab")
    with pytest.raises(UserError, match="cannot be reached"):
        router.load("small@nowhere")


def test_a_wrong_key_is_one_sentence(starter_model_path):
    srv = LlamaServer(starter_model_path, api_key="right-key")
    try:
        remotes.add("locked", srv.url, "wrong-key")
        with pytest.raises(UserError, match=r"locked refused the API key \(401\)"):
            EngineRouter().load("small@locked")
        remotes.add("locked", srv.url, "right-key")
        assert EngineRouter().load("small@locked").kind == "remote"
    finally:
        srv.stop()


def test_a_server_killed_mid_reply_keeps_the_partial_reply(starter_model_path, history):
    srv = LlamaServer(starter_model_path, alias="doomed")
    remotes.add("doomed", srv.url)
    service = ChatService(EngineRouter(), history)
    try:
        service.load("doomed@doomed").result(60)
        handle = service.submit(TurnRequest(kind="complete", text="Once upon a time, in a small village,",
                                            settings=GenerationSettings(max_tokens=400, stop_on_repetition=False)))
        shown = []
        for event in handle.events(timeout=120):
            if isinstance(event, TurnText):
                shown.append(event.text)
                if len(shown) == 1:
                    srv.proc.kill()
        result = handle.outcome
        assert isinstance(result, TurnFinished) and result.stats["stop_reason"] == "error"
        assert "doomed" in result.stats["error"] and result.text == "".join(shown)
        assert history.get_message(result.reply_id).status == "error"
    finally:
        service.close()
        srv.stop()


def test_cancel_closes_the_stream_at_once(server):
    remotes.add("lab", server.url)
    engine = RemoteEngine(remotes.get("lab"))
    engine.load("small")
    response = engine.complete("Once upon a time, in a small village,",
                               GenerationSettings(max_tokens=300, stop_on_repetition=False))
    it = iter(response)
    next(it)
    t0 = time.monotonic()
    response.cancel()
    rest = list(it)
    assert time.monotonic() - t0 < 1.0 and len(rest) <= 1
    assert response.stats.stop_reason == "stopped"
    # The server is free for the next request.
    again = engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=4))
    again.text()
    assert again.stats.stop_reason in ("eos", "length")


def test_cli_chat_with_a_remote(server, tmp_path):
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home")}
    subprocess.run([ASSISTANT, "remote", "add", "lab", server.url], env=env, capture_output=True, timeout=60)
    out = subprocess.run([ASSISTANT, "chat", "--remote", "lab", "-m", "small", "-n", "6", "Hi"], env=env,
                         capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() and "small@lab" in out.stderr
    listed = subprocess.run([ASSISTANT, "models", "list", "--installed"], env=env, capture_output=True, text=True,
                            timeout=120)
    assert "small@lab  (on lab, 127.0.0.1:" in listed.stdout  # beside the local models, marked with the remote
    missing = subprocess.run([ASSISTANT, "chat", "--remote", "ghost", "Hi"], env=env, capture_output=True, text=True,
                             timeout=60)
    assert missing.returncode == 1 and "no remote server named 'ghost'" in missing.stderr
