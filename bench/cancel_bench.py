"""Cancel benchmark: how long Stop takes while a long prompt is evaluated, against how long that
prompt takes to evaluate in full, in one run.

    .venv/bin/python bench/cancel_bench.py [-m starter] [-t THREADS] [--words 600] [--repeats 5]

A ~6,000-token prompt (the issue's case) on the starter model: first evaluated in full (the baseline,
max_tokens 1), then `--repeats` times cancelled at a random moment 0.5-1.5 s into the prompt; the time
from cancel() to the reply's end is the latency (target about 0.5 s; llama.cpp's abort callback is
checked between micro-batches). Prints the median latency and its ratio to the full evaluation.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.engine import GenerationSettings, LoadSettings, LocalEngine  # noqa: E402
from common.formatting import format_duration  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", default="starter")
    ap.add_argument("-t", "--threads", type=int)
    ap.add_argument("--words", type=int, default=600, help="repeats of a 10-word sentence (600: ~6,000 tokens)")
    ap.add_argument("--repeats", type=int, default=5)
    args = ap.parse_args()
    engine = LocalEngine()
    summary = engine.load(args.model, LoadSettings(n_ctx=8192, n_threads=args.threads))
    def prompt(run: int) -> list[dict]:  # a different start each run: nothing is reused from the KV cache
        return [{"role": "user", "content": f"Run {run}. " + "The quick brown fox jumps over the lazy dog. " * args.words}]

    tokens = engine.count_tokens(prompt(0))
    try:
        t0 = time.monotonic()
        full = engine.chat(prompt(0), GenerationSettings(max_tokens=1))
        full.text()
        full_s = time.monotonic() - t0
        latencies = []
        for run in range(1, args.repeats + 1):
            response = engine.chat(prompt(run), GenerationSettings(max_tokens=8))
            delay = random.uniform(0.5, 1.5)
            cancelled_at: dict[str, float] = {}

            def cancel(response=response, delay=delay, cancelled_at=cancelled_at) -> None:
                time.sleep(delay)
                cancelled_at["t"] = time.monotonic()
                response.cancel()

            threading.Thread(target=cancel, daemon=True).start()
            response.text()
            latencies.append(time.monotonic() - cancelled_at["t"])
            assert response.stats.stop_reason == "stopped", response.stats.stop_reason
    finally:
        engine.close()
    median = statistics.median(latencies)
    print(f"model {summary.name} · {summary.n_threads} threads · prompt {tokens:,} tokens")
    print(f"full prompt evaluation: {format_duration(full_s)}")
    print(f"cancel during the prompt: median {median * 1000:.0f} ms, worst {max(latencies) * 1000:.0f} ms "
          f"over {len(latencies)} (target about 500 ms)")
    print(f"cancel latency / full evaluation: {median / full_s:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
