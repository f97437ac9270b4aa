"""No model file can crash, hang or exhaust the app (issue 8): llama.cpp runs in a supervised runner.

Every hostile class is written with the gguf package (tests/support/tiny_gguf.py). For each:
the test process survives, the CLI says one sentence and exits non-zero in bounded time and
memory, and the engine goes on to load a good model and answer.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time

import psutil
import pytest

from assistant.engine import GenerationSettings, LoadSettings, LocalEngine
from assistant.history import HistoryStore
from assistant.session import ChatSession
from common.errors import UserError
from tests.support.tiny_gguf import HOSTILE_KINDS, write_hostile

pytestmark = pytest.mark.llama_cpp

HI = [{"role": "user", "content": "hi"}]
ASSISTANT = os.path.join(os.path.dirname(sys.executable), "assistant")
# Runs the CLI and reports its peak memory, the runner's included (waited-for descendants).
PEAK_RSS_WRAPPER = """
import json, resource, subprocess, sys, time
t = time.monotonic()
p = subprocess.run(sys.argv[1:], capture_output=True, text=True, timeout=120)
print(json.dumps({"rc": p.returncode, "out": p.stdout, "err": p.stderr, "seconds": time.monotonic() - t,
                  "peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))
"""


@pytest.fixture(scope="module")
def hostile_files(tmp_path_factory):
    folder = tmp_path_factory.mktemp("hostile")
    return {kind: write_hostile(folder / f"{kind}.gguf", kind) for kind in HOSTILE_KINDS}


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_the_cli_says_one_sentence_for_a_hostile_file(hostile_files, kind, tmp_path):
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home")}
    proc = subprocess.run([sys.executable, "-c", PEAK_RSS_WRAPPER, ASSISTANT, "chat", "--no-save", "-m",
                           str(hostile_files[kind]), "-n", "8", "hi"], capture_output=True, text=True, env=env,
                          timeout=180)
    result = json.loads(proc.stdout)
    lines = [line for line in result["err"].splitlines() if line.strip()]
    assert result["rc"] != 0, result
    assert lines and lines[0].startswith("error: ") and "Traceback" not in result["err"], result["err"]
    assert len(lines) <= 2 and "did not expect" not in result["err"], result["err"]  # one sentence (+ stats line)
    assert result["seconds"] < 45 and result["peak_rss"] < 3e9, result


@pytest.mark.parametrize("kind", HOSTILE_KINDS)
def test_the_engine_refuses_a_hostile_file_and_goes_on(hostile_files, tiny_model_path, kind):
    engine = LocalEngine()
    try:
        with pytest.raises(UserError) as err:
            engine.load(str(hostile_files[kind]), LoadSettings(n_ctx=128, n_threads=1))
        assert "did not expect" not in str(err.value) and str(err.value).endswith(".")
        engine.load(str(tiny_model_path), LoadSettings(n_ctx=128, n_threads=1))
        response = engine.chat(HI, GenerationSettings(max_tokens=4, seed=1))
        response.text()
        assert response.stats.stop_reason in ("length", "eos") and response.stats.completion_tokens >= 1
    finally:
        engine.close()


def test_an_abort_while_answering_is_one_sentence_and_the_reply_is_kept(tiny_model_path, tmp_path):
    """A runner that aborts mid-reply (SIGABRT, as llama.cpp's GGML_ASSERT does): the partial reply is
    saved with stop reason error, the file is remembered, and the app goes on."""
    from assistant.engine import crash_registry

    engine = LocalEngine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=512, n_threads=1))
    store = HistoryStore.open(tmp_path / "h.db")
    session = ChatSession(engine, history=store,
                          settings=GenerationSettings(max_tokens=400, seed=3, ignore_eos=True, stop_on_repetition=False))
    shown = []
    for i, chunk in enumerate(session.send("Tell me a story")):
        shown.append(chunk)
        if i == 0:
            os.kill(engine.summary().pid, signal.SIGABRT)
    stats = session.last_response.stats
    assert stats.stop_reason == "error" and stats.error.startswith("llama.cpp aborted while answering with tiny")
    saved = store.get_conversation(session.conversation_id).thread[-1]
    assert saved.status == "error" and saved.content == "".join(shown)
    assert engine.summary() is None  # nothing loaded: the next load starts a fresh runner
    assert crash_registry.crash_record(str(tiny_model_path)) is not None
    with pytest.raises(UserError, match="crashed the model's process before"):
        engine.load(str(tiny_model_path), LoadSettings(n_ctx=128, n_threads=1), automatic=True)
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=128, n_threads=1))  # by hand, it may be tried again
    assert engine.chat(HI, GenerationSettings(max_tokens=2)).text() is not None
    engine.close()


def test_sigkill_mid_reply_keeps_the_partial_reply_and_the_next_message_works(tiny_model_path, tmp_path):
    engine = LocalEngine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=512, n_threads=1))
    store = HistoryStore.open(tmp_path / "h.db")
    session = ChatSession(engine, history=store,
                          settings=GenerationSettings(max_tokens=400, seed=3, ignore_eos=True, stop_on_repetition=False))
    first_pid = engine.summary().pid
    shown = []
    for i, chunk in enumerate(session.send("Tell me a story")):
        shown.append(chunk)
        if i == 0:
            os.kill(first_pid, signal.SIGKILL)
    stats = session.last_response.stats
    assert stats.stop_reason == "error" and "was killed" in stats.error
    saved = store.get_conversation(session.conversation_id).thread[-1]
    assert saved.status == "error" and saved.content == "".join(shown) and saved.content
    session.settings = GenerationSettings(max_tokens=4, seed=1)
    reply = "".join(session.send("Are you there?"))  # a fresh runner, started for this message
    assert session.last_response.stats.stop_reason in ("length", "eos") and reply
    assert engine.summary().pid != first_pid
    engine.close()


def test_a_runner_that_ignores_cancel_is_ended_within_the_grace_time(tiny_model_path):
    engine = LocalEngine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=512, n_threads=1))
    pid = engine.summary().pid
    response = engine.chat(HI, GenerationSettings(max_tokens=400, ignore_eos=True, stop_on_repetition=False))
    it = iter(response)
    next(it)
    os.kill(pid, signal.SIGSTOP)  # frozen: it cannot answer the cancel
    t0 = time.monotonic()
    response.cancel()
    rest = list(it)
    elapsed = time.monotonic() - t0
    assert elapsed < 5 and not rest
    assert response.stats.stop_reason == "stopped" and "did not stop within 2 s" in response.stats.error
    assert not psutil.pid_exists(pid) or psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
    again = engine.chat(HI, GenerationSettings(max_tokens=2))  # started again for the next request
    again.text()
    assert again.stats.stop_reason in ("length", "eos")
    engine.close()


def test_cancel_during_a_long_prompt_acts_within_a_second(starter_model_path):
    """A ~6,000-token prompt takes many seconds to evaluate here; a cancel stops it between micro-batches."""
    engine = LocalEngine()
    engine.load(str(starter_model_path), LoadSettings(n_ctx=8192, n_threads=1))
    long_prompt = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 600}]
    response = engine.chat(long_prompt, GenerationSettings(max_tokens=8))
    stopped_at = {}

    def cancel_later():
        time.sleep(1.5)
        stopped_at["t"] = time.monotonic()
        response.cancel()

    threading.Thread(target=cancel_later, daemon=True).start()
    t0 = time.monotonic()
    response.text()
    latency = time.monotonic() - stopped_at["t"]
    assert response.stats.stop_reason == "stopped" and response.stats.completion_tokens == 0
    assert latency < 1.0, f"cancel took {latency:.2f} s"
    assert time.monotonic() - t0 < 5
    # The engine is still usable, and the runner was not ended for it.
    pid = engine.summary().pid
    follow = engine.chat(HI, GenerationSettings(max_tokens=2))
    follow.text()
    assert follow.stats.stop_reason in ("length", "eos") and engine.summary().pid == pid
    engine.close()


def test_unloading_returns_the_memory(starter_model_path, tiny_model_path):
    """The app's total resident memory (its own and its children's) comes back within 10%."""
    me = psutil.Process()

    def total_rss() -> int:
        procs = [me, *me.children(recursive=True)]
        return sum(p.memory_info().rss for p in procs if p.is_running())

    engine = LocalEngine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=64, n_threads=1))  # the app's own code, imported once
    engine.chat(HI, GenerationSettings(max_tokens=2)).text()
    engine.unload()
    before = total_rss()
    engine.load(str(starter_model_path), LoadSettings(n_ctx=1024))
    engine.chat(HI, GenerationSettings(max_tokens=8, seed=0)).text()
    loaded = total_rss()
    engine.unload()
    after = total_rss()
    assert loaded - before > 1e8  # the model really was resident somewhere
    assert abs(after - before) <= 0.10 * before, (before, loaded, after)


def test_impossible_settings_are_refused_with_the_figures(tiny_model_path, tmp_path):
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home")}
    run = lambda *a: subprocess.run([ASSISTANT, *a], capture_output=True, text=True, env=env, timeout=60)  # noqa: E731
    huge = run("chat", "--no-save", "-m", str(tiny_model_path), "-c", "100000000", "hi")
    assert huge.returncode == 1 and "100,000,000 tokens is more than tiny was trained for (512 tokens)" in huge.stderr
    zero = run("chat", "--no-save", "-m", str(tiny_model_path), "-n", "0", "--help")
    assert "0 lifts the limit" in " ".join(zero.stdout.split())
    negative = run("chat", "--no-save", "-m", str(tiny_model_path), "-n", "-1", "hi")
    assert negative.returncode == 2 and "must be 0 (no limit) or more" in negative.stderr


def test_the_app_process_never_imports_llama_cpp(tiny_model_path):
    code = (
        "import sys\n"
        "from assistant.engine import LocalEngine, LoadSettings, GenerationSettings\n"
        f"e = LocalEngine(); e.load({str(tiny_model_path)!r}, LoadSettings(n_ctx=64, n_threads=1))\n"
        "e.chat([{'role': 'user', 'content': 'hi'}], GenerationSettings(max_tokens=2)).text()\n"
        "e.close()\n"
        "print('llama_cpp' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_ctrl_c_in_the_cli_stops_a_long_prompt_at_once(starter_model_path, tmp_path):
    env = {**os.environ, "ASSISTANT_HOME": str(tmp_path / "home")}
    prompt = "The quick brown fox jumps over the lazy dog. " * 600
    proc = subprocess.Popen([ASSISTANT, "chat", "--no-save", "-m", str(starter_model_path), "-t", "1", "-c", "8192",
                             "-n", "8", prompt], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    # Wait for the runner to load the model (its memory grows past the weights), then let it evaluate.
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and proc.poll() is None:
        runners = psutil.Process(proc.pid).children()
        if runners and runners[0].memory_info().rss > 250e6:
            break
        time.sleep(0.1)
    time.sleep(1.5)
    assert proc.poll() is None
    t0 = time.monotonic()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert time.monotonic() - t0 < 3, err
    assert "Traceback" not in err and "stopped" in err


def test_a_runner_that_cannot_start_is_one_sentence(tiny_model_path, monkeypatch):
    from assistant.engine import supervisor

    monkeypatch.setattr(supervisor.sys, "executable", "/bin/false")  # as if the interpreter were broken
    engine = LocalEngine()
    with pytest.raises(UserError, match=r"The model's process could not start \(exit code 1; .*runner-.*\.log"):
        engine.load(str(tiny_model_path), LoadSettings(n_ctx=64, n_threads=1))
    assert engine.summary() is None
