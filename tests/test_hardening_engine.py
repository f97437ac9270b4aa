"""Issue 20, the engine: a stalled runner is noticed; a conversation too large for the context or for memory
is refused before the runner sees it, with its figures, and never blamed on the model; a template's own
error message is cut to a sentence.

Real llama.cpp: the tiny random llama where any model will do, the starter where a real template and a
real prompt evaluation matter (n_threads=1).
"""

from __future__ import annotations

import os
import signal
import time

import pytest

from assistant.cli.main import main
from assistant.engine import ContextPolicy, GenerationSettings, LoadSettings, LocalEngine
from assistant.engine import crash_registry
from assistant.engine import protocol as P
from assistant.engine.local import LocalEngine as _Local
from assistant.history import HistoryStore
from common.errors import UserError

pytestmark = pytest.mark.llama_cpp

HI = [{"role": "user", "content": "hi"}]
LONG = GenerationSettings(max_tokens=400, ignore_eos=True, stop_on_repetition=False, seed=1)


@pytest.fixture
def tiny(tiny_model_path):
    engine = LocalEngine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=512, n_threads=1))
    yield engine
    engine.close()


# --- A stalled runner -------------------------------------------------------------------------------------


def test_a_runner_stopped_mid_reply_is_noticed_and_ended_with_a_sentence(tiny, monkeypatch, tiny_model_path):
    monkeypatch.setattr(P, "STALL_SECONDS", 3.0)
    first = tiny.summary().pid
    response = tiny.chat(HI, LONG)
    it = iter(response)
    shown = [next(it)]
    os.kill(first, signal.SIGSTOP)  # frozen mid-reply: no text, no ticks
    t0 = time.monotonic()
    shown += list(it)
    waited = time.monotonic() - t0
    stats = response.stats
    assert stats.stop_reason == "error" and "made no progress for 3 s" in stats.error and "reply so far is kept" \
        in stats.error
    assert 2.5 < waited < 10 and stats.reply == "".join(shown)
    assert crash_registry.crash_record(str(tiny_model_path)) is None  # a stall is not the file's fault
    again = tiny.chat(HI, GenerationSettings(max_tokens=4, seed=1))  # a fresh runner for the next request
    again.text()
    assert again.stats.stop_reason in ("length", "eos") and tiny.summary().pid != first


def test_a_runner_stopped_mid_load_is_noticed(tiny_model_path, monkeypatch):
    monkeypatch.setattr(P, "STALL_SECONDS", 2.0)
    original = _Local._await_load

    def stop_it_first(runner, plan):
        os.kill(runner.process.pid, signal.SIGSTOP)
        return original(runner, plan)

    monkeypatch.setattr(_Local, "_await_load", staticmethod(stop_it_first))
    engine = LocalEngine()
    t0 = time.monotonic()
    with pytest.raises(UserError, match="made no progress for 2 s while loading tiny"):
        engine.load(str(tiny_model_path), LoadSettings(n_ctx=128, n_threads=1))
    assert time.monotonic() - t0 < 10 and crash_registry.crash_record(str(tiny_model_path)) is None
    engine.close()


def test_stop_ends_a_stalled_reply_at_once(tiny, monkeypatch):
    """The usual way out works during a stall too: Stop ends it within the cancel's grace time."""
    monkeypatch.setattr(P, "STALL_SECONDS", 60.0)
    response = tiny.chat(HI, LONG)
    it = iter(response)
    next(it)
    os.kill(tiny.summary().pid, signal.SIGSTOP)
    t0 = time.monotonic()
    response.cancel()
    list(it)
    assert time.monotonic() - t0 < 6 and response.stats.stop_reason == "stopped"


def test_a_long_prompt_evaluation_is_not_a_stall(starter_model_path, monkeypatch):
    """Minutes of prompt evaluation send no text, but the runner ticks from llama.cpp's abort callback."""
    monkeypatch.setattr(P, "STALL_SECONDS", 2.0)
    engine = LocalEngine()
    try:
        engine.load(str(starter_model_path), LoadSettings(n_ctx=2048, n_threads=1))
        prompt = [{"role": "user", "content": "The quick brown fox jumps over the lazy dog. " * 110}]  # ~1,100 tokens
        response = engine.chat(prompt, GenerationSettings(max_tokens=2, seed=1))
        response.text()
        stats = response.stats
        assert stats.stop_reason in ("length", "eos"), stats.error
        assert stats.prompt_ms > 2000, "the evaluation must outlast the stall time for this test to mean anything"
    finally:
        engine.close()


# --- Conversations too large for the context or the memory ------------------------------------------------


