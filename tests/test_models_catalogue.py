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
        assert e.file.endswith(".gguf") and e.size_bytes > 0 and e.params > 0 and e.context_length > 0
        assert e.arch.n_layers and e.arch.n_kv_heads and e.arch.head_dim and e.arch.vocab_size
        if e.is_starter:  # built in: whatever 4-bit quant its package ships
            assert e.quant in ("Q4_1", "Q4_K_M") and e.sha256 and e.quants == (e.quant,), e.name
            continue
        assert e.quant == "Q4_K_M" and "Q4_K_M" in e.quants, e.name
        assert e.repo.count("/") == 1 and e.repo.endswith("GGUF")
        # Q4_K_M files are about 4.5 to 5.5 bits per weight; small models keep their (large)
        # embedding at 6 or 8 bits, which brings Qwen's official 0.5B file to 8.
        assert 4.3 < e.size_bytes * 8 / e.params < 8.5, e.name
        for q in e.quants:
            assert e.file_for(q).endswith(".gguf")


def test_the_catalogue_is_data():
    raw = json.loads(resources.files("models").joinpath("catalogue.json").read_text())
    assert raw["default_quant"] == "Q4_K_M"
    assert {f["id"] for f in raw["families"]} >= {
        "smollm2", "llama3", "qwen2.5", "gemma2", "gemma3", "mistral", "phi3.5"}


def test_the_asked_for_models_are_there():
    for name in ("llama3.2-1b", "llama3.2-3b", "llama3.1-8b", "qwen2.5-0.5b", "qwen2.5-14b", "gemma2-2b",
                 "gemma2-9b", "mistral-7b", "phi3.5-mini", "smollm2-360m", "smollm2-1.7b"):
        assert catalogue.get(name) is not None, name


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
