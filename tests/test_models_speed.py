"""Speed: the bandwidth probe, measured speeds, the calibration, and the estimate against llama.cpp itself."""

import json
import time

import pytest

from common.paths import data_dir
from models import speed
from models.shape import shape_of_file


def test_the_bandwidth_probe_is_short_and_cached(monkeypatch):
    t0 = time.monotonic()
    bw = speed.memory_bandwidth()
    assert time.monotonic() - t0 < 2.0
    assert 1e9 < bw < 1e12  # 1 GB/s to 1 TB/s
    calls = []
    monkeypatch.setattr(speed, "probe_bandwidth", lambda: calls.append(1) or 1.0)
    assert speed.memory_bandwidth() == bw and calls == []
    assert json.loads((data_dir() / "speed.json").read_text())["bandwidth"]["bytes_per_s"] == bw
    assert speed.memory_bandwidth(force=True) == 1.0 and calls == [1]


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


def test_the_calibration_recovers_the_two_terms():
    bw = 20e9
    true = speed.Calibration(bw, 0.8, 1.5, 0)
    sizes = [(30e6, 0.0005), (100e6, 0.0008), (250e6, 0.0040), (600e6, 0.0012)]
    points = [(int(x), o, true.tokens_per_s(x, o)) for x, o in sizes]
    fitted = speed.fit_calibration(points, bw)
    assert fitted.efficiency == pytest.approx(0.8, rel=1e-6) and fitted.overhead_scale == pytest.approx(1.5, rel=1e-6)
    one = speed.fit_calibration(points[3:], bw)  # one model: the default overhead, the bandwidth term fitted
    assert one.overhead_scale == 1.0 and one.tokens_per_s(*sizes[3]) == pytest.approx(points[3][2])
    assert speed.fit_calibration([], bw).efficiency == speed.DEFAULT_EFFICIENCY


# --- against llama.cpp -------------------------------------------------------------------------------

RANDOM_SIZES = {"r60m": 60e6, "r150m": 150e6, "r400m": 400e6}  # 40 to 260 MB: all past the CPU's caches
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


def _generation_speeds(paths: dict, rounds: int = 4) -> dict:
    """Tokens/s of each model, 32 tokens after the first, best of interleaved rounds (other programs only slow it)."""
    from llama_cpp import Llama

    llms = {k: Llama(model_path=str(p), n_ctx=256, n_threads=THREADS, n_threads_batch=THREADS, verbose=False)
            for k, p in paths.items()}
    best = dict.fromkeys(paths, 0.0)
    try:
        for _ in range(rounds):
            for name, llm in llms.items():
                prompt = llm.tokenize(b"The quick brown fox jumps over the lazy dog.", add_bos=True)
                for i, _token in enumerate(llm.generate(prompt, temp=0.0, top_k=1, reset=True)):
                    if i == 0:
                        t0 = time.perf_counter()  # the prompt is done: from here on, generation only
                    elif i == TOKENS:
                        break
                best[name] = max(best[name], TOKENS / (time.perf_counter() - t0))
    finally:
        for llm in llms.values():
            llm.close()
    return best


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


@pytest.mark.llama_cpp
def test_the_estimate_is_within_30_percent_of_the_measured_speed(speed_models):
    feeds = [("r60m", "r400m"), ("starter", "r150m"), ("starter",)]
    for attempt in range(3):
        measured = _generation_speeds(speed_models)
        if attempt:  # a busy machine only ever slows a run: keep each model's best
            measured = {k: max(v, previous[k]) for k, v in measured.items()}
        previous = measured
        results = {feed: _errors(speed_models, measured, feed) for feed in feeds}
        worst = max(abs(e) for errors in results.values() for e in errors.values())
        if worst <= 0.30:
            break
    bw = speed.memory_bandwidth()
    report = [f"bandwidth {bw / 1e9:.1f} GB/s; measured " + ", ".join(
        f"{k} {v:.0f} t/s ({shape_of_file(p).bytes_per_token / 1e6:.0f} MB/token)"
        for (k, v), p in zip(measured.items(), speed_models.values()))]
    for feed, errors in results.items():
        report.append(f"fed {'+'.join(feed)}: " + ", ".join(f"{k} {100 * e:+.0f}%" for k, e in errors.items()))
    print("\n" + "\n".join(report))
    assert worst <= 0.30, "\n".join(report)
