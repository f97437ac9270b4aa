"""The curated catalogue: families of 4-bit sizes, lookups, and the switch-size helpers."""

import datetime
import json
import re
from importlib import resources

from models import catalogue, registry
from models.catalogue import THINKING_FORMATS


def test_every_entry_is_a_4bit_gguf_with_what_the_estimates_need():
    entries = catalogue.entries()
    assert len(entries) >= 30
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    for e in entries:
        assert e.file.endswith(".gguf") and e.size_bytes > 0 and e.params > 0 and e.context_length > 0
        assert e.arch.n_layers and e.arch.n_kv_heads and e.arch.head_dim and e.arch.vocab_size
        if e.is_starter:  # built in: whatever 4-bit quant its package ships
            assert e.quant in ("Q4_1", "Q4_K_M") and e.sha256 and e.quants == (e.quant,), e.name
            continue
        # gpt-oss is published in its native MXFP4 (4.25 bits per expert weight), not re-quantized.
        assert e.quant == ("MXFP4" if e.family == "gpt-oss" else "Q4_K_M") and e.quant in e.quants, e.name
        assert e.repo.count("/") == 1 and e.repo.endswith("GGUF")
        # Q4_K_M files are about 4.5 to 5.5 bits per weight; small models keep their (large)
        # embedding at 6 or 8 bits, which brings Qwen's official 0.5B file to 8.
        assert 4.3 < e.size_bytes * 8 / e.params < 8.5, e.name
        for q in e.quants:
            assert e.file_for(q).endswith(".gguf")


def test_every_entry_is_well_formed():
    entries = {e.name: e for e in catalogue.entries()}
    for e in entries.values():
        a = e.arch
        assert re.fullmatch(r"[a-z0-9][a-z0-9.\-]*", e.name), e.name
        assert e.licence and e.family_label and e.label, e.name
        assert e.thinking is None or e.thinking in THINKING_FORMATS, e.name
        if e.projector is not None:
            assert e.projector.file.endswith(".gguf") and e.projector.size_bytes > 0 and e.sees_images, e.name
        n_kv = a.kv_layers if a.kv_layers is not None else a.n_layers - a.recurrent_layers
        assert 0 <= a.recurrent_layers < a.n_layers and 0 < n_kv <= a.n_layers, e.name
        assert a.swa_layers <= n_kv and bool(a.swa_layers) == bool(a.sliding_window), e.name
        assert (a.recurrent_state_bytes > 0) == (a.recurrent_layers > 0), e.name
        if a.n_expert:
            assert 0 < a.n_expert_used < a.n_expert and a.n_ff_exp, e.name
            assert e.is_moe and e.active_params < e.params / 3, e.name
        else:
            assert e.active_params is None, e.name
        for draft in e.drafts:  # a smaller size with the same vocabulary, in the same family
            d = entries[draft]
            # llama.cpp's speculative decoding accepts vocabularies that differ by padding (at most 128 tokens).
            assert d.family == e.family and d.params < e.params, (e.name, draft)
            assert abs(d.arch.vocab_size - a.vocab_size) <= 128, (e.name, draft)


def test_the_catalogue_is_data_and_says_when_it_was_revised():
    raw = json.loads(resources.files("models").joinpath("catalogue.json").read_text())
    assert raw["default_quant"] == "Q4_K_M"
    assert datetime.date.fromisoformat(raw["revised"]) and catalogue.revised() == raw["revised"] == "2026-12-06"
    ids = [f.id for f in catalogue.families()]
    assert set(ids) >= {"qwen3.5", "gemma4", "gpt-oss", "qwen3", "ministral3", "lfm2.5", "granite4", "smollm3",
                        "llama3", "smollm2", "gemma3"}
    assert not {"gemma2", "mistral", "phi3.5"} & set(ids)  # retired: a 2026 user would not pick them
    older = [f.older for f in catalogue.families()]
    assert older == sorted(older) and any(older)  # the older families after every current one
    assert catalogue.family_of("gemma3-1b").older and not catalogue.family_of("gemma4-e4b").older


