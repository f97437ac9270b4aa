"""API benchmark: what the local OpenAI-compatible server costs over the engine, measured in one run.

    .venv/bin/python bench/api_bench.py                      # the starter model, 2 threads
    .venv/bin/python bench/api_bench.py -m PATH -t 2 --lengths 128,512 --repeats 4 --clients 8
    .venv/bin/python bench/api_bench.py --llama-server /path/to/llama-server   # beside llama.cpp's server too

Three figures, each against a baseline measured in the same run, on the same model and threads:

1. **Streamed tok/s over native decode** at each length: the runner's tight decode+sample loop
   (`assistant bench`'s native figure) against a streamed chat completion read by an HTTP client over
   loopback, the same prompt, sampler and seed (`ignore_eos`, so both make exactly N tokens). The API's
   rate counts tokens after the first over the time from the first text chunk to the last, as the
   native loop counts after its first token. Alternating pairs; the median pair ratio is printed.
2. **Added time to first token** of one HTTP request: the same short request through the chat service
   in-process and through the API over a kept-alive connection, alternating, the KV cache cleared
   before each; the median difference.
3. **Concurrent clients**: N clients stream at once; all must complete. Total throughput (all tokens
   over the wall time) and the longest wait for a first token (the queue, in arrival order).

The server is this app's, started in-process (`ServerController`); history and settings go to a
temporary directory. Figures print through common.formatting; `--json` prints one object.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx

from assistant.chat_service import TurnFailed, TurnRequest, TurnText
from assistant.engine import LoadSettings, LocalEngine
from assistant.engine import protocol as P
from assistant.engine.bench_spec import BENCH_PROMPT, BENCH_SEED, bench_settings
from assistant.engine.benchmark import native_generation
from assistant.history import HistoryStore
from assistant.server import ServerConfig, ServerController
from assistant.services import AppServices
from common.formatting import format_number, format_tps
from common.settings_store import SettingsStore

TTFT_PROMPT = [{"role": "user", "content": "Name a colour."}]


def sampling_body(n_tokens: int) -> dict:
    """bench_settings(n) in OpenAI's (and llama-server's) words."""
    s = bench_settings(n_tokens)
    return {"max_tokens": n_tokens, "seed": BENCH_SEED, "ignore_eos": True, "temperature": s.temperature,
            "top_k": s.top_k, "top_p": s.top_p, "min_p": s.min_p, "repeat_penalty": s.repeat_penalty}


def stream_once(client: httpx.Client, body: dict) -> dict:
    """One streamed chat completion: time to the first text, the text chunks' times, usage."""
    t0 = time.perf_counter()
    first = last = None
    usage: dict = {}
    record: dict = {}
    with client.stream("POST", "/chat/completions", json={**body, "stream": True,
                                                          "stream_options": {"include_usage": True}}) as r:
        if r.status_code != 200:
            raise RuntimeError(f"the server answered {r.status_code}: {r.read().decode(errors='replace')}")
        for line in r.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            chunk = json.loads(line[6:])
            if "error" in chunk:
                raise RuntimeError(chunk["error"]["message"])
            if chunk.get("usage"):
                usage = chunk["usage"]
                record = chunk.get("hearth") or {}
            if chunk.get("choices") and chunk["choices"][0]["delta"].get("content"):
                now = time.perf_counter()
                first = first or now
                last = now
    n = usage.get("completion_tokens", 0)
    return {"ttft_ms": (first - t0) * 1000 if first else None, "tokens": n,
            "tps": (n - 1) / (last - first) if first and last and last > first and n > 1 else 0.0,
            "start": t0, "first": first, "end": last,
            # Where the time went: the runner's own rate, and the rate the app received text at.
            "runner_tps": record.get("gen_tps"), "app_tps": (record.get("transport") or {}).get("received_gen_tps")}


def reset_cache(services: AppServices) -> None:
    services.chat.run_on_engine(lambda engine: engine.call(P.RESET, doing="benchmarking")).result()


def in_process_ttft_ms(services: AppServices) -> float:
    """The chat service's own time to first text: the baseline an HTTP request adds to."""
    settings = bench_settings(8)
    t0 = time.perf_counter()
    handle = services.chat.submit(TurnRequest(kind="messages", messages=TTFT_PROMPT, settings=settings,
                                              source="bench", save=False))
    first = None
    for event in handle.events():
        if isinstance(event, TurnText) and first is None:
            first = time.perf_counter()
        elif isinstance(event, TurnFailed):
            raise RuntimeError(event.sentence)
    return (first - t0) * 1000