@pytest.fixture
def starter(starter_model_path):
    engine = LocalEngine()
    engine.load(str(starter_model_path), LoadSettings(n_ctx=1024, n_threads=1))
    yield engine
    engine.close()


def test_a_100_mb_message_is_refused_with_its_figures_before_the_runner_sees_it(starter, starter_model_path):
    pid = starter.summary().pid
    huge = [{"role": "user", "content": "x" * 100_000_000}]
    t0 = time.monotonic()
    for policy in ContextPolicy:
        response = starter.chat(huge, GenerationSettings(max_tokens=8, context_policy=policy))
        assert response.text() == ""
        stats = response.stats
        assert stats.stop_reason == "context_full" and stats.error is None
        assert "at least 617,284 tokens but the context holds 1,024" in stats.context["message"]
    assert starter.count_tokens(huge) == 617_284  # the meter's figure, counted from characters
    assert time.monotonic() - t0 < 10
    assert starter.summary().pid == pid and crash_registry.crash_record(str(starter_model_path)) is None
    assert starter.chat(HI, GenerationSettings(max_tokens=2, seed=1)).text() is not None


@pytest.mark.parametrize("n_messages", [100_000, 300_000])
def test_a_conversation_of_very_many_messages_drops_what_cannot_fit_or_is_refused(starter_model_path, n_messages):
    starter = LocalEngine()
    starter.load(str(starter_model_path), LoadSettings(n_ctx=256, n_threads=1))  # a short prompt to evaluate
    conversation = [{"role": "system", "content": "Be brief."}]
    conversation += [{"role": "user" if i % 2 == 0 else "assistant", "content": f"message {i}"}
                     for i in range(n_messages - 1)]
    t0 = time.monotonic()
    dropped = starter.chat(conversation, GenerationSettings(max_tokens=2, seed=1))
    dropped.text()
    stats = dropped.stats
    assert stats.stop_reason in ("length", "eos"), stats.error
    assert stats.context["dropped_messages"] > n_messages - 256 and "oldest messages" in stats.context["message"]
    assert stats.prompt_tokens <= 256
    refused = starter.chat(conversation, GenerationSettings(max_tokens=2, context_policy=ContextPolicy.STOP))
    refused.text()
    assert refused.stats.stop_reason == "context_full"
    assert f"needs at least {n_messages:,} tokens but the context holds 256" in refused.stats.context["message"]
    assert starter.count_tokens(conversation) >= n_messages  # the meter: no render of them all
    assert time.monotonic() - t0 < 60  # generous: the machine is shared
    starter.close()


def test_continuing_a_saved_conversation_with_a_100_mb_message_blames_nothing(tmp_path, capsys, monkeypatch):
    """The issue's case: an imported conversation with a 100 MB message, continued from the command line."""
    home = tmp_path / "home"
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    home.mkdir()
    with HistoryStore.open(home / "history.db") as store:
        conv = store.create_conversation(model="starter", title="huge")
        store.add_message(conv.id, "user", "y" * 100_000_000)
        store.add_message(conv.id, "assistant", "ok")
    code = main(["chat", "--conversation", str(conv.id), "-c", "1024", "-t", "1", "-n", "4", "--context-policy",
                 "stop", "and now?"])
    err = capsys.readouterr().err
    assert "needs at least" in err and "the context holds 1,024" in err, err
    assert "ran out of memory" not in err and "template" not in err
    assert code == 0
    # Under the default policy the huge message is dropped (with the reply before it) and the chat goes on.
    code = main(["chat", "--conversation", str(conv.id), "-c", "1024", "-t", "1", "-n", "4", "and now?"])
    err = capsys.readouterr().err
    assert code == 0 and "Dropped the 2 oldest messages" in err, err
    from models.starter import STARTER

    assert crash_registry.crash_record(str(STARTER.ensure())) is None


# --- A template's own error ----------------------------------------------------------------------------------


def test_a_template_error_of_20_mb_is_cut_to_a_sentence(tmp_path, capsys, starter_model_path):
    template = tmp_path / "raise.jinja"
    template.write_text("{{ raise_exception('x' * 20000000) }}")
    code = main(["chat", "--no-save", "-m", str(starter_model_path), "-t", "1", "-c", "256",
                 "--chat-template", str(template), "hi"])
    err = capsys.readouterr().err
    assert code == 1 and "chat template rejected this conversation: xxx" in err
    assert len(err) < 1000 and "more characters" in err, len(err)
    from common.logs import logs_dir

    logged = sum(p.stat().st_size for p in logs_dir().rglob("*.log"))
    assert logged < 200_000, logged
