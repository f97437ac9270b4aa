"""The baselines `assistant bench` compares the app against, run next to the model.

pp: prompt processing of N tokens in batches. native: a tight loop of decode and
sample, llama.cpp's speed as Python can drive it, with the same sampler and seed
the app's stream uses. Both count tokens after the first over the time after the
first, like a reply's `gen_tps`.
"""

from __future__ import annotations

import time

import llama_cpp.llama_cpp as C

from assistant.engine.bench_spec import BENCH_PROMPT, BENCH_SEED, bench_settings
from assistant.engine.runner.chat_template import ChatRenderer
from assistant.engine.runner.llama_model import LoadedModel, Sampler


def prompt_processing(model: LoadedModel, n_tokens: int = 512) -> float:
    text = "The quick brown fox jumps over the lazy dog. " * (n_tokens // 4 + 8)
    tokens = model.tokenize(text, add_bos=True)[:n_tokens]
    model.reset_cache()
    model.eval_prompt(tokens[:16], checkpoints=False)  # warm-up: first touch of weights and buffers
    model.reset_cache()
    t = time.perf_counter()
    model.eval_prompt(tokens, checkpoints=False)
    elapsed = time.perf_counter() - t
    model.reset_cache()
    return len(tokens) / elapsed


def native_generation(model: LoadedModel, renderer: ChatRenderer | None, n_tokens: int) -> float:
    if renderer is not None:
        rendered = renderer.render(BENCH_PROMPT)
        prompt = model.tokenize(rendered.text, rendered.add_bos)
    else:
        prompt = model.tokenize(BENCH_PROMPT[0]["content"], add_bos=True)
    model.reset_cache()
    model.eval_prompt(prompt, checkpoints=False)
    sampler = Sampler(model, bench_settings(n_tokens), seed=BENCH_SEED)
    one = (C.llama_token * 1)()
    ctx = model.ctx
    try:
        token = sampler.sample()
        t_first = time.perf_counter()
        for _ in range(n_tokens - 1):
            one[0] = token
            if C.llama_decode(ctx, C.llama_batch_get_one(one, 1)) != 0:
                raise RuntimeError("decode failed during the benchmark")
            token = sampler.sample()
        elapsed = time.perf_counter() - t_first
    finally:
        sampler.close()
        model.reset_cache()
    return (n_tokens - 1) / elapsed
