"""A chat session saves every turn to the history as it happens, stats included."""

import json

import pytest

from assistant.engine import LocalEngine as Engine, GenerationSettings, LoadSettings
from assistant.history import HistoryStore
from assistant.session import ChatSession

pytestmark = pytest.mark.llama_cpp


@pytest.fixture
def engine(tiny_model_path):
    engine = Engine()
    engine.load(str(tiny_model_path), LoadSettings(n_ctx=256, n_threads=1))
    yield engine
    engine.unload()


def test_each_turn_is_saved_with_its_statistics_and_resumes(engine, tmp_path):
    store = HistoryStore.open(tmp_path / "h.db")
    session = ChatSession(engine, system_prompt="Be brief.", history=store,
                          settings=GenerationSettings(max_tokens=6, seed=1))
    reply = "".join(session.send("Hello there"))
    conv = store.get_conversation(session.conversation_id)
    assert conv.title == "Hello there" and conv.system_prompt == "Be brief." and conv.model == "tiny"
    user, answer = [m for m in conv.thread if m.role != "system"]
    assert (user.role, user.content) == ("user", "Hello there")
    assert answer.content == reply and answer.status == "complete"
    assert answer.stats["completion_tokens"] == 6 and answer.stats["stop_reason"] == "length"
    assert answer.stats["model"]["name"] == "tiny" and "gen_tps" in answer.stats

    again = ChatSession(engine, history=store, settings=GenerationSettings(max_tokens=3, seed=1))
    again.resume(conv.id)
    assert again.messages == [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": reply}]
    "".join(again.send("And then?"))
    assert again.last_response.stats.cached_tokens > 0
    assert [m.role for m in store.get_conversation(conv.id).thread if m.role != "system"] == \
        ["user", "assistant", "user", "assistant"]


def test_a_stopped_reply_is_kept_and_marked_stopped(engine, tmp_path):
    store = HistoryStore.open(tmp_path / "h.db")
    session = ChatSession(engine, history=store, settings=GenerationSettings(max_tokens=200, seed=2, ignore_eos=True))
    shown = []
    for i, chunk in enumerate(session.send("Go on")):
        shown.append(chunk)
        if i == 0:  # text comes from the runner in batches: stop after the first
            session.cancel()
    last = store.get_conversation(session.conversation_id).thread[-1]
    assert last.status == "stopped" and last.content == "".join(shown)
    assert last.stats["stop_reason"] == "stopped"


def test_cli_chat_saves_and_continues_a_conversation(tiny_model_path, tmp_path):
    from tests.test_cli import run

    home = tmp_path / "home"
    first = run("chat", "--json", "-m", str(tiny_model_path), "-n", "4", "-t", "1", "First question",
                env_home=home)
    assert first.returncode == 0, first.stderr
    conv_id = json.loads(first.stdout)["conversation_id"]
    second = run("chat", "-m", str(tiny_model_path), "-n", "4", "-t", "1", "--conversation", str(conv_id),
                 "Second question", env_home=home)
    assert second.returncode == 0, second.stderr
    shown = run("history", "show", str(conv_id), env_home=home)
    assert shown.returncode == 0 and "First question" in shown.stdout and "Second question" in shown.stdout
    listed = run("history", "list", env_home=home)
    assert "First question" in listed.stdout


def test_regenerate_and_edit_keep_earlier_versions_as_branches(engine, tmp_path):
    store = HistoryStore.open(tmp_path / "h.db")
    session = ChatSession(engine, history=store, settings=GenerationSettings(max_tokens=3, seed=1))
    "".join(session.send("Original question"))
    first_reply = session.reply_id
    session.settings.seed = 2
    "".join(session.regenerate(first_reply))
    second_reply = session.reply_id
    conv = store.get_conversation(session.conversation_id)
    assert [m.id for m in conv.siblings(second_reply)] == [first_reply, second_reply]
    assert conv.thread[-1].id == second_reply

    user_id = conv.thread[-2].id
    "".join(session.edit(user_id, "Edited question"))
    conv = store.get_conversation(session.conversation_id)
    assert [m.content for m in conv.siblings(conv.thread[-2].id)] == ["Original question", "Edited question"]
    assert conv.thread[-1].status == "complete" and conv.thread[-1].stats
    assert session.messages[-2] == {"role": "user", "content": "Edited question"}
