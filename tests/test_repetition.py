"""The loop guard: a reply that repeats one pattern for many tokens ends with stop reason `repetition`."""

import random

import pytest

from assistant.engine import GenerationSettings, LoadSettings, LocalEngine
from assistant.engine.runner.repetition import CHECK_EVERY, MIN_SPAN, RepetitionGuard


@pytest.mark.parametrize("period", [1, 2, 3, 7, 30, 64])
def test_a_repeated_pattern_is_caught_soon_after_it_covers_the_span(period):
    guard = RepetitionGuard()
    pattern = list(range(100, 100 + period))
    prefix = [random.Random(period).randrange(5000) for _ in range(50)]
    stream = prefix + pattern * (1000 // period)
    caught = next(i for i, t in enumerate(stream) if guard.repeating(t))
    need = max(MIN_SPAN, 4 * period)
    assert len(prefix) + need - 1 <= caught < len(prefix) + need + CHECK_EVERY


def test_a_few_tokens_shuffled_without_end_are_a_loop_too():
    guard = RepetitionGuard()
    rng = random.Random(3)
    stream = [rng.randrange(5000) for _ in range(40)] + [rng.choice([718, 842, 1760]) for _ in range(400)]
    caught = next(i for i, t in enumerate(stream) if guard.repeating(t))
    assert caught < 40 + 192 + 16


def test_ordinary_text_is_never_taken_for_a_loop():
    guard = RepetitionGuard()
    rng = random.Random(1)
    # Varied text with common tokens recurring (spaces, commas), and a short repeat a list might have.
    text = [rng.choice([1, 2, 3, rng.randrange(5000), rng.randrange(5000)]) for _ in range(5000)]
    text[1000:1012] = [7, 8] * 6
    assert not any(guard.repeating(t) for t in text)


@pytest.mark.llama_cpp
def test_the_engine_ends_a_forced_loop_with_repetition_and_honours_lengths(tiny_model_path):
    engine = LocalEngine()
    try:
        engine.load(str(tiny_model_path), LoadSettings(n_ctx=512, n_threads=1))
        # Greedy, with a "penalty" below 1 that rewards repeating: random weights fall into a loop.
        greedy = GenerationSettings(temperature=0, ignore_eos=True, max_tokens=400, repeat_penalty=0.5)
        looped = engine.chat([{"role": "user", "content": "hi"}], greedy)
        looped.text()
        assert looped.stats.stop_reason == "repetition" and looped.stats.completion_tokens < 400
        free = engine.chat([{"role": "user", "content": "hi"}],
                           GenerationSettings(temperature=0, ignore_eos=True, max_tokens=150, repeat_penalty=0.5,
                                              stop_on_repetition=False))
        free.text()
        assert free.stats.stop_reason == "length" and free.stats.completion_tokens == 150
    finally:
        engine.close()
