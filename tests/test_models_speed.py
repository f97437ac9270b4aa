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
    assert speed.measured_speed(busy, n_threads=2) is None  # a busy CPU's speed never becomes the model's
    assert speed.busy_speed(busy, n_threads=2) == 5.0  # kept, for a view to show as busy
    assert not speed.speed_for(busy, n_threads=2).measured  # the estimate stands in
    assert speed._measured_points(2) == []  # and it is not a calibration point
    speed.record_measured_speed(quiet, 50.0, n_threads=2, cpu_busy_fraction=0.3)  # 1.2 cores: 2 were spare
    speed.record_measured_speed(quiet, 10.0, n_threads=2, cpu_busy_fraction=0.8)
    speed.record_measured_speed(quiet, 48.0, n_threads=2)  # not measured: trusted, as older records are
    assert speed.measured_speed(quiet, n_threads=2) == 49.0  # the quiet runs' median
    assert speed.busy_speed(quiet, n_threads=2) == 10.0
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
    fitted = speed.fit_calibration(points, curve).for_kind("")
    assert fitted.efficiency == pytest.approx(0.8, rel=1e-6) and fitted.overhead_scale == pytest.approx(1.5, rel=1e-6)
    one = speed.fit_calibration(points[3:], curve)  # one model: the default overhead, the bandwidth term fitted
    assert one.for_kind("").overhead_scale == 1.0 and one.tokens_per_s(costs[3]) == pytest.approx(points[3][1])
    assert speed.fit_calibration([], curve).for_kind("").efficiency == speed.DEFAULT_EFFICIENCY


def test_a_slow_kernel_model_teaches_only_its_own_kind():
    """What the Q4_1 starter teaches (slow kernels, fixed per-token costs) must not move a Q4_K_M estimate."""
    curve = speed.BandwidthCurve.flat(20e9)
    q4_1 = speed.Costs(98_000_000, 98e6 * 1.4, 0.0012, "Q4_1")
    q4_k = speed.Costs(600_000_000, 600e6, 0.0008, "Q4_K")
    fresh = speed.fit_calibration([], curve)
    taught = speed.fit_calibration([(q4_1, 40.0)], curve)  # measured far slower than estimated
    assert taught.tokens_per_s(q4_k) == fresh.tokens_per_s(q4_k)
    assert taught.tokens_per_s(q4_1) == pytest.approx(40.0) and taught.for_kind("Q4_1").n_models == 1
    assert taught.for_kind("Q4_K").n_models == 0 and taught.n_models == 1
    assert speed.EFFICIENCY_RANGE[0] <= taught.for_kind("Q4_1").efficiency <= speed.EFFICIENCY_RANGE[1]


def test_the_kernel_kind_is_the_type_holding_most_weights(starter_model_path, tiny_model_path):
    from models import catalogue
    from models.shape import from_catalogue

    assert speed.kernel_kind(shape_of_file(starter_model_path)) == "Q4_1"
    assert speed.kernel_kind(from_catalogue(catalogue.get("llama3.2-1b"))) == "Q4_K"
    assert speed.kernel_kind(from_catalogue(catalogue.get("gpt-oss-20b"))) == "MXFP4"
    assert speed.kernel_kind(shape_of_file(tiny_model_path)) == "F32"


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

# Issue 21: the sizes people download (random-weight 1B and 3B Q4_K_M: bandwidth-bound) and the two built-in
# models (small: per-token fixed costs, a legacy Q4_1 and a Q8_0-heavy file). Generation speed does not depend
# on the weights' values.
THREADS = 2
TOKENS = 48
BOUND = 0.30


@pytest.fixture(scope="module")
def speed_models(tmp_path_factory, starter_model_path, gemma_model_path):
    from tests.support.tiny_gguf import write_random_llama

    folder = tmp_path_factory.mktemp("speed")
    paths = {"starter": starter_model_path, "gemma3-270m": gemma_model_path}
    for name, params in (("r1b", 1.0e9), ("r3b", 3.0e9)):
        paths[name] = write_random_llama(folder / f"{name}-Q4_K_M.gguf", params, quant="Q4_K_M")
    yield paths
    for name in ("r1b", "r3b"):
        paths[name].unlink(missing_ok=True)  # 2.6 GB: not kept for the session


