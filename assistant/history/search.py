"""Search over titles and messages, safe for any text a person types.

Two indexes answer it. The word index (FTS5, porter + unicode61) ranks hits by
bm25, stems ("run" finds "running") and ignores accents; it is asked first. It
cannot find a word inside a run of text without spaces (機械学習 in a Japanese
sentence is part of one long "word"), emoji (not word characters to it), or part
of a word ("ython"). Those queries go to the trigram index, which finds any
substring of three characters or more, newest messages first. Shorter pieces
(one or two CJK characters, a pair of emoji) are matched by scanning the newest
SCAN_WINDOW messages, so a search never reads the whole history.
"""

from __future__ import annotations

import re
import sqlite3
import unicodedata

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
def _hits_sql(column: str, table: str, *, floor: bool) -> str:
    """A word-index query over the messages' `column` through its FTS5 `table`; `floor`: only rows from :floor on."""
    since = f" AND {table}.rowid >= :floor" if floor else ""
    return f"""
SELECT m.conversation_id, m.id, c.title, m.role,
       CASE WHEN length(CAST(m.{column} AS BLOB)) <= :snip_max
            THEN snippet({table}, 0, :open, :close, '…', :words) END,
       CASE WHEN length(CAST(m.{column} AS BLOB)) > :snip_max THEN m.{column} END,
       {table}.rank
FROM {table}
JOIN messages m ON m.id = {table}.rowid
JOIN conversations c ON c.id = m.conversation_id
WHERE {table} MATCH :q{since}
ORDER BY {table}.rank LIMIT :limit
"""


_MESSAGES_SQL = _hits_sql("content", "messages_fts", floor=True)

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
    thinking: bool = False,
) -> list[SearchHit]:
    """Best hits first, titles and messages together, each with a marked snippet.

    The word index first (ranked by bm25); the trigram index for text it cannot
    split into words, and for queries it finds nothing for (a part of a word).
    `thinking`: replies' thinking too, from its own index; those hits say `in_thinking`.
    """
    if limit <= 0:
        return []
    hits: list[SearchHit] = []
    if not needs_substrings(text):
        hits = word_search(conn, text, limit, highlight, snippet_words)
    if not hits:
        hits = substring_search(conn, text, limit, highlight, snippet_words)
    if thinking:
        found = thinking_search(conn, text, limit, highlight, snippet_words)
        seen = {(h.message_id, h.in_thinking) for h in hits}
        hits += [h for h in found if (h.message_id, True) not in seen]
        hits.sort(key=lambda h: h.rank)
    return hits[:limit]


_THINKING_SQL = _hits_sql("thinking", "messages_thinking_fts", floor=False)


def thinking_search(conn: sqlite3.Connection, text: str, limit: int, highlight: tuple[str, str],
                    snippet_words: int) -> list[SearchHit]:
    """Replies' thinking: its word index, or (unspaced scripts, an old read-only file without the index)
    a scan of the newest SCAN_WINDOW messages."""
    has_index = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_thinking_fts'").fetchone()
    has_column = any(r[1] == "thinking" for r in conn.execute("PRAGMA table_info(messages)"))
    if not has_column:
        return []
    q = fts_query(text)
    if has_index and q is not None and not needs_substrings(text):
        params = {"q": q, "open": highlight[0], "close": highlight[1], "limit": limit, "words": snippet_words,
                  "snip_max": SNIPPET_MAX_BYTES}
        try:
            rows = conn.execute(_THINKING_SQL, params).fetchall()
        except sqlite3.OperationalError as exc:
            syntax = getattr(exc, "sqlite_errorcode", 1) & 0xFF == 1
            if syntax and ("fts5" in str(exc) or "syntax" in str(exc) or "unterminated" in str(exc)):
                return []
            raise
        hits = []
        for cid, mid, title, role, snip, long_text, rank in rows:
            if snip is None:
                snip = _plain_snippet(long_text, q, highlight, snippet_words)
            hits.append(SearchHit(cid, mid, title, role, snip, rank, in_thinking=True))
        if hits:
            return hits
    terms = substring_terms(text)
    if not terms:
        return []
    params2: dict[str, object] = {"limit": limit, "window": SCAN_WINDOW}
    exact = []
    for i, term in enumerate(terms):
        params2[f"e{i}"] = _exact(term)
        exact.append(f"m.thinking LIKE :e{i} ESCAPE '\\'")
    rows = conn.execute(
        "SELECT m.conversation_id, m.id, c.title, m.role, m.thinking FROM messages m "
        "JOIN conversations c ON c.id = m.conversation_id "
        f"WHERE m.id > (SELECT coalesce(max(id), 0) FROM messages) - :window AND {' AND '.join(exact)} "
        "ORDER BY m.id DESC LIMIT :limit", params2).fetchall()
    pattern = _terms_pattern(terms)
    return [SearchHit(cid, mid, title, role, substring_snippet(content, pattern, highlight, snippet_words), i,
                      in_thinking=True) for i, (cid, mid, title, role, content) in enumerate(rows)]


