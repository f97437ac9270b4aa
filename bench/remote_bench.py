"""Remote benchmark: the tok/s a remote reply arrives at, over the server's own figure, in one run.

    .venv/bin/python bench/remote_bench.py                 # the starter on this app's `assistant serve`
    .venv/bin/python bench/remote_bench.py --url http://gpu-box:8080 -m MODEL [--api-key KEY]

Starts `assistant serve` on loopback in its own process (another machine's stand-in) unless --url
names a running server, then asks for N tokens (ignore_eos, a fixed seed) through the remote backend,
as the app's chat does. The server reports its own generation rate (llama-server's `timings`, which
this app's server sends too); the client measures the rate text arrived at. received/server shows what
the network path and the streaming cost (target >= 0.95). Pairs are alternating lengths; medians.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.engine import GenerationSettings  # noqa: E402
from assistant.engine.remote import RemoteEngine  # noqa: E402
from assistant.remotes import Remote  # noqa: E402


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, threads: int | None) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    home = tempfile.mkdtemp(prefix="hearth-remote-bench-")
    cmd = [str(Path(sys.executable).parent / "assistant"), "serve", "-m", model, "--port", str(port)]
    if threads:
        cmd += ["-t", str(threads)]
    proc = subprocess.Popen(cmd, env={**os.environ, "ASSISTANT_HOME": home}, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/v1/models", timeout=1).status_code == 200:
                return proc, url
        except httpx.HTTPError:
            time.sleep(0.3)
    proc.kill()
    raise SystemExit("the server did not start")


def measure(engine: RemoteEngine, tokens: int) -> tuple[float, float | None]:
    response = engine.chat([{"role": "user", "content": "Write a long story about a lighthouse keeper."}],
                           GenerationSettings(max_tokens=tokens, seed=1234, ignore_eos=True,
                                              stop_on_repetition=False))
    response.text()
    st = response.stats
    return st.gen_tps or 0.0, st.transport.get("server_gen_tps")


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--url", help="a running server (default: start `assistant serve` on loopback)")
    p.add_argument("-m", "--model", default="starter")
    p.add_argument("--api-key")
    p.add_argument("-t", "--threads", type=int)
    p.add_argument("--lengths", default="128,512")
    p.add_argument("--repeats", type=int, default=4)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    proc = None
    url = args.url
    if url is None:
        proc, url = start_server(args.model, args.threads)
    try:
        engine = RemoteEngine(Remote(name="bench", url=url), args.api_key)
        models = engine.list_models()
        model = args.model if args.model in models else models[0]
        engine.load(model)
        measure(engine, 16)  # warm-up: the model's pages, the connection
        rows = []
        for n in [int(x) for x in args.lengths.split(",")]:
            received, server, ratios = [], [], []
            for _ in range(args.repeats):
                got, told = measure(engine, n)
                received.append(got)
                if told:
                    server.append(told)
                    ratios.append(got / told)
            rows.append({"tokens": n, "received_tps": round(statistics.median(received), 2),
                         "server_tps": round(statistics.median(server), 2) if server else None,
                         "ratio": round(statistics.median(ratios), 3) if ratios else None, "runs": args.repeats})
    finally:
        if proc is not None:
            proc.terminate()
            proc.wait(30)
    if args.json:
        print(json.dumps({"url": url, "model": model, "lengths": rows}))
        return 0
    print(f"remote {url} · model {model}")
    print(f"{'tokens':8}{'server':>10}{'received':>10}{'ratio':>8}")
    for r in rows:
        server = f"{r['server_tps']:10.1f}" if r["server_tps"] else f"{'?':>10}"
        ratio = f"{r['ratio']:8.3f}" if r["ratio"] else f"{'?':>8}"
        print(f"{r['tokens']:<8}{server}{r['received_tps']:10.1f}{ratio}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
