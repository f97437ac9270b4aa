"""Generation speed on this machine: measured where a model has run, estimated before a download.

Generating a token reads (nearly) every weight once. The estimate is

    seconds per token = work bytes / min(bandwidth at the working set × efficiency, kernel rate)
                      + scale × (c0 + layers × c_layer × arch factor + vocabulary × c_vocab)

What makes it hold across CPUs:

- **Bandwidth is measured, per working set and thread count.** A short probe reads
  arrays of 8 MB up to past the last-level cache with as many threads as generation
  uses, and keeps the curve. A model whose weights fit in what the cache holds is
  read faster than one streamed from memory (a 30 MB model ran 1.7× faster per byte
  than a 230 MB one on this project's Sapphire Rapids VM, whose L3 is large); a
  one-thread probe says little about 8 threads on a desktop. The estimate reads the
  curve at the model's bytes per token (×1.5: llama.cpp keeps less of its weights in
  the caches than the probe keeps of its array). `efficiency` is the share of the
  probe's bandwidth that llama.cpp turns into weight reads.
- **The kernels may set the pace, not the memory.** One token at a time, llama.cpp's
  4-bit kernels get through about 5.5 GB/s of weights per thread with AVX2 (fitted here
  on an AVX2-only EPYC VM, 2 threads, to random Q4_K_M models of 30 MB to 1.8 GB read
  per token: the 1B ran at 17.6 tok/s against 25.7 GB/s probed) and an assumed 2.5x
  that with AVX-512 (an EPYC VM with it ran the same 1B memory-bound at 42-44 tok/s).
  The CPU's vector class comes from /proc/cpuinfo; a measured model of the kind
  corrects the figure.
- **Work bytes weigh tensor types by their CPU kernels.** ggml repacks Q4_0, Q4_K and
  IQ4 weights into faster kernels; the legacy Q4_1, Q5_0 and Q5_1 types have none. Q4_1
  ran 1.22 to 1.6× slower per byte than Q4_K here (2 threads, where the kernels, not
  the memory, set the pace); Q5_0 and Q5_1 are assumed alike. Without this, the built-in Q4_1 starter teaches the estimate that
  every Q4_K_M download is 30% slower than it is.
- **The per-token overhead** is thread barriers and small ops on every layer (~0.03 ms
  a llama layer with 2 threads on an AVX-512 Sapphire Rapids VM, measured with random
  models of 30 and 60 layers; ~0.13 ms on the AVX2-only EPYC VM, fitted with the
  kernel rate above: 8 and 32 layers of width 256 ran at 418 and 167 tok/s) and
  computing and sampling one logit per vocabulary entry (~4 ns each). A Gemma 3
  layer has about 1.5× a llama layer's ops (four norms, not two, and q/k norms). An
  earlier factor of 5×, measured on another machine, did not hold here: Gemma 3 270M
  ran within 11% of this estimate. Part of it was likely its Q5_0 tensors, which the
  work bytes now carry.
- **Only quiet runs count.** A speed measured while other programs held the cores the
  generation threads need (`CpuLoadMeter`, `is_quiet`) is slower than the model: it never
  becomes the model's speed (`measured_speed` is the median of quiet runs only, else
  None; `busy_speed` keeps the busy figure for a view to show as busy) and never
  teaches the estimate.
- **Calibrated per kernel kind.** `efficiency` and `scale` are fitted (least squares on
  relative error) to speeds measured here, separately for each kind: the tensor type
  holding most of a model's weights ("Q4_K" for a Q4_K_M file, "Q4_1" for the
  starter). What one small model in a slow-kernel quant teaches (the built-in Q4_1
  starter is overhead-bound and slow per byte) never moves the estimate of a Q4_K_M
  download. With nothing of a kind measured, the defaults: an efficiency of 0.85, which
  fits the bandwidth-bound 0.5-8B models (llama.cpp reached 75-95% of the probed
  bandwidth on 1B and 3B Q4_K_M models here). `estimate_checks` shows each measured
  model's estimate, made without its own measurement, against what it measured.

The engine calls `record_measured_speed(model_path, gen_tps, n_threads, cpu_busy_fraction)`
after each reply; `measured_speed(model_path)` reads the quiet figure back.
"""

