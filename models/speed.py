"""Generation speed on this machine: measured where a model has run, estimated before a download.

Generating a token reads (nearly) every weight once, so on a CPU its time is
bound by memory bandwidth. The estimate is

    seconds per token = bytes read per token / (bandwidth × efficiency)
                      + scale × (c0 + layers × c_layer × arch factor + vocabulary × c_vocab)

`bandwidth` is this machine's, measured once by a short probe and cached;
`efficiency` is how much of it llama.cpp turns into weight reads. The second
term is the cost of a token that is not weight reads, and it dominates small
models: thread barriers on every op of every layer (~0.03 ms a llama layer with
2 threads here; a Gemma 3 layer, with its extra norms and wider heads, ~5×
that), and computing and sampling one logit per vocabulary entry (~4 ns each:
1 ms for Gemma's 262k). These constants were measured on this project's machine
with random-weight llama models (40 MB to 635 MB, 9 to 60 layers, 32k and 262k
vocabularies) and the starter. A model smaller than the CPU's last-level cache
(~30 MB) runs faster than any of this says, as it is not read from memory.
`efficiency` and `scale` are then fitted (least squares on relative error) to the
speeds measured here on models whose files are still present; with none measured
they are the defaults. Once a model has run, its measured speed is shown instead.

The engine calls `record_measured_speed(model_path, gen_tps, n_threads)` after
each reply; `measured_speed(model_path)` reads it back.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common.paths import data_dir

DEFAULT_EFFICIENCY = 1.0  # llama.cpp's weight reads (2 threads) over the one-thread probe: 0.94 to 1.12 here
OVERHEAD_BASE_S = 0.00005
OVERHEAD_PER_LAYER_S = 0.00003
OVERHEAD_PER_VOCAB_S = 4e-9
# Measured for Gemma 3 (the starter against a random llama of its shape); Gemma 2 has the same
# extra norms and is assumed alike.
ARCH_LAYER_FACTOR = {"gemma2": 5.0, "gemma3": 5.0}
PROBE_BYTES = 256 << 20  # well past any last-level cache
PROBE_RUNS = 5
BANDWIDTH_MAX_AGE_S = 24 * 3600  # probed again daily; the best figure is kept
RUNS_KEPT = 10
MIN_SPREAD = 2.0  # fit both terms only when the models' share of overhead differs this much

_lock = threading.Lock()


def _store_path() -> Path:
    return data_dir() / "speed.json"


def _load() -> dict:
    try:
        data = json.loads(_store_path().read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def _save(data: dict) -> None:
    path = _store_path()
    tmp = path.with_suffix(f".{os.getpid()}.{threading.get_ident()}.tmp")
    tmp.write_text(json.dumps(data, indent=1))
    os.replace(tmp, path)


# --- memory bandwidth --------------------------------------------------------------------


def _machine_id() -> dict:
    import psutil

    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": os.cpu_count(), "ram": psutil.virtual_memory().total}


def probe_bandwidth() -> float:
    """Bytes per second one thread reads from memory: best of a few sums over a 256 MB array (~0.2 s)."""
    import numpy as np

    import psutil

    n = PROBE_BYTES
    if psutil.virtual_memory().available < 4 * n:  # never push a short machine into swap for a probe
        n = PROBE_BYTES // 4
    a = np.empty(n // 8, dtype=np.int64)
    a.fill(1)  # touch every page before timing
    best = float("inf")
    for _ in range(PROBE_RUNS):  # the best run: other programs only ever slow it down
        t = time.perf_counter()
        a.sum()
        best = min(best, time.perf_counter() - t)
    return a.nbytes / best


def memory_bandwidth(force: bool = False) -> float:
    """This machine's memory bandwidth in bytes/s, probed once and cached in the data dir."""
    with _lock:
        data = _load()
        cached = data.get("bandwidth") or {}
        fresh = (
            not force
            and cached.get("machine") == _machine_id()
            and time.time() - cached.get("measured_at", 0) < BANDWIDTH_MAX_AGE_S
            and cached.get("bytes_per_s", 0) > 0
        )
        if fresh:
            return float(cached["bytes_per_s"])
    bw = probe_bandwidth()
    with _lock:
        data = _load()
        cached = data.get("bandwidth") or {}
        if not force and cached.get("machine") == _machine_id():
            # Other programs only ever slow the probe down: the best figure seen is the truest.
            bw = max(bw, float(cached.get("bytes_per_s", 0)))
        data["bandwidth"] = {"bytes_per_s": bw, "machine": _machine_id(), "measured_at": time.time()}
        _save(data)
    return bw


