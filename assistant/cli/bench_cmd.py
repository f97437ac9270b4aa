"""`assistant bench`: prompt and generation speed of one or more models, and the app's streaming overhead.

    assistant bench -m starter -m tiny            # one row per model
    assistant bench -m starter -m tiny --json     # a JSON list, one object per model
    assistant bench -m qwen3-8b --draft qwen3-0.6b   # the same prompts with and without drafting: the speed-up
    assistant bench --draft lookup                # prompt lookup instead of a draft model

The same statistics service as the window's Benchmark button: models run one after
another on one engine, each result is saved in the history (the window's table shows
it), and Ctrl-C stops after the step under way, keeping the models that finished.
"""

import json
import signal
import sys
from concurrent.futures import wait

from assistant.busy import BUSY_MARK, benchmark_is_busy
from assistant.chat_service import ChatService
from assistant.cli.common import add_model_options, dim, load_settings
from assistant.engine import LocalEngine
from assistant.stats_service import BenchmarkProgress, StatsService
from common.errors import UserError
from common.formatting import format_bytes, format_number
from common.terminal import safe_text


def add_parser(sub) -> None:
    p = sub.add_parser("bench", help="benchmark models on this machine", conflict_handler="resolve",
                       description="pp512 and tg128 like llama-bench, plus stream/native ratios, for each model.")
    add_model_options(p)
    p.add_argument("-m", "--model", action="append", metavar="MODEL",
                   help="starter, an installed model's name, or a path to a .gguf file; "
                        "repeat it to benchmark several (default: starter)")
    p.add_argument("--tokens", type=int, default=128, help="tokens to generate for tg, and per reply with --draft (default 128)")
    p.add_argument("--pp", type=int, default=512, help="prompt tokens for pp (default 512)")
    p.add_argument("--lengths", default="128,512,2048", help="reply lengths for stream/native (default 128,512,2048)")
    p.add_argument("--repeats", type=int, default=1,
                   help="runs per figure: pp and tg keep the best; stream/native the median of alternating pairs")
    p.add_argument("--no-save", action="store_true", help="do not keep the results in the history")
    p.add_argument("--json", action="store_true", help="print a JSON list, one object per model")
    p.set_defaults(func=run)


def run(args) -> int:
    if args.draft and args.draft.strip().lower() not in ("off", "none", "no", ""):
        return _run_draft(args)
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]
    specs = args.model or ["starter"]
    settings = load_settings(args)
    # The longest run needs room for the prompt plus its reply.
    settings.n_ctx = max(settings.n_ctx or 0, max(lengths + [args.tokens, args.pp]) + 128)
    history = None if args.no_save else _open_history()
    chat = ChatService(LocalEngine(), history)
    quitting = False
    try:
        stats = StatsService(chat)
        bench = stats.run_benchmarks(specs, settings, pp_tokens=args.pp, tg_tokens=args.tokens,
                                     stream_lengths=tuple(lengths), repeats=max(1, args.repeats),
                                     progress=_say if not args.json else lambda p: None, save=history is not None)
        with _ctrl_c_stops(bench):
            while not wait([bench.future], timeout=0.2).done:
                pass
        results = bench.future.result()
    except KeyboardInterrupt:
        quitting = True  # quit now: the runner process ends with this one (it dies with its parent)
        raise
    finally:
        if not quitting:
            chat.close()
        if history is not None:
            history.close()
    _print(results, as_json=args.json)
    failed = [r for r in results if "error" in r]
    for r in failed:
        print(f"error: {safe_text(r['model'])}: {safe_text(r['error'])}", file=sys.stderr)
    for warning in bench.warnings:
        print(f"notice: {safe_text(warning)}", file=sys.stderr)
    if bench.cancelled:
        print(dim(f"stopped: {len(results) - len(failed)} of {len(specs)} models benchmarked"), file=sys.stderr)
        return 130
    return 1 if failed else 0


def _run_draft(args) -> int:
    """`--draft`: one model, its draft, the same prompts with and without drafting."""
    from assistant.engine.draft_benchmark import compare_drafting

    specs = args.model or ["starter"]
    if len(specs) > 1:
        raise UserError("--draft compares one model with and without its draft; name one model with -m.")
    settings = load_settings(args)  # the context: -c, else the model's own up to 4,096 (prompts and replies fit)
    engine = LocalEngine()
    stop = {"asked": False}

    def ask_stop(*_):
        if stop["asked"]:
            raise KeyboardInterrupt
        stop["asked"] = True
        print(dim("\nstopping after the run under way (Ctrl-C again to quit now)…"), file=sys.stderr)

    previous = signal.signal(signal.SIGINT, ask_stop)
    try:
        summary = engine.load(specs[0], settings)
        if summary.draft and summary.draft.get("error"):
            raise UserError(summary.draft["error"])
        result = compare_drafting(engine, n_tokens=args.tokens, repeats=max(1, args.repeats),
                                  progress=(lambda m: None) if args.json else (lambda m: print(dim(f"[{safe_text(m)}]"), file=sys.stderr)),
                                  should_stop=lambda: stop["asked"])
    finally:
        signal.signal(signal.SIGINT, previous)
        engine.close()
    if args.json:
        print(json.dumps(result))
        return 0
    _print_draft(result)
    return 130 if stop["asked"] else 0


