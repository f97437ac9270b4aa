"""`assistant bench`: llama-bench-style figures plus the app's own streaming path.

pp: prompt processing of N tokens in batches. tg: generation of N tokens in a
tight loop of decode + sample (the "native" baseline). stream: the same number of
tokens through Engine.chat(), with the same model, threads, sampler and seed, so
`stream/native` shows what the app's streaming costs. Both count tokens after the
first over the time after the first, like the per-reply `gen_tps`.
"""

import statistics
import time
from collections.abc import Callable

import llama_cpp.llama_cpp as C

from assistant.engine.engine import Engine
from assistant.engine.llama_model import Sampler
from assistant.engine.settings import GenerationSettings

BENCH_PROMPT = [{"role": "user", "content": "Write a long story about a lighthouse keeper."}]


def _sampling(n_tokens: int) -> GenerationSettings:
    # Fixed seed and ignore_eos: both paths produce exactly n_tokens, the same ones.
    return GenerationSettings(max_tokens=n_tokens, seed=1234, ignore_eos=True)


def prompt_processing(engine: Engine, n_tokens: int = 512) -> float:
    llama = engine.require_model().llama
    text = "The quick brown fox jumps over the lazy dog. " * (n_tokens // 4 + 8)
    tokens = llama.tokenize(text, add_bos=True)[:n_tokens]
    llama.reset_cache()
    llama.eval_prompt(tokens[:16])  # warm-up: first-touch of weights and buffers
    llama.reset_cache()
    t = time.perf_counter()
    llama.eval_prompt(tokens)
    elapsed = time.perf_counter() - t
    llama.reset_cache()
    return len(tokens) / elapsed


def native_generation(engine: Engine, n_tokens: int) -> float:
    """Tokens/s of a tight decode+sample loop: llama.cpp's speed as Python can drive it."""
    active = engine.require_model()
    llama = active.llama
    rendered = active.renderer.render(BENCH_PROMPT)
    llama.reset_cache()
    llama.eval_prompt(llama.tokenize(rendered.text, rendered.add_bos))
    sampler = Sampler(llama, _sampling(n_tokens), seed=1234)
    one = (C.llama_token * 1)()
    ctx = llama.ctx
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
        llama.reset_cache()
    return (n_tokens - 1) / elapsed


def stream_generation(engine: Engine, n_tokens: int) -> float:
    """Tokens/s through the app's streaming path, as a user's reply would run."""
    engine.require_model().llama.reset_cache()
    response = engine.chat(BENCH_PROMPT, _sampling(n_tokens))
    for _ in response:
        pass
    engine.require_model().llama.reset_cache()
    return response.stats.gen_tps or 0.0


def run_benchmark(engine: Engine, *, pp_tokens: int = 512, tg_tokens: int = 128,
                  stream_lengths=(128, 512, 2048), repeats: int = 1,
                  progress: Callable[[str], None] = lambda msg: None) -> dict:
    active = engine.require_model()
    progress(f"pp{pp_tokens}")
    pp = max(prompt_processing(engine, pp_tokens) for _ in range(repeats))
    progress(f"tg{tg_tokens}")
    tg = max(native_generation(engine, tg_tokens) for _ in range(repeats))
    stream = []
    for n in stream_lengths:
        # Run the two paths in back-to-back pairs, alternating which goes first, so drift
        # (frequency, a neighbour's load) hits both alike; the median pair ratio is robust
        # to one noisy run, where comparing two separate bests is not.
        natives, streams, ratios = [], [], []
        for i in range(repeats):
            progress(f"native and stream {n} ({i + 1}/{repeats})")
            if i % 2:
                streamed, native = stream_generation(engine, n), native_generation(engine, n)
            else:
                native, streamed = native_generation(engine, n), stream_generation(engine, n)
            natives.append(native)
            streams.append(streamed)
            ratios.append(streamed / native if native else 0.0)
        stream.append({"tokens": n, "native_tps": round(statistics.median(natives), 2),
                       "stream_tps": round(statistics.median(streams), 2),
                       "ratio": round(statistics.median(ratios), 3), "runs": repeats})
    return {
        "model": active.entry.name,
        "file": active.entry.path,
        "quant": active.info.quant,
        "threads": active.llama.n_threads,
        "n_ctx": active.llama.n_ctx,
        "backend": engine.backend_record()["kind"],
        "pp": {"tokens": pp_tokens, "tps": round(pp, 2)},
        "tg": {"tokens": tg_tokens, "tps": round(tg, 2)},
        "stream": stream,
    }
