"""What llama.cpp itself allocates for a model file and context settings: its logged buffer sizes.

Run in a subprocess (llama.cpp may abort the whole process on a file it refuses):

    python -m tests.support.llama_buffers MODEL.gguf --ctx 4096 [--swa-full] [--kv-type q8_0]
        [--flash-attn auto|on|off] [--ubatch 512]

prints one JSON object: {"weights": mapped model bytes, "repacked": bytes of the CPU's repacked copy,
"kv": KV buffer bytes, "rs": recurrent-state buffer bytes, "compute": compute buffer bytes,
"output": output buffer bytes, "flash_attn": whether llama.cpp resolved it on}. `measure()` runs it.

The figures are read from llama.cpp's own log lines ("CPU_Mapped model buffer size = 12.34 MiB"),
printed with two decimals in MiB: about 5 KiB of rounding each.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
_BUFFER = re.compile(r"(\S+?)\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([\d.]+)\s*MiB")
_KV_TYPES = {"f16": 1, "q8_0": 8, "q4_0": 2}  # ggml_type values
_FLASH = {"auto": -1, "off": 0, "on": 1}


def parse(log: str) -> dict:
    out = {"weights": 0, "repacked": 0, "kv": 0, "rs": 0, "compute": 0, "output": 0}
    for device, kind, mib in _BUFFER.findall(log):
        n = round(float(mib) * 1024 * 1024)
        if kind == "model":
            out["repacked" if "REPACK" in device.upper() else "weights"] += n
        else:
            out[{"KV": "kv", "RS": "rs", "compute": "compute", "output": "output"}[kind]] += n
    out["flash_attn"] = "Flash Attention enabled" in log
    return out


def _main(argv: list[str]) -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--ctx", type=int, required=True)
    ap.add_argument("--swa-full", action="store_true")
    ap.add_argument("--kv-type", default="f16", choices=sorted(_KV_TYPES))
    ap.add_argument("--flash-attn", default="auto", choices=sorted(_FLASH))
    ap.add_argument("--ubatch", type=int, default=512)
    ap.add_argument("--batch", type=int, default=512)
    args = ap.parse_args(argv)

    import llama_cpp.llama_cpp as C

    from assistant.engine.runner import llama_runtime as rt

    mark = rt.log_mark()
    model = rt.load_model(args.path, n_gpu_layers=0)
    params = C.llama_context_default_params()
    params.n_ctx = args.ctx
    params.n_batch = args.batch
    params.n_ubatch = args.ubatch
    params.n_seq_max = 1
    params.n_threads = params.n_threads_batch = 1
    params.swa_full = args.swa_full
    params.type_k = params.type_v = _KV_TYPES[args.kv_type]
    params.flash_attn_type = _FLASH[args.flash_attn]
    ctx = C.llama_init_from_model(model, params)
    if not ctx:
        print(json.dumps({"error": "no context"}))
        return 1
    result = parse(rt.log_since(mark))
    rt.free(model, ctx)
    print(json.dumps(result))
    return 0


def measure(path, n_ctx: int, *, swa_full: bool = False, kv_type: str = "f16", flash_attn: str = "auto",
            n_ubatch: int = 512, n_batch: int = 512, timeout: float = 120) -> dict:
    """Load `path` in a fresh process and return llama.cpp's buffer sizes (see the module's docstring)."""
    cmd = [sys.executable, "-m", "tests.support.llama_buffers", str(Path(path).resolve()), "--ctx", str(n_ctx),
           "--kv-type", kv_type, "--flash-attn", flash_attn, "--ubatch", str(n_ubatch), "--batch", str(n_batch)]
    if swa_full:
        cmd.append("--swa-full")
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=env)
    if proc.returncode != 0:
        raise RuntimeError(f"llama.cpp could not load {path}: {proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    sys.exit(_main(sys.argv[1:]))
