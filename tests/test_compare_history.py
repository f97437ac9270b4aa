"""Comparisons, verdicts and prompt sets in the history: verdict rules, search, export/import, summaries."""

from __future__ import annotations

import copy
import json

import pytest

from assistant.compare_summary import (
    cells_of_saved,
    display_name,
    figure_table,
    figures,
    pair_summaries,
    summarize_models,
)
from assistant.history import HistoryStore, ImportFormatError
from assistant.history.comparisons import (
    AnswerNotFound,
    ComparisonNotFound,
    PromptSetNotFound,
)
from assistant.history.errors import HistoryError


def _stats(name, size, tps, peak, *, remote=None, file=None):
    record = {"model": {"name": name, "file": file or f"/m/{name}.gguf", "quant": "Q4_K_M", "size_bytes": size,
                        "n_params": size * 2},
              "gen_tps": tps, "ttft_ms": 120.0, "completion_tokens": 40, "total_ms": 1500.0, "stop_reason": "eos",
              "memory": {"weights_bytes": size, "kv_bytes": 50_000_000, "compute_bytes": 20_000_000,
                         "rss_bytes": peak, "rss_peak_bytes": peak, "vram_bytes": None},
              "transport": {"runner_pid": 100}}
    if remote:
        record["memory"] = {k: None for k in record["memory"]}
        record["model"] = {"name": name, "file": None, "quant": None, "size_bytes": None, "n_params": None}
        record["transport"] = {"kind": "remote", "remote": remote, "server_gen_tps": 130.0}
    return record


SMALL = dict(name="starter", size=98_000_000, tps=60.0, peak=270_000_000)
BIG = dict(name="gemma3-1b", size=800_000_000, tps=20.0, peak=900_000_000)


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


def _compare(store, prompt, answers, **kw):
    c = store.create_comparison(prompt, system_prompt=kw.get("system"), settings={"seed": 5, "max_tokens": 64},
                                prompt_set=kw.get("prompt_set"), batch=kw.get("batch"))
    ids = [store.add_comparison_answer(c.id, i, model, text, stats=stats).id
           for i, (model, text, stats) in enumerate(answers)]
    return c.id, ids


def _pair(store, prompt, small_text="A short, right answer.", big_text="A long, right answer."):
    return _compare(store, prompt, [("starter", small_text, _stats(**SMALL)),
                                    ("gemma3-1b", big_text, _stats(**BIG))])


def test_verdicts_good_not_good_and_best(store):
    cid, (a, b) = _pair(store, "Why is the sky blue?")
    assert store.set_verdict(a, "good").good_enough is True
    assert store.set_verdict(b, "not_good").good_enough is False
    c = store.set_best(cid, b)  # the best answer was good enough: its verdict follows
    assert [(x.best, x.verdict) for x in c.answers] == [(False, "good"), (True, "good")]
    c = store.set_best(cid, a)  # one best per comparison
    assert [x.best for x in c.answers] == [True, False]
    assert store.set_verdict(a, "not_good").best is False  # not good enough is never the best
    assert store.set_verdict(a, None).good_enough is None
    assert store.set_best(cid, None).answers[1].best is False


@pytest.mark.parametrize("call, error", [
    (lambda s: s.set_verdict(999, "good"), AnswerNotFound),
    (lambda s: s.set_verdict(1, "great"), HistoryError),
    (lambda s: s.set_best(999, None), ComparisonNotFound),
    (lambda s: s.set_best(1, 999), AnswerNotFound),
    (lambda s: s.get_comparison(999), ComparisonNotFound),
    (lambda s: s.create_comparison("   "), HistoryError),
    (lambda s: s.add_comparison_answer(999, 0, "m", "x"), ComparisonNotFound),
    (lambda s: s.get_prompt_set("nope"), PromptSetNotFound),
    (lambda s: s.delete_prompt_set("nope"), PromptSetNotFound),
    (lambda s: s.save_prompt_set("", ["x"]), HistoryError),
    (lambda s: s.save_prompt_set("empty", ["", "  "]), HistoryError),
    (lambda s: s.save_prompt_set("x" * 101, ["p"]), HistoryError),
])
def test_bad_calls_get_one_sentence_and_change_nothing(store, call, error):
    _pair(store, "Why?")
    before = store.export_json()
    with pytest.raises(error) as info:
        call(store)
    assert str(info.value).endswith(".") and "\n" not in str(info.value)
    after = store.export_json()
    assert before["comparisons"] == after["comparisons"] and before["prompt_sets"] == after["prompt_sets"]