from __future__ import annotations

import contextlib
import functools
import json
import math
import os
import platform
import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from common.paths import data_dir
from models import atomic_file

# llama.cpp's weight reads over the probe's, same threads: 75-95% on 1B and 3B Q4_K_M models here (2 threads
# of an EPYC VM, FIELD-NOTES), where generation is bound by memory bandwidth, as it is for 0.5-8B models on CPUs.
DEFAULT_EFFICIENCY = 0.85
EFFICIENCY_RANGE = (0.2, 1.5)  # what one measured model may teach: outside this it measured something else
OVERHEAD_SCALE_RANGE = (0.2, 5.0)
OVERHEAD_BASE_S = 0.00005
OVERHEAD_PER_LAYER_S = {"avx512": 0.00003, "avx2": 0.00013, "other": 0.00026}  # by the CPU's vector class
OVERHEAD_PER_VOCAB_S = 4e-9
ARCH_LAYER_FACTOR = {"gemma2": 1.5, "gemma3": 1.5}  # ops per layer against llama's (see above)
SLOW_KERNEL_COST = 1.4  # their cost per byte against the K-quants': 1.22 to 1.6 measured here
# llama.cpp keeps less of a model in the caches than a plain read of the same size keeps of an array:
# its speed per byte fell at about 2/3 of the size where the probe's did (random llamas of 30 to 600 MB).
WORKING_SET_FACTOR = 1.5
# What the 4-bit CPU kernels (Q4_K, Q8_0 and the like, one token at a time) turn into weight reads per thread
# when memory keeps up: 5.5 GB/s fitted here on an AVX2-only EPYC VM (2 threads; random Q4_K_M models of 60M
# to 3B within 10%, and the built-in Q4_1 and Q8_0-heavy models within 6%). With AVX-512 llama.cpp's kernels
# do about 2.5x that (an EPYC VM with it ran the 1B memory-bound); an assumption until a model is measured.
KERNEL_BYTES_PER_S_PER_THREAD = {"avx512": 13.7e9, "avx2": 5.5e9, "other": 2.7e9}
PROBE_SIZES = (8 << 20, 16 << 20, 32 << 20, 64 << 20, 128 << 20, 256 << 20)
PROBE_MIN_BYTES = 256 << 20  # the largest array: past the last-level cache (2× it), within these bounds
PROBE_MAX_BYTES = 512 << 20
PROBE_RUNS = 2
PROBE_ROUNDS = 3  # rounds at most, until one ran on a quiet CPU
PROBE_BUDGET_S = 1.0  # no new round after this long: the probe must stay short
BANDWIDTH_MAX_AGE_S = 24 * 3600  # probed again daily; the best figure at each size is kept
BUSY_PROBE_TTL_S = 600  # a probe measured while other programs were busy is redone after this
RUNS_KEPT = 10
MIN_SPREAD = 2.0  # fit both terms only when the models' share of overhead differs this much
QUIET_TOLERANCE_CORES = 0.25  # what other programs may use beyond the cores a run left free (a terminal, a clock)
STORE_VERSION = 3  # v1 kept one bandwidth figure from a one-thread probe; v2 had no kernel kind in its costs
# The dominant weight type of a file quant, for a shape without a tensor table (the catalogue's).
_QUANT_KIND = {"Q4_K_M": "Q4_K", "Q4_K_S": "Q4_K", "Q4_K_L": "Q4_K", "Q4_K_XL": "Q4_K", "Q5_K_M": "Q5_K",
               "Q5_K_S": "Q5_K", "Q5_K_L": "Q5_K", "Q3_K_M": "Q3_K", "Q3_K_S": "Q3_K", "Q3_K_L": "Q3_K",
               "Q3_K_XL": "Q3_K", "Q2_K_L": "Q2_K", "MXFP4_MOE": "MXFP4", "FP16": "F16", "MOSTLY_F16": "F16"}

_lock = threading.Lock()
try:
    _CLOCK_TICK_S = 1.0 / os.sysconf("SC_CLK_TCK")
