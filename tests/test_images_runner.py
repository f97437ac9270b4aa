"""Issue 22 through the real runner: a random-weight model and a tiny Gemma 3-type projector, written with the
`gguf` package, in llama.cpp's multimodal library. Image tokens as the library counts them, the encode time and
the projector's memory in the record, a follow-up turn that reuses the image, a bad image or a blind model."""

import re

import pytest

from assistant.engine.local import LocalEngine
from assistant.engine.runner.vision import placeholder
from assistant.engine.settings import GenerationSettings, LoadSettings
from assistant.images import attachment
from models.projector import read_projector_info
from tests.support.tiny_vision import TOKENS_PER_IMAGE, bad_images, jpeg_bytes, png_bytes, write_tiny_vision_model

pytestmark = pytest.mark.llama_cpp

GREEDY = GenerationSettings(max_tokens=4, temperature=0, seed=1)


@pytest.fixture(scope="module")
def vision_model(tmp_path_factory):
    return write_tiny_vision_model(tmp_path_factory.mktemp("vision"))


@pytest.fixture(scope="module")
def engine(vision_model):
    model, _projector = vision_model
    with LocalEngine() as eng:
        eng.load(str(model), LoadSettings(n_ctx=1024, n_threads=1))
        yield eng


def ask(engine, messages):
    response = engine.chat(messages, GREEDY)
    response.text()
    return response.stats


def test_the_projector_beside_the_model_loads_and_its_memory_is_what_llama_cpp_reports(engine, vision_model):
    summary = engine.summary()
    assert summary.vision is True and summary.projector["path"] == str(vision_model[1].absolute())
    # llama.cpp logs the projector's weights as "model size: N MiB" (two decimals) and its compute buffer.
    header = read_projector_info(vision_model[1])
    assert summary.projector["weights_bytes"] == pytest.approx(header.weights_bytes, rel=0.05)
    assert summary.projector["compute_bytes"] > 0
    assert summary.memory["projector_bytes"] == summary.projector["bytes"]


def test_an_image_costs_the_tokens_the_library_counts_its_encode_time_and_the_projector_in_the_record(engine):
    image = attachment(png_bytes(48, 32), "red.png")
    stats = ask(engine, [{"role": "user", "content": "What is this?", "images": [image]}])
    assert stats.error is None and stats.completion_tokens > 0
    record = stats.images
    # Gemma 3's projector: (64 / 8 / 2)^2 tokens per image, whatever the picture's own size.
    assert record["count"] == 1 and record["tokens"] == TOKENS_PER_IMAGE
    assert record["encode_ms"] > 0 and record["encoded"] == 1 and record["reused"] == 0
    assert record["projector_bytes"] == engine.summary().projector["bytes"] == stats.memory.projector_bytes
    without = ask(engine, [{"role": "user", "content": "What is this?"}])
    assert without.images == {} and without.memory.projector_bytes == record["projector_bytes"]  # loaded all the same
    # The image adds its tokens and the projector's markers around them (<start_of_image> ... <end_of_image>).
    assert stats.prompt_tokens - without.prompt_tokens > TOKENS_PER_IMAGE
    # The context meter counts what the prompt will take, image tokens included.
    assert engine.count_tokens([{"role": "user", "content": "What is this?", "images": [image]}]) == stats.prompt_tokens


def test_a_follow_up_turn_about_the_same_image_reuses_it_and_a_different_image_is_evaluated_from_there(engine):
    image = attachment(png_bytes(48, 32, (10, 200, 30)), "green.png")
    first_turn = [{"role": "user", "content": "Describe the picture.", "images": [image]}]
    first = ask(engine, first_turn)
    follow_up = first_turn + [{"role": "assistant", "content": first.reply},
                              {"role": "user", "content": "And its colour?"}]
    second = ask(engine, follow_up)
    assert second.images["count"] == 1 and second.images["encoded"] == 0 and second.images["reused"] == 1
    assert second.images["encode_ms"] == 0
    # Everything up to the new question came from the cache, the image's positions included.
    assert second.cached_tokens >= first.prompt_tokens

    other = attachment(jpeg_bytes(40, 30), "blue.jpg")
    third = ask(engine, [{"role": "user", "content": "Describe the picture.", "images": [other]}])
    assert third.images["encoded"] == 1
    # Kept: the text before the image; evaluated again: from the image on.
    assert 0 < third.cached_tokens < first.prompt_tokens - TOKENS_PER_IMAGE


