"""Markdown and JSON export, JSON import: lossless round trips, all-or-nothing failures."""

import copy
import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.history import HistoryStore, ImportFormatError
from assistant.history.export import VERSION, dumps

STATS = {"model": {"name": "gemma-3-270m", "quant": "Q4_K_M", "file": "/models/gemma-3-270m-Q4_K_M.gguf"}, "gen_tps": 41.2,
         "completion_tokens": 312, "ttft_ms": 210.0, "memory": {"rss_bytes": 1_300_000_000}, "stop_reason": "stop"}

# Text that has broken chat stores before: emoji (with ZWJ), NUL, right-to-left,
# combining marks, lone surrogates (from a mis-decoded terminal), very long lines.
SPECIAL = ["👩‍👩‍👧 🇫🇷", "a\x00b\x00", "مرحبا بالعالم", "שָׁלוֹם", "\u202eevil\u202c", "e\u0301\u0301",
           "", "\r\n\t", "x" * 200_000, "lone \ud800 surrogate", "a\udfffb", "```python\nprint('hi')\n```",
           "\ufeffBOM", "\U0010ffff"]
texts = st.one_of(st.text(max_size=300), st.text(st.characters(exclude_categories=()), max_size=50),
                  st.sampled_from(SPECIAL),
                  st.text(min_size=1, max_size=20).map(lambda s: s * 5000))


@pytest.fixture
def store(tmp_path):
    with HistoryStore.open(tmp_path / "history.db") as s:
        yield s


def _sample(store):
    conv = store.create_conversation(model="gemma-3-270m", system_prompt="Be kind.\nAlways.",
                                     settings={"temperature": 0.7, "top_p": 0.9})
    q = store.add_message(conv.id, "user", "Tell me about 🙂 and مرحبا")
    a1 = store.add_message(conv.id, "assistant", "First answer", stats=STATS)
    r = store.regenerate(a1.id)
    r.append("Second")
    r.stop(stats=STATS)
    store.edit(q.id, "Edited question")
    store.add_message(conv.id, "assistant", "Broken", status="error", error="engine crashed")
    return conv.id


def _without_export_time(doc):
    doc = copy.deepcopy(doc)
    doc.pop("exported_at")
    return doc


def test_markdown_is_readable_with_stats_lines(store):
    cid = _sample(store)
    store.switch_branch(store.get_conversation(cid).messages[0].id)
    md = store.export_markdown([cid])
    assert md.startswith("# Tell me about 🙂 and مرحبا\n")
    assert "### You\n\nTell me about 🙂 and مرحبا" in md
    assert "### Assistant\n\nSecond" in md
    assert "*41.2 tok/s · 312 tokens · 0.21 s to first token · 1.3 GB RAM · gemma-3-270m Q4_K_M*" in md
    assert "stopped before the end" in md
    assert "3 branches" in md and "> **System prompt:** Be kind.\n> Always." in md


def test_json_has_every_field_the_issue_names(store):
    cid = _sample(store)
    doc = store.export_json([cid])
    assert doc["format"] == "hearthchat-history" and doc["version"] == VERSION
    [conv] = doc["conversations"]
    assert len(conv["messages"]) == 5
    for m in conv["messages"]:
        assert {"id", "parent_id", "role", "content", "status", "created_at", "stats"} <= m.keys()
    assert {m["status"] for m in conv["messages"]} == {"complete", "stopped", "error"}
    assert conv["messages"][1]["stats"] == STATS
    json.dumps(doc, allow_nan=False)  # strictly valid JSON


def test_round_trip_into_a_new_history_loses_nothing(store, tmp_path):
    _sample(store)
    store.create_conversation()  # an empty, untitled one too
    doc = store.export_json()
    with HistoryStore.open(tmp_path / "other.db") as other:
        result = other.import_json(json.dumps(doc))
        assert len(result.imported) == 2 and result.skipped == []
        again = other.export_json()
        assert _without_export_time(again) == _without_export_time(doc)
        # Imported rows are searchable and the stats columns are filled.
        assert other.search("mرحبا") == [] and other.search("مرحبا") != []
        assert len(other.speed_history("gemma-3-270m")) == 2
        # Importing the same file again adds nothing.
        assert other.import_json(doc).skipped == [c["id"] for c in doc["conversations"]]
        assert other.count_conversations() == 2