except (AttributeError, ValueError, OSError):  # not POSIX: psutil's own figures are finer there
    _CLOCK_TICK_S = 0.0


def _store_path() -> Path:
    return data_dir() / "speed.json"


def _load() -> dict:
    try:
        data = json.loads(_store_path().read_text())
        return data if isinstance(data, dict) else {}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # a cache of measurements: losing it costs a probe, nothing more
        import logging

        logging.getLogger(__name__).info("ignoring the unreadable speed record %s: %s", _store_path(), exc)
        return {}


@contextlib.contextmanager
def _updating():
    """Read-modify-write of the record, under a thread lock and a file lock (several processes record speeds)."""
    from filelock import FileLock

    with _lock, FileLock(str(_store_path().with_suffix(".lock")), timeout=30):
        data = _load()
        yield data
        atomic_file.write_json(_store_path(), data)


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


def last_level_cache_bytes() -> int | None:
    """The largest CPU cache the system reports (Linux sysfs), or None."""
    sizes = []
    for path in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = path.read_text().strip().upper()
        except OSError:
            continue
        unit = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}.get(text[-1:], 1)
        digits = text.rstrip("KMG")
        if digits.isdigit():
            sizes.append(int(digits) * unit)
    return max(sizes) if sizes else None


@dataclass(frozen=True)
class BandwidthCurve:
    """Read bandwidth (bytes/s) by working-set size, smallest first; never rising with size."""

    points: tuple[tuple[int, float], ...]
    threads: int = 1

    @property
    def memory(self) -> float:
        """The bandwidth from memory: the largest array's, past the caches."""
        return self.points[-1][1]

    def at(self, nbytes: float) -> float:
        """The bandwidth for a working set of `nbytes`, interpolated on a log scale."""
        pts = self.points
        if nbytes <= pts[0][0]:
            return pts[0][1]
        for (s0, b0), (s1, b1) in zip(pts, pts[1:]):
            if nbytes <= s1:
                f = math.log(nbytes / s0) / math.log(s1 / s0)
                value = math.exp(math.log(b0) + f * (math.log(b1) - math.log(b0)))
                return min(max(value, min(b0, b1)), max(b0, b1))  # exp(log(b)) may round past b itself
        return pts[-1][1]

    @staticmethod
    def of(points, threads: int = 1) -> BandwidthCurve:
        """A curve from measured (size, bandwidth) pairs: other programs only ever slow a probe down, and
        a smaller working set is never slower, so each size keeps the best of its own and every larger one."""
        best_at: dict[int, float] = {}
        for size, bw in points:
            if bw > 0:
                best_at[int(size)] = max(float(bw), best_at.get(int(size), 0.0))  # several probes: the best of each size
        pts = sorted(best_at.items())
        best = 0.0
        out = []
        for size, bw in reversed(pts):
            best = max(best, bw)
            out.append((size, best))
        return BandwidthCurve(tuple(reversed(out)), threads)

    @staticmethod
    def flat(bytes_per_s: float, threads: int = 1) -> BandwidthCurve:
        return BandwidthCurve(((PROBE_MIN_BYTES, float(bytes_per_s)),), threads)


