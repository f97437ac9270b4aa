"""The search indexes: what they are, how to build them, check them and rebuild them.

They hold nothing of their own: every row is derived from `messages` and
`conversations` (external-content FTS5 tables kept in step by triggers). So a
damaged index is never a reason to give up on a database: it is rebuilt from the
messages, in place (see recovery.repair_indexes).

The migrations in schema.py create them through these functions, so a rebuilt
index is exactly what a migration made.
"""

from __future__ import annotations

import sqlite3
from dataclasses import dataclass

# Porter stemming so "running" finds "run"; remove_diacritics so "cafe" finds "café".
WORD_TOKENIZE = "porter unicode61 remove_diacritics 2"


@dataclass(frozen=True)
class SearchIndex:
    name: str  # the FTS5 table
    table: str  # the table it indexes
    column: str
    kind: str  # "word" or "trigram"
    migration: str  # the migration that creates it

    @property
    def shadow_tables(self) -> tuple[str, ...]:
        # What FTS5 keeps behind the virtual table (content= tables have no _content).
        return tuple(f"{self.name}_{s}" for s in ("data", "idx", "docsize", "config"))

    @property
    def triggers(self) -> tuple[str, ...]:
        # A table's main word index names its triggers after the table (m003's names); any other index after itself.
        prefix = self.table if self.kind == "word" and self.name == f"{self.table}_fts" else self.name
        return tuple(f"{prefix}_{s}" for s in ("ai", "ad", "au"))


# Word indexes (m003): ranked search. Trigram index (m006): substrings, so CJK text
# and emoji runs, which have no spaces between words, are found too.
WORD_INDEXES = (
    SearchIndex("messages_fts", "messages", "content", "word", "m003_full_text_search"),
    SearchIndex("conversations_fts", "conversations", "title", "word", "m003_full_text_search"),
)
TRIGRAM_INDEX = SearchIndex("messages_trigram", "messages", "content", "trigram", "m006_substring_search")
# Comparisons (m007): their prompts and answers, found by the same word search.
COMPARISON_INDEXES = (
    SearchIndex("comparisons_fts", "comparisons", "prompt", "word", "m007_comparisons"),
    SearchIndex("comparison_answers_fts", "comparison_answers", "content", "word", "m007_comparisons"),
)
# A reply's thinking (m009): searched only when asked.
THINKING_INDEX = SearchIndex("messages_thinking_fts", "messages", "thinking", "word", "m010_thinking_search")
ALL_INDEXES = (*WORD_INDEXES, TRIGRAM_INDEX, *COMPARISON_INDEXES, THINKING_INDEX)


def create(conn, index: SearchIndex) -> None:
    """The FTS5 table, its three triggers, and the rows already there. `conn`: anything with execute()."""
    if index.kind == "word":
        # prefix='3': a search-as-you-type prefix like "the*" would otherwise merge
        # hundreds of posting lists (80 ms on 200,000 messages; 14 ms with it).
        conn.execute(f"CREATE VIRTUAL TABLE {index.name} USING FTS5 ({index.column}, "
                     f"tokenize='{WORD_TOKENIZE}', prefix='3', content='{index.table}')")
    else:
        # detail='none': the index answers "which rows hold these three characters"
        # and FTS5 checks each candidate's text against the LIKE pattern. Positions
        # would add 160 MB to a 233 MB history of 200,000 messages for no speed gain.
        conn.execute(f"CREATE VIRTUAL TABLE {index.name} USING FTS5 ({index.column}, "
                     f"tokenize='trigram', detail='none', content='{index.table}')")
    fts, col, table = index.name, index.column, index.table
    ai, ad, au = index.triggers
    conn.execute(f"""CREATE TRIGGER {ai} AFTER INSERT ON {table} BEGIN
        INSERT INTO {fts} (rowid, {col}) VALUES (new.rowid, new.{col});
    END""")
    conn.execute(f"""CREATE TRIGGER {ad} AFTER DELETE ON {table} BEGIN
        INSERT INTO {fts} ({fts}, rowid, {col}) VALUES ('delete', old.rowid, old.{col});
    END""")
    # UPDATE OF: a status change or a new updated_at does not re-index the text.
    conn.execute(f"""CREATE TRIGGER {au} AFTER UPDATE OF {col} ON {table} BEGIN
        INSERT INTO {fts} ({fts}, rowid, {col}) VALUES ('delete', old.rowid, old.{col});
        INSERT INTO {fts} (rowid, {col}) VALUES (new.rowid, new.{col});
    END""")
    rebuild(conn, index)


def rebuild(conn, index: SearchIndex) -> None:
    """Index every row again from the table (FTS5 'rebuild')."""
    conn.execute(f"INSERT INTO {index.name} ({index.name}) VALUES ('rebuild')")


def present(conn: sqlite3.Connection) -> list[SearchIndex]:
    """The indexes this database has (an old or read-only file may lack the newest)."""
    names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    return [ix for ix in ALL_INDEXES if ix.name in names]


def schema_names(index: SearchIndex) -> tuple[str, ...]:
    """Every sqlite_master entry that belongs to the index."""
    return (index.name, *index.shadow_tables, *index.triggers)
