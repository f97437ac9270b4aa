"""Speed: the bandwidth probe, measured speeds, the calibration, and the estimate against llama.cpp itself."""

import json
import statistics
import time

import pytest

from common.paths import data_dir
from models import speed
from models.shape import shape_of_file


def test_the_bandwidth_probe_is_short_cached_and_measures_the_caches(monkeypatch):
    t0 = time.monotonic()
    curve = speed.bandwidth_curve()
    assert time.monotonic() - t0 < 5.0  # about half a second on a quiet CPU
    bw = speed.memory_bandwidth()
    assert 1e9 < bw < 1e12 and bw == curve.memory  # 1 GB/s to 1 TB/s
    sizes = [size for size, _ in curve.points]
    assert sizes == sorted(sizes) and sizes[0] <= 8 << 20 and sizes[-1] >= 256 << 20
    rates = [rate for _, rate in curve.points]
    assert rates == sorted(rates, reverse=True)  # a smaller working set is never slower
    assert curve.at(1) == rates[0] and curve.at(10 << 30) == bw and rates[-1] <= curve.at(100 << 20) <= rates[0]
    calls = []
    monkeypatch.setattr(speed, "probe_bandwidth", lambda threads: calls.append(threads) or speed.BandwidthCurve.flat(1.0))
    assert speed.memory_bandwidth() == bw and calls == []
    stored = json.loads((data_dir() / "speed.json").read_text())["bandwidth"]
    assert stored["bytes_per_s"] == bw and stored["threads"] == speed.default_threads()
    assert speed.memory_bandwidth(force=True) == 1.0 and calls == [speed.default_threads()]
    assert speed.bandwidth_curve(threads=1).memory == 1.0 and calls[-1] == 1  # another thread count: probed again


def test_measured_speeds_are_kept_per_file_and_thread_count(tmp_path, tiny_model_path):
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model_path.read_bytes())
    assert speed.measured_speed(model) is None
    for tps in (40.0, 42.0, 41.0):
        speed.record_measured_speed(model, tps, n_threads=2)
    speed.record_measured_speed(model, 20.0, n_threads=1)
    assert speed.measured_speed(model) == 20.0  # the latest run's thread count
    assert speed.measured_speed(model, n_threads=2) == 41.0  # the median
    figure = speed.speed_for(model, n_threads=2)
    assert figure.measured and figure.tokens_per_s == 41.0
    model.write_bytes(tiny_model_path.read_bytes() + b"\0")  # a changed file: its old speeds do not apply
    assert speed.measured_speed(model) is None