def throughput(services: AppServices, client: httpx.Client, lengths: list[int], repeats: int) -> list[dict]:
    rows = []
    for n in lengths:
        natives, apis, ratios, runner, app = [], [], [], [], []
        for i in range(repeats):
            def native() -> float:
                return services.chat.run_on_engine(lambda engine: native_generation(engine, n)).result()

            def api() -> dict:
                reset_cache(services)
                return stream_once(client, {"messages": BENCH_PROMPT, **sampling_body(n)})

            if i % 2:  # alternate which runs first, so drift hits both alike
                a, b = api(), native()
            else:
                b, a = native(), api()
            natives.append(b)
            apis.append(a["tps"])
            ratios.append(a["tps"] / b if b else 0.0)
            runner.append(a["runner_tps"] or 0.0)
            app.append(a["app_tps"] or 0.0)
            say(f"  {n} tokens, pair {i + 1}: native {format_tps(b)}, API {format_tps(a['tps'])} "
                f"(the runner made {format_tps(a['runner_tps'])}, the app received {format_tps(a['app_tps'])})")
        rows.append({"tokens": n, "native_tps": round(statistics.median(natives), 2),
                     "api_tps": round(statistics.median(apis), 2), "ratio": round(statistics.median(ratios), 3),
                     "runner_tps": round(statistics.median(runner), 2), "app_tps": round(statistics.median(app), 2),
                     "runs": repeats})
    return rows


def ttft(services: AppServices, client: httpx.Client, repeats: int) -> dict:
    body = {"messages": TTFT_PROMPT, **sampling_body(8)}
    local, http, added = [], [], []
    for i in range(repeats):
        reset_cache(services)
        if i % 2:
            h = stream_once(client, body)["ttft_ms"]
            reset_cache(services)
            inproc = in_process_ttft_ms(services)
        else:
            inproc = in_process_ttft_ms(services)
            reset_cache(services)
            h = stream_once(client, body)["ttft_ms"]
        local.append(inproc)
        http.append(h)
        added.append(h - inproc)
    return {"in_process_ms": round(statistics.median(local), 2), "http_ms": round(statistics.median(http), 2),
            "added_ms": round(statistics.median(added), 2), "runs": repeats}


