"""The KV cache as llama-server allocates it, through the engine: window-sized sliding-window caches on
Gemma 3 at a 32k context with prefix reuse over ten turns, the cache type and flash attention settings,
the record that states them, and hostile setting values."""

import json

import pytest

from assistant.engine import GenerationSettings, LoadSettings
from assistant.engine import LocalEngine as Engine
from assistant.engine.local import plan_load
from assistant.preferences import load_preferences, load_settings, set_model_load_settings
from common.errors import UserError
from common.settings_store import SettingsStore
from models import fit, registry
from models.gguf_file import read_gguf_info
from models.shape import from_gguf
from tests.support.hybrid_gguf import write_tiny_lfm2

pytestmark = pytest.mark.llama_cpp

# More than Gemma 3 270M's 512-token window from the first turn on.
BACKGROUND = ("Here are my notes on the old harbour town, which I am writing up for a local history group. "
              "The harbour was built in the twelfth century, when fishing boats and small traders used the "
              "river mouth. Over the next three hundred years the town grew around the market square, the "
              "church and the customs house, and the quay was extended twice. ") * 9
QUESTIONS = ["What is the oldest building?", "Who used the harbour first?", "When was the quay extended?",
             "What stood around the market square?", "Why did the town grow?", "What did the traders sell?",
             "Was there a lighthouse?", "How big was the town?", "What happened to the customs house?",
             "Write one sentence about the church."]


@pytest.fixture(scope="module")
def gemma_32k(gemma_model_path):
    engine = Engine()
    summary = engine.load(str(gemma_model_path), LoadSettings(n_ctx=32768, n_threads=1, chat_format="gemma"))
    yield engine, summary
    engine.unload()


def test_gemma_at_32k_gets_window_sized_caches_and_ten_turns_keep_their_prefix(gemma_32k):
    engine, summary = gemma_32k
    assert summary.kv_cache["type"] == "f16" and summary.kv_cache["swa"] == "window"
    assert summary.kv_cache["flash_attn"] in (True, False)
    messages = [{"role": "user", "content": BACKGROUND + QUESTIONS[0]}]
    turns = []
    for i, question in enumerate(QUESTIONS):
        if i:
            messages += [{"role": "user", "content": question}]
        response = engine.chat(messages, GenerationSettings(max_tokens=16, temperature=0, seed=1))
        response.text()
        st = response.stats
        assert st.stop_reason in ("eos", "length") and st.error is None
        turns.append(st)
        messages.append({"role": "assistant", "content": st.reply})
    first, last = turns[0], turns[-1]
    assert first.prompt_tokens > 512  # past the window from the first turn on
    for before, after in zip(turns, turns[1:]):
        assert after.cached_tokens >= 0.8 * before.prompt_tokens
    assert last.ttft_ms <= 1.5 * first.ttft_ms
    # The record states what was allocated: window-sized sliding-window caches (111 MiB for this model at
    # 32k, against 576 MiB full-size), the cache type and attention, and the checkpoints' memory.
    assert last.memory.kv_bytes <= 130e6
    # The 500 MB was measured where llama-cpp-python itself took 448 MB for this load. On this
    # project's machines llama.cpp also keeps a repacked copy of part of the weights (a 13 MiB CPU_REPACK
    # buffer, while the originals stay mapped) and the same reference reaches 529 MB on this conversation; the
    # checkpoints count too. Full-size sliding-window caches took 971 MB.
    machine_allowance = 30e6
    assert last.memory.rss_peak_bytes <= 500e6 + machine_allowance + last.memory.checkpoint_bytes
    assert last.kv_cache["type"] == "f16" and last.kv_cache["swa"] == "window"
    assert last.kv_cache["checkpoints"] <= last.kv_cache["max_checkpoints"]
    assert last.memory.checkpoint_bytes == last.kv_cache["checkpoint_bytes"]


def test_q8_0_halves_the_kv_cache_and_the_model_still_answers(gemma_model_path):
    figures = {}
    engine = Engine()
    try:
        for kind in ("f16", "q8_0", "q4_0"):
            summary = engine.load(str(gemma_model_path), LoadSettings(n_ctx=2048, n_threads=1, chat_format="gemma",
                                                                      kv_cache_type=kind))
            response = engine.chat([{"role": "user", "content": "Name three colours."}],
                                   GenerationSettings(max_tokens=12, temperature=0))
            assert response.text().strip()
            assert response.stats.kv_cache["type"] == kind and summary.kv_cache["type"] == kind
            figures[kind] = response.stats.memory.kv_bytes
    finally:
        engine.unload()
    assert figures["q8_0"] / figures["f16"] == pytest.approx(34 / 64, rel=0.05)
    assert figures["q4_0"] / figures["f16"] == pytest.approx(18 / 64, rel=0.05)