def test_runs_on_a_busy_cpu_are_kept_but_do_not_teach_the_estimate(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.setattr(speed.os, "cpu_count", lambda: 4)
    quiet, busy = tmp_path / "quiet.gguf", tmp_path / "busy.gguf"
    quiet.write_bytes(tiny_model_path.read_bytes())
    busy.write_bytes(tiny_model_path.read_bytes() + b"\0")
    speed.record_measured_speed(busy, 5.0, n_threads=2, cpu_busy_fraction=0.9)  # others held 3.6 of 4 cores
    assert speed.measured_speed(busy, n_threads=2) == 5.0  # what there is, shown as measured
    assert speed._measured_points(2) == []  # but not a calibration point
    speed.record_measured_speed(quiet, 50.0, n_threads=2, cpu_busy_fraction=0.3)  # 1.2 cores: 2 were spare
    speed.record_measured_speed(quiet, 10.0, n_threads=2, cpu_busy_fraction=0.8)
    speed.record_measured_speed(quiet, 48.0, n_threads=2)  # not measured: trusted, as older records are
    assert speed.measured_speed(quiet, n_threads=2) == 49.0  # the quiet runs' median
    assert [tps for _, tps in speed._measured_points(2)] == [49.0]
    assert speed.is_quiet(0.05, n_threads=4, n_cores=4) and not speed.is_quiet(0.1, n_threads=4, n_cores=4)
    assert speed.is_quiet(None, n_threads=4)


def test_the_cpu_load_meter_sees_other_programs():
    import subprocess
    import sys

    meter = speed.CpuLoadMeter()
    time.sleep(0.3)
    idle = meter.busy_fraction()
    hog = subprocess.Popen([sys.executable, "-c", "while True: pass"])
    try:
        meter = speed.CpuLoadMeter()
        time.sleep(0.5)
        loaded = meter.busy_fraction()
    finally:
        hog.kill()
        hog.wait()
    cores = speed.os.cpu_count()
    assert 0.0 <= idle <= 1.0
    assert loaded >= 0.6 / cores  # one spinning process: about one core's worth, whatever else runs


def _costs(read, overhead, slow=0):
    return speed.Costs(int(read), read + (speed.SLOW_KERNEL_COST - 1) * slow, overhead)


def test_the_calibration_recovers_the_two_terms():
    curve = speed.BandwidthCurve.flat(20e9)
    true = speed.Calibration(curve, 0.8, 1.5, 0)
    costs = [_costs(30e6, 0.0005), _costs(100e6, 0.0008), _costs(250e6, 0.0040), _costs(600e6, 0.0012)]
    points = [(c, true.tokens_per_s(c)) for c in costs]
    fitted = speed.fit_calibration(points, curve)
    assert fitted.efficiency == pytest.approx(0.8, rel=1e-6) and fitted.overhead_scale == pytest.approx(1.5, rel=1e-6)
    one = speed.fit_calibration(points[3:], curve)  # one model: the default overhead, the bandwidth term fitted
    assert one.overhead_scale == 1.0 and one.tokens_per_s(costs[3]) == pytest.approx(points[3][1])
    assert speed.fit_calibration([], curve).efficiency == speed.DEFAULT_EFFICIENCY


def test_a_working_set_that_fits_the_caches_is_read_faster_and_slow_kernels_cost_more():
    curve = speed.BandwidthCurve.of([(8 << 20, 40e9), (64 << 20, 15e9), (32 << 20, 30e9), (1 << 30, 10e9), (256 << 20, 12e9)])
    assert [b for _, b in curve.points] == [40e9, 30e9, 15e9, 12e9, 10e9]
    assert 15e9 < curve.at(48 << 20) < 30e9 and curve.at(4 << 20) == 40e9 and curve.at(4 << 30) == 10e9
    noisy = speed.BandwidthCurve.of([(8 << 20, 9e9), (64 << 20, 15e9), (1 << 30, 10e9)])  # a slowed first probe
    assert noisy.at(8 << 20) == 15e9
    calib = speed.Calibration(curve, 1.0, 0.0, 0)
    assert calib.tokens_per_s(_costs(30e6, 0.001)) > 2 * calib.tokens_per_s(_costs(60e6, 0.001))
    assert calib.tokens_per_s(_costs(500e6, 0, slow=500e6)) == pytest.approx(
        calib.tokens_per_s(_costs(500e6, 0)) / speed.SLOW_KERNEL_COST)


def test_a_legacy_quant_model_counts_its_slow_kernel_bytes(starter_model_path, tiny_model_path):
    from models import catalogue
    from models.shape import from_catalogue

    starter = shape_of_file(starter_model_path)  # Q4_1 layers, a Q8_0 embedding
    assert 60e6 < starter.slow_kernel_bytes < 70e6 and starter.bytes_per_token > 95e6
    assert shape_of_file(tiny_model_path).slow_kernel_bytes == 0
    assert from_catalogue(catalogue.get("starter")).slow_kernel_bytes > 0
    assert from_catalogue(catalogue.get("llama3.2-1b")).slow_kernel_bytes == 0


# --- against llama.cpp -------------------------------------------------------------------------------

# 30 to 230 MB read per token: whether they fit the last-level cache depends on the CPU (a VM's L3 may hold 100 MB).
RANDOM_SIZES = {"r60m": 60e6, "r150m": 150e6, "r400m": 400e6}
THREADS = 2
TOKENS = 32


@pytest.fixture(scope="module")
def speed_models(tmp_path_factory, starter_model_path):
    from tests.support.tiny_gguf import write_random_llama

    folder = tmp_path_factory.mktemp("speed")
    paths = {"starter": starter_model_path}
    for name, params in RANDOM_SIZES.items():
        paths[name] = write_random_llama(folder / f"{name}-Q4_K_M.gguf", params, quant="Q4_K_M")
    return paths


def _generation_speeds(paths: dict, runs: dict, deadline: float, rounds: int = 4) -> None:
    """Add to `runs` each model's tokens/s (32 tokens after the first) from interleaved rounds on a quiet CPU.

    A run during which other programs took the cores that generation needs is not
    kept: it measures them, not the model.
    """
    from llama_cpp import Llama

    llms = {k: Llama(model_path=str(p), n_ctx=256, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
            for k, p in paths.items()}
    try:
        for _ in range(rounds):
            if time.monotonic() > deadline:  # a CPU that stays busy makes every run slow: stop in time
                break
            for name, llm in llms.items():
                prompt = llm.tokenize(b"The quick brown fox jumps over the lazy dog.", add_bos=True)
                for i, _token in enumerate(llm.generate(prompt, temp=0.0, top_k=1, reset=True)):
                    if i == 0:
                        t0 = time.perf_counter()  # the prompt is done: from here on, generation only
                        load = speed.CpuLoadMeter()
                    elif i == TOKENS:
                        break
                tps = TOKENS / (time.perf_counter() - t0)
                if speed.is_quiet(load.busy_fraction(), THREADS):
                    runs[name].append(tps)
    finally:
        for llm in llms.values():
            llm.close()


def _errors(paths, measured, feed) -> dict:
    """Feed the measured speeds of `feed` to the store; the estimate's relative error for the others."""
    store = data_dir() / "speed.json"
    data = json.loads(store.read_text()) if store.exists() else {}
    data.pop("models", None)
    store.write_text(json.dumps(data))
    for name in feed:
        speed.record_measured_speed(paths[name], measured[name], THREADS)
    calib = speed.calibration(THREADS)
    assert calib.n_models == len(feed)
    errors = {}
    for name, path in paths.items():
        if name in feed:
            assert speed.speed_for(path, n_threads=THREADS).measured  # a model that ran shows its measured speed
            continue
        estimate = speed.speed_for(path, n_threads=THREADS, calib=calib)
        assert not estimate.measured
        errors[name] = estimate.tokens_per_s / measured[name] - 1
    return errors


# The estimate's bound: 30% where the speeds it learned from came from files of the same quantization;
# 40% across quantizations (the starter is Q4_1, the random models Q4_K_M): their kernels' speed per byte
# differs by CPU, and this machine's Q4_1 runs ~30% slower per byte than its Q4_K_M (a known limit).
QUANTS = {"starter": "Q4_1", "r60m": "Q4_K_M", "r150m": "Q4_K_M", "r400m": "Q4_K_M"}


def _bound(feed: tuple[str, ...], name: str) -> float:
    return 0.30 if all(QUANTS[f] == QUANTS[name] for f in feed) else 0.40


def _worst(results: dict) -> float:
    """The largest error as a share of its own bound (1.0: at the bound)."""
    return max(abs(e) / _bound(feed, name) for feed, errors in results.items() for name, e in errors.items())


@pytest.mark.llama_cpp
def test_the_estimate_is_within_30_percent_of_the_measured_speed_40_across_quantizations(speed_models):
    feeds = [("r60m", "r400m"), ("starter", "r150m"), ("starter",)]
    runs = {name: [] for name in speed_models}
    deadline = time.monotonic() + 240
    for attempt in range(3):
        _generation_speeds(speed_models, runs, deadline)
        if not all(runs.values()):
            continue
        # The median of the quiet runs, as the app itself keeps a model's measured speed: on a shared
        # machine the best run of a model whose weights half fit the cache varies by half (130 to 230 t/s).
        measured = {name: statistics.median(r) for name, r in runs.items()}
        results = {feed: _errors(speed_models, measured, feed) for feed in feeds}
        worst = _worst(results)
        if worst <= 1.0:
            break
    if not all(runs.values()):
        pytest.skip("other programs kept the CPU busy during every run of "
                    + ", ".join(k for k, v in runs.items() if not v) + ": no speed here can be trusted")
    bw = speed.memory_bandwidth()
    report = [f"bandwidth {bw / 1e9:.1f} GB/s; measured " + ", ".join(
        f"{k} {v:.0f} t/s ({shape_of_file(p).bytes_per_token / 1e6:.0f} MB/token)"
        for (k, v), p in zip(measured.items(), speed_models.values()))]
    for feed, errors in results.items():
        report.append(f"fed {'+'.join(feed)}: " + ", ".join(f"{k} {100 * e:+.0f}%" for k, e in errors.items()))
    print("\n" + "\n".join(report))
    assert worst <= 1.0, "\n".join(report)


def test_a_bandwidth_probe_on_a_busy_machine_is_redone_soon(monkeypatch):
    """Other programs only slow the probe down: a busy figure is used now but not kept for a day."""
    import time as time_module

    probes = []
    monkeypatch.setattr(speed, "probe_bandwidth",
                        lambda n: probes.append(n) or speed.BandwidthCurve.of([(1 << 30, 3e9)], n))
    monkeypatch.setattr(speed.CpuLoadMeter, "busy_fraction", lambda self: 1.0)
    speed.bandwidth_curve(threads=2)
    speed.bandwidth_curve(threads=2)
    assert len(probes) == 1  # cached for now
    later = time_module.time() + speed.BUSY_PROBE_TTL_S + 1
    monkeypatch.setattr(speed.time, "time", lambda: later)
    speed.bandwidth_curve(threads=2)
    assert len(probes) == 2  # redone, where a quiet probe would have lasted a day