# --- measured speeds ------------------------------------------------------------------------


def _key(model_path) -> str:
    return str(Path(model_path).resolve())


def _file_id(model_path) -> dict | None:
    try:
        st = Path(model_path).resolve().stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


def record_measured_speed(model_path, gen_tps: float, n_threads: int) -> None:
    """Remember a generation speed measured on this machine (tokens/s, with `n_threads` threads)."""
    if not gen_tps or gen_tps <= 0:
        return
    fid = _file_id(model_path)
    if fid is None:
        return
    with _lock:
        data = _load()
        models = data.setdefault("models", {})
        rec = models.get(_key(model_path))
        if not rec or rec.get("file") != fid:
            rec = {"file": fid, "runs": []}  # a new or changed file: old speeds do not apply
        rec["runs"] = (rec.get("runs", []) + [{"tps": float(gen_tps), "n_threads": int(n_threads), "at": time.time()}])[
            -RUNS_KEPT:
        ]
        models[_key(model_path)] = rec
        _save(data)


def _runs(model_path) -> list[dict]:
    rec = _load().get("models", {}).get(_key(model_path))
    if not rec or rec.get("file") != _file_id(model_path):
        return []
    return rec.get("runs", [])


def measured_speed(model_path, n_threads: int | None = None) -> float | None:
    """The generation speed measured here for this file (median of recent runs), or None if it never ran.

    With `n_threads`, only runs with that many threads count; otherwise those with
    the thread count of the latest run.
    """
    runs = _runs(model_path)
    if not runs:
        return None
    threads = n_threads if n_threads is not None else runs[-1]["n_threads"]
    same = [r["tps"] for r in runs if r["n_threads"] == threads]
    return statistics.median(same[-5:]) if same else None


# --- the estimate -------------------------------------------------------------------------------


def overhead_s(n_layers: int | None, vocab_size: int | None, architecture: str | None = None) -> float:
    """The default per-token cost that is not weight reads (see the module's docstring)."""
    layer = OVERHEAD_PER_LAYER_S * ARCH_LAYER_FACTOR.get(architecture or "", 1.0)
    return OVERHEAD_BASE_S + (n_layers or 32) * layer + (vocab_size or 32000) * OVERHEAD_PER_VOCAB_S


def shape_costs(shape) -> tuple[int, float]:
    """(weight bytes read per token, default overhead seconds) of a ModelShape."""
    return shape.bytes_per_token, overhead_s(shape.n_layers, shape.vocab_size, shape.architecture)


@dataclass(frozen=True)
class Calibration:
    bandwidth: float  # bytes/s, from the probe
    efficiency: float  # the share of the bandwidth llama.cpp turns into weight reads
    overhead_scale: float  # measured overhead over the default constants
    n_models: int  # measured models it was fitted on (0: defaults)

    def seconds_per_token(self, bytes_per_token: int, overhead: float) -> float:
        return bytes_per_token / (self.bandwidth * self.efficiency) + self.overhead_scale * overhead

    def tokens_per_s(self, bytes_per_token: int, overhead: float) -> float:
        return 1.0 / self.seconds_per_token(bytes_per_token, overhead)