def test_the_estimate_follows_the_cache_type(gemma_model_path):
    info = read_gguf_info(gemma_model_path)
    shape = from_gguf(info)
    f16 = fit.estimate_memory(shape, 4096)
    assert fit.estimate_memory(shape, 4096, kv_cache_type="q8_0").kv_cache == pytest.approx(f16.kv_cache * 34 / 64, rel=0.01)
    assert fit.estimate_memory(shape, 4096, kv_cache_type="q4_0").kv_cache == pytest.approx(f16.kv_cache * 18 / 64, rel=0.01)
    entry = registry.InstalledModel(name="gemma", path=str(gemma_model_path), source="local")
    plans = {kind: plan_load(entry, info, LoadSettings(n_ctx=4096, kv_cache_type=kind)) for kind in ("f16", "q8_0")}
    assert plans["q8_0"].memory_limit < plans["f16"].memory_limit
    assert plans["q8_0"].request["kv_cache_type"] == "q8_0"


def test_a_quantized_cache_turns_flash_attention_on_and_says_so(tiny_model_path, gemma_model_path):
    engine = Engine()
    try:
        summary = engine.load(str(gemma_model_path), LoadSettings(n_ctx=1024, n_threads=1, kv_cache_type="q8_0",
                                                                  flash_attn="off"))
        assert summary.kv_cache["flash_attn"] is True and summary.kv_cache["type"] == "q8_0"
        assert any("needs flash attention" in n for n in summary.notices)
        off = engine.load(str(gemma_model_path), LoadSettings(n_ctx=1024, n_threads=1, flash_attn="off"))
        assert off.kv_cache["flash_attn"] is False and not off.notices
        # A model whose attention heads do not split into the quantized blocks: one clear sentence.
        with pytest.raises(UserError, match="choose the f16 KV cache type"):
            engine.load(str(tiny_model_path), LoadSettings(n_ctx=256, n_threads=1, kv_cache_type="q8_0"))
    finally:
        engine.unload()


@pytest.mark.parametrize("value", ["evil", 7, ["q8_0"], {"a": 1}, "\x1b[31mq8_0", "q8_0" * 10_000])
def test_a_cache_value_that_is_not_a_choice_falls_back_to_the_default_with_a_sentence(value):
    checked, notices = LoadSettings(kv_cache_type=value, flash_attn=value).checked()
    assert checked.kv_cache_type == "f16" and checked.flash_attn == "auto"
    assert len(notices) == 2 and all(len(n) < 200 and "\x1b" not in n for n in notices)


def test_a_hostile_settings_file_loads_the_model_with_a_notice(tiny_model_path):
    store = SettingsStore()
    store.set("defaults", {"kv_cache_type": "evil", "flash_attn": "sometimes"})
    engine = Engine()
    try:
        summary = engine.load(str(tiny_model_path), load_settings(load_preferences(store)))
        assert summary.kv_cache["type"] == "f16" and summary.kv_cache["flash_attn_setting"] == "auto"
        # Said when the settings are read (the CLI prints it, the window shows it above the chat).
        notices = store.take_notices()
        assert any("defaults.kv_cache_type is \"evil\"" in n for n in notices)
        assert any("defaults.flash_attn is \"sometimes\"" in n for n in notices)
        assert engine.chat([{"role": "user", "content": "hi"}], GenerationSettings(max_tokens=2)).text() is not None
    finally:
        engine.unload()


def test_a_model_keeps_its_own_cache_settings(tmp_path):
    store = SettingsStore()
    preferences = set_model_load_settings(store, "gemma3-270m", {"kv_cache_type": "q8_0", "flash_attn": "on",
                                                                 "n_ctx": 99})
    assert load_settings(preferences, "gemma3-270m").kv_cache_type == "q8_0"
    assert load_settings(preferences, "gemma3-270m").n_ctx is None  # only the cache settings are per model
    assert load_settings(preferences, "other").kv_cache_type == "f16"
    assert load_settings(load_preferences(store), "gemma3-270m").flash_attn == "on"  # saved
    preferences = set_model_load_settings(store, "gemma3-270m", None)
    assert load_settings(preferences, "gemma3-270m").kv_cache_type == "f16"
    store.set("defaults", {"model_load_settings": {"x": "not a dict"}})
    assert load_settings(load_preferences(store), "x").kv_cache_type == "f16"


