"""The chat service, without Qt: one queue for every front end, in order, each turn cancellable."""

from __future__ import annotations

import threading

import pytest

from assistant.chat_service import (ChatService, ModelLoaded, QueueFull, TurnFailed, TurnFinished, TurnRequest,
                                    TurnStarted, TurnText)
from assistant.engine import GenerationSettings, LoadSettings, LocalEngine
from assistant.history import HistoryStore
from tests.support.fake_engine import FakeEngine


@pytest.fixture
def history(tmp_path):
    store = HistoryStore.open(tmp_path / "history.db")
    yield store
    store.close()


@pytest.fixture
def service(history):
    svc = ChatService(FakeEngine(reply="one two three four five six seven eight", token_delay=0.01), history)
    svc.load("m").result(5)
    yield svc
    svc.close()


def test_two_front_ends_share_one_queue_in_arrival_order(service):
    seen: list = []
    service.subscribe(lambda e: seen.append(e) if isinstance(e, (TurnStarted, TurnFinished)) else None)
    window = service.submit(TurnRequest(text="from the window", source="window"))
    api = service.submit(TurnRequest(kind="messages", messages=[{"role": "user", "content": "from the api"}],
                                     source="api", save=False))
    cli = service.submit(TurnRequest(text="from the cli", source="cli"))
    for handle in (window, api, cli):
        assert isinstance(handle.result(10), TurnFinished)
    order = [(type(e).__name__, e.request_id) for e in seen]
    assert order == [("TurnStarted", window.id), ("TurnFinished", window.id), ("TurnStarted", api.id),
                     ("TurnFinished", api.id), ("TurnStarted", cli.id), ("TurnFinished", cli.id)]
    assert api.outcome.message is None and api.outcome.conversation_id is None  # not saved: the API asked so
    assert window.outcome.message.content == window.outcome.text and window.outcome.text


def test_cancelling_one_turn_leaves_the_others_alone(service):
    first = service.submit(TurnRequest(text="first"))
    second = service.submit(TurnRequest(text="second"))
    third = service.submit(TurnRequest(text="third"))
    second.cancel()  # still waiting: it never starts
    for event in first.events(timeout=10):
        if isinstance(event, TurnText):
            first.cancel()  # running: it stops, keeping what it said
    assert isinstance(first.outcome, TurnFinished) and first.outcome.stats["stop_reason"] == "stopped"
    assert first.outcome.message.status == "stopped"
    assert isinstance(second.result(10), TurnFailed) and "cancelled" in second.outcome.sentence
    assert isinstance(third.result(10), TurnFinished) and third.outcome.stats["stop_reason"] == "eos"


def test_the_finished_event_carries_the_saved_reply_so_nobody_reads_it_back(service, history):
    handle = service.submit(TurnRequest(text="hello"))
    events = list(handle.events(timeout=10))
    started, finished = events[1], events[-1]
    assert isinstance(started, TurnStarted) and started.user_message.content == "hello"
    assert isinstance(finished, TurnFinished)
    saved = history.get_message(finished.reply_id)
    assert finished.message == saved and finished.message.stats["completion_tokens"] == 8
    # The next turn in the same conversation continues it from the open session.
    follow = service.submit(TurnRequest(text="and again", conversation_id=finished.conversation_id)).result(10)
    thread = history.get_conversation(finished.conversation_id).thread
    assert [m.role for m in thread] == ["user", "assistant", "user", "assistant"] and follow.message == thread[-1]


def test_a_full_queue_says_so(history):
    service = ChatService(FakeEngine(token_delay=0.01), history, max_waiting=2)
    service.load("m").result(5)
    try:
        service.submit(TurnRequest(text="1"))
        service.submit(TurnRequest(text="2"))
        with pytest.raises(QueueFull, match="already waiting"):
            service.submit(TurnRequest(text="3"))
    finally:
        service.close()


