"""The real runner on each thinking format: a reply forced through llama.cpp (a GBNF grammar over the
format's special tokens, on a random-weight model with the family's real chat template) comes out
told apart, in the stream, the record and the saved message; a thinking budget closes the thinking."""

from __future__ import annotations

import pytest

from assistant.chat_service import ChatService, TurnFinished, TurnRequest, TurnText
from assistant.engine import GenerationSettings, LoadSettings, LocalEngine
from assistant.engine.thinking import FORMATS
from assistant.history import HistoryStore
from tests.support import thinking_models as tm

pytestmark = pytest.mark.llama_cpp


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    folder = tmp_path_factory.mktemp("thinking")
    return {fmt: tm.write_thinking_model(folder / f"{fmt}.gguf", fmt) for fmt in FORMATS}


@pytest.fixture
def service(tmp_path):
    store = HistoryStore.open(tmp_path / "history.db")
    svc = ChatService(LocalEngine(), store)
    yield svc
    svc.close()
    store.close()


def turn(service, text, settings, conversation_id=None):
    handle = service.submit(TurnRequest(text=text, conversation_id=conversation_id, settings=settings, source="cli"))
    events = list(handle.events(timeout=120))
    assert isinstance(events[-1], TurnFinished), events[-1]
    return [e for e in events if isinstance(e, TurnText)], events[-1]


