"""The engine on the real llama.cpp: the starter model and tiny random-weight models."""

import os
import threading
import time

import pytest

from assistant.engine import ContextPolicy, GenerationSettings, LoadSettings
from assistant.engine import LocalEngine as Engine
from common.errors import ModelFileError, UserError
from assistant.stats import STOP_REASONS
from tests.support.tiny_gguf import write_corrupt, write_tiny_llama

pytestmark = pytest.mark.llama_cpp

SKY = [{"role": "user", "content": "Why is the sky blue?"}]
STATS_KEYS = {"reply", "model", "prompt_tokens", "cached_tokens", "prompt_ms", "prompt_tps", "ttft_ms",
              "completion_tokens", "gen_ms", "gen_tps", "total_ms", "stop_reason", "n_ctx", "n_threads",
              "memory", "backend"}
MEMORY_KEYS = {"weights_bytes", "kv_bytes", "compute_bytes", "rss_bytes", "rss_peak_bytes", "vram_bytes",
               "app_rss_bytes", "checkpoint_bytes", "projector_bytes", "draft_bytes"}


@pytest.fixture(scope="module")
def starter(gemma_model_path):
    engine = Engine()
    engine.load(str(gemma_model_path), LoadSettings(n_ctx=1024))
    yield engine
    engine.unload()


def test_starter_answers_with_consistent_measured_stats(starter):
    response = starter.chat(SKY, GenerationSettings(max_tokens=48, seed=7, temperature=0.7))
    t0 = time.perf_counter()
    first = None
    chunks = []
    for chunk in response:
        first = first or time.perf_counter()
        chunks.append(chunk)
    t_end = time.perf_counter()
    stats = response.stats.to_dict()

    assert STATS_KEYS <= stats.keys() and MEMORY_KEYS == stats["memory"].keys()
    assert stats["reply"] == "".join(chunks) and stats["reply"].strip()
    assert stats["stop_reason"] in STOP_REASONS
    assert stats["model"]["quant"] == "Q4_K_M" and stats["model"]["size_bytes"] == 253_113_024
    assert 2.5e8 < stats["model"]["n_params"] < 2.9e8
    n = stats["completion_tokens"]
    assert n >= 2
    assert stats["gen_tps"] == pytest.approx((n - 1) / stats["gen_ms"] * 1000, rel=0.01)
    # What the engine measured agrees with what we measured from outside.
    outside_total = (t_end - t0) * 1000
    assert stats["total_ms"] == pytest.approx(outside_total, rel=0.10, abs=3)
    assert stats["ttft_ms"] == pytest.approx((first - t0) * 1000, rel=0.10, abs=3)
    assert stats["gen_ms"] <= (t_end - first) * 1000 * 1.10 + 3
    assert stats["prompt_tokens"] > 5 and stats["prompt_tps"] > 0
    mem = stats["memory"]
    assert mem["weights_bytes"] > 2e8 and mem["kv_bytes"] > 0 and mem["compute_bytes"] > 0
    assert mem["rss_bytes"] > 0 and mem["rss_peak_bytes"] >= mem["rss_bytes"] * 0.5
    # The model's process and the app's are apart: the weights are resident in the runner, not here.
    assert mem["app_rss_bytes"] > 0 and stats["transport"]["runner_pid"] not in (None, os.getpid())
    assert mem["vram_bytes"] is None  # no GPU here
    assert stats["backend"]["kind"] == "CPU" and stats["backend"]["llama_cpp_python"] == "0.3.36"
    assert stats["chat_format"].endswith(":gemma")  # not llama-2's [INST] fallback


def test_follow_up_turn_evaluates_only_new_tokens(starter):
    first = starter.chat(SKY, GenerationSettings(max_tokens=24, seed=3))
    first.text()
    history = SKY + [{"role": "assistant", "content": first.stats.reply},
                     {"role": "user", "content": "And why is a sunset red?"}]
    second = starter.chat(history, GenerationSettings(max_tokens=8, seed=3))
    second.text()
    s1, s2 = first.stats, second.stats
    assert s2.cached_tokens >= s1.prompt_tokens  # at least the whole first prompt was reused
    evaluated = s2.prompt_tokens - s2.cached_tokens
    assert evaluated < s1.completion_tokens + 20  # the new user turn plus any re-tokenised reply tail


