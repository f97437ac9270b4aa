"""What hostile input costs the app: wall time and peak memory of the real command line, per case.

    PYTHONPATH=. python bench/hardening_bench.py            # every case (~3 minutes on 2 cores)
    PYTHONPATH=. python bench/hardening_bench.py --quick    # without the cases that load a model

Each case runs `assistant ...` in its own process (with its own data folder) and reports its exit
code, wall time, and peak RSS (the process's and its runner's: `wait4` of the CLI, which waits for the
runner), next to a baseline measured in the same run: a sound reply from the same test server, and a
normal chat on the starter model. The figures in the README's "Hardening" part come from this script.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support.hostile_remote import serve  # noqa: E402


def run_cli(home: Path, *argv: str, timeout: float = 300) -> dict:
    env = {**os.environ, "ASSISTANT_HOME": str(home), "PYTHONPATH": str(ROOT)}
    t0 = time.monotonic()
    proc = subprocess.Popen([sys.executable, "-m", "assistant.cli.main", *argv], env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, stdin=subprocess.DEVNULL)
    out: dict[str, bytes] = {}

    def drain(name: str, stream) -> None:
        out[name] = stream.read()

    readers = [threading.Thread(target=drain, args=(n, s)) for n, s in (("out", proc.stdout), ("err", proc.stderr))]
    for r in readers:
        r.start()
    _, status, usage = os.wait4(proc.pid, 0)
    seconds = time.monotonic() - t0
    for r in readers:
        r.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    return {"rc": proc.returncode, "seconds": seconds, "peak_mb": usage.ru_maxrss / 1024,
            "err": out["err"].decode("utf-8", "replace"), "out": out["out"].decode("utf-8", "replace")}


def remote_cases(base: Path) -> list[tuple[str, dict]]:
    rows = []
    for mode, extra, label in (
            ("sound", [], "baseline: a sound remote reply"),
            ("gzip-bomb", [], "gzip bomb (2 GB of newlines) as a reply"),
            ("endless", ["-n", "50"], "endless reply, -n 50"),
            ("drip", ["--reply-deadline", "5"], "a byte a second, --reply-deadline 5"),
            ("blank-lines", ["--reply-deadline", "5"], "blank lines forever, --reply-deadline 5"),
            ("comments", ["--reply-deadline", "5"], "SSE comments forever, --reply-deadline 5"),
            ("number-content", [], "content as a number"),
            ("escapes", [], "a reply full of terminal escapes")):
        httpd, url = serve(mode)
        home = base / mode
        home.mkdir()
        run_cli(home, "remote", "add", "odd", url)
        result = run_cli(home, "chat", "--no-save", "--remote", "odd", "-m", "m", *extra, "Hi")
        httpd.shutdown()
        httpd.server_close()
        rows.append((label, result))
    return rows


def listing_cases(base: Path) -> list[tuple[str, dict]]:
    rows = []
    for mode, label in (("sound", "baseline: models list with a sound remote"),
                        ("list-gzip-bomb", "gzip bomb as a model list (models list)")):
        httpd, url = serve(mode)
        home = base / f"list-{mode}"
        home.mkdir()
        (home / "remotes.json").write_text(json.dumps({"remotes": [{"name": "odd", "url": url}]}))
        rows.append((label, run_cli(home, "models", "list", "--installed")))
        httpd.shutdown()
    with socket.socket() as s:  # accepts, never answers
        s.bind(("127.0.0.1", 0))
        s.listen(0)
        home = base / "dead"
        home.mkdir()
        (home / "remotes.json").write_text(json.dumps({"remotes": [{"name": "dead",
                                                                    "url": f"http://127.0.0.1:{s.getsockname()[1]}"}]}))
        rows.append(("models list with a hung remote", run_cli(home, "models", "list", "--installed")))
    return rows


def template_cases(base: Path) -> list[tuple[str, dict]]:
    fifo = base / "fifo"
    os.mkfifo(fifo)
    huge = base / "huge.jinja"
    with open(huge, "wb") as f:
        f.truncate(300_000_000)
    rows = []
    for label, path in (("--chat-template /dev/zero", "/dev/zero"), ("--chat-template FIFO", str(fifo)),
                        ("--chat-template 300 MB file", str(huge))):
        home = base / label.split()[-1].replace("/", "_")
        home.mkdir(exist_ok=True)
        rows.append((label, run_cli(home, "chat", "--no-save", "--chat-template", path, "hi")))
    return rows


def model_cases(base: Path) -> list[tuple[str, dict]]:
    from assistant.history import HistoryStore

    rows = []
    home = base / "chat"
    home.mkdir()
    rows.append(("baseline: a short local chat (starter, 1 thread)",
                 run_cli(home, "chat", "--no-save", "-t", "1", "-c", "1024", "-n", "8", "hi")))
    raising = base / "raise.jinja"
    raising.write_text("{{ raise_exception('x' * 20000000) }}")
    rows.append(("template raising a 20 MB message", run_cli(home, "chat", "--no-save", "-t", "1", "-c", "256",
                                                             "--chat-template", str(raising), "hi")))
    huge_home = base / "huge"
    huge_home.mkdir()
    with HistoryStore.open(huge_home / "history.db") as store:
        conv = store.create_conversation(model="starter", title="huge")
        store.add_message(conv.id, "user", "y" * 100_000_000)
        store.add_message(conv.id, "assistant", "ok")
    rows.append(("continuing a conversation with a 100 MB message",
                 run_cli(huge_home, "chat", "--conversation", str(conv.id), "-t", "1", "-c", "1024", "-n", "4",
                         "and now?")))
    crashed = huge_home / "crashed-models.json"
    rows[-1][1]["err"] += f"\n(crashed-models.json {'exists' if crashed.exists() else 'absent'})"
    return rows


def server_case() -> tuple[str, dict]:
    """300 idle connections, then a real openai client's request: how long it waits."""
    import openai

    from assistant.engine import LoadSettings, LocalEngine
    from assistant.server import ServerConfig, ServerController
    from tests.support.window import open_services

    with tempfile.TemporaryDirectory() as tmp:
        os.environ["ASSISTANT_HOME"] = tmp
        services = open_services(Path(tmp), LocalEngine())
        model = services.chat.load("starter", LoadSettings(n_ctx=512, n_threads=1)).result(300)
        controller = ServerController(services, ServerConfig(port=0))
        controller.start()
        client = openai.OpenAI(base_url=controller.url, api_key="none", max_retries=0, timeout=60)
        try:
            t0 = time.monotonic()
            client.chat.completions.create(model=model.name, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4, seed=1)
            alone = time.monotonic() - t0
            idle = [socket.create_connection(("127.0.0.1", controller.port or 0)) for _ in range(300)]
            t0 = time.monotonic()
            client.chat.completions.create(model=model.name, messages=[{"role": "user", "content": "hi"}],
                                           max_tokens=4, seed=1)
            crowded = time.monotonic() - t0
            for s in idle:
                s.close()
        finally:
            controller.stop()
            services.close()
    return ("a request with 300 idle connections open", {"rc": 0, "seconds": crowded, "peak_mb": 0.0,
                                                          "err": f"the same request alone: {alone:.2f} s", "out": ""})


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="leave out the cases that load a model")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        rows = remote_cases(base) + template_cases(base) + listing_cases(base)
        if not args.quick:
            rows += model_cases(base)
    if not args.quick:
        rows.append(server_case())
    print(f"{'case':<52} {'exit':>4} {'seconds':>8} {'peak MB':>8} {'x base':>7}  what it said")
    baseline: dict | None = None
    for label, r in rows:
        if label.startswith("baseline:"):
            baseline = r  # the rows after it are compared with it
        lines = r["err"].splitlines() + [line.strip() for line in r["out"].splitlines() if line.strip()[:5] in
                                         ("odd: ", "dead:")]
        said = next((line for line in lines if line.startswith(("error:", "notice:", "odd:", "dead:"))),
                    lines[-1] if lines else "")
        ratio = r["peak_mb"] / baseline["peak_mb"] if r["peak_mb"] and baseline else 0
        print(f"{label:<52} {r['rc']:>4} {r['seconds']:>8.2f} {r['peak_mb']:>8.0f} {ratio:>7.2f}  {said[:110]}")

if __name__ == "__main__":
    main()