def probe_bandwidth(threads: int | None = None) -> BandwidthCurve:
    """Read bandwidth with `threads` threads at working sets from 8 MB to past the last-level cache (~0.5 s)."""
    from concurrent.futures import ThreadPoolExecutor

    import numpy as np
    import psutil

    n = max(1, threads or default_threads())
    biggest = max(PROBE_MIN_BYTES, 2 * (last_level_cache_bytes() or 0))
    biggest = min(biggest, PROBE_MAX_BYTES, psutil.virtual_memory().available // 4)  # never push into swap
    biggest = max(biggest, PROBE_SIZES[0])
    a = np.empty(biggest // 8, dtype=np.int64)
    a.fill(1)  # touch every page before timing
    sizes = [s for s in PROBE_SIZES if s < biggest] + [biggest]
    best = dict.fromkeys(sizes, float("inf"))
    started = time.perf_counter()
    with ThreadPoolExecutor(n) as pool:  # numpy's sum releases the GIL: the threads read at once
        for _round in range(PROBE_ROUNDS):
            load = CpuLoadMeter()
            for size in sizes:
                parts = np.array_split(a[: size // 8], n)
                list(pool.map(np.sum, parts))  # a first pass brings what fits into the caches
                for _ in range(PROBE_RUNS):  # the best run: other programs only ever slow it down
                    t = time.perf_counter()
                    list(pool.map(np.sum, parts))
                    best[size] = min(best[size], time.perf_counter() - t)
            if is_quiet(load.busy_fraction(), n) or time.perf_counter() - started > PROBE_BUDGET_S:
                break  # else once more: a round that other programs slowed is not the machine's figure
    points = [(size, size / seconds) for size, seconds in best.items()]
    return BandwidthCurve.of(points, n)


def bandwidth_curve(threads: int | None = None, force: bool = False) -> BandwidthCurve:
    """This machine's bandwidth curve for `threads` threads, probed once a day and cached in the data dir."""
    n = max(1, threads or default_threads())
    machine = _machine_id()
    cached = _load().get("bandwidth") or {}
    fresh = (
        not force
        and cached.get("version") == STORE_VERSION
        and cached.get("machine") == machine
        and cached.get("threads") == n
        and time.time() - cached.get("measured_at", 0) < BANDWIDTH_MAX_AGE_S
        and cached.get("curve")
    )
    if fresh:
        return BandwidthCurve.of(cached["curve"], n)
    meter = CpuLoadMeter()
    curve = probe_bandwidth(n)
    # A probe on a busy machine reads low; kept for a day it would hold every estimate down. Such a
    # figure is used now and probed again after BUSY_PROBE_TTL_S.
    quiet = is_quiet(meter.busy_fraction(), n)
    with _updating() as data:
        old = data.get("bandwidth") or {}
        if (not force and old.get("version") == STORE_VERSION and old.get("machine") == machine
                and old.get("threads") == n and old.get("curve")):
            # Keep the best figure seen at each size: other programs only ever slow the probe down.
            merged = {int(s): float(b) for s, b in old["curve"]}
            for size, bw in curve.points:
                merged[size] = max(bw, merged.get(size, 0.0))
            curve = BandwidthCurve.of(merged.items(), n)
        data["bandwidth"] = {"version": STORE_VERSION, "bytes_per_s": curve.memory, "threads": n,
                             "curve": [list(p) for p in curve.points], "machine": machine,
                             "measured_at": time.time() if quiet else time.time() - BANDWIDTH_MAX_AGE_S + BUSY_PROBE_TTL_S,
                             "quiet": quiet}
    return curve


def memory_bandwidth(force: bool = False) -> float:
    """Bytes per second that generation's threads read from memory (past the caches), probed once and cached."""
    return bandwidth_curve(force=force).memory


# --- measured speeds ------------------------------------------------------------------------


def _key(model_path) -> str:
    return str(Path(model_path).resolve())


def _file_id(model_path) -> dict | None:
    try:
        st = Path(model_path).resolve().stat()
    except OSError:
        return None
    return {"size": st.st_size, "mtime_ns": st.st_mtime_ns}


class CpuLoadMeter:
    """How much of this machine's CPU other programs used while something ran here.

        meter = CpuLoadMeter()          # at the start of generation
        ...
        busy = meter.busy_fraction()    # 0.0 (quiet) to 1.0 (every core busy with other work)

    A speed measured while other programs competed for the cores (or the memory bus)
    is slower than the model is: such a run must not teach the estimate.
    """

    def __init__(self, also: tuple[int, ...] = ()):
        """`also`: other processes whose CPU counts as the run's own (a benchmark timed from the app
        counts its model's runner process), not as other programs'."""
        import psutil

        self._psutil = psutil
        self._me = psutil.Process()
        self._also = []
        for pid in also:
            with contextlib.suppress(psutil.Error):
                self._also.append(psutil.Process(pid))
        self._start = (time.perf_counter(), psutil.cpu_times(), self._ours())

    def _ours(self) -> float:
        total = 0.0
        for proc in (self._me, *self._also):
            with contextlib.suppress(self._psutil.Error):  # a process that ended keeps what it used uncounted
                t = proc.cpu_times()
                total += t.user + t.system
        return total

    @staticmethod
    def _busy(t) -> float:
        return t.user + t.nice + t.system + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0) + getattr(t, "steal", 0.0)

    def busy_fraction(self) -> float:
        """Other programs' share of all cores' time since the meter started, 0 to 1.

        The kernel counts CPU time in clock ticks (10 ms), per core and per process: over
        a run of a tenth of a second that is most of the signal. The figure is the least
        that the counters prove, so a short quiet run is not taken for a busy one.
        """
        wall0, sys0, ours0 = self._start
        wall = time.perf_counter() - wall0
        system, ours_now = self._psutil.cpu_times(), self._ours()
        cores = self._psutil.cpu_count() or 1
        if wall <= 0:
            return 0.0
        ours = ours_now - ours0
        others = self._busy(system) - self._busy(sys0) - ours
        # a tick at each end, on each core and on each process of ours
        resolution = 2 * _CLOCK_TICK_S * (cores + 1 + len(self._also))
        return min(1.0, max(0.0, (others - resolution) / (wall * cores)))


def is_quiet(cpu_busy_fraction: float | None, n_threads: int, n_cores: int | None = None) -> bool:
    """Whether a run had the cores it asked for: other programs used no more than the cores it left free.

    None (not measured: older records, callers that do not measure) counts as quiet.
    """
    if cpu_busy_fraction is None:
        return True
    cores = n_cores or os.cpu_count() or 1
    spare = max(0, cores - n_threads)
    return cpu_busy_fraction * cores <= spare + QUIET_TOLERANCE_CORES


def record_measured_speed(model_path, gen_tps: float, n_threads: int, cpu_busy_fraction: float | None = None) -> None:
    """Remember a generation speed measured on this machine (tokens/s, with `n_threads` threads).

    `cpu_busy_fraction`: the share of all cores' time that other programs used while it ran
    (`CpuLoadMeter`); a run on a busy CPU is kept but does not teach the estimate.
    """
    if not gen_tps or gen_tps <= 0:
        return
    fid = _file_id(model_path)
    if fid is None:
        return
    run = {"tps": float(gen_tps), "n_threads": int(n_threads), "at": time.time()}
    if cpu_busy_fraction is not None:
        run["busy"] = round(float(cpu_busy_fraction), 3)
    with _updating() as data:
        models = data.setdefault("models", {})
        rec = models.get(_key(model_path))
        if not rec or rec.get("file") != fid:
            rec = {"file": fid, "runs": []}  # a new or changed file: old speeds do not apply
        rec["runs"] = (rec.get("runs", []) + [run])[-RUNS_KEPT:]
        models[_key(model_path)] = rec


def _runs(model_path) -> list[dict]:
    rec = _load().get("models", {}).get(_key(model_path))
    if not rec or rec.get("file") != _file_id(model_path):
        return []
    return rec.get("runs", [])


def _quiet_tps(runs: list[dict], n_threads: int) -> list[float]:
    return [r["tps"] for r in runs if r["n_threads"] == n_threads and is_quiet(r.get("busy"), n_threads)]


def measured_speed(model_path, n_threads: int | None = None) -> float | None:
    """The generation speed measured here on a quiet CPU (median of recent quiet runs), or None.

    A speed measured while other programs held the cores (`is_quiet`) never becomes the
    model's speed: until a quiet run exists, there is none (the estimate stands in, and
    `busy_speed` is what a view may show, marked busy). With `n_threads`, only runs with
    that many threads count; otherwise those with the thread count of the latest run.
    """
    runs = _runs(model_path)
    if not runs:
        return None
    threads = n_threads if n_threads is not None else runs[-1]["n_threads"]
    quiet = _quiet_tps(runs, threads)
    return statistics.median(quiet[-5:]) if quiet else None


def busy_speed(model_path, n_threads: int | None = None) -> float | None:
    """The median of the recent runs measured on a busy CPU, or None: to show as busy, never as the model's speed."""
    runs = _runs(model_path)
    if not runs:
        return None
    threads = n_threads if n_threads is not None else runs[-1]["n_threads"]
    busy = [r["tps"] for r in runs if r["n_threads"] == threads and not is_quiet(r.get("busy"), threads)]
    return statistics.median(busy[-5:]) if busy else None


# --- the estimate -------------------------------------------------------------------------------


def overhead_s(n_layers: int | None, vocab_size: int | None, architecture: str | None = None) -> float:
    """The default per-token cost that is not weight reads (see the module's docstring)."""
    layer = OVERHEAD_PER_LAYER_S[cpu_vector_class()] * ARCH_LAYER_FACTOR.get(architecture or "", 1.0)
    return OVERHEAD_BASE_S + (n_layers or 32) * layer + (vocab_size or 32000) * OVERHEAD_PER_VOCAB_S


@dataclass(frozen=True)
class Costs:
    """What a token costs a model, before this machine's figures are applied."""

    read_bytes: int  # weight bytes a token reads: the working set
    work_bytes: float  # the same, slow-kernel tensor types weighed by their cost per byte
    overhead_s: float  # the default cost that is not weight reads
    kind: str = ""  # the kernel kind: the tensor type holding most of the bytes read ("Q4_K", "Q4_1", "MXFP4")


def kernel_kind(shape) -> str:
    """The tensor type that holds most of the weights a token reads ("Q4_K" for a Q4_K_M file): which CPU
    kernels set its pace. Speeds measured on one kind calibrate estimates of that kind only."""
    types = getattr(shape, "read_types", ()) or getattr(shape, "tensor_types", ())
    if types:
        return str(types[0][0])
    quant = (shape.quant or "").upper()
    return _QUANT_KIND.get(quant, quant)


def shape_costs(shape) -> Costs:
    """The Costs of a ModelShape."""
    read = shape.bytes_per_token
    slow = min(getattr(shape, "slow_kernel_bytes", 0), read)
    return Costs(read, read + (SLOW_KERNEL_COST - 1.0) * slow,
                 overhead_s(shape.n_layers, shape.vocab_size, shape.architecture), kernel_kind(shape))


@dataclass(frozen=True)
class KindFit:
    """What measured models of one kernel kind taught."""

    efficiency: float
    overhead_scale: float
    n_models: int


@dataclass(frozen=True)
class Calibration:
    curve: BandwidthCurve  # from the probe
    efficiency: float  # the share of the probe's bandwidth llama.cpp turns into weight reads (unmeasured kinds)
    overhead_scale: float  # measured overhead over the default constants (unmeasured kinds)
    n_models: int  # measured models it was fitted on, all kinds (0: defaults)
    by_kind: tuple[tuple[str, KindFit], ...] = ()  # per kernel kind, fitted on models of that kind only

    kernel_rate: float = math.inf  # bytes/s the CPU kernels turn into weight reads with these threads

    @property
    def bandwidth(self) -> float:
        """Bytes/s from memory (the figure to show)."""
        return self.curve.memory

    def weight_rate(self, costs: Costs) -> float:
        """Bytes/s of weight reads at the default efficiency: the memory's share, or what the kernels manage."""
        return min(self.curve.at(WORKING_SET_FACTOR * costs.read_bytes) * DEFAULT_EFFICIENCY, self.kernel_rate)

    def for_kind(self, kind: str) -> KindFit:
        """The fit for a kernel kind: what models of that kind taught, else the defaults."""
        found = next((f for k, f in self.by_kind if k == kind), None)
        return found or KindFit(self.efficiency, self.overhead_scale, 0)

    def weight_seconds(self, costs: Costs) -> float:
        """Seconds a token's weight reads take at efficiency 1: the probe's full bandwidth, or the kernels' rate
        (scaled alike, so an efficiency fitted on one regime carries over)."""
        rate = min(self.curve.at(WORKING_SET_FACTOR * costs.read_bytes), self.kernel_rate / DEFAULT_EFFICIENCY)
        return costs.work_bytes / rate

    def seconds_per_token(self, costs: Costs) -> float:
        f = self.for_kind(costs.kind)
        return self.weight_seconds(costs) / f.efficiency + f.overhead_scale * costs.overhead_s

    def tokens_per_s(self, costs: Costs) -> float:
        return 1.0 / self.seconds_per_token(costs)


@dataclass(frozen=True)
class SpeedFigure:
    tokens_per_s: float
    measured: bool  # True: measured on this machine; False: estimated
    calibration: Calibration | None = None


def default_threads() -> int:
    import psutil

    return psutil.cpu_count(logical=False) or os.cpu_count() or 1


def _costs_of(path: str, rec: dict) -> Costs | None:
    cached = rec.get("costs")
    if isinstance(cached, dict) and cached.get("version") == STORE_VERSION:
        return Costs(int(cached["read"]), float(cached["work"]), float(cached["overhead"]), str(cached.get("kind", "")))
    from models.shape import shape_of_file

    try:
        costs = shape_costs(shape_of_file(path))
    except Exception as exc:  # an unreadable file is simply not used for calibration
        import logging

        logging.getLogger(__name__).info("not calibrating on %s: %s", path, exc)
        return None
    with _updating() as fresh:
        if path in fresh.get("models", {}):
            fresh["models"][path]["costs"] = {"version": STORE_VERSION, "read": costs.read_bytes,
                                              "work": costs.work_bytes, "overhead": costs.overhead_s,
                                              "kind": costs.kind}
    return costs


def _measured_points(n_threads: int) -> list[tuple[Costs, float]]:
    """(Costs, tokens/s) of measured models whose files are unchanged, from quiet runs only."""
    return [(costs, tps) for _path, costs, tps in _measured(n_threads)]


def _measured(n_threads: int) -> list[tuple[str, Costs, float]]:
    points = []
    for path, rec in _load().get("models", {}).items():
        if rec.get("file") != _file_id(path):
            continue
        tps = _quiet_tps(rec.get("runs", []), n_threads)  # a run on a busy CPU does not teach the estimate
        if not tps:
            continue
        costs = _costs_of(path, rec)
        if costs is not None:
            points.append((path, costs, statistics.median(tps[-5:])))
    return points


def _fit_one_kind(rows: list[tuple[float, float, float]]) -> KindFit:
    """Fit seconds/token = a·weight seconds + k·overhead to (weight seconds, overhead, tokens/s); efficiency 1/a."""
    a: float | None = None
    k = 0.0
    shares = [o / (x / DEFAULT_EFFICIENCY + o) for x, o, _ in rows]
    if len(rows) >= 2 and max(shares) / min(shares) >= MIN_SPREAD:
        # Least squares on relative error: each row divided by its measured time.
        scaled = [(x * tps, o * tps) for x, o, tps in rows]  # (x/t, o/t) with t = 1/tps; target 1
        sxx = sum(r[0] * r[0] for r in scaled)
        soo = sum(r[1] * r[1] for r in scaled)
        sxo = sum(r[0] * r[1] for r in scaled)
        sx1 = sum(r[0] for r in scaled)
        so1 = sum(r[1] for r in scaled)
        det = sxx * soo - sxo * sxo
        if det > 0:
            a = (sx1 * soo - so1 * sxo) / det
            k = (so1 * sxx - sx1 * sxo) / det
        if a is None or a <= 0 or k < 0:
            a = None
    if a is None:
        # One model, or models too alike to tell the terms apart: keep the default overhead, fit the bandwidth term.
        k = 1.0
        slopes = [(1.0 / tps - o) / x for x, o, tps in rows if 1.0 / tps > o]
        if not slopes:
            k, slopes = 0.0, [1.0 / tps / x for x, _, tps in rows]
        a = statistics.median(slopes)
    efficiency = min(max(1.0 / a, EFFICIENCY_RANGE[0]), EFFICIENCY_RANGE[1])
    return KindFit(efficiency, min(max(k, 0.0), OVERHEAD_SCALE_RANGE[1]), len(rows))


@functools.lru_cache(maxsize=1)
def cpu_vector_class() -> str:
    """"avx512", "avx2" or "other": the widest vector instructions this CPU reports (Linux /proc/cpuinfo)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "other"
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), [])
    if "avx512f" in flags and ("avx512_vnni" in flags or "avx512bw" in flags):
        return "avx512"
    return "avx2" if "avx2" in flags else "other"


def kernel_rate(threads: int) -> float:
    """Bytes/s of weights the CPU kernels get through per token with `threads` threads, memory aside."""
    return KERNEL_BYTES_PER_S_PER_THREAD[cpu_vector_class()] * max(1, threads)


def fit_calibration(points: list[tuple[Costs, float]], curve: BandwidthCurve,
                    kernel_rate: float = math.inf) -> Calibration:
    """Fit each kernel kind's terms to the measured (Costs, tokens/s) of that kind; unmeasured kinds keep the
    defaults. What a slow-kernel model (the Q4_1 starter) teaches never moves a Q4_K_M estimate."""
    plain = Calibration(curve, 1.0, 0.0, 0, kernel_rate=kernel_rate)
    by_kind: dict[str, list[tuple[float, float, float]]] = {}
    for c, tps in points:
        by_kind.setdefault(c.kind, []).append((plain.weight_seconds(c), c.overhead_s, tps))
    fits = tuple((kind, _fit_one_kind(rows)) for kind, rows in sorted(by_kind.items()))
    return Calibration(curve, DEFAULT_EFFICIENCY, 1.0, len(points), fits, kernel_rate)


def calibration(n_threads: int | None = None) -> Calibration:
    threads = n_threads or default_threads()
    return fit_calibration(_measured_points(threads), bandwidth_curve(threads), kernel_rate(threads))


def estimate_speed(shape, n_threads: int | None = None, calib: Calibration | None = None) -> SpeedFigure:
    """The estimated generation speed of a ModelShape on this machine."""
    calib = calib or calibration(n_threads)
    return SpeedFigure(calib.tokens_per_s(shape_costs(shape)), False, calib)


def estimate_for_file(model_path, n_threads: int | None = None, calib: Calibration | None = None) -> SpeedFigure:
    """The estimate for a file, whether or not it ran here, from what the other measured models taught."""
    from models.shape import shape_of_file

    threads = n_threads or default_threads()
    if calib is None:
        key = _key(model_path)
        others = [(c, tps) for path, c, tps in _measured(threads) if path != key]
        calib = fit_calibration(others, bandwidth_curve(threads), kernel_rate(threads))
    return estimate_speed(shape_of_file(model_path), threads, calib)


@dataclass(frozen=True)
class EstimateCheck:
    """The estimate for a measured model (from the other measured models only) against its quiet measured speed."""

    path: str
    estimated: float
    measured: float

    @property
    def error(self) -> float:
        """estimated / measured - 1: +0.10 is an estimate 10% too fast."""
        return self.estimated / self.measured - 1


def estimate_checks(n_threads: int | None = None) -> list[EstimateCheck]:
    """Each quiet-measured model's estimate, made without its own measurement, against what it measured."""
    threads = n_threads or default_threads()
    points = _measured(threads)
    curve = bandwidth_curve(threads)
    rate = kernel_rate(threads)
    checks = []
    for path, costs, tps in points:
        calib = fit_calibration([(c, t) for p, c, t in points if p != path], curve, rate)
        checks.append(EstimateCheck(path, calib.tokens_per_s(costs), tps))
    return checks


def speed_for(model_path=None, shape=None, n_threads: int | None = None, calib: Calibration | None = None) -> SpeedFigure | None:
    """The speed measured on a quiet CPU if the model ran here so, else the estimate for its shape."""
    threads = n_threads or default_threads()
    if model_path is not None:
        tps = measured_speed(model_path, threads)
        if tps:
            return SpeedFigure(tps, True)
        if shape is None:
            from models.shape import shape_of_file

            try:
                shape = shape_of_file(model_path)
            except Exception as exc:  # no estimate for a file that cannot be read; the caller shows none
                import logging

                logging.getLogger(__name__).info("no speed estimate for %s: %s", model_path, exc)
                return None
    if shape is None:
        return None
    return estimate_speed(shape, threads, calib)
