"""Speculative decoding's parts around the runner: the n-gram index, the break-even controller, the expected
gain, the footer, the per-pair statistics, the draft plan, and the CLI (issue 23)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from assistant.draft_stats import draft_pairs
from assistant.engine.runner.draft_control import Costs, DraftController
from assistant.engine.runner.prompt_lookup import NgramIndex
from assistant.stats_format import draft_words, format_stats_line
from models.draft_gain import expected_speedup, expected_tokens

ASSISTANT = Path(sys.prefix) / "bin" / "assistant"


# --- prompt lookup's index

def test_the_ngram_index_drafts_what_followed_the_longest_earlier_match():
    index = NgramIndex([1, 2, 3, 4, 5, 6, 9, 9, 3, 4])
    assert index.draft(3) == [5, 6, 9]  # "3 4" was followed by 5 6 9
    index.extend([5, 6])
    assert index.draft(2) == [9, 9]  # "4 5 6" now: its last occurrence continues with 9 9
    assert NgramIndex([1, 2, 3, 4]).draft(4) == []  # nothing repeats: nothing to draft
    assert index.draft(0) == []


# --- when drafting pays

def test_break_even_is_where_drafting_stops_paying():
    costs = Costs(t_plain=0.1, t_draft_measured=0.01, beta=0.2)
    # One draft a round: (1 + a) * t1 = c_draft + t1 * (1 + beta)  =>  a = c_draft / t1 + beta.
    assert costs.break_even(1) == pytest.approx(0.1 + 0.2, abs=1e-6)
    assert costs.speedup(costs.break_even(4), 4) == pytest.approx(1.0, abs=1e-6)
    assert Costs(t_plain=0.1, t_draft_measured=0.1, beta=0.2).break_even(3) == 1.0  # a draft as slow never pays


def test_a_draft_that_is_never_kept_is_paused_after_two_rounds_and_probed_later():
    controller = DraftController(8, Costs(t_plain=0.1, t_draft_measured=0.03, beta=0.1))
    n, drafted_rounds = 1, 0
    while n < 60:
        k = controller.next_k(n, limit=100)
        if k:
            drafted_rounds += 1
            controller.verified(k, 0, 0.1 * (1 + 0.1 * k))
        n += 1
    assert controller.paused and drafted_rounds == 2 and controller.accepted == 0
    # After the pause (64 tokens) it looks again, once.
    ks = [controller.next_k(m, limit=100) for m in range(60, 140)]
    assert sum(1 for k in ks if k) == 1


def test_a_draft_that_is_always_kept_keeps_drafting_within_the_limits():
    controller = DraftController(6, Costs(t_plain=0.1, t_draft_measured=0.01, beta=0.1))
    for n in range(1, 40):
        k = controller.next_k(n, limit=4)
        assert 1 <= k <= 4
        controller.verified(k, k, 0.1 * (1 + 0.1 * k))
    assert not controller.paused and controller.acceptance > 0.9
    assert controller.next_k(41, limit=0) == 0  # no room left in the context or the length limit


def test_drafting_pauses_when_its_tokens_really_come_slower_than_plain_ones_whatever_the_model_says():
    # The cost model believes drafts always pay; the wall clock says a round's tokens cost more than plain ones.
    controller = DraftController(8, Costs(t_plain=0.1, t_draft_measured=0.001, beta=0.01))
    controller.realized(0.10, 1, drafted=False)
    controller.realized(0.10, 1, drafted=False)
    rounds = 0
    for n in range(1, 40):
        k = controller.next_k(n, limit=100)
        if not k:
            break
        rounds += 1
        controller.verified(k, k, 0.1)
        controller.realized(0.15 * (k + 1), k + 1, drafted=True)  # 0.15 s a token against 0.10 plain
    assert rounds == 3 and controller.paused and controller.acceptance > 0.9
    # Rounds that do pay keep drafting.
    paying = DraftController(8, Costs(t_plain=0.1, t_draft_measured=0.001, beta=0.01))
    paying.realized(0.10, 1, drafted=False)
    paying.realized(0.10, 1, drafted=False)
    for n in range(1, 40):
        k = paying.next_k(n, limit=100)
        assert k
        paying.verified(k, k, 0.1)
        paying.realized(0.03 * (k + 1), k + 1, drafted=True)
    assert not paying.paused


def test_a_pair_that_can_never_pay_here_stops_probing_and_measures_again_every_few_replies():
    # A verify batch that costs as much as the tokens it checks: even drafts always kept lose.
    costs = Costs(t_plain=0.1, t_draft_measured=0.03, beta=1.0, verify_batches=2)
    first = DraftController(8, costs)
    assert [first.next_k(n, limit=100) for n in range(1, 400)] == [0] * 399 and first.paused
    drafted_in = []
    for reply in range(2, 17):
        controller = DraftController(8, costs)
        k = controller.next_k(1, limit=100)
        if k:
            drafted_in.append(reply)
            controller.verified(k, k, 0.1 * (1 + 1.0 * k))
            controller.verified(k, k, 0.1 * (1 + 1.0 * k))
    assert drafted_in == [8, 16]  # a round to measure again every REMEASURE_EVERY replies, none between


def test_drafting_forced_on_never_pauses_and_the_first_step_of_a_pair_measures_a_plain_step():
    assert DraftController(8, Costs()).next_k(1, limit=100) == 0  # nothing measured yet
    forced = DraftController(8, Costs(t_plain=0.1, t_draft_measured=0.2), adaptive=False)
    for n in range(1, 20):
        assert forced.next_k(n, limit=5) == 5
        forced.verified(5, 0, 1.0)
    assert not forced.paused


def test_the_expected_gain_of_a_pair():
    assert expected_tokens(0.0, 4) == 1.0 and expected_tokens(1.0, 4) == 5.0
    gain, k = expected_speedup(0.4e9, 5.0e9)  # Qwen3 0.6B drafting for 8B, Q4_K_M
    assert 1.4 < gain < 2.5 and 2 <= k <= 8
    assert expected_speedup(5.0e9, 5.0e9)[0] < 1.0  # a draft as big as the model never pays


# --- the footer and the statistics

def test_the_footer_says_how_many_drafts_were_accepted():
    record = {"gen_tps": 12.5, "completion_tokens": 100, "model": {"name": "m", "quant": "Q4_K_M"},
              "draft": {"kind": "model", "model": "qwen3-0.6b", "drafted": 100, "accepted": 71}}
    assert "draft 71% accepted" in format_stats_line(record)
    assert draft_words({"kind": "lookup", "drafted": 0, "accepted": 0, "paused": True}) == "draft paused"
    assert draft_words({"kind": "model", "error": "x", "drafted": 0, "accepted": 0}) == "draft not loaded"
    assert draft_words(None) == "" and "draft" not in format_stats_line({"gen_tps": 1.0})


def test_the_statistics_show_acceptance_and_speed_with_and_without_per_pair():
    def row(tps, draft=None, busy=0.0):
        return {"model": "qwen3-8b", "gen_tps": tps, "completion_tokens": 200, "draft": draft,
                "cpu_other_busy": busy, "n_threads": 2, "created_at": "2026-12-06T00:00:00"}

    d = {"kind": "model", "model": "qwen3-0.6b", "drafted": 100, "accepted": 70}
    rows = [row(6.0), row(6.2), row(5.8), row(9.0, d), row(10.0, d), row(1.0, d, busy=0.9),
            row(4.0, {"kind": "lookup", "model": None, "drafted": 10, "accepted": 2}),
            row(3.0, {"kind": "model", "model": "bad", "error": "left out"})]  # counts as without drafting
    pairs = {p.draft: p for p in draft_pairs(rows, n_cores=2)}
    model = pairs["qwen3-0.6b"]
    assert model.replies == 3 and model.acceptance == pytest.approx(0.7)
    assert model.tps_with == 9.5 and model.tps_without == 5.9  # the busy reply is left out of the speeds
    assert model.speedup == pytest.approx(9.5 / 5.9) and model.replies_without == 4
    assert "70% of drafts accepted" in model.sentence and "1.61×" in model.sentence
    assert pairs["prompt lookup"].acceptance == pytest.approx(0.2)


# --- what the app plans before a runner starts

def test_the_draft_plan_resolves_lookup_off_auto_and_refusals(monkeypatch, tiny_model_path):
    from assistant.engine import draft_plan
    from models import registry
    from models.catalogue import get as catalogue_get

    assert draft_plan.plan_draft(None, 512).request is None and draft_plan.plan_draft("off", 512).request is None
    assert draft_plan.plan_draft("lookup", 512, draft_max=5).request == {"kind": "lookup", "draft_max": 5,
                                                                        "adaptive": True}
    unknown = draft_plan.plan_draft("no-such-model", 512)
    assert unknown.request is None and unknown.notice.endswith("replies go on without drafting.")
    by_path = draft_plan.plan_draft(str(tiny_model_path), 512)
    assert by_path.is_model and by_path.extra_bytes > os.path.getsize(tiny_model_path)  # weights, KV, compute
    assert draft_plan.plan_draft("auto", 512, target_name="starter").request is None  # no family draft: nothing

    # "auto": the catalogue pairs a smaller size that is installed.
    entry = catalogue_get("llama3.1-8b")
    assert entry is not None
    monkeypatch.setattr(registry, "catalogue_entry",
                        lambda name: replace(entry, drafts=("llama3.2-1b",)))
    small = registry.InstalledModel(name="llama3.2-1b", path=str(tiny_model_path), source="local")
    monkeypatch.setattr(registry, "list_installed", lambda: [small])
    monkeypatch.setattr(registry, "resolve", lambda spec: small)
    auto = draft_plan.plan_draft("auto", 512, target_name="llama3.1-8b")
    assert auto.request["kind"] == "model" and auto.request["name"] == "llama3.2-1b"


def test_the_window_offers_a_draft_with_its_expected_gain(monkeypatch, tmp_path):
    from assistant.engine import draft_plan
    from models import registry
    from models.catalogue import get as catalogue_get

    entry = catalogue_get("llama3.1-8b")
    big, small = tmp_path / "big.gguf", tmp_path / "small.gguf"
    big.write_bytes(bytes(5_000_000))
    small.write_bytes(bytes(400_000))
    models = {"llama3.1-8b": registry.InstalledModel(name="llama3.1-8b", path=str(big), source="local"),
              "llama3.2-1b": registry.InstalledModel(name="llama3.2-1b", path=str(small), source="local")}
    monkeypatch.setattr(registry, "catalogue_entry",
                        lambda name: replace(entry, drafts=("llama3.2-1b",)))
    monkeypatch.setattr(registry, "list_installed", lambda: list(models.values()))
    monkeypatch.setattr(registry, "get", lambda name: models.get(name))
    offer = draft_plan.draft_offer("llama3.1-8b")
    assert offer is not None and offer.draft == "llama3.2-1b" and offer.speedup > 1.3
    assert offer.sentence.startswith("llama3.2-1b can draft for llama3.1-8b: about ")
    del models["llama3.2-1b"]
    assert draft_plan.draft_offer("llama3.1-8b") is None  # not installed: nothing offered


def test_the_load_plan_counts_the_draft_in_the_memory_ceiling(tiny_model_path):
    from assistant.engine import LoadSettings
    from assistant.engine.local import plan_load
    from models import registry
    from models.gguf_file import read_gguf_info

    entry = registry.resolve(str(tiny_model_path))
    info = read_gguf_info(entry.path)
    alone = plan_load(entry, info, LoadSettings(n_ctx=256, n_threads=1))
    drafted = plan_load(entry, info, LoadSettings(n_ctx=256, n_threads=1, draft=str(tiny_model_path)))
    assert drafted.memory_limit - alone.memory_limit == drafted.draft.ceiling_bytes > drafted.draft.extra_bytes > 0
    assert drafted.request["draft"]["kind"] == "model" and "draft" not in alone.request
    without = drafted.without_draft("why")
    assert without.memory_limit == alone.memory_limit and "draft" not in without.request


def test_the_window_default_is_to_draft_automatically():
    from assistant.preferences import default_preferences, load_settings

    prefs = default_preferences()
    assert prefs["draft"] == "auto" and load_settings(prefs).draft == "auto"
    assert load_settings({**prefs, "draft": "off"}).draft == "off"


# --- the command line, as a user runs it

def _run(*args, home):
    return subprocess.run([str(ASSISTANT), *args], capture_output=True, text=True, timeout=240,
                          env={**os.environ, "ASSISTANT_HOME": str(home)})


@pytest.mark.llama_cpp
def test_chat_with_prompt_lookup_says_so_in_the_footer_and_the_record(tiny_model_path, tmp_path):
    proc = _run("chat", "-m", str(tiny_model_path), "-t", "1", "--draft", "lookup", "--draft-max", "4",
                "--temperature", "0", "-n", "24", "--no-save", "--json", "the sea and the sea and the", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["draft"]["kind"] == "lookup" and {"drafted", "accepted"} <= set(record["draft"])
    assert draft_words(record["draft"]) in format_stats_line(record)


@pytest.mark.llama_cpp
def test_chat_with_a_draft_that_cannot_load_says_one_sentence_and_answers(tiny_model_path, tmp_path):
    proc = _run("chat", "-m", str(tiny_model_path), "-t", "1", "--draft", "no-such-model", "-n", "4", "--no-save",
                "hi", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    notices = [line for line in proc.stderr.splitlines() if line.startswith("notice: ")]
    assert len(notices) == 1 and "no-such-model" in notices[0] and "without drafting" in notices[0]
    assert "draft not loaded" in proc.stderr.splitlines()[-1]


@pytest.mark.llama_cpp
def test_bench_with_a_draft_runs_the_same_prompts_with_and_without(tiny_model_path, tmp_path):
    proc = _run("bench", "-m", str(tiny_model_path), "-t", "1", "--draft", str(tiny_model_path), "--tokens", "12",
                "--json", home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert [r["prompt"] for r in result["prompts"]] == ["write", "edit", "code"]
    for row in result["prompts"]:
        assert row["same_reply"] and row["with_tps"] > 0 and row["without_tps"] > 0
        assert row["speedup"] == pytest.approx(row["with_tps"] / row["without_tps"], rel=0.01)
    text = _run("bench", "-m", str(tiny_model_path), "-t", "1", "--draft", "lookup", "--tokens", "8", home=tmp_path)
    assert text.returncode == 0 and "speed-up" in text.stdout and "same reply" in text.stdout


def test_models_fit_adds_the_draft_models_memory(tmp_path, tiny_model_path):
    alone = json.loads(_run("models", "fit", str(tiny_model_path), "--json", home=tmp_path).stdout)
    both = json.loads(_run("models", "fit", str(tiny_model_path), "--draft", str(tiny_model_path), "--json",
                           home=tmp_path).stdout)
    d = both["draft"]
    assert both["memory"]["total"] == alone["memory"]["total"] + d["weights"] + d["kv_cache"] + d["compute"]
    assert both["memory"]["weights"] == 2 * alone["memory"]["weights"]


def test_the_settings_dialog_offers_drafting_and_lets_it_be_turned_off(qtbot):
    from ui.settings_dialog import DEFAULTS, SettingsDialog

    offer = "llama3.2-1b can draft for llama3.1-8b: about 1.9× faster replies expected."
    dialog = SettingsDialog(dict(DEFAULTS), gpu=False, draft_offer=offer)
    qtbot.addWidget(dialog)
    assert dialog.draft.currentData() == "auto" and dialog.draft_offer.text() == offer
    assert not dialog.draft_offer.isHidden()
    dialog.draft.setCurrentIndex(dialog.draft.findData("off"))
    assert dialog.result_settings()[0]["draft"] == "off"
    plain = SettingsDialog(dict(DEFAULTS), gpu=False)
    qtbot.addWidget(plain)
    assert plain.draft_offer.isHidden()  # nothing installed drafts for the model: no offer