@pytest.mark.parametrize("fmt", FORMATS)
def test_each_format_streams_records_and_saves_thinking_apart(models, service, fmt):
    summary = service.load(str(models[fmt]), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
    assert summary.thinking == fmt  # detected from the real template
    settings = GenerationSettings(max_tokens=80, temperature=0, grammar=tm.grammar(fmt), thinking="on",
                                  stop_on_repetition=False)
    texts, done = turn(service, "Is it so?", settings)

    thought = "".join(t.text for t in texts if t.kind == "thinking")
    answer = "".join(t.text for t in texts if t.kind == "answer")
    assert thought == tm.THOUGHT and answer == tm.ANSWER
    for marker in ("<think>", "</think>", "<|channel>", "<channel|>", "<|channel|>", "<|message|>", "<|end|>",
                   "[THINK]", "[/THINK]", "analysis", "final"):
        assert marker not in thought + answer
    assert texts[0].kind == "thinking" and texts[-1].kind == "answer"  # thinking first, then the answer

    stats = done.stats
    assert stats["reply"] == tm.ANSWER and stats["thinking"] == tm.THOUGHT and stats["thinking_format"] == fmt
    assert stats["stop_reason"] == "eos" and not stats["thinking_unfinished"]
    assert stats["thinking_tokens"] > 0 and stats["answer_tokens"] > 0
    assert stats["thinking_tokens"] + stats["answer_tokens"] == stats["completion_tokens"]
    assert stats["answer_tokens"] <= len(tm.ANSWER) + 1  # the answer's own tokens (one a character at most)
    assert stats["thinking_ms"] > 0

    saved = service.history.get_message(done.reply_id)
    assert saved.content == tm.ANSWER and saved.thinking == tm.THOUGHT
    assert saved.stats["thinking_tokens"] == stats["thinking_tokens"]
    assert done.text == tm.ANSWER


def test_the_next_turn_sends_the_answer_back_not_the_thinking(models, service):
    """Qwen3.5's template drops earlier thinking: turn 2's prompt holds turn 1's answer only, so the
    cached prefix ends where turn 1's reply began (its thinking is re-evaluated away)."""
    service.load(str(models["think_tags"]), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
    settings = GenerationSettings(max_tokens=80, temperature=0, grammar=tm.grammar("think_tags"),
                                  stop_on_repetition=False)
    _, first = turn(service, "Is it so?", settings)
    _, second = turn(service, "And then?", settings, first.conversation_id)
    prompt1, cached2 = first.stats["prompt_tokens"], second.stats["cached_tokens"]
    # Everything up to turn 1's reply is reused; the reply itself comes back without its thinking.
    assert prompt1 - 4 <= cached2 <= prompt1
    assert second.stats["prompt_tokens"] - cached2 < first.stats["completion_tokens"] + 20
    conv = service.history.get_conversation(first.conversation_id)
    replies = [m for m in conv.thread if m.role == "assistant"]
    assert [m.thinking for m in replies] == [tm.THOUGHT, tm.THOUGHT]


@pytest.mark.parametrize("fmt", ["think_tags", "gemma4_channel"])
def test_a_budget_closes_the_thinking_and_the_model_answers(models, service, fmt):
    service.load(str(models[fmt]), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
    # The grammar never closes the thinking on its own: only the budget can.
    opening = "" if fmt == "think_tags" else '<|channel> "thought\\n" '
    settings = GenerationSettings(max_tokens=60, temperature=0, grammar=f"root ::= {opening}[a-z ]+",
                                  thinking="on", thinking_budget=16, stop_on_repetition=False)
    texts, done = turn(service, "Think long.", settings)
    stats = done.stats
    assert stats["thinking_closed_by_budget"] and stats["stop_reason"] == "length"
    assert 16 <= stats["thinking_tokens"] <= 16 + 5  # the budget, and the closing delimiter's few tokens
    assert stats["answer_tokens"] == 60 - stats["thinking_tokens"] and stats["reply"].strip()
    kinds = [t.kind for t in texts]
    assert kinds.index("answer") > kinds.index("thinking") and "thinking" not in kinds[kinds.index("answer"):]
    saved = service.history.get_message(done.reply_id)
    assert saved.thinking and saved.content == stats["reply"]


def test_a_reply_that_ends_while_thinking_says_so(models, service):
    service.load(str(models["think_tags"]), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
    settings = GenerationSettings(max_tokens=12, temperature=0, grammar="root ::= [a-z ]+", stop_on_repetition=False)
    texts, done = turn(service, "Think long.", settings)
    assert {t.kind for t in texts} == {"thinking"}
    assert done.stats["thinking_unfinished"] and done.stats["reply"] == "" and done.stats["thinking_tokens"] == 12
    saved = service.history.get_message(done.reply_id)
    assert saved.content == "" and saved.thinking


def test_thinking_format_none_shows_everything(models, service):
    service.load(str(models["mistral_think"]), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
    settings = GenerationSettings(max_tokens=80, temperature=0, grammar=tm.grammar("mistral_think"),
                                  thinking_format="none")
    texts, done = turn(service, "Is it so?", settings)
    assert {t.kind for t in texts} == {"answer"}
    # Without a format the markers are special tokens rendered as nothing: only the words remain.
    assert done.stats["reply"] == tm.THOUGHT + tm.ANSWER and done.stats["thinking"] is None
    assert done.stats["thinking_tokens"] == 0 and done.stats["thinking_format"] is None


def test_continuing_a_reply_goes_on_with_its_answer_not_its_thinking(models, service):
    service.load(str(models["think_tags"]), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
    settings = GenerationSettings(max_tokens=20, temperature=0, grammar="root ::= [a-z ]+", thinking_budget=8,
                                  stop_on_repetition=False)
    _, first = turn(service, "Think, then answer.", settings)
    assert first.stats["stop_reason"] == "length" and first.stats["reply"]
    handle = service.submit(TurnRequest(kind="continue", message_id=first.reply_id, settings=GenerationSettings(
        max_tokens=10, temperature=0, grammar="root ::= [a-z ]+", stop_on_repetition=False), source="cli"))
    events = list(handle.events(timeout=120))
    done = events[-1]
    assert isinstance(done, TurnFinished)
    assert {e.kind for e in events if isinstance(e, TurnText)} == {"answer"}  # the thinking is over
    assert done.stats["thinking"] is None and done.stats["answer_tokens"] == 10
    saved = service.history.get_message(done.reply_id)
    assert saved.content.startswith(first.stats["reply"]) and len(saved.content) > len(first.stats["reply"])
    assert saved.thinking == service.history.get_message(first.reply_id).thinking


@pytest.mark.parametrize("thinking", ["on", "off"])
def test_a_hybrid_model_resumes_turn_2_where_the_reply_began(tmp_path, thinking):
    """A recurrent state cannot be cut back: turn 2, whose prompt renders turn 1's reply without its
    thinking (and, thinking off, without the empty block the prompt ended with), resumes from a checkpoint
    saved where turn 1's reply markup began, and evaluates only what changed."""
    from tests.support.hybrid_gguf import write_tiny_lfm2

    _, special, eos = tm.FAMILIES["think_tags"]
    path = write_tiny_lfm2(tmp_path / "hybrid.gguf", special_tokens=special, eos_token=eos,
                           chat_template=tm.template("think_tags"))
    store = HistoryStore.open(tmp_path / "history.db")
    service = ChatService(LocalEngine(), store)
    try:
        service.load(str(path), LoadSettings(n_ctx=2048, n_threads=1)).result(120)
        settings = GenerationSettings(max_tokens=30, temperature=0, grammar="root ::= [a-z ]+", thinking=thinking,
                                      thinking_budget=10, stop_on_repetition=False)
        _, first = turn(service, f"A question with thinking {thinking}", settings)
        _, second = turn(service, "And then?", GenerationSettings(max_tokens=1), first.conversation_id)
    finally:
        service.close()
        store.close()
    markup = 2 if thinking == "on" else 6  # "<think>\n" or "<think>\n\n</think>\n\n", a newline a token here
    assert second.stats["kv_cache"]["resumed_from"] == first.stats["prompt_tokens"] - markup
    assert second.stats["cached_tokens"] == first.stats["prompt_tokens"] - markup


def test_the_budget_closes_the_thinking_between_draft_rounds(models, service):
    """With prompt lookup drafting (verified tokens arrive a round at a time, already in the cache), the
    budget closes the thinking after the round that crossed it, and the reply goes on answering."""
    service.load(str(models["think_tags"]), LoadSettings(n_ctx=2048, n_threads=1, draft="lookup", draft_max=4,
                                                         draft_always=True)).result(120)
    settings = GenerationSettings(max_tokens=60, temperature=0, grammar="root ::= [a-z ]+", thinking_budget=16,
                                  stop_on_repetition=False)
    texts, done = turn(service, "Think long.", settings)
    stats = done.stats
    assert stats["draft"]["kind"] == "lookup" and stats["draft"]["drafted"] > 0
    assert stats["thinking_closed_by_budget"] and 16 <= stats["thinking_tokens"] <= 16 + 4 + 5
    assert stats["answer_tokens"] == 60 - stats["thinking_tokens"] and stats["reply"].strip()
    kinds = [t.kind for t in texts]
    assert "thinking" not in kinds[kinds.index("answer"):]
