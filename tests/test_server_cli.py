"""`assistant serve` as a user runs it: a real process, the real engine, Ctrl-C to stop."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import openai
import psutil
import pytest

from assistant.server.controller import bind

pytestmark = pytest.mark.llama_cpp

ASSISTANT = Path(sys.prefix) / "bin" / "assistant"


def run(*args, timeout=60, env=None):
    return subprocess.run([str(ASSISTANT), *args], capture_output=True, text=True, timeout=timeout,
                          env={**os.environ, **(env or {})})


@pytest.mark.parametrize("args, says", [
    (["--host", "0.0.0.0"], "key"),
    (["--host", "0.0.0.0", "--api-key", "sk-long-enough-key"], "--allow-network"),
    (["--api-key", "short"], "too short"),
    (["--allow-origin", "evil.example"], "not an origin"),
])
def test_unsafe_or_malformed_settings_are_refused_before_anything_loads(args, says):
    started = time.monotonic()
    proc = run("serve", *args)
    assert proc.returncode == 1 and says in proc.stderr and "Traceback" not in proc.stderr
    assert "Loading" not in proc.stderr and time.monotonic() - started < 30


def test_a_port_in_use_is_said_before_the_model_loads():
    taken = bind("127.0.0.1", 0)
    try:
        proc = run("serve", "--port", str(taken.getsockname()[1]))
        assert proc.returncode == 1 and "already in use" in proc.stderr and "Loading" not in proc.stderr
    finally:
        taken.close()


def test_serve_prints_the_url_answers_and_stops_cleanly_on_ctrl_c(tiny_model_path):
    proc = subprocess.Popen([str(ASSISTANT), "serve", "-m", str(tiny_model_path), "--port", "0", "-t", "1",
                             "--new-api-key"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        serving = proc.stdout.readline()
        key_line = proc.stdout.readline()
        assert serving.startswith("Serving tiny at http://127.0.0.1:"), serving + proc.stderr.read()
        url, key = serving.split(" at ", 1)[1].strip(), key_line.split(": ", 1)[1].strip()
        runners = psutil.Process(proc.pid).children(recursive=True)
        assert runners  # the model runs in its own process
        client = openai.OpenAI(base_url=url, api_key=key, max_retries=0, timeout=60)
        reply = client.chat.completions.create(model="tiny", messages=[{"role": "user", "content": "hi"}],
                                               max_tokens=4)
        assert reply.usage.completion_tokens >= 1
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=url, api_key="sk-not-the-key-000", max_retries=0).models.list()
    finally:
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "Stopped." in err and "Traceback" not in err
    assert "POST /v1/chat/completions · 200 · tiny · " in err  # one line per request
    assert key not in err  # the key is printed once, on stdout, and never logged
    for runner in runners:  # the model's process ended with the server
        assert not psutil.pid_exists(runner.pid) or runner.status() == psutil.STATUS_ZOMBIE