def test_cli_kv_cache_type_flag_reaches_the_record(gemma_model_path, capsys):
    from assistant.cli.main import main

    rc = main(["chat", "-m", str(gemma_model_path), "--chat-format", "gemma", "-t", "1", "-c", "2048",
               "--kv-cache-type", "q8_0", "--flash-attn", "on", "-n", "6", "--temperature", "0", "--no-save",
               "--json", "Name a colour."])
    assert rc == 0
    record = json.loads(capsys.readouterr().out)
    assert record["kv_cache"]["type"] == "q8_0" and record["kv_cache"]["flash_attn"] is True
    assert record["memory"]["kv_bytes"] > 0 and record["reply"].strip()


def test_cli_refuses_an_unknown_cache_type(capsys):
    from assistant.cli.main import main

    with pytest.raises(SystemExit) as exc:
        main(["chat", "--kv-cache-type", "q2_k", "hello"])
    assert exc.value.code == 2 and "invalid choice" in capsys.readouterr().err


def test_hybrid_follow_up_turns_reuse_the_prefix_and_match_a_fresh_evaluation(tmp_path):
    path = write_tiny_lfm2(tmp_path / "tiny-lfm2.gguf", scale=4.0)
    settings = LoadSettings(n_ctx=1024, n_threads=1, chat_format="chatml")
    greedy = GenerationSettings(max_tokens=8, temperature=0, ignore_eos=True)
    engine, fresh = Engine(), Engine()
    try:
        engine.load(str(path), settings)
        fresh.load(str(path), settings)
        messages = [{"role": "user", "content": "the history of the city goes back many centuries"}]
        for i in range(3):
            response = engine.chat(messages, greedy)
            reply = response.text()
            if i:
                assert response.stats.cached_tokens > 0.6 * response.stats.prompt_tokens
                assert response.stats.kv_cache["recurrent"] is True
            cold = fresh.chat(messages, greedy)
            assert cold.text() == reply  # what a cold cache computes for the same prompt
            fresh.call("reset")
            messages += [{"role": "assistant", "content": reply}, {"role": "user", "content": f"and then {i}"}]
    finally:
        engine.unload()
        fresh.unload()


def test_models_set_keeps_a_models_cache_settings_for_the_cli(capsys):
    import argparse

    from assistant.cli.common import load_settings as cli_load_settings
    from assistant.cli.main import main

    assert main(["models", "set", "gemma3-270m-base", "--kv-cache-type", "q8_0"]) == 0
    assert "kv cache type q8_0" in capsys.readouterr().out
    args = argparse.Namespace(ctx=None, threads=None, gpu_layers=None, chat_format=None, chat_template=None,
                              model="gemma3-270m-base", kv_cache_type=None, flash_attn=None)
    assert cli_load_settings(args).kv_cache_type == "q8_0"  # kept for the model
    assert cli_load_settings(argparse.Namespace(**{**vars(args), "kv_cache_type": "q4_0"})).kv_cache_type == "q4_0"
    assert cli_load_settings(args, model="starter").kv_cache_type == "f16"  # another model: the default
    assert main(["models", "set", "gemma3-270m-base", "--reset"]) == 0
    assert cli_load_settings(args).kv_cache_type == "f16"
    assert main(["models", "set", "gemma3-270m-base"]) != 0
    assert "Say what to keep" in capsys.readouterr().err


def test_the_defaults_dialog_offers_the_cache_type_and_flash_attention(qtbot):
    from ui.settings_dialog import DEFAULTS, SettingsDialog

    dialog = SettingsDialog({**DEFAULTS, "kv_cache_type": "evil", "flash_attn": 3}, None, gpu=False)
    qtbot.addWidget(dialog)
    assert dialog.kv_cache_type.currentData() == "f16" and dialog.flash_attn.currentData() == "auto"
    dialog.kv_cache_type.setCurrentIndex(dialog.kv_cache_type.findData("q8_0"))
    dialog.flash_attn.setCurrentIndex(dialog.flash_attn.findData("on"))
    defaults, _ = dialog.result_settings()
    assert (defaults["kv_cache_type"], defaults["flash_attn"]) == ("q8_0", "on")
    assert load_settings(defaults).kv_cache_type == "q8_0"
