"""`assistant compare`: the real command line on the real engine, and its actions on a real history."""

from __future__ import annotations

import json

import pytest

from assistant.cli.main import main
from assistant.history import HistoryStore


def _run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.llama_cpp
def test_compare_streams_each_reply_then_the_figures_side_by_side(capsys, starter_model_path, gemma_model_path):
    code, out, err = _run(capsys, "compare", "-m", str(starter_model_path), "-m", str(gemma_model_path), "-n", "6",
                          "--seed", "3", "--temperature", "0", "Name", "a", "fruit.")
    assert code == 0, err
    assert out.index(f"── {starter_model_path}") < out.index(f"── {gemma_model_path}")
    table = out[out.index("tok/s"):]
    for label in ("tok/s", "first token", "tokens", "total time", "weights", "KV cache", "compute",
                  "peak RAM", "file size", "quant"):
        assert f"\n{label} " in "\n" + table
    assert "Q4_1" in table and "Q4_K_M" in table and "98.4 MB" in table and "253 MB" in table
    assert "seed 3" in out and "Saved as comparison 1" in out
    assert err.count("Loading ") == 2
    with HistoryStore.open() as store:
        saved = store.get_comparison(1)
        assert saved.prompt == "Name a fruit." and saved.settings["seed"] == 3
        assert [a.model for a in saved.answers] == [str(starter_model_path), str(gemma_model_path)]

    # --json: a list with each model's full record.
    code, out, err = _run(capsys, "compare", "--json", "--no-save", "-m", str(gemma_model_path), "-m",
                          str(starter_model_path), "-n", "4", "Hello")
    assert code == 0, err
    records = json.loads(out)
    assert [r["model"] for r in records] == [str(gemma_model_path), str(starter_model_path)]
    for r in records:
        assert r["status"] == "complete" and r["comparison_id"] is None
        assert {"gen_tps", "ttft_ms", "completion_tokens", "total_ms", "memory", "model", "transport"} <= set(r["stats"])
        assert r["stats"]["memory"]["rss_peak_bytes"] > 0 and r["stats"]["model"]["file"] == r["model"]
    assert records[0]["stats"]["transport"]["runner_pid"] != records[1]["stats"]["transport"]["runner_pid"]


@pytest.mark.parametrize("argv, sentence", [
    (["compare", "-m", "starter", "Hi"], "at least two models"),
    (["compare", "-m", "starter", "-m", "gemma3-270m-base"], "needs a prompt"),
    (["compare", "-m", "starter", "-m", "nosuch-model", "Hi"], "No installed model is named 'nosuch-model'"),
    (["compare", "-m", "starter", "-m", "big@nowhere", "Hi"], "no remote server named 'nowhere'"),
    (["compare", "-m", "starter", "-m", "starter", "Hi"], "named twice"),
    (["compare", "--set", "missing", "-m", "a", "-m", "b"], "no prompt set named 'missing'"),
    (["compare", "show", "7"], "no comparison 7"),
    (["compare", "show", "x"], "not a comparison number"),
    (["compare", "verdict", "1", "starter"], "Usage: assistant compare verdict"),
    (["compare", "sets", "add", "s"], "--prompt"),
    (["compare", "sets", "frobnicate", "s"], "Unknown sets action"),
    (["compare", "again", "3"], "no comparison 3"),
    (["compare", "search"], "needs something to find"),
])
def test_mistakes_get_one_sentence(capsys, argv, sentence):
    code, out, err = _run(capsys, *argv)
    assert code == 1 and sentence in err and err.startswith("error: ") and err.count("\n") == 1, err


def _saved(tmp_path_home=None):
    """A comparison as `compare` saves it, without running a model (the store is the CLI's own)."""
    with HistoryStore.open() as store:
        c = store.create_comparison("Why is the sky blue?\x1b[2J", settings={"seed": 4})
        store.add_comparison_answer(c.id, 0, "starter", "Rayleigh scattering.",
                                    stats={"gen_tps": 60.0, "model": {"size_bytes": 98_000_000},
                                           "memory": {"rss_peak_bytes": 270_000_000}})
        store.add_comparison_answer(c.id, 1, "gemma3-270m-base", "blue blue blue",
                                    stats={"gen_tps": 40.0, "model": {"size_bytes": 253_000_000},
                                           "memory": {"rss_peak_bytes": 445_000_000}})
        return c.id


