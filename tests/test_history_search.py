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
