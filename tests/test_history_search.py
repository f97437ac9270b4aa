"""Full-text search: ranked, highlighted, and no typed text ever raises."""

import sqlite3

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from assistant.history import HistoryStore
from assistant.history.search import fts_query


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    with HistoryStore.open(tmp_path_factory.mktemp("search") / "history.db") as s:
        bread = s.create_conversation(title="Sourdough bread")
        s.add_message(bread.id, "user", "How long should I proof the dough?")
        s.add_message(bread.id, "assistant", "Proof the dough for 4 hours, then bake it at 250 °C.")
        rust = s.create_conversation(title="Learning Rust")
        s.add_message(rust.id, "user", "Explain the borrow checker (and lifetimes) in Rust.")
        s.add_message(rust.id, "assistant", 'The borrow checker makes sure "references" never outlive data.')
        cafe = s.create_conversation(title="Trip")
        s.add_message(cafe.id, "user", "Où est le café? مرحبا بالعالم 🙂 naïve running")
        yield s


def test_ranked_hits_with_highlighted_snippets(store):
    hits = store.search("dough")
    assert [h.role for h in hits] == ["user", "assistant"] or [h.role for h in hits] == ["assistant", "user"]
    assert all("**dough**" in h.snippet for h in hits)
    assert hits[0].rank <= hits[1].rank
    assert {h.display_title for h in hits} == {"Sourdough bread"}


def test_titles_are_searched_too(store):
    [hit] = store.search("sourdough")
    assert hit.message_id is None and hit.snippet == "**Sourdough** bread"


def test_words_are_all_required_and_the_last_is_a_prefix(store):
    assert [h.role for h in store.search("borrow lifetimes")] == ["user"]
    assert {h.role for h in store.search("borr")} == {"user", "assistant"}  # search as you type
    assert store.search("borrow bread") == []


def test_stemming_diacritics_and_non_latin(store):
    assert store.search("run ") != []  # porter: running
    assert store.search("cafe ") != [] and store.search("naive ") != []
    assert store.search("مرحبا") != []


def test_custom_highlight_markers(store):
    [hit] = store.search("lifetimes", highlight=("<b>", "</b>"))
    assert "<b>lifetimes</b>" in hit.snippet


@pytest.mark.parametrize("query", [
    '"', '""', '"unbalanced', 'dough"', "*", "dough*", "(", ")", "((dough", "a AND", "OR", "NOT dough",
    "NEAR(dough proof)", "col:dough", "content:dough", "-dough", "+", "^dough", "dough OR", "\x00", "dough\x00",
    "🙂", "   ", "", "'; DROP TABLE messages; --",
    "lone \ud800", "\udfff\ud800", "{dough proof}", "dough:*", "\\", "\n\t", "ʕ•ᴥ•ʔ",
])
def test_hostile_queries_never_raise(store, query):
    store.search(query)


def test_quoted_phrase(store):
    assert [h.role for h in store.search('"dough for 4 hours"')] == ["assistant"]
    assert store.search('"hours for dough"') == []


@settings(database=None, max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.one_of(st.text(max_size=60), st.text(st.characters(exclude_categories=()), max_size=60)))
def test_any_text_is_a_valid_query(store, text):  # surrogates too: a mis-decoded terminal
    store.search(text)
    # And without the safety net: the query we build is valid FTS5 syntax.
    q = fts_query(text)
    if q is not None:
        store.conn.execute("SELECT count(*) FROM messages_fts WHERE messages_fts MATCH ?", (q,)).fetchone()


@settings(database=None, max_examples=200, deadline=None)
@given(st.text(alphabet=st.sampled_from(list('"*()^:+-{}., \\\'\x00ANDORNEA')), max_size=30))
def test_fts_syntax_characters_are_always_quoted(text):
    conn = sqlite3.connect(":memory:")
    conn.execute("CREATE VIRTUAL TABLE t USING fts5(x)")
    q = fts_query(text)
    if q is not None:
        conn.execute("SELECT * FROM t WHERE t MATCH ?", (q,)).fetchall()


def test_long_message_snippet_is_fast_and_marked(tmp_path):
    # FTS5's snippet() is quadratic in hits per document; long texts take the linear path.
    import time

    with HistoryStore.open(tmp_path / "h.db") as s:
        conv = s.create_conversation()
        s.add_message(conv.id, "user", "intro words " + "the cat sat on the mat " * 20_000 + "and the end")
        started = time.perf_counter()
        [hit] = [h for h in s.search("cat mat") if h.message_id is not None]
        assert time.perf_counter() - started < 1.0
        assert "**cat**" in hit.snippet and hit.snippet.endswith("…") and len(hit.snippet) < 300


# -- substrings: CJK, emoji, parts of words (the trigram index, m006) ------------------