@dataclass(frozen=True)
class SpeedFigure:
    tokens_per_s: float
    measured: bool  # True: measured on this machine; False: estimated
    calibration: Calibration | None = None


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _measured_points(n_threads: int) -> list[tuple[int, float, float]]:
    """(bytes read per token, default overhead s, tokens/s) for measured models whose files are unchanged."""
    from models.shape import shape_of_file

    data = _load()
    points = []
    for path, rec in data.get("models", {}).items():
        if rec.get("file") != _file_id(path):
            continue
        tps = [r["tps"] for r in rec.get("runs", []) if r["n_threads"] == n_threads]
        if not tps:
            continue
        costs = rec.get("costs")
        if not costs:
            try:
                costs = list(shape_costs(shape_of_file(path)))
            except Exception:  # an unreadable file is simply not used for calibration
                continue
            with _lock:
                fresh = _load()
                if path in fresh.get("models", {}):
                    fresh["models"][path]["costs"] = costs
                    _save(fresh)
        points.append((int(costs[0]), float(costs[1]), statistics.median(tps[-5:])))
    return points


def fit_calibration(points: list[tuple[int, float, float]], bandwidth: float) -> Calibration:
    """Fit seconds/token = a·bytes + k·overhead to measured (bytes, overhead, tokens/s); efficiency = 1/(a·bandwidth)."""
    if not points:
        return Calibration(bandwidth, DEFAULT_EFFICIENCY, 1.0, 0)
    a = k = None
    shares = [o / (x / (bandwidth * DEFAULT_EFFICIENCY) + o) for x, o, _ in points]
    if len(points) >= 2 and max(shares) / min(shares) >= MIN_SPREAD:
        # Least squares on relative error: each row divided by its measured time.
        rows = [(x * tps, o * tps) for x, o, tps in points]  # (x/t, o/t) with t = 1/tps; target 1
        sxx = sum(r[0] * r[0] for r in rows)
        soo = sum(r[1] * r[1] for r in rows)
        sxo = sum(r[0] * r[1] for r in rows)
        sx1 = sum(r[0] for r in rows)
        so1 = sum(r[1] for r in rows)
        det = sxx * soo - sxo * sxo
        if det > 0:
            a = (sx1 * soo - so1 * sxo) / det
            k = (so1 * sxx - sx1 * sxo) / det
        if a is None or a <= 0 or k < 0:
            a = None
    if a is None:
        # One model, or models too alike to tell the terms apart: keep the default overhead, fit the bandwidth term.
        k = 1.0
        slopes = [(1.0 / tps - o) / x for x, o, tps in points if 1.0 / tps > o]
        if not slopes:
            k, slopes = 0.0, [1.0 / tps / x for x, _, tps in points]
        a = statistics.median(slopes)
    efficiency = min(max(1.0 / (a * bandwidth), 0.05), 4.0)
    return Calibration(bandwidth, efficiency, k, len(points))


def calibration(n_threads: int | None = None) -> Calibration:
    threads = n_threads or default_threads()
    return fit_calibration(_measured_points(threads), memory_bandwidth())


def estimate_speed(shape, n_threads: int | None = None, calib: Calibration | None = None) -> SpeedFigure:
    """The estimated generation speed of a ModelShape on this machine."""
    calib = calib or calibration(n_threads)
    return SpeedFigure(calib.tokens_per_s(*shape_costs(shape)), False, calib)


def speed_for(model_path=None, shape=None, n_threads: int | None = None, calib: Calibration | None = None) -> SpeedFigure | None:
    """The measured speed of a model file if it has run here, else the estimate for its shape."""
    threads = n_threads or default_threads()
    if model_path is not None:
        tps = measured_speed(model_path, threads)
        if tps:
            return SpeedFigure(tps, True)
        if shape is None:
            from models.shape import shape_of_file

            try:
                shape = shape_of_file(model_path)
            except Exception:
                return None
    if shape is None:
        return None
    return estimate_speed(shape, threads, calib)