def concurrent(url: str, clients: int, n_tokens: int) -> dict:
    results: list[dict | BaseException] = [None] * clients  # type: ignore[list-item]
    body = {"messages": BENCH_PROMPT, **sampling_body(n_tokens)}
    gate = threading.Barrier(clients)

    def one(i: int) -> None:
        try:
            with httpx.Client(base_url=url, timeout=1200) as client:
                gate.wait()
                results[i] = stream_once(client, {**body, "seed": BENCH_SEED + i})
        except BaseException as exc:  # counted as not completed
            results[i] = exc

    threads = [threading.Thread(target=one, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    done = [r for r in results if isinstance(r, dict) and r["tokens"] == n_tokens]
    start = min(r["start"] for r in done) if done else 0.0
    end = max(r["end"] for r in done) if done else 0.0
    tokens = sum(r["tokens"] for r in done)
    return {"clients": clients, "completed": len(done), "tokens_each": n_tokens,
            "total_tps": round(tokens / (end - start), 2) if end > start else 0.0,
            "longest_wait_s": round(max(r["first"] - r["start"] for r in done), 2) if done else None,
            "errors": [str(r) for r in results if not isinstance(r, dict)]}


def llama_server(binary: str, model_path: str, threads: int, lengths: list[int], repeats: int) -> dict:
    """llama.cpp's own server on the same file and threads, through the same client code (optional)."""
    from assistant.server.controller import bind

    sock = bind("127.0.0.1", 0)
    port = sock.getsockname()[1]
    sock.close()
    proc = subprocess.Popen([binary, "-m", model_path, "-t", str(threads), "--port", str(port), "-c", "4096",
                             "--log-disable"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with httpx.Client(base_url=f"http://127.0.0.1:{port}/v1", timeout=600) as client:
            deadline = time.monotonic() + 120
            while time.monotonic() < deadline:
                try:
                    if httpx.get(f"http://127.0.0.1:{port}/health", timeout=2).status_code == 200:
                        break
                except httpx.HTTPError:
                    pass
                time.sleep(0.5)
            def once(body: dict) -> dict:
                try:
                    return stream_once(client, body)
                except httpx.RemoteProtocolError:  # seen once on its first request just after start-up: ask again
                    return stream_once(client, body)

            rows = []
            for n in lengths:
                tps = [once({"messages": BENCH_PROMPT, **sampling_body(n)})["tps"] for _ in range(repeats)]
                rows.append({"tokens": n, "tps": round(statistics.median(tps), 2)})
            first = [once({"messages": TTFT_PROMPT, **sampling_body(8), "cache_prompt": False})["ttft_ms"]
                     for _ in range(repeats)]
            return {"stream": rows, "ttft_ms": round(statistics.median(first), 2)}
    finally:
        proc.terminate()
        proc.wait(30)


def say(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("-m", "--model", default="starter")
    p.add_argument("-t", "--threads", type=int, default=None, help="default: the physical cores")
    p.add_argument("-c", "--ctx", type=int, default=None, help="context length (default: the model's, at most 4096)")
    p.add_argument("--lengths", default="128,512")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--ttft-repeats", type=int, default=10)
    p.add_argument("--clients", type=int, default=8)
    p.add_argument("--client-tokens", type=int, default=64, help="tokens each concurrent client asks for")
    p.add_argument("--llama-server", metavar="PATH", help="also measure llama.cpp's llama-server binary")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    lengths = [int(x) for x in args.lengths.split(",") if x.strip()]

    with tempfile.TemporaryDirectory() as tmp:
        services = AppServices.open(LocalEngine(), history=HistoryStore.open(Path(tmp) / "history.db"),
                                    settings=SettingsStore(Path(tmp) / "settings.json"),
                                    max_waiting=max(64, args.clients))
        try:
            say(f"loading {args.model} ...")
            summary = services.chat.load(args.model, LoadSettings(n_threads=args.threads, n_ctx=args.ctx)).result()
            controller = ServerController(services, ServerConfig(port=0, max_waiting=max(64, args.clients),
                                                                 max_tokens_limit=max(lengths + [8192])))
            url = controller.start()
            with httpx.Client(base_url=url, timeout=1200) as client:
                stream_once(client, {"messages": TTFT_PROMPT, **sampling_body(8)})  # warm-up: first touches
                services.chat.run_on_engine(lambda engine: native_generation(engine, 16)).result()
                say("streamed tok/s against native decode ...")
                stream = throughput(services, client, lengths, max(1, args.repeats))
                say("time to first token, in-process and over HTTP ...")
                first = ttft(services, client, max(1, args.ttft_repeats))
            say(f"{args.clients} concurrent clients ...")
            together = concurrent(url, args.clients, args.client_tokens)
            controller.stop()
            peer = None
            if args.llama_server:
                services.chat.run_on_engine(lambda engine: engine.unload()).result()  # free the cores
                say("llama-server ...")
                peer = llama_server(args.llama_server, summary.path, summary.n_threads or 1, lengths,
                                    max(1, args.repeats))
        finally:
            services.close()

    result = {"model": summary.name, "quant": summary.quant, "threads": summary.n_threads,
              "stream": stream, "ttft": first, "concurrent": together, "llama_server": peer}
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"model   {summary.name} ({summary.quant}) · {summary.n_threads} threads")
    print(f"{'tokens':8}{'native':>12}{'API':>12}{'API/native':>12}   (target ≥ 0.95){'runner':>12}{'app':>12}")
    for row in stream:
        print(f"{row['tokens']:<8}{format_tps(row['native_tps']):>12}{format_tps(row['api_tps']):>12}"
              f"{row['ratio']:>12.3f}{'':17}{format_tps(row['runner_tps']):>12}{format_tps(row['app_tps']):>12}")
    print("(runner: the API reply's rate where it was generated; app: where the app received it)")
    print(f"first token: in-process {format_number(first['in_process_ms'])} ms, over HTTP "
          f"{format_number(first['http_ms'])} ms, added {format_number(first['added_ms'])} ms (target < 10 ms)")
    print(f"{together['clients']} concurrent clients × {together['tokens_each']} tokens: "
          f"{together['completed']}/{together['clients']} completed, total {format_tps(together['total_tps'])}, "
          f"longest wait for a first token {format_number(together['longest_wait_s'])} s")
    if peer:
        rates = ", ".join(f"{r['tokens']}: {format_tps(r['tps'])}" for r in peer["stream"])
        print(f"llama-server: streamed {rates}; first token {format_number(peer['ttft_ms'])} ms")
    return 0 if together["completed"] == together["clients"] else 1


if __name__ == "__main__":
    sys.exit(main())
