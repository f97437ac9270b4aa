"""Full-text search over titles and messages (FTS5), safe for any text a person types."""

from __future__ import annotations

import re
import sqlite3

from assistant.history.records import SearchHit, clean_text

# "exact phrase" when the quotes balance, otherwise whitespace-separated words.
_PIECE = re.compile(r'"([^"]*)"|(\S+)')
_HAS_WORD = re.compile(r"[^\W_]")  # some letter or digit: the tokenizer keeps it
# NUL ends the string inside FTS5's parser ("unterminated string"); other control
# characters are never part of a word, so they become spaces.
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
TITLE_WEIGHT = 2.0  # a hit in the title counts double: it names the whole conversation
# A pasted page as a query would mean thousands of ANDed phrases: slow, and never
# what anyone meant. The first words decide.
MAX_TERMS = 16
MAX_QUERY_CHARS = 1000


def fts_query(text: str, prefix_last: bool = True) -> str | None:
    """Turn anything typed into a valid FTS5 query: every term quoted, all required.

    Quoting makes FTS5 read `*`, `(`, `:`, `AND`, `NEAR`, `-` as plain text, so no
    input is a syntax error. The last term matches as a prefix, for search-as-you-type.
    None when nothing searchable is left (only punctuation or emoji).
    """
    text = _CONTROL.sub(" ", clean_text(text[:MAX_QUERY_CHARS]))
    pieces = [(m.group(1) is not None, m.group(1) if m.group(1) is not None else m.group(2))
              for m in _PIECE.finditer(text)]
    phrases: list[str] = []
    for _, phrase in pieces:
        quoted = '"' + phrase.replace('"', '""') + '"'
        if _HAS_WORD.search(phrase) and quoted not in phrases:
            phrases.append(quoted)
            if len(phrases) == MAX_TERMS:
                break
    if not phrases:
        return None
    # The word being typed matches as a prefix, from three letters on: the index
    # keeps 3-letter prefixes, and "t*" would merge thousands of posting lists.
    user_quoted, final = pieces[-1]
    if (prefix_last and not user_quoted and not text[-1:].isspace() and not final.endswith('"')
            and phrases[-1] == '"' + final.replace('"', '""') + '"'
            and len(_HAS_WORD.findall(final)) >= 3):
        phrases[-1] += "*"
    return " ".join(phrases)


# Ranking costs one bm25 per matching row: 0.3 s for a word in all of 200,000
# messages. A query that common ranks only its newest RANK_WINDOW matches (in a
# chat history the newest are the likeliest anyway), which keeps it near 20 ms.
# What is left is bm25's own fixed cost, counting each term over the whole index.
RANK_WINDOW = 2000


def _floor(conn: sqlite3.Connection, table: str, q: str) -> int:
    """The lowest rowid to rank: 0 for most queries, the newest RANK_WINDOW matches for very common ones."""
    # Walking the posting list in rowid order is cheap: no scoring, no snippets.
    row = conn.execute(f"SELECT rowid FROM {table} WHERE {table} MATCH ? ORDER BY rowid DESC LIMIT 1 OFFSET ?",
                       (q, RANK_WINDOW - 1)).fetchone()
    return row[0] if row else 0


# FTS5's snippet() is quadratic in the hits inside one document: fine for chat
# messages, seconds for a pasted book full of the searched word. Longer texts get
# a linear snippet made here instead (see _plain_snippet).
SNIPPET_MAX_BYTES = 4000  # bytes: length() of text stops at a NUL, of a blob does not

# FTS5 consumes `ORDER BY rank` itself and stops at LIMIT, so the snippet and the
# joins run only for the hits returned, not for every match of a common word.
_MESSAGES_SQL = """
SELECT m.conversation_id, m.id, c.title, m.role,
       CASE WHEN length(CAST(m.content AS BLOB)) <= :snip_max
            THEN snippet(messages_fts, 0, :open, :close, '…', :words) END,
       CASE WHEN length(CAST(m.content AS BLOB)) > :snip_max THEN m.content END,
       messages_fts.rank
FROM messages_fts
JOIN messages m ON m.id = messages_fts.rowid
JOIN conversations c ON c.id = m.conversation_id
WHERE messages_fts MATCH :q AND messages_fts.rowid >= :floor
ORDER BY messages_fts.rank LIMIT :limit
"""

_TITLES_SQL = """
SELECT c.id, c.title, highlight(conversations_fts, 0, :open, :close), conversations_fts.rank
FROM conversations_fts JOIN conversations c ON c.id = conversations_fts.rowid
WHERE conversations_fts MATCH :q AND conversations_fts.rowid >= :floor
ORDER BY conversations_fts.rank LIMIT :limit
"""


def search(
    conn: sqlite3.Connection,
    text: str,
    limit: int = 20,
    highlight: tuple[str, str] = ("**", "**"),
    snippet_words: int = 16,
) -> list[SearchHit]:
    """Best hits first (bm25), titles and messages together, each with a marked snippet."""
    q = fts_query(text)
    if q is None or limit <= 0:
        return []
    params = {"q": q, "open": highlight[0], "close": highlight[1], "limit": limit,
              "words": snippet_words, "snip_max": SNIPPET_MAX_BYTES}
    try:
        rows = conn.execute(_MESSAGES_SQL, {**params, "floor": _floor(conn, "messages_fts", q)}).fetchall()
        titles = conn.execute(_TITLES_SQL, {**params, "floor": _floor(conn, "conversations_fts", q)}).fetchall()
    except sqlite3.OperationalError as exc:
        # fts_query should make this unreachable; a search box must never crash.
        if "fts5" in str(exc) or "syntax" in str(exc) or "unterminated" in str(exc):
            return []
        raise
    hits = []
    for cid, mid, title, role, snip, long_text, rank in rows:
        if snip is None:
            snip = _plain_snippet(long_text, q, highlight, snippet_words)
        hits.append(SearchHit(cid, mid, title, role, snip, rank))
    hits += [SearchHit(cid, None, title, None, snip, rank * TITLE_WEIGHT) for cid, title, snip, rank in titles]
    hits.sort(key=lambda h: h.rank)
    return hits[:limit]


def _plain_snippet(content: str, q: str, highlight: tuple[str, str], words: int) -> str:
    """A window of about `words` words around the first query word, in linear time.

    Matches words that start like a query word, case-insensitively: close to what
    the stemming tokenizer matched, and when it misses, the text's start is shown.
    """
    terms = sorted({w for w in re.findall(r"[^\W_]+", q)}, key=len, reverse=True)
    pattern = re.compile(r"\b(?:" + "|".join(map(re.escape, terms)) + r")\w*", re.IGNORECASE) if terms else None
    m = pattern.search(content) if pattern else None
    center = m.start() if m else 0
    span = words * 7  # about seven characters a word
    start = max(0, center - span // 3)
    end = min(len(content), start + span)
    if start > 0:  # snap to word boundaries
        space = content.find(" ", start, center)
        start = space + 1 if space != -1 else start
    if end < len(content):
        space = content.rfind(" ", center, end)
        end = space if space > center else end
    window = content[start:end]
    if pattern:
        window = pattern.sub(lambda w: f"{highlight[0]}{w.group(0)}{highlight[1]}", window)
    return ("…" if start > 0 else "") + window + ("…" if end < len(content) else "")