def test_a_best_answer_from_another_comparison_is_refused(store):
    cid, _ = _pair(store, "one")
    _, (other, _) = _pair(store, "two")
    with pytest.raises(AnswerNotFound):
        store.set_best(cid, other)


def test_prompt_sets_are_named_lists(store):
    s = store.save_prompt_set("  daily   work ", ["Summarise this.", "", "Write a regex for dates."], system_prompt="Brief.")
    assert s.name == "daily work" and s.prompts == ["Summarise this.", "Write a regex for dates."]
    with pytest.raises(HistoryError, match="exists already"):
        store.save_prompt_set("daily work", ["x"])
    store.save_prompt_set("daily work", ["only one"], replace=True)
    assert store.get_prompt_set("daily work").prompts == ["only one"]
    store.save_prompt_set("another", ["y"])
    assert [x.name for x in store.prompt_sets()] == ["another", "daily work"]
    store.delete_prompt_set("another")
    assert [x.name for x in store.prompt_sets()] == ["daily work"]


def test_comparisons_are_found_by_prompt_and_by_answer(store):
    cid, (a, b) = _pair(store, "Explain photosynthesis to a child", small_text="Plants eat sunlight.",
                        big_text="Chlorophyll captures light energy.")
    _compare(store, "日本の首都はどこですか", [("starter", "東京です。🗼", _stats(**SMALL)),
                                             ("gemma3-1b", "京都", _stats(**BIG))])
    hits = store.search_comparisons("photosynthesis")
    assert [(h.comparison_id, h.answer_id) for h in hits] == [(cid, None)] and "**photosynthesis**" in hits[0].snippet
    hits = store.search_comparisons("chlorophyll")
    assert [(h.answer_id, h.model) for h in hits] == [(b, "gemma3-1b")]
    assert [h.model for h in store.search_comparisons("首都")] == [None]  # inside unspaced text
    assert [h.model for h in store.search_comparisons("🗼")] == ["starter"]
    assert [h.answer_id for h in store.search_comparisons("unligh")] == [a]  # part of a word
    for hostile in ['"', "AND OR NOT", "*", "(", "a:b", "\x00", "%_", "NEAR(", "' OR 1=1 --"]:
        store.search_comparisons(hostile)  # never raises
    assert store.search_comparisons("nothing like it") == []


def test_export_and_import_round_trip_loses_nothing(store, tmp_path):
    cid, (a, b) = _pair(store, "Why is the sky blue?")
    store.set_verdict(a, "good")
    store.set_best(cid, a)
    store.set_verdict(b, "not_good")
    batch_id, _ = _compare(store, "batch prompt", [("starter", "x", _stats(**SMALL)), ("b@box", "y",
                           _stats("b@box", 0, 90.0, 0, remote="box"))], prompt_set="daily", batch="batch-1")
    store.save_prompt_set("daily", ["batch prompt", "another"], system_prompt="Be brief.")
    conv = store.create_conversation(model="starter")
    store.add_message(conv.id, "user", "a chat stays too")
    doc = store.export_json()
    assert doc["version"] >= 2 and len(doc["comparisons"]) == 2 and doc["prompt_sets"][0]["name"] == "daily"
    text = json.dumps(doc)
    with HistoryStore.open(tmp_path / "other.db") as other:
        result = other.import_json(text)
        assert len(result.comparisons) == 2 and result.prompt_sets == ["daily"] and len(result.imported) == 1
        again = other.export_json()
        for key in ("comparisons", "prompt_sets"):
            assert again[key] == doc[key]
        assert again["conversations"] == doc["conversations"]
        # Found by search there, verdicts intact.
        found = other.search_comparisons("sky")
        assert found and other.get_comparison(found[0].comparison_id).answers[0].best
        # Importing twice adds nothing.
        second = other.import_json(text)
        assert second.comparisons == [] and len(second.comparisons_skipped) == 2 and second.prompt_sets == []
        assert other.count_comparisons() == 2


