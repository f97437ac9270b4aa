"""`assistant bench`: measure prompt and generation speed, and the app's streaming overhead."""

import json
import sys

from assistant.cli.common import add_model_options, dim, load_settings
from assistant.engine import LocalEngine
from assistant.engine.benchmark import run_benchmark


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark a model on this machine",
                       description="pp512 and tg128 like llama-bench, plus stream/native ratios.")
    add_model_options(p)
    p.add_argument("--tokens", type=int, default=128, help="tokens to generate for tg (default 128)")
    p.add_argument("--pp", type=int, default=512, help="prompt tokens for pp (default 512)")
    p.add_argument("--lengths", default="128,512,2048", help="reply lengths for stream/native (default 128,512,2048)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per figure: pp and tg keep the best; stream/native the median of alternating pairs")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    p.set_defaults(func=run)


def run(args) -> int:
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    settings = load_settings(args)
    # The longest run needs room for the prompt plus its reply.
    settings.n_ctx = max(settings.n_ctx or 0, max(lengths + [args.tokens, args.pp]) + 128)
    engine = LocalEngine()
    engine.load(args.model, settings)
    say = (lambda msg: print(dim(f"running {msg} ..."), file=sys.stderr)) if not args.json else (lambda msg: None)
    result = run_benchmark(engine, pp_tokens=args.pp, tg_tokens=args.tokens, stream_lengths=lengths,
                           repeats=max(1, args.repeats), progress=say)
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"model   {result['model']} ({result['quant']}) · {result['threads']} threads · {result['backend']}")
    print(f"pp{result['pp']['tokens']:<5} {result['pp']['tps']:9.1f} tok/s")
    print(f"tg{result['tg']['tokens']:<5} {result['tg']['tps']:9.1f} tok/s")
    print(f"{'stream':8}{'native':>10}{'app':>10}{'ratio':>8}")
    for row in result["stream"]:
        print(f"{row['tokens']:<8}{row['native_tps']:10.1f}{row['stream_tps']:10.1f}{row['ratio']:8.3f}")
    proc = result["process"]
    if proc.get("ttft_overhead_ms") is not None:
        print(f"process boundary: +{proc['ttft_overhead_ms']:.2f} ms to first token; runner start "
              f"{proc['runner_startup_ms']:.0f} ms, model load {proc['load_ms']:.0f} ms")
    return 0
