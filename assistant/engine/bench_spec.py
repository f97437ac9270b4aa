"""What a benchmark run generates: the same prompt, sampler and seed on both sides of the
process boundary (the runner's native loop and the app's stream), so their speeds compare."""

from assistant.engine.settings import GenerationSettings

BENCH_PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]
BENCH_SEED = 1234


def bench_settings(n_tokens: int) -> GenerationSettings:
    # Fixed seed and ignore_eos: both paths produce exactly n_tokens, the same ones.
    return GenerationSettings(max_tokens=n_tokens, seed=BENCH_SEED, ignore_eos=True, stop_on_repetition=False)
