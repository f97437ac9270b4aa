"""A reply's thinking in the history: saved with it as it streams, exported (JSON field, Markdown
<details>) and imported back, found by search only when asked, and an older history upgrades."""

from __future__ import annotations

import json

import pytest
from sqlite_utils import Database, Migrations

from assistant.history import HistoryStore
from assistant.history.schema import MIGRATIONS

STATS = {"reply": "It is 4.", "thinking": "The platypus adds two and two.", "thinking_tokens": 12,
         "thinking_ms": 2345.0, "answer_tokens": 4, "completion_tokens": 16, "gen_tps": 30.0,
         "model": {"name": "qwen3.5-4b", "quant": "Q4_K_M"}, "stop_reason": "eos"}


@pytest.fixture
def store(tmp_path):
    s = HistoryStore.open(tmp_path / "history.db")
    yield s
    s.close()


def _reply(store, thinking="The platypus adds two and two.", answer="It is 4.", save_interval=0.5):
    conv = store.create_conversation(model="qwen3.5-4b")
    store.add_message(conv.id, "user", "What is 2+2?")
    reply = store.start_reply(conv.id, save_interval=save_interval)
    for word in thinking.split(" "):
        reply.append_thinking(word + " ")
    reply.append(answer)
    return conv, reply


def test_the_thinking_is_saved_with_the_reply_and_read_back(store):
    conv, reply = _reply(store)
    saved = reply.finish("complete", stats=STATS)
    assert saved.content == "It is 4." and saved.thinking == "The platypus adds two and two."
    again = store.get_conversation(conv.id).thread[-1]
    assert again.thinking == saved.thinking and again.stats["thinking_tokens"] == 12
    assert store.get_conversation(conv.id).chat_messages()[-1] == {"role": "assistant", "content": "It is 4."}


def test_thinking_streams_into_the_saved_row_before_the_answer(store):
    conv, reply = _reply(store, answer="", save_interval=0)
    row = store.conn.execute("SELECT content, thinking, status FROM messages WHERE id = ?", (reply.id,)).fetchone()
    assert row == ("", "The platypus adds two and two. ", "streaming")  # a crash now keeps the thinking


def test_search_finds_thinking_only_when_asked(store):
    _, reply = _reply(store)
    reply.finish("complete", stats=STATS)
    assert store.search("platypus") == []  # the answer does not say it
    hits = store.search("platypus", thinking=True)
    assert len(hits) == 1 and hits[0].in_thinking and "**platypus**" in hits[0].snippet
    answer_hits = store.search("4", thinking=True) + store.search("2+2")
    assert all(not h.in_thinking for h in store.search("2+2"))
    assert answer_hits
    assert store.search("adds two", thinking=True)[0].in_thinking  # a phrase, and the word index's stemming


def test_export_json_and_markdown_and_import_round_trip(store, tmp_path):
    conv, reply = _reply(store, thinking="Think </details> <b>hard</b>.")
    reply.finish("complete", stats=STATS)
    doc = store.export_json([conv.id])
    messages = doc["conversations"][0]["messages"]
    assert messages[-1]["thinking"] == "Think </details> <b>hard</b>." and messages[-1]["content"] == "It is 4."
    assert "thinking" not in messages[0]  # the user's message has none: no empty field
    md = store.export_markdown([conv.id])
    assert "<details>\n<summary>Thought for 2.3 s · 12 tokens</summary>" in md
    assert "Think &lt;/details&gt; &lt;b&gt;hard&lt;/b&gt;." in md  # shown as text, the fold stays whole
    assert md.index("</details>") < md.index("It is 4.")

    other = HistoryStore.open(tmp_path / "other.db")
    try:
        result = other.import_json(json.dumps(doc))
        imported = other.get_conversation(result.imported[0]).thread[-1]
        assert imported.thinking == "Think </details> <b>hard</b>." and imported.content == "It is 4."
        assert other.search("hard", thinking=True)[0].in_thinking
        assert other.import_json(json.dumps(doc)).skipped  # twice adds nothing
        # A file from before thinking was kept imports as it did.
        del doc["conversations"][0]["messages"][-1]["thinking"]
        doc["conversations"][0]["id"] = "another-uid"
        for m in doc["conversations"][0]["messages"]:
            m["id"] += "-b"
            m["parent_id"] = m["parent_id"] + "-b" if m["parent_id"] else None
        doc["conversations"][0]["current_leaf"] += "-b"
        old = other.get_conversation(other.import_json(json.dumps(doc)).imported[0]).thread[-1]
        assert old.thinking is None
    finally:
        other.close()


def test_a_thinking_field_of_the_wrong_type_is_refused_by_name(store):
    conv, reply = _reply(store)
    reply.finish("complete", stats=STATS)
    doc = store.export_json([conv.id])
    doc["conversations"][0]["messages"][-1]["thinking"] = {"not": "text"}
    doc["conversations"][0]["id"] = "x"
    from assistant.history.errors import HistoryError

    with pytest.raises(HistoryError) as err:
        store.import_json(json.dumps(doc))
    assert "thinking" in str(err.value)


def test_an_m007_history_upgrades_and_keeps_its_replies(tmp_path):
    path = tmp_path / "old.db"
    old = Migrations(MIGRATIONS.name)
    for m in MIGRATIONS._migrations:
        if m.name < "m008":
            old(name=m.name)(m.fn)
    db = Database(path)
    old.apply(db)
    db.execute("INSERT INTO conversations (uid, title, created_at, updated_at) VALUES ('c', 'old', 't', 't')")
    db.execute("INSERT INTO messages (uid, conversation_id, role, content, status, created_at, updated_at) "
               "VALUES ('m', 1, 'assistant', 'an old reply about wombats', 'complete', 't', 't')")
    db.conn.commit()
    db.conn.close()
    with HistoryStore.open(path) as s:
        assert s.migrated == ["m008_images", "m009_reply_thinking", "m010_thinking_search"]
        msg = s.get_conversation(1).messages[0]
        assert msg.content == "an old reply about wombats" and msg.thinking is None
        assert s.search("wombats", thinking=True)[0].message_id == msg.id
        assert s.check().outcome == "sound"