def test_an_imported_prompt_set_never_overwrites_one_of_the_same_name(store, tmp_path):
    store.save_prompt_set("daily", ["mine"])
    doc = store.export_json()
    with HistoryStore.open(tmp_path / "other.db") as other:
        other.save_prompt_set("daily", ["theirs"])
        assert other.import_json(doc).prompt_sets == ["daily (2)"]
        assert other.get_prompt_set("daily").prompts == ["theirs"]
        assert other.get_prompt_set("daily (2)").prompts == ["mine"]


def test_a_version_1_export_still_imports(store):
    doc = {"format": "hearthchat-history", "version": 1, "conversations": []}
    result = store.import_json(doc)
    assert result.imported == [] and result.comparisons == []


BAD_DOCS = {
    "comparisons not a list": lambda d: d.update(comparisons={}),
    "comparison not an object": lambda d: d["comparisons"].append(3),
    "no prompt": lambda d: d["comparisons"][0].pop("prompt"),
    "answers not a list": lambda d: d["comparisons"][0].update(answers="x"),
    "bad verdict": lambda d: d["comparisons"][0]["answers"][0].update(verdict="great"),
    "bad status": lambda d: d["comparisons"][0]["answers"][0].update(status="done"),
    "best not a bool": lambda d: d["comparisons"][0]["answers"][0].update(best="yes"),
    "negative position": lambda d: d["comparisons"][0]["answers"][0].update(position=-1),
    "stats not an object": lambda d: d["comparisons"][0]["answers"][0].update(stats=[1]),
    "duplicate comparison id": lambda d: d["comparisons"].append(copy.deepcopy(d["comparisons"][0])),
    "bad time": lambda d: d["comparisons"][0].update(created_at="yesterday"),
    "prompts not texts": lambda d: d["prompt_sets"][0].update(prompts=[1, 2]),
    "empty set": lambda d: d["prompt_sets"][0].update(prompts=[" "]),
    "prompt sets not a list": lambda d: d.update(prompt_sets="x"),
}


@pytest.mark.parametrize("damage", list(BAD_DOCS))
def test_a_damaged_export_is_refused_whole_with_one_sentence(store, tmp_path, damage):
    _pair(store, "Why?")
    store.save_prompt_set("s", ["p"])
    doc = store.export_json()
    BAD_DOCS[damage](doc)
    with HistoryStore.open(tmp_path / "other.db") as other:
        conv = other.create_conversation()
        with pytest.raises(ImportFormatError) as info:
            other.import_json(json.dumps(doc))
        assert str(info.value).startswith("Cannot import this history file:") and "Nothing was changed" in str(info.value)
        assert other.count_comparisons() == 0 and other.prompt_sets() == [] and other.conversation_ids() == [conv.id]


def test_an_oversized_batch_is_refused_by_the_import_limits(store):
    from assistant.history import ImportLimitError, ImportLimits

    doc = {"format": "hearthchat-history", "version": 2, "conversations": [],
           "comparisons": [{"id": str(i), "prompt": "p", "created_at": "2026-01-01T00:00:00", "answers": []}
                           for i in range(11)]}
    with pytest.raises(ImportLimitError, match="11 comparisons"):
        store.import_json(doc, limits=ImportLimits(max_conversations=10))


