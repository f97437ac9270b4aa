"""`assistant bench`: llama-bench-style figures, and what the app's stream costs against them.

pp and the native tg loop run inside the runner, next to the model. The stream is
a real reply through the engine, timed where the app receives it, with the same
prompt, sampler and seed, so `stream/native` shows what the app's path costs,
the process boundary included. Back-to-back pairs alternate which runs first, so
drift (CPU frequency, a neighbour's load) hits both alike; the median pair ratio
is robust to one noisy run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable

import psutil

from assistant.engine import protocol as P
from assistant.engine.bench_spec import BENCH_PROMPT, bench_settings
from assistant.engine.local import LocalEngine
from common.errors import UserError


def prompt_processing(engine: LocalEngine, n_tokens: int = 512) -> float:
    return float(engine.call(P.BENCH_PP, n_tokens, doing="benchmarking"))


def native_generation(engine: LocalEngine, n_tokens: int) -> float:
    """Tokens/s of a tight decode+sample loop in the runner: llama.cpp's speed as Python can drive it."""
    return float(engine.call(P.BENCH_NATIVE, n_tokens, doing="benchmarking"))


def stream_generation(engine: LocalEngine, n_tokens: int) -> dict:
    """A reply through the app's streaming path, timed where the app receives it."""
    engine.call(P.RESET, doing="benchmarking")
    app = psutil.Process()
    cpu0, t0 = app.cpu_times(), time.perf_counter()
    response = engine.chat(BENCH_PROMPT, bench_settings(n_tokens))
    response.text()
    cpu1, t1 = app.cpu_times(), time.perf_counter()
    engine.call(P.RESET, doing="benchmarking")
    st = response.stats
    assert st is not None  # a finished response always has its record
    received = st.transport.get("received_gen_tps") or st.gen_tps or 0.0
    runner_ttft = st.transport.get("runner_ttft_ms")
    book = st.transport.get("bookkeeping_ms")
    share = book / st.gen_ms if book is not None and st.gen_ms else None  # of the generation time
    # The app's own CPU while the reply streamed, as a share of one core: what it takes from llama.cpp's
    # threads on a machine with no core to spare (CPU time, so a neighbour's load does not change it).
    app_cpu = (cpu1.user - cpu0.user + cpu1.system - cpu0.system) / (t1 - t0) if t1 > t0 else None
    return {"tps": received, "runner_tps": st.gen_tps, "ttft_ms": st.ttft_ms, "bookkeeping_share": share,
            "app_cpu_share": app_cpu, "batches": st.transport.get("batches"),
            "ttft_overhead_ms": round(st.ttft_ms - runner_ttft, 2) if st.ttft_ms and runner_ttft else None}


def run_benchmark(engine, *, pp_tokens: int = 512, tg_tokens: int = 128,
                  stream_lengths=(128, 512, 2048), repeats: int = 1,
                  progress: Callable[[str], None] = lambda msg: None,
                  should_stop: Callable[[], bool] = lambda: False) -> dict:
    """Benchmark the loaded local model (`engine`: a LocalEngine, or a router holding one)."""
    engine = getattr(engine, "local", engine)
    summary = engine.summary()
    if not isinstance(engine, LocalEngine) or summary is None:
        raise UserError("Only a model on this machine can be benchmarked; load one first.")
    progress(f"pp{pp_tokens}")
    pp = max(prompt_processing(engine, pp_tokens) for _ in range(repeats))
    progress(f"tg{tg_tokens}")
    tg = max(native_generation(engine, tg_tokens) for _ in range(repeats))
    stream, overheads = [], []
    for n in stream_lengths:
        natives, streams, ratios, shares, app_cpu = [], [], [], [], []
        for i in range(repeats):
            if should_stop():
                break
            progress(f"native and stream {n} ({i + 1}/{repeats})")
            if i % 2:
                streamed = stream_generation(engine, n)
                native = native_generation(engine, n)
            else:
                native = native_generation(engine, n)
                streamed = stream_generation(engine, n)
            natives.append(native)
            streams.append(streamed["tps"])
            ratios.append(streamed["tps"] / native if native else 0.0)
            if streamed["bookkeeping_share"] is not None:
                shares.append(streamed["bookkeeping_share"])
            if streamed["app_cpu_share"] is not None:
                app_cpu.append(streamed["app_cpu_share"])
            if streamed["ttft_overhead_ms"] is not None:
                overheads.append(streamed["ttft_overhead_ms"])
        if natives:
            stream.append({"tokens": n, "native_tps": round(statistics.median(natives), 2),
                           "stream_tps": round(statistics.median(streams), 2),
                           "ratio": round(statistics.median(ratios), 3), "runs": len(natives),
                           "bookkeeping": round(statistics.median(shares), 4) if shares else None,
                           "app_cpu": round(statistics.median(app_cpu), 4) if app_cpu else None})
    return {
        "model": summary.name,
        "file": summary.path,
        "quant": summary.quant,
        "n_params": summary.n_params,
        "size_bytes": summary.size_bytes,
        "threads": summary.n_threads,
        "n_ctx": summary.n_ctx,
        "backend": summary.backend.get("kind"),
        "pp": {"tokens": pp_tokens, "tps": round(pp, 2)},
        "tg": {"tokens": tg_tokens, "tps": round(tg, 2)},
        "stream": stream,
        "process": {"runner_startup_ms": summary.backend.get("runner_startup_ms"), "load_ms": summary.load_ms,
                    "ttft_overhead_ms": round(statistics.median(overheads), 2) if overheads else None},
        "memory": dict(summary.memory),
    }