def word_search(conn: sqlite3.Connection, text: str, limit: int, highlight: tuple[str, str],
                snippet_words: int) -> list[SearchHit]:
    """The word index: ranked by bm25, stemmed, accents ignored, the last word a prefix."""
    q = fts_query(text)
    if q is None:
        return []
    params = {"q": q, "open": highlight[0], "close": highlight[1], "limit": limit,
              "words": snippet_words, "snip_max": SNIPPET_MAX_BYTES}
    try:
        rows = conn.execute(_MESSAGES_SQL, {**params, "floor": _floor(conn, "messages_fts", q)}).fetchall()
        titles = conn.execute(_TITLES_SQL, {**params, "floor": _floor(conn, "conversations_fts", q)}).fetchall()
    except sqlite3.OperationalError as exc:
        # fts_query should make this unreachable; a search box must never crash. Only
        # a plain SQL error (code 1) is a query problem: damage, a lock or a full disk
        # must reach the store, which acts on them.
        syntax = getattr(exc, "sqlite_errorcode", 1) & 0xFF == 1
        if syntax and ("fts5" in str(exc) or "syntax" in str(exc) or "unterminated" in str(exc)):
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


# -- substrings: CJK, emoji, parts of words ----------------------------------------------

# Scripts written without spaces between words: the word tokenizer sees a whole
# phrase as one token, so a word inside it is only found as a substring. Hangul
# is spaced, but particles attach to words (학습은), so it is searched the same way.
_UNSPACED = re.compile(
    "[\u0e00-\u0eff"      # Thai, Lao
    "\u1000-\u109f"       # Myanmar
    "\u1780-\u17ff"       # Khmer
    "\u2e80-\u2fdf"       # CJK radicals
    "\u3000-\u9fff"       # CJK symbols, kana, Bopomofo, CJK ideographs
    "\ua000-\ua4cf"       # Yi
    "\uac00-\ud7af"       # Hangul syllables
    "\uf900-\ufaff"       # CJK compatibility ideographs
    "\uff65-\uffdc"       # halfwidth kana and Hangul
    "\U00020000-\U0003ffff]")  # CJK extensions


def needs_substrings(text: str) -> bool:
    """Does the query hold text the word index cannot find: unspaced scripts, emoji and other symbols?"""
    if _UNSPACED.search(text):
        return True
    return any(unicodedata.category(ch) in ("So", "Sk") for ch in text if ord(ch) > 0x7F)


# The trigram index is asked with literal runs of three characters or more: a
# LIKE wildcard (% or _) never reaches it. SQLite 3.40's FTS5 crashes on some `_`
# patterns with multi-byte characters around them, and a literal run is all the
# index can use anyway.
_WILDCARDS = re.compile(r"[%_]+")
MAX_NARROWING = 4
# Pieces shorter than that scan the newest messages only: 100,000 rows, ~40 ms here.
SCAN_WINDOW = 100_000
SUBSTRING_TITLE_RANK = -1e9  # a title naming the whole conversation comes first