def test_an_older_history_upgrades_and_keeps_its_chats(tmp_path):
    from sqlite_utils import Database

    from assistant.history import schema

    path = tmp_path / "old.db"
    upto = [m for m in schema.MIGRATIONS._migrations if m.name != "m007_comparisons"]
    older = type(schema.MIGRATIONS)(schema.MIGRATIONS.name)
    for m in upto:
        older(name=m.name)(m.fn)
    db = Database(path)
    older.apply(db)
    db.conn.close()
    with HistoryStore.open(path) as s:
        assert s.migrated == ["m007_comparisons"]
        cid, _ = _pair(s, "after the upgrade")
        assert s.get_comparison(cid).models == ["starter", "gemma3-1b"] and s.integrity_check() == "ok"


def test_a_damaged_comparison_index_is_rebuilt_from_the_answers(tmp_path):
    from tests.support.history_files import scramble_index_blocks

    path = tmp_path / "history.db"
    with HistoryStore.open(path) as s:
        for i in range(40):
            _pair(s, f"question number {i} about penguins", small_text=f"answer {i} about penguins " * 20)
    scramble_index_blocks(path, "comparison_answers_fts")
    with HistoryStore.open(path) as s:
        result = s.check()
        assert result.outcome == "repaired" and "comparison_answers_fts" in result.message
        assert len(s.search_comparisons("penguins", limit=100)) == 80


# --- Summaries ------------------------------------------------------------------------------------------------


def test_the_pair_summary_is_about_the_smaller_model(store):
    for i in range(12):
        cid, (a, b) = _pair(store, f"task {i}")
        store.set_verdict(a, "good" if i < 9 else "not_good")
    [s] = pair_summaries(store.list_comparisons(limit=None))
    assert (s.subject, s.other, s.comparisons, s.good, s.judged) == ("starter", "gemma3-1b", 12, 9, 12)
    assert s.speed_ratio == pytest.approx(3.0) and s.memory_ratio == pytest.approx(0.3)
    assert s.sentence == ("On your 12 comparisons, SmolLM2 135M was good enough in 9; it is 3.0× faster and needs "
                          "0.3× the memory of Gemma 3 1B.")


def test_the_statistics_service_gives_the_same_summaries(store):
    from assistant.stats_service import StatsService

    for i in range(3):
        _pair(store, f"task {i}")
    stats = StatsService(chat=None, history=store)  # summaries read the history only
    [s] = stats.verdict_summaries()
    assert s.comparisons == 3 and s.sentence.startswith("On your 3 comparisons (none judged yet), SmolLM2 135M")


def test_a_remote_model_is_the_big_one_and_has_no_memory_here(store):
    _compare(store, "x", [("qwen:7b@box", "y", _stats("qwen:7b@box", 0, 40.0, 0, remote="box")),
                          ("starter", "z", _stats(**SMALL))])
    [s] = pair_summaries(store.list_comparisons())
    assert s.subject == "starter" and s.memory_ratio is None
    assert s.sentence == "On your 1 comparison (none judged yet), SmolLM2 135M is 1.5× faster than qwen:7b@box."
    table = dict(figure_table([_stats("qwen:7b@box", 0, 40.0, 0, remote="box"), _stats(**SMALL)]))
    assert table["weights"][0] == "on box" and table["peak RAM"][0] == "on box"
    assert table["tok/s"][0] == "40 tok/s (server 130 tok/s)" and table["peak RAM"][1] == "270 MB"


def test_failed_answers_do_not_count_in_a_pair(store):
    c = store.create_comparison("x")
    store.add_comparison_answer(c.id, 0, "starter", "", status="error", error="crashed")
    store.add_comparison_answer(c.id, 1, "gemma3-1b", "fine", stats=_stats(**BIG))
    assert pair_summaries(store.list_comparisons()) == []


def test_the_batch_table_sums_up_each_model(store):
    for i in range(3):
        _, (a, b) = _pair(store, f"p{i}")
        store.set_verdict(a, "good" if i else "not_good")
    rows = summarize_models(cells_of_saved(store.list_comparisons()), ["starter", "gemma3-1b"])
    assert [r.cells() for r in rows] == [
        ["SmolLM2 135M", "3", "60 tok/s", "0.12 s", "2 of 3 judged", "270 MB"],
        ["Gemma 3 1B", "3", "20 tok/s", "0.12 s", "not judged yet", "900 MB"],
    ]