@settings(database=None, max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                   HealthCheck.too_slow])
@given(title=texts, prompt=texts, contents=st.lists(texts, min_size=1, max_size=4), search_word=texts)
def test_arbitrary_text_round_trips(tmp_path_factory, title, prompt, contents, search_word):
    clean = lambda s: s.encode("utf-16-le", "surrogatepass").decode("utf-16-le", "replace")  # noqa: E731
    d = tmp_path_factory.mktemp("rt")
    with HistoryStore.open(d / "a.db") as a:
        conv = a.create_conversation(model=title, system_prompt=prompt, title=title or None)
        ids = [a.add_message(conv.id, "user" if i % 2 == 0 else "assistant", c,
                             stats={"note": c} if i % 2 else None).id for i, c in enumerate(contents)]
        got = a.get_conversation(conv.id)
        assert [m.content for m in got.thread] == [clean(c) for c in contents]
        assert got.system_prompt == clean(prompt) and got.model == clean(title)
        assert [m.stats for m in got.thread][1::2] == [{"note": c} for c in contents[1::2]]
        a.search(search_word)
        a.search(title)
        doc = a.export_json()
        a.export_markdown()
    text = dumps(doc)
    with HistoryStore.open(d / "b.db") as b:
        b.import_json(text.encode("utf-8"))
        assert _without_export_time(b.export_json()) == _without_export_time(json.loads(text))
        assert [m.content for m in b.get_conversation(1).thread] == [clean(c) for c in contents]
    assert len(ids) == len(contents)


def test_lone_surrogates_never_crash(store, tmp_path):
    conv = store.create_conversation(model="m\ud800", title="t\udc00", system_prompt="p\ud800")
    m = store.add_message(conv.id, "user", "x\ud800y", stats={"odd": "\udfff"}, error="e\ud800")
    got = store.get_message(m.id)
    assert got.content == "x\ufffdy" and got.stats == {"odd": "\udfff"} and got.error == "e\ufffd"
    text = dumps(store.export_json())
    text.encode("utf-8")
    store.export_markdown().encode("utf-8")
    with HistoryStore.open(tmp_path / "b.db") as b:
        b.import_json(text)
        assert b.get_conversation(1).messages[0].stats == {"odd": "\udfff"}


def _good_doc(store):
    _sample(store)
    return store.export_json()


BAD = {
    "not JSON": lambda d: b"{not json",
    "not UTF-8": lambda d: b"\xff\xfe{}",
    "a list": lambda d: [],
    "no format": lambda d: {**d, "format": "something-else"},
    "future version": lambda d: {**d, "version": VERSION + 1},
    "string version": lambda d: {**d, "version": "1"},
    "no conversations": lambda d: {k: v for k, v in d.items() if k != "conversations"},
    "bad status": lambda d: _edit(d, lambda c: c["messages"][0].update(status="done")),
    "bad role": lambda d: _edit(d, lambda c: c["messages"][0].update(role="robot")),
    "content not text": lambda d: _edit(d, lambda c: c["messages"][0].update(content=42)),
    "missing content": lambda d: _edit(d, lambda c: c["messages"][0].pop("content")),
    "dangling parent": lambda d: _edit(d, lambda c: c["messages"][1].update(parent_id="nope")),
    "loop": lambda d: _edit(d, lambda c: c["messages"][0].update(parent_id=c["messages"][1]["id"])),
    "duplicate message": lambda d: _edit(d, lambda c: c["messages"].append(dict(c["messages"][0]))),
    "bad time": lambda d: _edit(d, lambda c: c["messages"][0].update(created_at="yesterday")),
    "stats not object": lambda d: _edit(d, lambda c: c["messages"][1].update(stats=[1, 2])),
    "bad leaf": lambda d: _edit(d, lambda c: c.update(current_leaf="nope")),
    "duplicate conversation": lambda d: {**d, "conversations": d["conversations"] * 2},
}


def _edit(doc, change):
    doc = copy.deepcopy(doc)
    doc["conversations"][0]["id"] = "fresh-uid"  # so it would not just be skipped
    change(doc["conversations"][0])
    return doc


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_import_is_a_clear_error_and_changes_nothing(store, case):
    doc = _good_doc(store)
    before = store.export_json()
    bad = BAD[case](doc)
    with pytest.raises(ImportFormatError) as info:
        store.import_json(bad if isinstance(bad, bytes) else json.dumps(bad))
    assert "Nothing was changed" in str(info.value)
    if case == "future version":
        assert "newer HearthChat" in str(info.value)
    assert _without_export_time(store.export_json()) == _without_export_time(before)


def test_a_good_conversation_after_a_bad_one_is_not_imported_either(store, tmp_path):
    doc = _good_doc(store)
    good = copy.deepcopy(doc["conversations"][0])
    bad = copy.deepcopy(good)
    bad["id"], good["id"] = "bad", "good"
    bad["messages"][2]["status"] = "weird"
    doc["conversations"] = [good, bad]
    with HistoryStore.open(tmp_path / "empty.db") as empty:
        with pytest.raises(ImportFormatError, match=r"conversations\[1\]\.messages\[2\]\.status"):
            empty.import_json(doc)
        assert empty.count_conversations() == 0


def test_streaming_message_is_imported_as_interrupted(store, tmp_path):
    doc = _good_doc(store)
    doc["conversations"][0]["messages"][-1]["status"] = "streaming"
    with HistoryStore.open(tmp_path / "b.db") as b:
        b.import_json(doc)
        assert b.get_conversation(1).messages[-1].status == "interrupted"