def substring_terms(text: str) -> list[str]:
    """The pieces to find: "quoted phrases" whole, other text split at spaces."""
    text = _CONTROL.sub(" ", clean_text(text[:MAX_QUERY_CHARS]))
    terms: list[str] = []
    for m in _PIECE.finditer(text):
        term = m.group(1) if m.group(1) is not None else m.group(2)
        term = term.strip()
        if term and term not in terms:
            terms.append(term)
            if len(terms) == MAX_TERMS:
                break
    return terms


def _exact(term: str) -> str:
    """A LIKE pattern matching `term` literally (ESCAPE '\\')."""
    return "%" + term.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%"


def _has_trigram_index(conn: sqlite3.Connection) -> bool:
    # An old file opened read-only may lack it; search then scans.
    return conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'messages_trigram'").fetchone() is not None


def substring_search(conn: sqlite3.Connection, text: str, limit: int, highlight: tuple[str, str],
                     snippet_words: int) -> list[SearchHit]:
    """Messages and titles holding every piece of the query (ASCII letters in any case), newest first."""
    terms = substring_terms(text)
    if not terms:
        return []
    params: dict[str, object] = {"limit": limit, "window": SCAN_WINDOW}
    exact = []
    for i, term in enumerate(terms):
        params[f"e{i}"] = _exact(term)
        exact.append(f"{{col}} LIKE :e{i} ESCAPE '\\'")
    runs = sorted({run for t in terms for run in _WILDCARDS.split(t) if len(run) >= 3}, key=len, reverse=True)
    on_messages = " AND ".join(e.format(col="m.content") for e in exact)
    if runs and _has_trigram_index(conn):
        # The index narrows to rows holding the longest literal runs; the exact
        # patterns then decide.
        runs = runs[:MAX_NARROWING]
        for i, run in enumerate(runs):
            params[f"t{i}"] = f"%{run}%"
        narrow = " AND ".join(f"t.content LIKE :t{i}" for i in range(len(runs)))
        sql = (f"SELECT m.conversation_id, m.id, c.title, m.role, m.content FROM messages_trigram t "
               f"JOIN messages m ON m.id = t.rowid JOIN conversations c ON c.id = m.conversation_id "
               f"WHERE {narrow} AND {on_messages} ORDER BY t.rowid DESC LIMIT :limit")
    else:
        sql = (f"SELECT m.conversation_id, m.id, c.title, m.role, m.content FROM messages m "
               f"JOIN conversations c ON c.id = m.conversation_id "
               f"WHERE m.id > (SELECT coalesce(max(id), 0) FROM messages) - :window AND {on_messages} "
               f"ORDER BY m.id DESC LIMIT :limit")
    on_titles = " AND ".join(e.format(col="title") for e in exact)
    titles = conn.execute(f"SELECT id, title FROM conversations WHERE {on_titles} "
                          f"ORDER BY updated_at DESC, id DESC LIMIT :limit", params).fetchall()
    rows = conn.execute(sql, params).fetchall()
    pattern = _terms_pattern(terms)
    hits = [SearchHit(cid, None, title, None, _mark(title, pattern, highlight), SUBSTRING_TITLE_RANK + i)
            for i, (cid, title) in enumerate(titles)]
    hits += [SearchHit(cid, mid, title, role, substring_snippet(content, pattern, highlight, snippet_words), i)
             for i, (cid, mid, title, role, content) in enumerate(rows)]
    return hits[:limit]


def _terms_pattern(terms: list[str]) -> re.Pattern:
    # Longest first, so a longer term is marked whole rather than a shorter one inside it.
    alternatives = "|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True))
    return re.compile(alternatives, re.IGNORECASE)


def _mark(text: str, pattern: re.Pattern, highlight: tuple[str, str]) -> str:
    return pattern.sub(lambda m: f"{highlight[0]}{m.group(0)}{highlight[1]}", text)


def substring_snippet(content: str, pattern: re.Pattern, highlight: tuple[str, str], words: int) -> str:
    """About `words` words' worth of characters around the first match, matches marked."""
    m = pattern.search(content)
    center = m.start() if m else 0
    span = words * 7
    start = max(0, center - span // 3)
    end = min(len(content), start + span)
    window = content[start:end]
    return ("…" if start > 0 else "") + _mark(window, pattern, highlight) + ("…" if end < len(content) else "")