def test_cancel_from_another_thread_stops_within_one_token(starter):
    response = starter.chat(SKY, GenerationSettings(max_tokens=400, seed=1, ignore_eos=True))
    shown_at_cancel = None
    for i, _ in enumerate(response):
        if i == 5:
            done = threading.Event()

            def stop():
                response.cancel()
                done.set()

            threading.Thread(target=stop).start()
            done.wait()
            shown_at_cancel = "".join(response.chunks)
    stats = response.stats
    assert stats.stop_reason == "stopped"
    # Nothing is shown after the stop, and the runner stopped long before the 400 tokens.
    assert stats.reply == shown_at_cancel == "".join(response.chunks) and stats.reply
    assert stats.completion_tokens < 40


def test_abandoning_the_stream_records_a_stopped_reply(starter):
    response = starter.chat(SKY, GenerationSettings(max_tokens=200, seed=1, ignore_eos=True))
    it = iter(response)
    next(it)
    next(it)
    it.close()
    assert response.stats.stop_reason == "stopped" and response.stats.completion_tokens >= 2


def test_starter_by_name_uses_the_catalogue_gemma_format():
    engine = Engine()
    summary = engine.load("gemma3-270m-base", LoadSettings(n_ctx=256))
    assert summary.chat_format == "catalogue:gemma"
    assert summary.name == "gemma3-270m-base" and summary.quant == "Q4_K_M"
    engine.unload()


# --- Tiny random-weight models: fast tests of the machinery.

@pytest.fixture
def tiny_engine(tiny_model_path):
    engine = Engine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=128, n_threads=1))
    yield engine
    engine.unload()


def test_context_full_under_stop_policy_is_reported_not_raised(tiny_engine):
    long_turns = [{"role": "user" if i % 2 == 0 else "assistant", "content": "word " * 40} for i in range(7)]
    response = tiny_engine.chat(long_turns, GenerationSettings(context_policy=ContextPolicy.STOP))
    assert response.text() == ""
    stats = response.stats
    assert stats.stop_reason == "context_full"
    assert stats.context["policy"] == "stop" and stats.context["applied"] is True
    assert f"context holds {tiny_engine.summary().n_ctx}" in stats.context["message"]


def test_generation_stops_at_the_end_of_the_context(tiny_engine):
    response = tiny_engine.chat([{"role": "user", "content": "hello"}],
                                GenerationSettings(ignore_eos=True, context_policy=ContextPolicy.STOP))
    response.text()
    stats = response.stats
    assert stats.stop_reason == "context_full"
    n_ctx = tiny_engine.summary().n_ctx  # llama.cpp pads the requested 128 up
    assert stats.prompt_tokens + stats.completion_tokens == n_ctx + 1  # the last token is shown, not decoded


def test_drop_oldest_policy_keeps_the_system_prompt(tiny_engine):
    turns = [{"role": "system", "content": "You are terse."}]
    for i in range(8):
        turns.append({"role": "user", "content": f"question {i} " + "word " * 30})
        turns.append({"role": "assistant", "content": f"answer {i} " + "word " * 30})
    turns.append({"role": "user", "content": "last question"})
    response = tiny_engine.chat(turns, GenerationSettings(max_tokens=4, seed=0))
    response.text()
    ctx = response.stats.context
    assert ctx["policy"] == "drop_oldest" and ctx["applied"] and ctx["dropped_messages"] >= 2
    assert ctx["dropped_messages"] % 2 == 0  # whole user+assistant turns
    assert response.stats.stop_reason in ("length", "eos")
    n_ctx = tiny_engine.summary().n_ctx
    assert response.stats.prompt_tokens <= n_ctx


def test_gguf_chat_template_is_rendered_in_the_sandbox(tmp_path):
    template = ("{% for m in messages %}<|{{ m['role'] }}|>{{ m['content'] }}{% endfor %}"
                "{% if add_generation_prompt %}<|assistant|>{% endif %}")
    path = write_tiny_llama(tmp_path / "templated.gguf", chat_template=template)
    engine = Engine()
    summary = engine.load(str(path), LoadSettings(n_ctx=128, n_threads=1))
    assert summary.chat_format == "gguf" and summary.has_chat_template
    response = engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=2))
    response.text()
    assert response.stats.prompt_tokens == engine.count_tokens([{"role": "user", "content": "hi"}])

    # A template that reaches for Python's internals is refused when the model loads: one sentence,
    # and the model that was loaded stays.
    hostile = "{{ ''.__class__.__mro__[1].__subclasses__() }}"
    path = write_tiny_llama(tmp_path / "hostile.gguf", chat_template=hostile)
    with pytest.raises(UserError, match="chat template"):
        engine.load(str(path), LoadSettings(n_ctx=128, n_threads=1))
    assert engine.summary().path == str(tmp_path / "templated.gguf")
    engine.unload()