def test_several_images_in_one_message(engine):
    images = [attachment(png_bytes(30, 30, (255, 0, 0)), "a.png"), attachment(png_bytes(30, 30, (0, 0, 255)), "b.png")]
    stats = ask(engine, [{"role": "user", "content": "Compare them.", "images": images}])
    assert stats.images["count"] == 2 and stats.images["tokens"] == 2 * TOKENS_PER_IMAGE


def test_placeholders_are_never_real_tokens_and_differ_by_image_and_position():
    a, b = "a" * 64, "b" * 64
    ids = {placeholder(a, 0), placeholder(a, 1), placeholder(b, 0)}
    assert len(ids) == 3 and all(i < 0 for i in ids)


@pytest.mark.parametrize("kind", sorted(bad_images()))
def test_a_bad_image_that_reaches_the_runner_is_one_sentence_and_the_runner_keeps_working(engine, kind):
    data, word = bad_images()[kind]
    from assistant.images import ImageAttachment

    # Past the app's own checks (as if they had a bug): the runner's decoder still refuses it.
    unchecked = ImageAttachment(data, "0" * 64, "image/png", "photo.png")
    pid = engine.summary().pid
    stats = ask(engine, [{"role": "user", "content": "What is this?", "images": [unchecked]}])
    assert stats.stop_reason == "error" and word in stats.error and "'photo.png'" in stats.error
    assert stats.error.endswith(".") and "\n" not in stats.error
    good = ask(engine, [{"role": "user", "content": "Hello", "images": [attachment(png_bytes(), "ok.png")]}])
    assert good.error is None and engine.summary().pid == pid  # the same runner, still answering


def test_a_model_that_cannot_see_says_so_in_one_sentence(tiny_model_path):
    with LocalEngine() as eng:
        summary = eng.load(str(tiny_model_path), LoadSettings(n_ctx=256, n_threads=1, chat_format="chatml"))
        assert summary.vision is False
        stats = ask(eng, [{"role": "user", "content": "Look", "images": [attachment(png_bytes(), "x.png")]}])
        assert stats.stop_reason == "error" and re.search(r"cannot see images.*--projector FILE\)\.$", stats.error)
        assert ask(eng, [{"role": "user", "content": "Hello"}]).error is None


def test_a_sliding_window_model_keeps_a_follow_up_about_the_image_cached(tmp_path):
    """Gemma 3's own shape: window-sized caches for its sliding layers, so a follow-up resumes from the cache (or a
    checkpoint) with the image's positions in it, and the image is not encoded again."""
    from tests.support.hybrid_gguf import write_tiny_gemma3
    from tests.support.tiny_vision import write_tiny_projector

    model = write_tiny_gemma3(tmp_path / "gemma3.gguf", sliding_window=32)
    write_tiny_projector(tmp_path / "mmproj-gemma3.gguf", text_embd=128)
    with LocalEngine() as eng:
        summary = eng.load(str(model), LoadSettings(n_ctx=1024, n_threads=1))
        assert summary.vision and summary.kv_cache.get("swa") == "window"
        turn = [{"role": "user", "content": "Describe the picture in detail, please. " * 3,
                 "images": [attachment(png_bytes(40, 40), "a.png")]}]
        first = ask(eng, turn)
        assert first.error is None and first.images["encoded"] == 1
        follow_up = turn + [{"role": "assistant", "content": first.reply}, {"role": "user", "content": "Why?"}]
        second = ask(eng, follow_up)
        assert second.error is None and second.images["encoded"] == 0 and second.images["reused"] == 1
        assert second.cached_tokens >= first.prompt_tokens - 1
