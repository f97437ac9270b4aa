"""One rule for measured speeds in the model list and the fit and speed table (issue 21, the data side).

`tokens_per_s` with `speed_measured` true means measured on a quiet CPU. A reply measured while
other programs held the cores never becomes a model's speed: the list and the table keep the
estimate (marked approximate) and hold the busy figure apart, for a view to show as busy; a
later quiet reply does become the speed.
"""

import pytest

from models import library, model_table, speed
from models.registry import InstalledModel, register


def _row(name):
    return next(r for r in library.list_models(include_catalogue=False) if r.name == name)


def test_a_busy_reply_never_becomes_the_listed_speed_and_a_quiet_one_does(tmp_path, tiny_model_path, monkeypatch):
    monkeypatch.setattr(speed.os, "cpu_count", lambda: 2)
    model = tmp_path / "m.gguf"
    model.write_bytes(tiny_model_path.read_bytes())
    register(InstalledModel(name="mine", path=str(model), source="local", quant="F32"))
    fresh = _row("mine")
    assert not fresh.speed_measured and fresh.tokens_per_s > 0 and fresh.busy_tokens_per_s is None

    speed.record_measured_speed(model, 3.0, n_threads=2, cpu_busy_fraction=0.9)  # others held the cores
    busy = _row("mine")
    assert not busy.speed_measured and busy.tokens_per_s == fresh.tokens_per_s  # still the estimate
    assert busy.busy_tokens_per_s == 3.0  # kept apart, to be shown as busy
    table = model_table.model_table(quants=False)
    assert not table.row("mine").speed_measured and table.row("mine").busy_tokens_per_s == 3.0

    speed.record_measured_speed(model, 250.0, n_threads=2, cpu_busy_fraction=0.0)
    quiet = _row("mine")
    assert quiet.speed_measured and quiet.tokens_per_s == 250.0


def test_the_estimate_check_of_a_measured_model_leaves_its_own_measurement_out(tmp_path, tiny_model_path):
    a, b = tmp_path / "a.gguf", tmp_path / "b.gguf"
    a.write_bytes(tiny_model_path.read_bytes())
    b.write_bytes(tiny_model_path.read_bytes() + b"\0" * 64)  # another file of the same kind
    fresh = speed.estimate_for_file(a, n_threads=2).tokens_per_s
    speed.record_measured_speed(a, 0.8 * fresh, n_threads=2, cpu_busy_fraction=0.0)
    speed.record_measured_speed(b, 0.9 * fresh, n_threads=2, cpu_busy_fraction=0.0)
    checks = {c.path: c for c in speed.estimate_checks(2)}
    assert set(checks) == {str(a.resolve()), str(b.resolve())}
    # Each is estimated from the other alone: the same costs, so each gets the other's measured speed.
    assert checks[str(a.resolve())].estimated == pytest.approx(0.9 * fresh, rel=0.02)
    assert checks[str(b.resolve())].error == pytest.approx(0.8 / 0.9 - 1, rel=0.05)
    assert speed.estimate_for_file(a, n_threads=2).tokens_per_s == pytest.approx(0.9 * fresh, rel=0.02)
    register(InstalledModel(name="model-a", path=str(a), source="local", quant="F32"))
    named = dict(library.estimate_checks())
    assert "model-a" in named and "b.gguf" in named