def test_model_without_template_gets_a_format_from_its_architecture(tiny_model_path, gemma_model_path):
    engine = Engine()
    assert engine.load(str(tiny_model_path), LoadSettings(n_ctx=64, n_threads=1)).chat_format == \
        "fallback-llama:llama-2"
    assert engine.load(str(gemma_model_path), LoadSettings(n_ctx=64)).chat_format == "fallback-gemma3:gemma"
    override = engine.load(str(tiny_model_path), LoadSettings(n_ctx=64, n_threads=1, chat_format="chatml"))
    assert override.chat_format == "override:chatml"
    engine.unload()


@pytest.mark.parametrize("kind", ["empty", "not_gguf", "bad_magic", "truncated", "tensor_out_of_bounds",
                                  "huge_kv_count", "unknown_architecture"])
def test_a_bad_model_file_is_a_clear_error_and_the_old_model_stays(tiny_engine, tmp_path, kind):
    bad = write_corrupt(tmp_path / f"{kind}.gguf", kind)
    before = tiny_engine.summary().path
    with pytest.raises(ModelFileError) as err:
        tiny_engine.load(str(bad))
    assert str(bad) in str(err.value)
    assert tiny_engine.summary().path == before
    assert tiny_engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=2)).stats is None
    tiny_engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=2)).text()


def test_threads_default_to_physical_cores_and_can_be_set(tiny_model_path):
    import psutil

    engine = Engine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=64))
    response = engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=2))
    response.text()
    assert response.stats.n_threads == psutil.cpu_count(logical=False)
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=64, n_threads=1))
    response = engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=2))
    response.text()
    assert response.stats.n_threads == 1
    engine.unload()


def test_unloading_ends_the_runner_and_the_memory_comes_back(starter_model_path, tiny_model_path):
    import psutil

    engine = Engine()
    summary = engine.load(str(starter_model_path), LoadSettings(n_ctx=512))
    runner = psutil.Process(summary.pid)
    engine.chat(SKY, GenerationSettings(max_tokens=8, seed=0)).text()  # touch the weights
    assert runner.memory_info().rss > 0.5 * summary.memory["weights_bytes"]  # the weights live in the runner
    tiny = engine.load(str(tiny_model_path), LoadSettings(n_ctx=64, n_threads=1))
    assert tiny.pid != summary.pid and not psutil.pid_exists(summary.pid)  # switching ended the old runner
    engine.unload()
    assert not psutil.pid_exists(tiny.pid) and engine.summary() is None


def test_amx_guard_turns_off_extra_buffer_types(monkeypatch, gemma_model_path):
    """On an AMX CPU the repacked (AMX) weight buffer must not be created (runner code, in this process)."""
    from assistant.engine.runner import llama_runtime as rt
    from assistant.engine.runner.llama_model import LoadedModel

    normal = LoadedModel(str(gemma_model_path), n_ctx=64, n_threads=2, n_gpu_layers=0, n_batch=64)
    normal_weights = normal.buffers.weights
    normal.close()
    monkeypatch.setattr(rt, "has_amx", lambda: True)
    mark = rt.log_mark()
    guarded = LoadedModel(str(gemma_model_path), n_ctx=64, n_threads=2, n_gpu_layers=0, n_batch=64)
    log = rt.log_since(mark)
    assert "REPACK model buffer" not in log and "model buffer size" in log
    assert guarded.buffers.weights <= normal_weights
    guarded.eval_prompt(guarded.tokenize("Hello", add_bos=True))
    guarded.close()


def test_every_sampling_setting_reaches_llama_cpp(tiny_engine):
    """Each sampler in the chain is built for real (a wrong C signature fails here, not in a user's chat)."""
    settings = GenerationSettings(max_tokens=4, seed=9, temperature=0.7, top_k=20, top_p=0.9, min_p=0.1,
                                  repeat_penalty=1.3, repeat_last_n=32)
    first = tiny_engine.chat([{"role": "user", "content": "hi"}], settings)
    second = tiny_engine.chat([{"role": "user", "content": "hi"}], settings)
    assert first.text() == second.text()  # the same seed gives the same reply
    greedy = tiny_engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=4, temperature=0))
    greedy.text()
    assert greedy.stats.completion_tokens == 4 and first.stats.sampling["repeat_penalty"] == 1.3