@pytest.fixture(scope="module")
def cjk(tmp_path_factory):
    with HistoryStore.open(tmp_path_factory.mktemp("cjk") / "history.db") as s:
        ja = s.create_conversation(title="機械学習の勉強")
        s.add_message(ja.id, "user", "深層学習と機械学習の違いを説明してください。")
        s.add_message(ja.id, "assistant", "機械学習はデータから規則を学ぶ方法の総称です。")
        zh = s.create_conversation(title="中文")
        s.add_message(zh.id, "user", "我喜欢学习自然语言处理")
        ko = s.create_conversation(title="한국어")
        s.add_message(ko.id, "user", "기계학습은 재미있습니다")
        th = s.create_conversation(title="ไทย")
        s.add_message(th.id, "user", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ")
        party = s.create_conversation(title="Party")
        s.add_message(party.id, "user", "Tonight 🍕🍕🍕🎉🎉 then 👨‍👩‍👧 family time")
        code = s.create_conversation(title="Code")
        s.add_message(code.id, "user", "Python functions return 100% of the time; snake_case names")
        yield s


@pytest.mark.parametrize("query, expected", [
    ("機械学習", "深層学習と機械学習の違いを説明してください。"),   # a word inside a Japanese sentence
    ("データから規則", "機械学習はデータから規則を学ぶ方法の総称です。"),
    ("自然语言", "我喜欢学习自然语言处理"),
    ("기계학습", "기계학습은 재미있습니다"),                        # without its particle
    ("การเว้นวรรค", "ภาษาไทยไม่มีการเว้นวรรคระหว่างคำ"),
    ("🍕🍕🎉", "Tonight 🍕🍕🍕🎉🎉 then 👨‍👩‍👧 family time"),          # part of an emoji run
    ("🍕🎉", "Tonight 🍕🍕🍕🎉🎉 then 👨‍👩‍👧 family time"),            # two characters: the bounded scan
    ("👩‍👧", "Tonight 🍕🍕🍕🎉🎉 then 👨‍👩‍👧 family time"),            # part of a ZWJ sequence
    ("学", "深層学習と機械学習の違いを説明してください。"),          # one character
    ("ython", "Python functions return 100% of the time; snake_case names"),  # part of a word
    ("100%", "Python functions return 100% of the time; snake_case names"),
    ("snake_case", "Python functions return 100% of the time; snake_case names"),
    ("機械学習 データ", "機械学習はデータから規則を学ぶ方法の総称です。"),  # every piece required
])
def test_substrings_are_found(cjk, query, expected):
    hits = [h for h in cjk.search(query, limit=50) if h.message_id is not None]
    contents = {cjk.get_message(h.message_id).content for h in hits}
    assert expected in contents
    for h in hits:  # only messages that really hold every piece
        content = cjk.get_message(h.message_id).content.lower()
        assert all(piece.lower() in content for piece in query.split())


def test_substring_hits_are_marked_and_titles_found(cjk):
    [title] = [h for h in cjk.search("学習の勉") if h.message_id is None]
    assert title.snippet == "機械**学習の勉**強"
    [hit] = [h for h in cjk.search("深層学習") if h.message_id is not None]
    assert hit.snippet.startswith("**深層学習**と機械学習")
    assert cjk.search("機械学習をしない") == [] and cjk.search("ython_") == [] and cjk.search("0%_") == [] and cjk.search("snakeXcase") == []


def test_short_pieces_scan_only_the_newest_messages(cjk, monkeypatch):
    from assistant.history import search as search_module

    monkeypatch.setattr(search_module, "SCAN_WINDOW", 2)  # the two newest messages only
    assert cjk.search("学", limit=50) == [] or all(h.message_id is None for h in cjk.search("学", limit=50))
    assert any(h.message_id for h in cjk.search("学習と", limit=50))  # three characters: the index, no bound


CJK_ALPHABET = "機械学習深層データ規則方法総称自然语言处理我喜欢ひらがなカタカナ한국어기계🍕🎉😀👍🏽"


@settings(database=None, max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.text(st.sampled_from(CJK_ALPHABET), min_size=1, max_size=30), min_size=1, max_size=5),
       st.data())
def test_any_piece_of_unspaced_text_is_found(tmp_path_factory, texts, data):
    # A fresh, small history each time: the found message is the one we put there.
    with HistoryStore.open(tmp_path_factory.mktemp("prop") / "h.db") as s:
        conv = s.create_conversation(title="p")
        ids = [s.add_message(conv.id, "user", t).id for t in texts]
        i = data.draw(st.integers(0, len(texts) - 1))
        start = data.draw(st.integers(0, len(texts[i]) - 1))
        piece = texts[i][start:data.draw(st.integers(start + 1, len(texts[i])))]
        found = {h.message_id for h in s.search(piece, limit=100)}
        assert ids[i] in found
        assert found - {None} == {mid for mid, t in zip(ids, texts) if piece.lower() in t.lower()}
