"""The compare service's own logic on the real chat service, with the scripted engine at the engine boundary:
ordering, seeds, batches, cancel, failures, saving, re-runs and the model put back afterwards."""

from __future__ import annotations

import time

import pytest

from assistant.chat_service import ChatService
from assistant.compare import (
    AnswerDone,
    AnswerLoading,
    AnswerStarted,
    AnswerText,
    CompareError,
    CompareRequest,
    CompareService,
    RunDone,
    check_models,
    check_request,
)
from assistant.engine import GenerationSettings
from assistant.history import HistoryStore
from tests.support.fake_engine import FakeEngine


class Recording(FakeEngine):
    """Remembers the sampling each reply got, per loaded model."""

    def __init__(self, **kw):
        super().__init__(**kw)
        self.asked: list[tuple[str, list[dict], GenerationSettings]] = []

    def chat(self, messages, settings=None):
        self.asked.append((self._summary.name, messages, settings))
        return super().chat(messages, settings)


@pytest.fixture
def setup(tmp_path):
    engine = Recording(reply="one two three four five", token_delay=0.001, load_delay=0.01)
    history = HistoryStore.open(tmp_path / "history.db")
    chat = ChatService(engine, history)
    yield engine, chat, history, CompareService(chat, history)
    chat.close()
    history.close()