def _generation_speeds(paths: dict, runs: dict, probes: list, deadline: float) -> None:
    """Add to `runs` each model's tokens/s (TOKENS tokens after the first) from one round on a quiet CPU,
    and to `probes` a bandwidth probe made while the CPU was quiet too.

    A run during which other programs took the cores that generation needs is not
    kept: it measures them, not the model (the app drops it the same way).
    """
    from llama_cpp import Llama

    load = speed.CpuLoadMeter()
    curve = speed.probe_bandwidth(THREADS)
    if speed.is_quiet(load.busy_fraction(), THREADS):
        probes.append(curve)
    for name, path in paths.items():
        if time.monotonic() > deadline:  # a CPU that stays busy makes every run slow: stop in time
            return
        llm = Llama(model_path=str(path), n_ctx=256, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
        try:
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
            llm.close()


def _errors(paths, measured, feed, curve) -> dict:
    """Feed the measured speed of `feed` (or nothing) to the store; the estimate's relative error for the others.

    `curve`: the bandwidth probed while the CPU was quiet, as the measured speeds were (a probe while other
    programs run reads low, and the app probes again soon after such a one)."""
    store = data_dir() / "speed.json"
    data = json.loads(store.read_text()) if store.exists() else {}
    data.pop("models", None)
    store.write_text(json.dumps(data))
    if feed:
        speed.record_measured_speed(paths[feed], measured[feed], THREADS, cpu_busy_fraction=0.0)
        assert speed.speed_for(paths[feed], n_threads=THREADS).measured  # a model that ran shows its speed
    calib = speed.fit_calibration(speed._measured_points(THREADS), curve, speed.kernel_rate(THREADS))
    assert calib.n_models == (1 if feed else 0)
    errors = {}
    for name, path in paths.items():
        if name == feed:
            continue
        estimate = speed.speed_for(path, n_threads=THREADS, calib=calib)
        assert not estimate.measured
        errors[name] = estimate.tokens_per_s / measured[name] - 1
    return errors


@pytest.mark.llama_cpp
def test_the_estimate_is_within_30_percent_fresh_and_after_each_model_is_measured(speed_models):
    """Bound: 30%, the issue's. The measured speeds are medians of quiet runs only, but other engineers'
    programs on this shared 2-core machine still slow a run without always showing as busy: a miss up to
    the bound is noise as much as estimate; the lead re-measures on a quiet machine (bench/estimate_bench.py)."""
    runs = {name: [] for name in speed_models}
    probes: list = []
    deadline = time.monotonic() + 120
    for _round in range(4):
        _generation_speeds(speed_models, runs, probes, deadline)
        if (all(len(r) >= 2 for r in runs.values()) and probes) or time.monotonic() > deadline:
            break
    if not all(runs.values()) or not probes:
        pytest.skip("other programs kept the CPU busy during every run of "
                    + (", ".join(k for k, v in runs.items() if not v) or "the bandwidth probe")
                    + ": no speed here can be trusted")
    curve = speed.BandwidthCurve.of([p for c in probes for p in c.points], THREADS)  # the best at each size
    measured = {name: statistics.median(r) for name, r in runs.items()}
    results = {feed: _errors(speed_models, measured, feed, curve) for feed in (None, *speed_models)}
    bw = curve.memory
    report = [f"bandwidth {bw / 1e9:.1f} GB/s; measured " + ", ".join(
        f"{k} {v:.1f} t/s ({shape_of_file(speed_models[k]).bytes_per_token / 1e6:.0f} MB/token)"
        for k, v in measured.items())]
    for feed, errors in results.items():
        report.append(f"{'fresh' if feed is None else 'after ' + feed}: "
                      + ", ".join(f"{k} {100 * e:+.0f}%" for k, e in errors.items()))
    print("\n" + "\n".join(report))
    worst = max(abs(e) for errors in results.values() for e in errors.values())
    assert worst <= BOUND, "\n".join(report)


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
