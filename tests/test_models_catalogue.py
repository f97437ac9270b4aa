"""The curated catalogue: families of 4-bit sizes, lookups, and the switch-size helpers."""

import json
from importlib import resources

from models import catalogue, registry


def test_every_entry_is_a_4bit_gguf_with_what_the_estimates_need():
    entries = catalogue.entries()
    assert len(entries) >= 15
    names = [e.name for e in entries]
    assert len(names) == len(set(names))
    for e in entries:
        assert e.quant == "Q4_K_M" and "Q4_K_M" in e.quants, e.name
        assert e.file.endswith(".gguf") and e.size_bytes > 0 and e.params > 0 and e.context_length > 0
        assert e.arch.n_layers and e.arch.n_kv_heads and e.arch.head_dim and e.arch.vocab_size
        if e.is_starter:
            continue
        assert e.repo.count("/") == 1 and e.repo.endswith("GGUF")
        # Q4_K_M files are about 4.5 to 5.5 bits per weight; small models keep their (large)
        # embedding at 6 or 8 bits, which brings Qwen's official 0.5B file to 8.
        assert 4.3 < e.size_bytes * 8 / e.params < 8.5, e.name
        for q in e.quants:
            assert e.file_for(q).endswith(".gguf")


def test_the_catalogue_is_data():
    raw = json.loads(resources.files("models").joinpath("catalogue.json").read_text())
    assert raw["default_quant"] == "Q4_K_M"
    assert {f["id"] for f in raw["families"]} >= {"llama3", "qwen2.5", "gemma2", "gemma3", "mistral", "phi3.5"}


def test_the_asked_for_models_are_there():
    for name in ("llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "qwen2.5-0.5b", "qwen2.5-14b", "gemma2-2b",
                 "gemma2-9b", "mistral-7b", "phi3.5-mini"):
        assert catalogue.get(name) is not None, name


def test_the_starter_is_an_entry_in_the_gemma3_family():
    starter = catalogue.get("starter")
    assert starter.is_starter and starter.sha256.startswith("a5fd3b62")
    assert catalogue.family_of("starter").id == "gemma3"
    assert catalogue.neighbour("starter", +1).name == "gemma3-1b"
    assert catalogue.neighbour("starter", -1) is None


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
    assert catalogue.family_of("my-llama").id == "llama3"
    assert catalogue.neighbour("my-llama", +1).name == "llama3.1-8b"