def test_verdicts_list_show_search_and_summary(capsys):
    cid = _saved()
    assert _run(capsys, "compare", "verdict", str(cid), "starter", "good")[1] == (
        f"Comparison {cid}: starter marked good enough.\n")
    assert _run(capsys, "compare", "verdict", str(cid), "2", "not-good")[0] == 0  # by column number
    assert _run(capsys, "compare", "best", str(cid), "starter")[0] == 0
    code, out, _ = _run(capsys, "compare", "list")
    assert "starter (best), gemma3-270m-base (not good enough)" in out
    assert "\x1b" not in out and "\\e[2J" in out  # the prompt's escape is shown, not acted on
    code, out, _ = _run(capsys, "compare", "show", str(cid))
    assert "Rayleigh scattering." in out and "60 tok/s" in out and "445 MB" in out
    code, out, _ = _run(capsys, "compare", "search", "scattering")
    assert "answer of starter" in out and "**scattering**" in out
    code, out, _ = _run(capsys, "compare", "summary")
    assert out == ("On your 1 comparison, SmolLM2 135M was good enough in 1; it is 1.5× faster and needs 0.6× the "
                   "memory of Gemma 3 270M.\n")
    assert _run(capsys, "compare", "verdict", str(cid), "nobody", "good")[0] == 1


def test_prompt_sets_are_managed_from_the_command_line(capsys):
    code, out, _ = _run(capsys, "compare", "sets", "add", "daily", "--prompt", "Summarise: …", "--prompt",
                        "Write a haiku.", "--system", "Be brief.")
    assert code == 0 and "2 prompts" in out
    assert _run(capsys, "compare", "sets", "add", "daily", "--prompt", "x")[0] == 1  # no silent overwrite
    assert _run(capsys, "compare", "sets", "add", "daily", "--prompt", "x", "--replace")[0] == 0
    assert _run(capsys, "compare", "sets", "list")[1] == "daily  (1 prompt)\n"
    assert _run(capsys, "compare", "sets", "show", "daily")[1] == "  1. x\n"  # replaced whole, system prompt too
    assert _run(capsys, "compare", "sets", "rm", "daily")[0] == 0
    assert "No prompt sets yet" in _run(capsys, "compare", "sets", "list")[1]


def test_a_saved_set_runs_as_a_batch_with_a_summary_table(capsys, tmp_path, monkeypatch):
    """The batch path of the CLI, on the scripted engine at the engine boundary."""
    from assistant.engine import router
    from tests.support.fake_engine import FakeEngine

    monkeypatch.setattr(router, "LocalEngine", lambda: FakeEngine(reply="an answer", token_delay=0))
    monkeypatch.setattr("assistant.compare.check_models", lambda models: None)
    _run(capsys, "compare", "sets", "add", "s", "--prompt", "one", "--prompt", "two")
    code, out, err = _run(capsys, "compare", "--set", "s", "-m", "a", "-m", "b")
    assert code == 0, err
    assert "model 1/2 · prompt 2/2" in out
    header = next(line for line in out.splitlines() if line.startswith("model"))
    assert header.split() == ["model", "answers", "median", "tok/s", "median", "first", "token", "good", "enough",
                              "peak", "RAM"]
    assert "Saved as comparisons 1–2" in out
    with HistoryStore.open() as store:
        assert [c.prompt_set for c in store.list_comparisons()] == ["s", "s"]
    # Run a saved comparison again on other models.
    code, out, err = _run(capsys, "compare", "again", "1", "-m", "c", "-m", "d")
    assert code == 0, err
    with HistoryStore.open() as store:
        again = store.get_comparison(3)
        assert again.models == ["c", "d"] and again.rerun_of == store.get_comparison(1).uid