def test_every_model_gets_the_same_prompt_system_prompt_sampling_and_a_shared_seed(setup):
    engine, chat, history, service = setup
    events = []
    result = service.run(CompareRequest(prompts=["Why?"], models=["a", "b", "c"], system_prompt="Be brief.",
                                        settings=GenerationSettings(temperature=0.3, max_tokens=3)),
                         listener=events.append, timeout=30)
    assert [name for name, _, _ in engine.asked] == ["a", "b", "c"]  # in turn, each loaded for its answer
    assert all(m == [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Why?"}]
               for _, m, _ in engine.asked)
    seeds = {s.seed for _, _, s in engine.asked}
    assert len(seeds) == 1 and None not in seeds and result.settings.seed in seeds  # drawn once, shared
    assert {s.temperature for _, _, s in engine.asked} == {0.3}
    assert [[a.text for a in row] for row in result.answers] == [["one two three "] * 3]  # max_tokens honoured
    # Events in order, per model: loading, started, text…, done; RunDone last.
    kinds = [(type(e).__name__, getattr(e, "model_index", None)) for e in events if not isinstance(e, AnswerText)]
    assert kinds == [("AnswerLoading", 0), ("AnswerStarted", 0), ("AnswerDone", 0),
                     ("AnswerLoading", 1), ("AnswerStarted", 1), ("AnswerDone", 1),
                     ("AnswerLoading", 2), ("AnswerStarted", 2), ("AnswerDone", 2), ("RunDone", None)]
    assert "".join(e.text for e in events if isinstance(e, AnswerText) and e.model_index == 1) == "one two three "
    # Saved: one comparison, three answers with their records; no chat conversation was made.
    saved = history.get_comparison(result.comparison_ids[0])
    assert saved.models == ["a", "b", "c"] and saved.system_prompt == "Be brief."
    assert saved.settings["seed"] == result.settings.seed and saved.answers[2].stats["model"]["name"] == "c"
    assert history.count_conversations() == 0


def test_a_given_seed_is_kept(setup):
    engine, chat, history, service = setup
    service.run(CompareRequest(prompts=["x"], models=["a", "b"], settings=GenerationSettings(seed=42)), timeout=30)
    assert {s.seed for _, _, s in engine.asked} == {42}


@pytest.mark.parametrize("request_, sentence", [
    (CompareRequest(prompts=["  "], models=["a", "b"]), "needs a prompt"),
    (CompareRequest(prompts=["x"], models=["a"]), "at least two models"),
    (CompareRequest(prompts=["x"], models=["a", "a"]), "named twice"),
    (CompareRequest(prompts=["x"], models=[str(i) for i in range(9)]), "at most 8"),
])
def test_requests_that_cannot_run_get_one_sentence(request_, sentence):
    with pytest.raises(CompareError, match=sentence):
        check_request(request_)


def test_unknown_models_and_remotes_are_refused_before_anything_runs():
    from common.errors import ModelNotFoundError

    with pytest.raises(ModelNotFoundError, match="No installed model is named 'nosuch'"):
        check_models(["starter", "nosuch"])
    with pytest.raises(CompareError, match="no remote server named 'box'"):
        check_models(["starter", "llama@box"])


def test_a_model_that_fails_to_load_fails_its_column_only(setup):
    engine, chat, history, service = setup
    result = service.run(CompareRequest(prompts=["x"], models=["a", "missing-model", "b"]), timeout=30)
    a, missing, b = result.answers[0]
    assert a.ok and b.ok and not missing.ok
    assert missing.status == "error" and "missing-model" in missing.error
    saved = history.get_comparison(result.comparison_ids[0])
    assert [x.status for x in saved.answers] == ["complete", "error", "complete"]


def test_a_prompt_set_runs_as_a_batch_with_one_load_per_model(setup):
    engine, chat, history, service = setup
    history.save_prompt_set("daily", ["first task", "second task", "third task"], system_prompt="Be brief.")
    events = []
    run = service.start_set("daily", ["a", "b"], listener=events.append, settings=GenerationSettings(max_tokens=2))
    result = run.wait(30)
    assert engine.loads == ["a", "b"]  # all prompts on a, then all on b
    assert sum(isinstance(e, AnswerLoading) for e in events) == 2
    assert [(e.prompt_index, e.model_index) for e in events if isinstance(e, AnswerStarted)] == [
        (0, 0), (1, 0), (2, 0), (0, 1), (1, 1), (2, 1)]
    assert all(a is not None and a.ok for row in result.answers for a in row)
    saved = history.list_comparisons(batch=result.batch, oldest_first=True)
    assert [c.prompt for c in saved] == ["first task", "second task", "third task"]
    assert {c.prompt_set for c in saved} == {"daily"} and {c.system_prompt for c in saved} == {"Be brief."}
    assert all(c.models == ["a", "b"] for c in saved)


def test_cancel_keeps_what_finished_and_never_starts_the_rest(setup):
    engine, chat, history, service = setup
    engine.token_delay = 0.05
    started = []

    def listener(event):
        if isinstance(event, AnswerStarted):
            started.append(event.model_index)
            if event.model_index == 1:
                run.cancel()

    run = service.start(CompareRequest(prompts=["x"], models=["a", "b", "c"]), listener=listener)
    result = run.wait(30)
    assert result.cancelled and started == [0, 1]
    a, b, c = result.answers[0]
    assert a.ok and a.status == "complete" and b.status == "stopped" and c is None
    assert history.get_comparison(result.comparison_ids[0]).models == ["a", "b"]


def test_a_history_that_cannot_be_written_costs_the_saving_not_the_comparison(tmp_path):
    engine = FakeEngine(reply="fine", token_delay=0)
    history = HistoryStore.open(tmp_path / "h.db")
    history.read_only_reason = "The chat history is read-only here."
    chat = ChatService(engine, history)
    try:
        result = CompareService(chat, history).run(CompareRequest(prompts=["x"], models=["a", "b"]), timeout=30)
    finally:
        chat.close()
    assert all(a.ok for a in result.answers[0]) and result.comparison_ids == [None]
    assert result.save_error == "The chat history is read-only here."


def test_a_saved_comparison_runs_again_on_other_models_with_its_prompt_and_seed(setup):
    engine, chat, history, service = setup
    first = service.run(CompareRequest(prompts=["Tell me"], models=["a", "b"], system_prompt="S",
                                       settings=GenerationSettings(seed=7, temperature=0.1)), timeout=30)
    engine.asked.clear()
    again = service.rerun(first.comparison_ids[0], ["c", "d"]).wait(30)
    assert [n for n, _, _ in engine.asked] == ["c", "d"]
    assert {(s.seed, s.temperature) for _, _, s in engine.asked} == {(7, 0.1)}
    saved = history.get_comparison(again.comparison_ids[0])
    assert saved.prompt == "Tell me" and saved.system_prompt == "S"
    assert saved.rerun_of == history.get_comparison(first.comparison_ids[0]).uid


def test_the_window_gets_its_model_back_afterwards(setup):
    engine, chat, history, service = setup
    chat.load("mine").result(10)
    result = service.run(CompareRequest(prompts=["x"], models=["a", "b"], restore_model=True), timeout=30)
    assert result.answers[0][1].ok
    chat.run_on_engine(lambda e: None).result(10)  # the put-back load was queued before this
    assert chat.summary().name == "mine" and engine.loads == ["mine", "a", "b", "mine"]


def test_nothing_is_saved_when_asked_not_to(setup):
    engine, chat, history, service = setup
    result = service.run(CompareRequest(prompts=["x"], models=["a", "b"], save=False), timeout=30)
    assert result.comparison_ids == [None] and history.count_comparisons() == 0


def test_a_broken_listener_does_not_stop_the_comparison(setup):
    engine, chat, history, service = setup

    def broken(event):
        raise RuntimeError("a front end's bug")

    result = service.run(CompareRequest(prompts=["x"], models=["a", "b"]), listener=broken, timeout=30)
    assert all(a.ok for a in result.answers[0])


def test_run_done_carries_the_result(setup):
    engine, chat, history, service = setup
    events = []
    result = service.run(CompareRequest(prompts=["x"], models=["a", "b"]), listener=events.append, timeout=30)
    done = [e for e in events if isinstance(e, RunDone)]
    assert len(done) == 1 and done[0].result is result
    assert [e.answer for e in events if isinstance(e, AnswerDone)] == result.answers[0]


def test_a_second_comparison_right_after_the_first_still_puts_back_the_users_model(setup):
    engine, chat, history, service = setup
    chat.load("mine").result(10)
    engine.load_delay = 0.2  # the put-back load is still queued or running when the next comparison starts
    service.run(CompareRequest(prompts=["x"], models=["a", "b"], restore_model=True), timeout=30)
    service.run(CompareRequest(prompts=["y"], models=["c", "d"], restore_model=True), timeout=30)
    chat.run_on_engine(lambda e: None).result(10)
    assert chat.summary().name == "mine" and engine.loads[-1] == "mine"


def test_a_bug_in_the_run_ends_it_with_one_sentence_and_no_hang(setup):
    from assistant.compare import RunFailed

    engine, chat, history, service = setup

    def broken(*args, **kwargs):
        raise RuntimeError("a bug")

    history.create_comparison = broken
    events = []
    run = service.start(CompareRequest(prompts=["x"], models=["a", "b"]), listener=events.append)
    with pytest.raises(RuntimeError):
        run.wait(30)
    assert isinstance(events[-1], RunFailed) and "RuntimeError: a bug" in events[-1].sentence


def test_closing_the_app_mid_comparison_keeps_no_answers_that_never_ran(tmp_path):
    engine = FakeEngine(reply="word " * 200, token_delay=0.01)
    history = HistoryStore.open(tmp_path / "h.db")
    chat = ChatService(engine, history)
    service = CompareService(chat, history)
    started = []
    run = service.start(CompareRequest(prompts=["x"], models=["a", "b", "c"]),
                        listener=lambda e: started.append(e) if isinstance(e, AnswerStarted) else None)
    deadline = time.monotonic() + 10
    while not started and time.monotonic() < deadline:
        time.sleep(0.01)
    chat.close()  # what the window does when it closes
    result = run.wait(30)
    a, b, c = result.answers[0]
    assert a.status == "stopped" and b is None and c is None
    assert history.get_comparison(result.comparison_ids[0]).models == ["a"]
    history.close()