def test_figures_tolerate_odd_records():
    for odd in (None, {}, {"gen_tps": "fast", "memory": [1], "model": "name"}, {"gen_tps": float("nan")}):
        fig = figures(odd)
        assert fig["gen_tps"] is None and fig["rss_peak_bytes"] is None
        assert all(isinstance(cell, str) for _, cells in figure_table([odd]) for cell in cells)
    assert display_name("/tmp/x/SmolLM2-135M-Instruct.Q4_1.gguf", {"model": {"file": "/tmp/x/a-Q4_1.gguf",
                                                                             "quant": "Q4_1"}}) == "a"


def test_a_speed_measured_on_a_busy_cpu_says_so():
    quiet = _stats(**SMALL) | {"n_threads": 2}
    quiet["transport"] = {"runner_pid": 1, "cpu_other_busy": 0.0}
    busy = _stats(**SMALL) | {"n_threads": 2}
    busy["transport"] = {"runner_pid": 2, "cpu_other_busy": 0.9}
    assert dict(figure_table([quiet, busy]))["tok/s"] == ["60 tok/s", "60 tok/s (busy CPU)"]


def _on(stats, busy):
    out = copy.deepcopy(stats) | {"n_threads": 2}
    out["transport"] = {"runner_pid": 1, "cpu_other_busy": busy}
    return out


def test_the_summary_compares_quiet_speeds_only_or_says_it_cannot(store, monkeypatch):
    monkeypatch.setattr("assistant.busy.os.cpu_count", lambda: 2)
    # Both answers on a busy CPU (the issue's case: two copies of the starter, "29x faster"): no speed claim.
    _compare(store, "p0", [("starter", "a", _on(_stats(**SMALL | {"tps": 2.5}), 0.9)),
                           ("gemma3-1b", "b", _on(_stats(**BIG | {"tps": 72.0}), 0.95))])
    [pair] = pair_summaries(store.list_comparisons())
    assert pair.speed_ratio is None and "faster" not in pair.sentence and "slower" not in pair.sentence
    assert pair.sentence.endswith("both runs were on a busy CPU: run again for a speed comparison.")
    assert "needs 0.3× the memory of Gemma 3 1B" in pair.sentence  # memory is not the CPU's: still compared

    # One quiet comparison more: its quiet figures are the ones compared, the busy ones left out.
    _compare(store, "p1", [("starter", "a", _on(_stats(**SMALL), 0.0)), ("gemma3-1b", "b", _on(_stats(**BIG), 0.0))])
    [pair] = pair_summaries(store.list_comparisons())
    assert pair.speed_ratio == pytest.approx(3.0) and "is 3.0× faster" in pair.sentence

    # The table per model: a busy answer is left out of the median and said so.
    rows = summarize_models(cells_of_saved(store.list_comparisons()), ["starter", "gemma3-1b"])
    assert rows[0].median_tps == 60.0 and rows[0].cells()[2] == "60 tok/s (1 on a busy CPU left out)"


def test_the_summary_names_the_side_whose_runs_were_all_busy(store, monkeypatch):
    monkeypatch.setattr("assistant.busy.os.cpu_count", lambda: 2)
    for i in range(2):
        _compare(store, f"p{i}", [("starter", "a", _on(_stats(**SMALL), 0.9)), ("gemma3-1b", "b", _on(_stats(**BIG), 0.0))])
    [pair] = pair_summaries(store.list_comparisons())
    assert pair.speed_ratio is None
    assert "SmolLM2 135M's runs were on a busy CPU: run again for a speed comparison." in pair.sentence
    rows = summarize_models(cells_of_saved(store.list_comparisons()), ["starter", "gemma3-1b"])
    assert rows[0].median_tps is None and rows[0].cells()[2] == "– (busy CPU)"
    store2_pairs = [_on(_stats(**SMALL), 0.9), _on(_stats(**BIG), 0.9)]
    assert dict(figure_table(store2_pairs))["tok/s"] == ["60 tok/s (busy CPU)", "20 tok/s (busy CPU)"]