def test_a_turn_naming_another_model_loads_it_first(service):
    loaded = []
    service.subscribe(lambda e: loaded.append(e.summary.name) if isinstance(e, ModelLoaded) else None)
    result = service.submit(TurnRequest(text="hi", model="other", source="api")).result(10)
    assert isinstance(result, TurnFinished) and loaded == ["other"] and result.stats["model"]["name"] == "other"


def test_a_listener_that_raises_does_not_stop_the_engine_thread(service):
    def broken(event):
        raise RuntimeError("a front end's bug")

    service.subscribe(broken)
    assert isinstance(service.submit(TurnRequest(text="hi")).result(10), TurnFinished)


def test_draft_counts_keep_only_the_latest(service):
    counted = []
    done = threading.Event()
    blocker = service.submit(TurnRequest(text="busy"))  # the engine is busy: drafts pile up
    for i in range(5):
        service.count_tokens_later([{"role": "user", "content": "word " * i}],
                                   lambda used, n_ctx: (counted.append(used), done.set()))
    blocker.result(10)
    assert done.wait(5) and counted == [4 + 4]  # only the last draft was counted


def test_text_completion_continues_the_text_and_is_saved(service, history):
    result = service.submit(TurnRequest(kind="complete", text="Once upon a time")).result(10)
    assert isinstance(result, TurnFinished) and result.text
    thread = history.get_conversation(result.conversation_id).thread
    assert [(m.role, m.content) for m in thread] == [("user", "Once upon a time"), ("assistant", result.text)]


@pytest.mark.llama_cpp
def test_the_real_engine_through_the_service(tiny_model_path, history):
    service = ChatService(LocalEngine(), history)
    try:
        service.load(str(tiny_model_path), LoadSettings(n_ctx=128, n_threads=1)).result(60)
        result = service.submit(TurnRequest(text="hi", settings=GenerationSettings(max_tokens=4, seed=1))).result(60)
        assert isinstance(result, TurnFinished) and result.stats["completion_tokens"] >= 1
        assert result.message.content == result.text
    finally:
        service.close()


def test_a_stopped_reply_continues_as_a_new_version_that_starts_with_its_text(service, history):
    first = service.submit(TurnRequest(text="tell me"))
    for event in first.events(timeout=10):
        if isinstance(event, TurnText):
            first.cancel()
    stopped = first.outcome.message
    assert stopped.status == "stopped" and stopped.content
    handle = service.submit(TurnRequest(kind="continue", message_id=stopped.id))
    events = list(handle.events(timeout=10))
    started, finished = events[1], events[-1]
    assert isinstance(started, TurnStarted) and started.initial_text == stopped.content
    assert isinstance(finished, TurnFinished) and finished.stats["stop_reason"] == "eos"
    assert finished.message.content == finished.text and finished.text.startswith(stopped.content)
    assert len(finished.text) > len(stopped.content)
    siblings = history.siblings(finished.reply_id)
    assert {m.id for m in siblings} == {stopped.id, finished.reply_id}  # the stopped version is kept
    assert service.engine._current.prefix == stopped.content  # the model was asked to go on from it


@pytest.mark.llama_cpp
def test_continuing_on_the_real_engine_goes_on_from_the_text(tiny_model_path, history):
    service = ChatService(LocalEngine(), history)
    try:
        service.load(str(tiny_model_path), LoadSettings(n_ctx=256, n_threads=1)).result(60)
        stopped = service.submit(TurnRequest(text="hi", settings=GenerationSettings(max_tokens=3, seed=1))).result(60)
        result = service.submit(TurnRequest(kind="continue", message_id=stopped.reply_id,
                                            settings=GenerationSettings(max_tokens=4, seed=1))).result(60)
        assert isinstance(result, TurnFinished) and result.text.startswith(stopped.text)
        assert result.stats["completion_tokens"] >= 1
        # The prompt held the earlier part: more tokens than the same turn without it.
        assert result.stats["prompt_tokens"] > stopped.stats["prompt_tokens"]
    finally:
        service.close()
