"""Against llama.cpp's own llama-server, where one is at hand (`llama-server` on the PATH, or its path
in LLAMA_SERVER; it is not built in CI): a chat streams with the server's own figures beside ours, and
the server counts a chat's tokens exactly as the local engine does on the same model."""

from __future__ import annotations

import os
import shutil
import subprocess
import time

import httpx
import pytest

from assistant.engine import GenerationSettings, LocalEngine
from assistant.engine.remote import RemoteEngine
from assistant.remotes import Remote
from tests.test_remote import _free_port

BINARY = os.environ.get("LLAMA_SERVER") or shutil.which("llama-server")
pytestmark = [pytest.mark.llama_cpp,
              pytest.mark.skipif(not BINARY, reason="no llama-server here (set LLAMA_SERVER to its path)")]
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why is the sky blue?"}]


@pytest.fixture(scope="module")
def llama_server(starter_model_path):
    port = _free_port()
    proc = subprocess.Popen([BINARY, "-m", str(starter_model_path), "--host", "127.0.0.1", "--port", str(port),
                             "-t", "1", "-c", "2048", "--alias", "smol"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/health", timeout=1).status_code == 200:
                break
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    yield url
    proc.kill()
    proc.wait(10)


def test_a_chat_carries_llama_servers_own_figures(llama_server):
    engine = RemoteEngine(Remote("ls", llama_server))
    summary = engine.load("smol")
    assert summary.backend["software"] == "llama.cpp" and summary.n_ctx == 2048
    response = engine.chat(MESSAGES, GenerationSettings(max_tokens=12, seed=1))
    assert "".join(response)
    stats = response.stats.to_dict()
    assert stats["transport"]["server_figures_from"] == "llama-server timings"
    assert stats["transport"]["server_gen_tps"] > 0 and stats["gen_tps"] > 0
    assert stats["completion_tokens"] == 12 and stats["stop_reason"] == "length"


def test_llama_server_counts_tokens_as_the_local_engine_does(llama_server, starter_model_path):
    remote = RemoteEngine(Remote("ls", llama_server))
    remote.load("smol")
    local = LocalEngine()
    local.load(str(starter_model_path))
    try:
        assert remote.count_tokens(MESSAGES) == local.count_tokens(MESSAGES)
    finally:
        local.unload()
