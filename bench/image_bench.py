"""Image benchmark: what a follow-up turn about the same picture costs, against the first turn that encoded it,
in one run.

    .venv/bin/python bench/image_bench.py [-m MODEL] [-t THREADS] [--repeats 5] [--width 256 --layers 4]

Without -m, a random-weight model and a Gemma 3-type projector are written to a temporary folder
(`--width`, `--layers`: the projector's size; 896 px images like Gemma 3's, a few hundred image tokens),
so the figure is the runner's own, not a model's quality. Each repeat asks about a new image (encoded:
the baseline), then asks a follow-up about it (the image reused from the KV cache). Prints the median
time to first token of both, the median encode time, and the follow-up's ratio to the first turn.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from assistant.engine import GenerationSettings, LoadSettings, LocalEngine  # noqa: E402
from assistant.images import attachment  # noqa: E402


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("-m", "--model", help="a model that sees (default: a random one written for the run)")
    ap.add_argument("-t", "--threads", type=int)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--width", type=int, default=256, help="the random projector's width")
    ap.add_argument("--layers", type=int, default=4, help="the random projector's blocks")
    args = ap.parse_args()
    from tests.support.tiny_vision import png_bytes_noise, write_tiny_projector
    from tests.support.tiny_gguf import write_tiny_llama

    with tempfile.TemporaryDirectory() as folder:
        model = args.model
        if model is None:
            from tests.support.tiny_vision import CHATML

            model = str(write_tiny_llama(Path(folder) / "bench-vision.gguf", n_embd=256, n_heads=4, n_kv_heads=2,
                                         n_ff=512, n_layers=4, n_ctx=4096, chat_template=CHATML))
            write_tiny_projector(Path(folder) / "mmproj-bench-vision.gguf", text_embd=256, n_embd=args.width,
                                 n_heads=4, n_ff=2 * args.width, n_layers=args.layers, image_size=896,
                                 patch_size=14, merge=4)
        engine = LocalEngine()
        summary = engine.load(model, LoadSettings(n_ctx=4096, n_threads=args.threads))
        if not summary.vision:
            print(f"{summary.name} has no image projector; give a model that sees.", file=sys.stderr)
            return 2
        settings = GenerationSettings(max_tokens=2, temperature=0, seed=1)
        first, follow, encode = [], [], []
        try:
            for run in range(args.repeats):
                image = attachment(png_bytes_noise(640, 480, seed=run), f"bench-{run}.png")
                turn = [{"role": "user", "content": f"Run {run}: what is in this picture?", "images": [image]}]
                a = engine.chat(turn, settings)
                a.text()
                b = engine.chat(turn + [{"role": "assistant", "content": a.text()},
                                        {"role": "user", "content": "And what colour is it?"}], settings)
                b.text()
                assert a.stats.images["encoded"] == 1 and b.stats.images["reused"] == 1, (a.stats.images,
                                                                                          b.stats.images)
                first.append(a.stats.ttft_ms)
                follow.append(b.stats.ttft_ms)
                encode.append(a.stats.images["encode_ms"])
        finally:
            engine.close()
    tokens = a.stats.images["tokens"]
    f, g, e = statistics.median(first), statistics.median(follow), statistics.median(encode)
    print(f"{summary.name}: {tokens} image tokens, projector {summary.projector['bytes'] / 1e6:.1f} MB, "
          f"{summary.n_threads} threads, {args.repeats} repeats")
    print(f"first turn (image encoded):   {f:8.1f} ms to first token, of which {e:.1f} ms to encode")
    print(f"follow-up (image reused):     {g:8.1f} ms to first token")
    print(f"ratio follow-up / first turn: {g / f:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
