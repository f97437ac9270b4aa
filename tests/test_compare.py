"""Compare on the real engine: the two built-in models (SmolLM2 135M Instruct and Gemma 3 270M base), each
in its own runner process, through the real chat service, saved in a real history."""

from __future__ import annotations

import json

import pytest

from assistant.chat_service import ChatService
from assistant.compare import AnswerLoading, CompareRequest, CompareService
from assistant.engine import EngineRouter, GenerationSettings
from assistant.history import HistoryStore

pytestmark = pytest.mark.llama_cpp

PROMPT = "What is the capital of France? Answer in one word."


@pytest.fixture(scope="module")
def compared(tmp_path_factory, starter_model_path, gemma_model_path):
    """One comparison and one two-prompt batch on both models, run once for the module's tests."""
    home = tmp_path_factory.mktemp("compare-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("ASSISTANT_HOME", str(home / "data"))
        history = HistoryStore.open(home / "history.db")
        chat = ChatService(EngineRouter(), history)
        service = CompareService(chat, history)
        models = [str(starter_model_path), str(gemma_model_path)]
        settings = GenerationSettings(max_tokens=24, temperature=0.0)
        try:
            events: list = []
            single = service.run(CompareRequest(prompts=[PROMPT], models=models, settings=settings),
                                 listener=events.append, timeout=300)
            history.save_prompt_set("two tasks", ["Name a colour.", "Say hello."])
            batch_events: list = []
            batch = service.start_set("two tasks", models, listener=batch_events.append,
                                      settings=GenerationSettings(max_tokens=8, temperature=0.0)).wait(300)
            yield {"history": history, "single": single, "events": events, "batch": batch,
                   "batch_events": batch_events, "models": models, "home": home}
        finally:
            chat.close()
            history.close()


def test_each_record_belongs_to_its_own_model_and_process(compared, starter_model_path, gemma_model_path):
    starter, gemma = compared["single"].answers[0]
    assert starter.ok and gemma.ok, (starter.error, gemma.error)
    s, g = starter.stats, gemma.stats
    assert s["model"]["file"] == str(starter_model_path) and g["model"]["file"] == str(gemma_model_path)
    assert (s["model"]["quant"], g["model"]["quant"]) == ("Q4_1", "Q4_K_M")
    assert s["model"]["size_bytes"] == starter_model_path.stat().st_size
    assert g["model"]["size_bytes"] == gemma_model_path.stat().st_size
    # Two runner processes: the starter's ended when Gemma loaded.
    assert s["transport"]["runner_pid"] and g["transport"]["runner_pid"]
    assert s["transport"]["runner_pid"] != g["transport"]["runner_pid"]
    # Weights are each model's own (within its file's size), and the memory figures follow them.
    for record, path in ((s, starter_model_path), (g, gemma_model_path)):
        size = path.stat().st_size
        assert 0.8 * size < record["memory"]["weights_bytes"] <= size
        assert record["memory"]["kv_bytes"] > 0 and record["memory"]["compute_bytes"] > 0
        assert record["memory"]["rss_peak_bytes"] > record["memory"]["weights_bytes"] * 0.5
    assert g["memory"]["weights_bytes"] > 2 * s["memory"]["weights_bytes"]
    assert g["memory"]["rss_peak_bytes"] > s["memory"]["rss_peak_bytes"]


def test_speeds_are_measured_per_model(compared):
    for answer in compared["single"].answers[0]:
        st = answer.stats
        assert st["completion_tokens"] >= 2 and st["gen_ms"] > 0
        assert st["gen_tps"] == pytest.approx((st["completion_tokens"] - 1) / st["gen_ms"] * 1000, rel=0.01)
        assert 0 < st["ttft_ms"] < st["total_ms"]
    starter, gemma = compared["single"].answers[0]
    assert starter.stats["gen_ms"] != gemma.stats["gen_ms"]


def test_both_models_got_the_same_prompt_and_sampling(compared):
    starter, gemma = compared["single"].answers[0]
    seed = compared["single"].settings.seed
    assert seed is not None
    for answer in (starter, gemma):
        assert answer.stats["sampling"]["seed"] == seed and answer.stats["sampling"]["max_tokens"] == 24
    assert "paris" in starter.text.lower()  # the instruction-tuned starter answers
    loads = [e.model_index for e in compared["events"] if isinstance(e, AnswerLoading)]
    assert loads == [0, 1]


def test_a_saved_comparison_with_verdicts_survives_export_and_import_and_is_found(compared, tmp_path):
    history = compared["history"]
    cid = compared["single"].comparison_ids[0]
    saved = history.get_comparison(cid)
    starter, gemma = saved.answers
    history.set_verdict(starter.id, "good")
    history.set_verdict(gemma.id, "not_good")
    history.set_best(cid, starter.id)
    doc = json.loads(json.dumps(history.export_json()))
    with HistoryStore.open(tmp_path / "elsewhere.db") as other:
        other.import_json(doc)
        assert other.export_json()["comparisons"] == doc["comparisons"]
        hits = other.search_comparisons("capital France")
        assert hits and {h.comparison_id for h in hits} == {other.list_comparisons()[-1].id}
        hits = other.search_comparisons("Paris")
        assert any(h.model == compared["models"][0] for h in hits)
        back = other.get_comparison(hits[0].comparison_id)
        assert [(a.best, a.verdict) for a in back.answers] == [(True, "good"), (False, "not_good")]
        assert back.answers[1].stats["memory"] == gemma.stats["memory"]


def test_a_prompt_set_runs_as_a_batch(compared):
    batch = compared["batch"]
    assert [[a is not None and a.ok for a in row] for row in batch.answers] == [[True, True], [True, True]]
    assert sum(isinstance(e, AnswerLoading) for e in compared["batch_events"]) == 2  # one load per model
    saved = compared["history"].list_comparisons(batch=batch.batch, oldest_first=True)
    assert [c.prompt for c in saved] == ["Name a colour.", "Say hello."]
    assert all(c.prompt_set == "two tasks" and len(c.answers) == 2 for c in saved)
    # Both prompts of one model ran in the same runner process; each model in its own.
    pids = [[a.stats["transport"]["runner_pid"] for a in row] for row in batch.answers]
    assert pids[0][0] == pids[1][0] and pids[0][1] == pids[1][1] and pids[0][0] != pids[0][1]


def test_the_peak_memory_is_the_model_process_own(starter_model_path):
    """A runner started by a process that once held 600 MB reports its own peak, not that one's."""
    from assistant.engine import LoadSettings, LocalEngine

    ballast = bytearray(600_000_000)
    for i in range(0, len(ballast), 4096):
        ballast[i] = 1  # resident now: this process's peak is above 600 MB
    del ballast
    engine = LocalEngine()
    try:
        engine.load(str(starter_model_path), LoadSettings(n_ctx=512))
        response = engine.chat([{"role": "user", "content": "Hi"}], GenerationSettings(max_tokens=2))
        response.text()
        memory = response.stats.memory
        assert memory.weights_bytes < memory.rss_peak_bytes < 500_000_000
    finally:
        engine.unload()


def test_a_remote_model_compares_beside_a_local_one(starter_model_path, tmp_path):
    """Across machines: the small local model against a server's model, memory "on NAME" for the remote one."""
    from assistant import remotes
    from assistant.compare_summary import figure_table
    from tests.test_remote import LlamaServer

    server = LlamaServer(starter_model_path, alias="small")
    history = HistoryStore.open(tmp_path / "history.db")
    chat = ChatService(EngineRouter(), history)
    try:
        remotes.add("box", server.url)
        result = CompareService(chat, history).run(
            CompareRequest(prompts=["Say hi."], models=[str(starter_model_path), "small@box"],
                           settings=GenerationSettings(max_tokens=8)), timeout=300)
        local, remote = result.answers[0]
        assert local.ok and remote.ok, (local.error, remote.error)
        assert remote.stats["transport"]["kind"] == "remote" and remote.stats["transport"]["remote"] == "box"
        assert all(v is None for v in remote.stats["memory"].values())  # never this machine's memory
        assert local.stats["memory"]["rss_peak_bytes"] > 0
        table = dict(figure_table([local.stats, remote.stats]))
        assert [table[k][1] for k in ("weights", "KV cache", "compute", "peak RAM")] == ["on box"] * 4
        assert table["tok/s"][1].split()[1].startswith("tok/s")
        assert history.get_comparison(result.comparison_ids[0]).models == [str(starter_model_path), "small@box"]
    finally:
        chat.close()
        history.close()
        server.stop()