def _print_draft(result: dict) -> None:
    draft = result["draft"] or {}
    who = "prompt lookup" if draft.get("kind") == "lookup" else safe_text(draft.get("model") or "?")
    print(f"{safe_text(result['model'])} drafted by {who} (up to {draft.get('draft_max')} a round), "
          f"{result['tokens']} tokens, greedy, {result['threads']} threads on {safe_text(result.get('backend') or '?')}")
    print(f"{'prompt':<8}{'without':>10}{'with':>10}{'speed-up':>10}{'accepted':>10}  same reply")
    for row in result["prompts"]:
        acceptance = f"{100 * row['acceptance']:.0f}%" if row["acceptance"] is not None else "-"
        print(f"{row['prompt']:<8}{row['without_tps']:10.1f}{row['with_tps']:10.1f}"
              f"{(row['speedup'] or 0):9.2f}x{acceptance:>10}  {'yes' if row['same_reply'] else 'NO'}")
    if result["speedup"]:
        print(f"speed-up (median over prompts): {result['speedup']:.2f}x (tokens/s; the draft's own prompt "
              "evaluation included)")


def _open_history():
    from assistant.history import HistoryStore

    return HistoryStore.open()


def _say(progress: BenchmarkProgress) -> None:
    print(dim(f"[{progress.step + 1}/{progress.steps}] {safe_text(progress.message)}"), file=sys.stderr)


class _ctrl_c_stops:
    """Ctrl-C asks the benchmark to stop after the step under way; a second Ctrl-C quits at once."""

    def __init__(self, bench):
        self.bench, self.previous = bench, None

    def _handle(self, *_):
        if self.bench.cancelled:
            raise KeyboardInterrupt
        self.bench.cancel()
        print(dim("\nstopping after the step under way (Ctrl-C again to quit now)…"), file=sys.stderr)

    def __enter__(self):
        self.previous = signal.signal(signal.SIGINT, self._handle)
        return self

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.previous)


def _print(results: list[dict], *, as_json: bool) -> None:
    if as_json:
        print(json.dumps(results))
        return
    done = [r for r in results if "error" not in r]
    if not done:
        return
    pp = f"pp{done[0]['pp']['tokens']} t/s"
    tg = f"tg{done[0]['tg']['tokens']} t/s"
    names = [safe_text(r["model"]) for r in done]
    width = max(len("model"), *(len(n) for n in names))
    print(f"{'model':<{width}}  {'quant':<8}{pp:>12}{tg:>12}{'weights':>10}{'RSS':>10}  ran on")
    for name, r in zip(names, done, strict=True):
        memory = r.get("memory") or {}
        threads = r.get('threads')
        ran_on = f"{safe_text(r.get('backend') or '?')}, {threads} thread{'' if threads == 1 else 's'}"
        busy = f"  ({BUSY_MARK})" if benchmark_is_busy(r) else ""
        print(f"{name:<{width}}  {safe_text(r.get('quant') or '–'):<8}{format_number(r['pp']['tps']):>12}"
              f"{format_number(r['tg']['tps']):>12}{format_bytes(memory.get('weights_bytes')):>10}"
              f"{format_bytes(memory.get('rss_bytes')):>10}  {ran_on}{busy}")
    if any(benchmark_is_busy(r) for r in done):
        print(dim(f"({BUSY_MARK}): other programs used the CPU during that benchmark, so its figures are below "
                  "what this machine gives; run it again when the computer is quieter", sys.stdout))
    streams = [(name, row) for name, r in zip(names, done, strict=True) for row in r.get("stream", [])]
    if streams:
        print()
        print(f"{'model':<{width}}  {'stream':>7}{'native':>10}{'app':>10}{'ratio':>8}{'bookkeeping':>13}{'app CPU':>9}")
        for name, row in streams:
            book, app_cpu = row.get("bookkeeping"), row.get("app_cpu")
            print(f"{name:<{width}}  {row['tokens']:>7}{row['native_tps']:10.1f}{row['stream_tps']:10.1f}"
                  f"{row['ratio']:8.3f}{(f'{100 * book:.2f}%' if book is not None else '-'):>13}"
                  f"{(f'{100 * app_cpu:.2f}%' if app_cpu is not None else '-'):>9}")
        print("(bookkeeping: the share of the generation time the stream spent on its own per-token work, "
              "measured in the runner; app CPU: the app process's CPU time while it streamed, as a share of one "
              "core; the ratio also carries this machine's noise)")
    for name, r in zip(names, done, strict=True):
        proc = r.get("process") or {}
        if proc.get("ttft_overhead_ms") is not None:
            print(f"{name}: process boundary +{proc['ttft_overhead_ms']:.2f} ms to first token; runner start "
                  f"{proc['runner_startup_ms']:.0f} ms, model load {proc['load_ms']:.0f} ms")
