"""Speculative decoding benchmark (issue 23): each figure is a ratio against plain decoding in the same run.

    .venv/bin/python bench/draft_bench.py                 # the full run (random 1B/3B Q4_K_M files: ~2.5 GB, cached)
    .venv/bin/python bench/draft_bench.py --small         # a quick proof that it works (tiny sizes, short replies)
    .venv/bin/python bench/draft_bench.py --only lookup   # one part: lookup, pairs or stream

1. lookup: prompt lookup on an edit-and-quote task with the default model (the starter): tokens/s with
   lookup over tokens/s without, the same greedy reply both ways.
2. pairs: random-weight 1B drafting for 3B, Q4_K_M (tests/support/draft_pairs.py). The ceiling: a 1B draft
   that always agrees (the 3B target is the 1B plus layers that change nothing, so it reads 3B of weights a
   token). The floor: a 1B draft that never agrees (its output layer negated), with drafting pausing itself
   (the default) and with it forced on. Each against the 3B decoding plainly.
3. stream: the app's own stream cost, `assistant bench`'s stream/native ratio at 512 tokens (default model).

Runs alternate with and without drafting so a neighbour's load hits both alike. On a shared machine the
figures are noisy: repeat, and compare ratios from one run only.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from assistant.engine import LoadSettings, LocalEngine  # noqa: E402
from assistant.engine.benchmark import run_benchmark  # noqa: E402
from assistant.engine.draft_benchmark import DRAFT_PROMPTS, compare_drafting  # noqa: E402


def _say(msg: str) -> None:
    print(f"  [{msg}]", file=sys.stderr, flush=True)


def lookup(args) -> dict:
    engine = LocalEngine()
    try:
        engine.load(args.model, LoadSettings(n_threads=args.threads, n_ctx=2048, draft="lookup"))
        edit = [p for p in DRAFT_PROMPTS if p[0] == "edit"]
        result = compare_drafting(engine, n_tokens=args.tokens, repeats=args.repeats, prompts=edit, progress=_say)
    finally:
        engine.close()
    row = result["prompts"][0]
    print(f"lookup  edit-and-quote, {args.model}: {row['without_tps']:.1f} -> {row['with_tps']:.1f} tok/s, "
          f"ratio {row['speedup']:.3f} (accepted {row['accepted']}/{row['drafted']}, same reply: {row['same_reply']})")
    return result


def _pair_files(args) -> tuple[Path, Path, Path]:
    from tests.support.draft_pairs import write_never_draft, write_random_agreeing_pair
    from tests.support.tiny_gguf import plan_random_llama

    small, big = (60e6, 180e6) if args.small else (1e9, 3e9)
    folder = Path(args.cache) / f"pair-{small:.0e}-{big:.0e}-{args.quant}"
    folder.mkdir(parents=True, exist_ok=True)
    target, draft = folder / "target-agrees.gguf", folder / "draft-agrees.gguf"
    never = folder / "draft-never.gguf"
    if not (target.exists() and draft.exists() and never.exists()):
        t0 = time.monotonic()
        target, draft = write_random_agreeing_pair(folder, small, big, quant=args.quant)
        shape = plan_random_llama(int(small))
        write_never_draft(never, seed=0, quant=args.quant, n_ctx=4096, **shape)
        _say(f"wrote the pair in {time.monotonic() - t0:.0f} s")
    return target, draft, never


def pairs(args) -> list[dict]:
    target, agrees, never = _pair_files(args)
    sizes = f"{agrees.stat().st_size / 1e9:.2f} GB drafting for {target.stat().st_size / 1e9:.2f} GB"
    cases = [("ceiling: a draft that always agrees", agrees, False),
             ("floor: a draft that never agrees, pausing itself", never, False),
             ("floor: a draft that never agrees, forced on", never, True)]
    results = []
    for label, draft, always in cases:
        engine = LocalEngine()
        try:
            engine.load(str(target), LoadSettings(n_threads=args.threads, n_ctx=1024, draft=str(draft),
                                                  draft_always=always))
            result = compare_drafting(engine, n_tokens=args.tokens, repeats=args.repeats, ignore_eos=True,
                                      prompts=[("text", "The lighthouse keeper climbed the stairs")], progress=_say)
        finally:
            engine.close()
        row = result["prompts"][0]
        print(f"pair    {label} ({sizes}, {args.quant}): {row['without_tps']:.2f} -> {row['with_tps']:.2f} tok/s, "
              f"ratio {row['speedup']:.3f} (accepted {row['accepted']}/{row['drafted']})")
        results.append({"case": label, **result})
    return results


def stream(args) -> dict:
    engine = LocalEngine()
    try:
        engine.load(args.model, LoadSettings(n_threads=args.threads, n_ctx=2048))
        result = run_benchmark(engine, pp_tokens=64, tg_tokens=16, stream_lengths=(args.stream_tokens,),
                               repeats=args.stream_repeats, progress=_say)
    finally:
        engine.close()
    row = result["stream"][0]
    app_cpu = f"{100 * row['app_cpu']:.2f}%" if row.get("app_cpu") is not None else "?"
    book = f"{100 * row['bookkeeping']:.2f}%" if row.get("bookkeeping") is not None else "?"
    print(f"stream  {args.model}, {row['tokens']} tokens: native {row['native_tps']:.1f}, stream "
          f"{row['stream_tps']:.1f} tok/s, ratio {row['ratio']:.3f} (median of {row['runs']} alternating pairs); "
          f"the app's CPU {app_cpu} of a core, the runner's own per-token work {book} of the time")
    return result


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--small", action="store_true", help="tiny sizes and short replies: proves it works")
    p.add_argument("--only", choices=["lookup", "pairs", "stream"], action="append")
    p.add_argument("-m", "--model", default="starter", help="the default model for lookup and stream")
    p.add_argument("-t", "--threads", type=int, default=None)
    p.add_argument("--quant", default="Q4_K_M")
    p.add_argument("--cache", default=os.environ.get("DRAFT_BENCH_CACHE", "/tmp/hearth-draft-bench"))
    p.add_argument("--json", metavar="FILE", help="also write every result here")
    p.add_argument("--tokens", type=int, help="reply length for lookup and pairs (default 256; --small 48)")
    p.add_argument("--repeats", type=int, help="runs each way (default 3; --small 1)")
    args = p.parse_args()
    args.tokens = args.tokens or (48 if args.small else 256)
    args.repeats = args.repeats or (1 if args.small else 3)
    args.stream_tokens = 64 if args.small else 512
    args.stream_repeats = 2 if args.small else 5
    parts = args.only or ["lookup", "pairs", "stream"]
    out = {}
    for part in parts:
        out[part] = {"lookup": lookup, "pairs": pairs, "stream": stream}[part](args)
    if args.json:
        Path(args.json).write_text(json.dumps(out, indent=2))
    if "stream" in out:
        ratio = out["stream"]["stream"][0]["ratio"]
        print(f"stream/native {ratio:.3f} (target 0.97)")
    speedups = [r["speedup"] for r in out.get("pairs", []) if r.get("speedup")]
    if speedups:
        print(f"pairs: ceiling {speedups[0]:.2f}x, floor {statistics.median(speedups[1:2]):.2f}x paused, "
              f"{speedups[-1]:.2f}x forced")
    return 0


if __name__ == "__main__":
    sys.exit(main())