def test_the_asked_for_models_are_there():
    for name in ("qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b", "gemma4-e2b", "gemma4-e4b", "gemma4-12b",
                 "gemma4-26b-a4b", "qwen3-0.6b", "qwen3-1.7b", "qwen3-4b-2507", "qwen3-8b", "gpt-oss-20b",
                 "ministral3-3b", "ministral3-8b", "ministral3-14b", "lfm2.5-1.2b", "granite4-micro", "granite4-8b",
                 "smollm3-3b", "llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "smollm2-360m", "smollm2-1.7b"):
        assert catalogue.get(name) is not None, name
    gpt = catalogue.get("gpt-oss-20b")
    assert gpt.file == "gpt-oss-20b-mxfp4.gguf" and gpt.size_bytes == 12_109_566_560 and gpt.thinking == "harmony"
    assert gpt.is_moe and (gpt.arch.n_expert, gpt.arch.n_expert_used) == (32, 4)
    assert catalogue.get("qwen3.5-4b").sees_images and catalogue.get("qwen3.5-4b").thinking == "think_tags"
    assert catalogue.get("gemma4-e2b").arch.n_embd_per_layer and catalogue.get("gemma4-e2b").thinking == "gemma4_channel"
    assert catalogue.get("qwen3-8b").drafts == ("qwen3-0.6b", "qwen3-1.7b")
    assert catalogue.get("llama3.1-8b").drafts == ("llama3.2-1b",)
    assert catalogue.get("gemma4-12b").drafts == ("gemma4-e2b",)
    assert [s.name for s in catalogue.sizes_in_family("qwen3.5-4b")] == [
        "qwen3.5-0.8b", "qwen3.5-2b", "qwen3.5-4b", "qwen3.5-9b"]


def test_the_starter_is_smollm2_135m_instruct_the_smallest_of_its_family():
    from models import starter

    entry = catalogue.get("starter")
    assert entry.is_starter and not entry.is_base and entry.quant == "Q4_1"
    assert entry.sha256 == starter.SMOLLM2_SHA256 and entry.size_bytes == starter.SMOLLM2_SIZE
    assert catalogue.family_of("starter").id == "smollm2"
    assert [s.name for s in catalogue.sizes_in_family("starter")] == ["starter", "smollm2-360m", "smollm2-1.7b"]
    assert catalogue.neighbour("starter", +1).name == "smollm2-360m"
    assert catalogue.neighbour("starter", -1) is None
    big = catalogue.get("smollm2-1.7b")
    assert big.repo == "bartowski/SmolLM2-1.7B-Instruct-GGUF" and big.file_for("Q8_0") == "SmolLM2-1.7B-Instruct-Q8_0.gguf"


def test_gemma3_270m_is_built_in_and_marked_as_a_base_model():
    from models import starter

    entry = catalogue.get("gemma3-270m-base")
    assert entry.is_starter and entry.is_base and entry.sha256 == starter.GEMMA_SHA256
    assert catalogue.family_of("gemma3-270m-base").id == "gemma3"
    assert catalogue.neighbour("gemma3-270m-base", +1).name == "gemma3-1b"
    assert [e.name for e in catalogue.entries() if e.is_base] == ["gemma3-270m-base"]


def test_families_and_switching_sizes():
    sizes = catalogue.sizes_in_family("qwen2.5-3b")
    assert [s.name for s in sizes] == ["qwen2.5-0.5b", "qwen2.5-1.5b", "qwen2.5-3b", "qwen2.5-7b", "qwen2.5-14b"]
    assert catalogue.neighbour("qwen2.5-3b", +1).name == "qwen2.5-7b"
    assert catalogue.neighbour("qwen2.5-3b", -1).name == "qwen2.5-1.5b"
    assert catalogue.neighbour("qwen2.5-14b", +1) is None
    assert [s.name for s in catalogue.sizes_in_family("llama3.1-8b")] == ["llama3.2-1b", "llama3.2-3b", "llama3.1-8b"]
    assert catalogue.family_of("no-such-model") is None and catalogue.sizes_in_family("x") == []


def test_other_quants_and_hub_names_map_to_their_entry():
    q8 = catalogue.get("llama3.2-1b:Q8_0")
    assert q8.name == "llama3.2-1b:Q8_0" and q8.file == "Llama-3.2-1B-Instruct-Q8_0.gguf"
    assert catalogue.get("qwen2.5-0.5b:q5_k_m").file == "qwen2.5-0.5b-instruct-q5_k_m.gguf"
    assert catalogue.get("llama3.2-1b:Q9_Z") is None
    assert catalogue.family_of("llama3.2-1b:Q8_0").id == "llama3"
    assert catalogue.get("bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M").name == "llama3.2-1b"
    assert catalogue.get("bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q8_0.gguf").quant == "Q8_0"
    assert catalogue.family_of("Qwen/Qwen2.5-0.5B-Instruct-GGUF:Q4_K_M").id == "qwen2.5"


def test_an_installed_hub_model_belongs_to_its_family():
    registry.register(registry.InstalledModel(
        name="my-llama", path="/nowhere.gguf", source="hub",
        repo="bartowski/Llama-3.2-3B-Instruct-GGUF", filename="Llama-3.2-3B-Instruct-Q4_K_M.gguf",
    ))
    entry = registry.catalogue_entry("my-llama")  # the installed index knows it; the catalogue is data only
    assert catalogue.family_of(entry).id == "llama3"
    assert catalogue.neighbour(entry, +1).name == "llama3.1-8b"
    assert catalogue.get("my-llama") is None and registry.catalogue_entry("nothing") is None
