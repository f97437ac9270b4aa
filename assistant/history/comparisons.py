"""Comparisons, verdicts and prompt sets in the history: records, SQL, search, export and import.

A comparison is one prompt (with its system prompt and sampling, seed included)
run on several models; each answer keeps the engine's full statistics record and
the user's verdict ("good enough" or not, and which one was best). A prompt set is
a named list of the user's own prompts, run as a batch. The store
(`HistoryStore`) wraps these functions in its transactions; nothing here opens one.

Export layout (beside "conversations", from history format version 2):

    "comparisons": [{"id": uid, "prompt", "system_prompt", "settings", "prompt_set", "batch", "rerun_of",
                     "created_at", "updated_at",
                     "answers": [{"id": uid, "position", "model", "content", "status", "error",
                                  "verdict", "best", "stats", "created_at", "updated_at"}]}],
    "prompt_sets": [{"id": uid, "name", "system_prompt", "prompts": [...], "created_at", "updated_at"}]
"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from dataclasses import dataclass, field
from typing import Any

from assistant.history import rows
from assistant.history.errors import HistoryError, ImportFormatError
from assistant.history.records import STATUSES, clean_optional, clean_text, now
from assistant.history.search import fts_query, needs_substrings, substring_snippet, substring_terms

VERDICTS = ("good", "not_good")
MAX_PROMPTS = 1000  # in one prompt set: a batch beyond that is not a review anyone does
MAX_SET_NAME = 100


class ComparisonNotFound(HistoryError):
    def __init__(self, comparison_id):
        self.comparison_id = comparison_id
        super().__init__(f"There is no comparison {comparison_id} in the history; "
                         "`assistant compare list` shows the saved ones.")


class AnswerNotFound(HistoryError):
    def __init__(self, answer_id):
        self.answer_id = answer_id
        super().__init__(f"There is no compared answer {answer_id} in the history.")


class PromptSetNotFound(HistoryError):
    def __init__(self, name):
        self.name = name
        super().__init__(f"There is no prompt set named {name!r}; `assistant compare sets list` shows them.")


# -- records ----------------------------------------------------------------------------


@dataclass
class Answer:
    id: int
    uid: str
    comparison_id: int
    position: int
    model: str
    content: str
    status: str
    error: str | None
    verdict: str | None  # "good", "not_good", or None (not judged yet)
    best: bool
    stats: dict[str, Any] | None
    created_at: str
    updated_at: str

    @property
    def good_enough(self) -> bool | None:
        """True (good enough, or picked as best), False (not good enough), None (not judged)."""
        if self.best or self.verdict == "good":
            return True
        return False if self.verdict == "not_good" else None


@dataclass
class Comparison:
    id: int
    uid: str
    prompt: str
    system_prompt: str | None
    settings: dict[str, Any]
    prompt_set: str | None
    batch: str | None
    rerun_of: str | None
    created_at: str
    updated_at: str
    answers: list[Answer] = field(default_factory=list)

    @property
    def models(self) -> list[str]:
        return [a.model for a in self.answers]

    @property
    def title(self) -> str:
        words = " ".join(self.prompt.split())
        return words if len(words) <= 70 else words[:69].rstrip() + "…"


@dataclass
class PromptSet:
    id: int
    uid: str
    name: str
    prompts: list[str]
    system_prompt: str | None
    created_at: str
    updated_at: str


@dataclass
class ComparisonHit:
    comparison_id: int
    answer_id: int | None  # None: the prompt matched
    model: str | None
    prompt: str
    snippet: str
    rank: float


# -- comparisons ------------------------------------------------------------------------

_COMPARISON_COLUMNS = "id, uid, prompt, system_prompt, settings, prompt_set, batch, rerun_of, created_at, updated_at"
_ANSWER_COLUMNS = ("id, uid, comparison_id, position, model, content, status, error, verdict, best, record, "
                   "created_at, updated_at")


def _comparison(row: tuple) -> Comparison:
    cid, uid, prompt, system, settings, prompt_set, batch, rerun_of, created, updated = row
    return Comparison(cid, uid, prompt, system, _loads(settings) or {}, prompt_set, batch, rerun_of, created, updated)


def _answer(row: tuple) -> Answer:
    aid, uid, cid, position, model, content, status, error, verdict, best, record, created, updated = row
    return Answer(aid, uid, cid, position, model, content, status, error, verdict, bool(best), _loads(record),
                  created, updated)


def _loads(text: str | None) -> Any:
    if text is None:
        return None
    try:
        return json.loads(text)
    except ValueError:  # a damaged record costs its figures, never the answer
        return None


def create(conn: sqlite3.Connection, prompt: str, *, system_prompt: str | None, settings: dict[str, Any] | None,
           prompt_set: str | None, batch: str | None, rerun_of: str | None) -> Comparison:
    prompt = clean_text(prompt)
    if not prompt.strip():
        raise HistoryError("A comparison needs a prompt.")
    ts, uid = now(), uuid.uuid4().hex
    system_prompt, prompt_set = clean_optional(system_prompt), clean_optional(prompt_set)
    cid = rows.inserted_id(conn.execute(
        f"INSERT INTO comparisons ({_COMPARISON_COLUMNS.removeprefix('id, ')}) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (uid, prompt, system_prompt, rows.json_text(settings or {}), prompt_set, batch, rerun_of, ts, ts)))
    return Comparison(int(cid or 0), uid, prompt, system_prompt, dict(settings or {}), prompt_set, batch, rerun_of,
                      ts, ts)


def add_answer(conn: sqlite3.Connection, comparison_id: int, position: int, model: str, content: str, *,
               status: str, stats: dict[str, Any] | None, error: str | None) -> Answer:
    if status not in STATUSES:
        raise ValueError(f"status must be one of {STATUSES}, not {status!r}")
    if conn.execute("SELECT 1 FROM comparisons WHERE id = ?", (comparison_id,)).fetchone() is None:
        raise ComparisonNotFound(comparison_id)
    ts, uid = now(), uuid.uuid4().hex
    content, model, error = clean_text(content), clean_text(model), clean_optional(error)
    aid = _insert_answer(conn, comparison_id, uid, position, model, content, status, error, None, False, stats, ts, ts)
    conn.execute("UPDATE comparisons SET updated_at = ? WHERE id = ?", (ts, comparison_id))
    return Answer(int(aid or 0), uid, comparison_id, position, model, content, status, error, None, False,
                  json.loads(rows.json_text(stats)) if stats is not None else None, ts, ts)


def _insert_answer(conn, comparison_id, uid, position, model, content, status, error, verdict, best, stats,
                   created, updated) -> int:
    record: dict[str, Any] = stats if isinstance(stats, dict) else {}
    get = record.get
    memory = record["memory"] if isinstance(record.get("memory"), dict) else {}
    return rows.inserted_id(conn.execute(
        "INSERT INTO comparison_answers (uid, comparison_id, position, model, content, status, error, verdict, best, "
        "gen_tps, ttft_ms, completion_tokens, total_ms, rss_peak_bytes, record, created_at, updated_at) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (uid, comparison_id, rows.int64(position) or 0, model, content, status, error, verdict, int(bool(best)),
         rows.finite(get("gen_tps")), rows.finite(get("ttft_ms")), rows.int64(get("completion_tokens")),
         rows.finite(get("total_ms")), rows.int64(memory.get("rss_peak_bytes")),
         rows.json_text(stats) if stats is not None else None, created, updated)))


def set_verdict(conn: sqlite3.Connection, answer_id: int, verdict: str | None) -> None:
    if verdict is not None and verdict not in VERDICTS:
        raise HistoryError(f"A verdict is one of {', '.join(VERDICTS)}, not {verdict!r}.")
    ts = now()
    # "Not good enough" and "best" exclude each other: the best answer was good enough.
    if not conn.execute("UPDATE comparison_answers SET verdict = ?, updated_at = ?, "
                        "best = CASE WHEN ? = 'not_good' THEN 0 ELSE best END WHERE id = ?",
                        (verdict, ts, verdict, answer_id)).rowcount:
        raise AnswerNotFound(answer_id)
    _touch(conn, answer_id, ts)


def set_best(conn: sqlite3.Connection, comparison_id: int, answer_id: int | None) -> None:
    """Mark one answer the best of its comparison (and so good enough); None clears the pick."""
    ts = now()
    if conn.execute("SELECT 1 FROM comparisons WHERE id = ?", (comparison_id,)).fetchone() is None:
        raise ComparisonNotFound(comparison_id)
    if answer_id is not None:
        owner = conn.execute("SELECT comparison_id FROM comparison_answers WHERE id = ?", (answer_id,)).fetchone()
        if owner is None or owner[0] != comparison_id:
            raise AnswerNotFound(answer_id)
    conn.execute("UPDATE comparison_answers SET best = 0, updated_at = ? WHERE comparison_id = ? AND best = 1",
                 (ts, comparison_id))
    if answer_id is not None:
        conn.execute("UPDATE comparison_answers SET best = 1, verdict = 'good', updated_at = ? WHERE id = ?",
                     (ts, answer_id))
    conn.execute("UPDATE comparisons SET updated_at = ? WHERE id = ?", (ts, comparison_id))


def _touch(conn: sqlite3.Connection, answer_id: int, ts: str) -> None:
    conn.execute("UPDATE comparisons SET updated_at = ? WHERE id = "
                 "(SELECT comparison_id FROM comparison_answers WHERE id = ?)", (ts, answer_id))


def get(conn: sqlite3.Connection, comparison_id: int) -> Comparison:
    row = conn.execute(f"SELECT {_COMPARISON_COLUMNS} FROM comparisons WHERE id = ?", (comparison_id,)).fetchone()
    if row is None:
        raise ComparisonNotFound(comparison_id)
    comparison = _comparison(row)
    comparison.answers = [_answer(r) for r in conn.execute(
        f"SELECT {_ANSWER_COLUMNS} FROM comparison_answers WHERE comparison_id = ? ORDER BY position, id",
        (comparison_id,))]
    return comparison


def answer_comparison_id(conn: sqlite3.Connection, answer_id: int) -> int:
    row = conn.execute("SELECT comparison_id FROM comparison_answers WHERE id = ?", (answer_id,)).fetchone()
    if row is None:
        raise AnswerNotFound(answer_id)
    return row[0]


def listing(conn: sqlite3.Connection, *, limit: int | None, offset: int, batch: str | None,
            prompt_set: str | None, oldest_first: bool) -> list[Comparison]:
    """Comparisons with their answers, newest first (or oldest first: a batch in its prompts' order)."""
    where, params = [], []
    if batch is not None:
        where.append("batch = ?")
        params.append(batch)
    if prompt_set is not None:
        where.append("prompt_set = ?")
        params.append(prompt_set)
    order = "ASC" if oldest_first else "DESC"
    sql = (f"SELECT {_COMPARISON_COLUMNS} FROM comparisons" + (" WHERE " + " AND ".join(where) if where else "")
           + f" ORDER BY created_at {order}, id {order} LIMIT ? OFFSET ?")
    found = [_comparison(r) for r in conn.execute(sql, (*params, -1 if limit is None else limit, offset))]
    if not found:
        return found
    by_id = {c.id: c for c in found}
    marks = ",".join("?" * len(by_id))
    for r in conn.execute(f"SELECT {_ANSWER_COLUMNS} FROM comparison_answers WHERE comparison_id IN ({marks}) "
                          "ORDER BY position, id", list(by_id)):
        answer = _answer(r)
        by_id[answer.comparison_id].answers.append(answer)
    return found


def count(conn: sqlite3.Connection) -> int:
    return conn.execute("SELECT count(*) FROM comparisons").fetchone()[0]


def delete(conn: sqlite3.Connection, comparison_id: int) -> None:
    conn.execute("DELETE FROM comparison_answers WHERE comparison_id = ?", (comparison_id,))
    if not conn.execute("DELETE FROM comparisons WHERE id = ?", (comparison_id,)).rowcount:
        raise ComparisonNotFound(comparison_id)


# -- search -----------------------------------------------------------------------------

_PROMPTS_SQL = """
SELECT c.id, NULL, NULL, c.prompt, snippet(comparisons_fts, 0, :open, :close, '…', :words), comparisons_fts.rank
FROM comparisons_fts JOIN comparisons c ON c.id = comparisons_fts.rowid
WHERE comparisons_fts MATCH :q ORDER BY comparisons_fts.rank LIMIT :limit
"""
_ANSWERS_SQL = """
SELECT a.comparison_id, a.id, a.model, c.prompt,
       snippet(comparison_answers_fts, 0, :open, :close, '…', :words), comparison_answers_fts.rank
FROM comparison_answers_fts JOIN comparison_answers a ON a.id = comparison_answers_fts.rowid
JOIN comparisons c ON c.id = a.comparison_id
WHERE comparison_answers_fts MATCH :q ORDER BY comparison_answers_fts.rank LIMIT :limit
"""
SCAN_LIMIT = 20_000  # answers a substring search reads at most (the newest)


def search(conn: sqlite3.Connection, text: str, *, limit: int, highlight: tuple[str, str],
           snippet_words: int = 16) -> list[ComparisonHit]:
    """Prompts and answers holding the query: ranked words first, then substrings (CJK, emoji, parts of words)."""
    if limit <= 0:
        return []
    if not needs_substrings(text):
        q = fts_query(text)
        if q is not None:
            params = {"q": q, "open": highlight[0], "close": highlight[1], "words": snippet_words, "limit": limit}
            try:
                found = conn.execute(_PROMPTS_SQL, params).fetchall() + conn.execute(_ANSWERS_SQL, params).fetchall()
            except sqlite3.OperationalError as exc:
                if "fts5" not in str(exc) and "syntax" not in str(exc):
                    raise
                found = []  # fts_query makes this unreachable; a search box never fails on what was typed
            if found:
                found.sort(key=lambda r: r[5])
                return [ComparisonHit(*r) for r in found[:limit]]
    return _substring_search(conn, text, limit, highlight, snippet_words)


def _substring_search(conn: sqlite3.Connection, text: str, limit: int, highlight: tuple[str, str],
                      words: int) -> list[ComparisonHit]:
    terms = substring_terms(text)
    if not terms:
        return []
    pattern = re.compile("|".join(re.escape(t) for t in sorted(terms, key=len, reverse=True)), re.IGNORECASE)
    likes = " AND ".join(["{col} LIKE ? ESCAPE '\\'"] * len(terms))
    args = ["%" + t.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_") + "%" for t in terms]
    hits = [ComparisonHit(cid, None, None, prompt, substring_snippet(prompt, pattern, highlight, words), -1e9 + i)
            for i, (cid, prompt) in enumerate(conn.execute(
                f"SELECT id, prompt FROM comparisons WHERE {likes.format(col='prompt')} ORDER BY id DESC LIMIT ?",
                (*args, limit)))]
    hits += [ComparisonHit(cid, aid, model, prompt, substring_snippet(content, pattern, highlight, words), i)
             for i, (cid, aid, model, prompt, content) in enumerate(conn.execute(
                 "SELECT a.comparison_id, a.id, a.model, c.prompt, a.content FROM comparison_answers a "
                 "JOIN comparisons c ON c.id = a.comparison_id "
                 "WHERE a.id > (SELECT coalesce(max(id), 0) FROM comparison_answers) - ? "
                 f"AND {likes.format(col='a.content')} ORDER BY a.id DESC LIMIT ?", (SCAN_LIMIT, *args, limit)))]
    return hits[:limit]


# -- prompt sets ------------------------------------------------------------------------

_SET_COLUMNS = "id, uid, name, prompts, system_prompt, created_at, updated_at"


def _prompt_set(row: tuple) -> PromptSet:
    sid, uid, name, prompts, system, created, updated = row
    loaded = _loads(prompts)
    return PromptSet(sid, uid, name, [p for p in loaded if isinstance(p, str)] if isinstance(loaded, list) else [],
                     system, created, updated)


def check_set(name: str, prompts: list[str]) -> tuple[str, list[str]]:
    """The name and prompts cleaned, or a sentence saying what is wrong."""
    if not isinstance(name, str) or not name.strip():
        raise HistoryError("A prompt set needs a name.")
    name = " ".join(clean_text(name).split())
    if len(name) > MAX_SET_NAME:
        raise HistoryError(f"A prompt set's name is at most {MAX_SET_NAME} characters.")
    kept = [clean_text(p).strip() for p in prompts if isinstance(p, str) and p.strip()]
    if not kept:
        raise HistoryError(f"The prompt set {name!r} needs at least one prompt.")
    if len(kept) > MAX_PROMPTS:
        raise HistoryError(f"A prompt set holds at most {MAX_PROMPTS} prompts; {name!r} has {len(kept)}.")
    return name, kept


def save_set(conn: sqlite3.Connection, name: str, prompts: list[str], system_prompt: str | None,
             replace: bool) -> PromptSet:
    name, prompts = check_set(name, prompts)
    system_prompt = clean_optional(system_prompt.strip() if system_prompt else None) or None
    ts = now()
    existing = conn.execute(f"SELECT {_SET_COLUMNS} FROM prompt_sets WHERE name = ?", (name,)).fetchone()
    if existing is not None:
        if not replace:
            raise HistoryError(f"A prompt set named {name!r} exists already; choose another name or replace it.")
        conn.execute("UPDATE prompt_sets SET prompts = ?, system_prompt = ?, updated_at = ? WHERE id = ?",
                     (json.dumps(prompts), system_prompt, ts, existing[0]))
        return PromptSet(existing[0], existing[1], name, prompts, system_prompt, existing[5], ts)
    uid = uuid.uuid4().hex
    sid = rows.inserted_id(conn.execute("INSERT INTO prompt_sets (uid, name, system_prompt, prompts, created_at, updated_at) "
                       "VALUES (?, ?, ?, ?, ?, ?)", (uid, name, system_prompt, json.dumps(prompts), ts, ts)))
    return PromptSet(int(sid or 0), uid, name, prompts, system_prompt, ts, ts)


def get_set(conn: sqlite3.Connection, name: str) -> PromptSet:
    row = conn.execute(f"SELECT {_SET_COLUMNS} FROM prompt_sets WHERE name = ?", (name,)).fetchone()
    if row is None:
        raise PromptSetNotFound(name)
    return _prompt_set(row)


def all_sets(conn: sqlite3.Connection) -> list[PromptSet]:
    return [_prompt_set(r) for r in conn.execute(f"SELECT {_SET_COLUMNS} FROM prompt_sets ORDER BY name")]


def delete_set(conn: sqlite3.Connection, name: str) -> None:
    if not conn.execute("DELETE FROM prompt_sets WHERE name = ?", (name,)).rowcount:
        raise PromptSetNotFound(name)


# -- export -----------------------------------------------------------------------------


def comparison_to_json(c: Comparison) -> dict[str, Any]:
    return {
        "id": c.uid, "prompt": c.prompt, "system_prompt": c.system_prompt, "settings": c.settings,
        "prompt_set": c.prompt_set, "batch": c.batch, "rerun_of": c.rerun_of,
        "created_at": c.created_at, "updated_at": c.updated_at,
        "answers": [{"id": a.uid, "position": a.position, "model": a.model, "content": a.content,
                     "status": a.status, "error": a.error, "verdict": a.verdict, "best": a.best, "stats": a.stats,
                     "created_at": a.created_at, "updated_at": a.updated_at} for a in c.answers],
    }


def prompt_set_to_json(s: PromptSet) -> dict[str, Any]:
    return {"id": s.uid, "name": s.name, "system_prompt": s.system_prompt, "prompts": list(s.prompts),
            "created_at": s.created_at, "updated_at": s.updated_at}


# -- import: checked whole (importing.validate calls these), then written ----------------

_STATS_DEPTH = 6  # {"comparisons": [{"answers": [{"stats": {...}}]}]}


def validate(doc: dict[str, Any], field_, timestamp, check_depth, limits) -> tuple[list[dict], list[dict]]:
    """The comparisons and prompt sets of an export, checked; the helpers are importing's own."""
    comparisons = doc.get("comparisons", [])
    sets = doc.get("prompt_sets", [])
    if not isinstance(comparisons, list):
        raise ImportFormatError('"comparisons" is not a list')
    if not isinstance(sets, list):
        raise ImportFormatError('"prompt_sets" is not a list')
    out_c, seen = [], set()
    for i, raw in enumerate(comparisons):
        where = f"comparisons[{i}]"
        if not isinstance(raw, dict):
            raise ImportFormatError(f"{where} is not an object")
        c = {"id": field_(raw, "id", where, str, required=True), "prompt": field_(raw, "prompt", where, str, required=True),
             "system_prompt": field_(raw, "system_prompt", where, str),
             "settings": field_(raw, "settings", where, dict) or {},
             "prompt_set": field_(raw, "prompt_set", where, str), "batch": field_(raw, "batch", where, str),
             "rerun_of": field_(raw, "rerun_of", where, str), "created_at": timestamp(raw, "created_at", where)}
        c["updated_at"] = timestamp(raw, "updated_at", where, default=c["created_at"])
        check_depth(c["settings"], f"{where}.settings", 4, limits)
        if not c["id"] or c["id"] in seen:
            raise ImportFormatError(f"{where}.id is empty or appears twice")
        seen.add(c["id"])
        answers = raw.get("answers", [])
        if not isinstance(answers, list):
            raise ImportFormatError(f"{where}.answers is not a list")
        c["answers"] = []
        answer_ids: set[str] = set()
        for j, a_raw in enumerate(answers):
            aw = f"{where}.answers[{j}]"
            if not isinstance(a_raw, dict):
                raise ImportFormatError(f"{aw} is not an object")
            position = a_raw.get("position", j)
            if not isinstance(position, int) or isinstance(position, bool) or not 0 <= position < 1_000_000:
                raise ImportFormatError(f"{aw}.position should be a whole number from 0")
            best = a_raw.get("best", False)
            if not isinstance(best, bool):
                raise ImportFormatError(f"{aw}.best should be true or false")
            a = {"id": field_(a_raw, "id", aw, str, required=True), "position": position,
                 "model": field_(a_raw, "model", aw, str, required=True),
                 "content": field_(a_raw, "content", aw, str, required=True),
                 "status": field_(a_raw, "status", aw, str, required=True), "error": field_(a_raw, "error", aw, str),
                 "verdict": field_(a_raw, "verdict", aw, str), "best": best,
                 "stats": field_(a_raw, "stats", aw, dict), "created_at": timestamp(a_raw, "created_at", aw)}
            a["updated_at"] = timestamp(a_raw, "updated_at", aw, default=a["created_at"])
            check_depth(a["stats"], f"{aw}.stats", _STATS_DEPTH, limits)
            if a["status"] not in STATUSES:
                raise ImportFormatError(f"{aw}.status {a['status']!r} is not one of {', '.join(STATUSES)}")
            if a["verdict"] is not None and a["verdict"] not in VERDICTS:
                raise ImportFormatError(f"{aw}.verdict {a['verdict']!r} is not one of {', '.join(VERDICTS)}")
            if not a["id"] or a["id"] in answer_ids:
                raise ImportFormatError(f"{aw}.id is empty or appears twice")
            answer_ids.add(a["id"])
            c["answers"].append(a)
        out_c.append(c)
    out_s, names = [], set()
    for i, raw in enumerate(sets):
        where = f"prompt_sets[{i}]"
        if not isinstance(raw, dict):
            raise ImportFormatError(f"{where} is not an object")
        prompts = raw.get("prompts")
        if not isinstance(prompts, list) or not all(isinstance(p, str) for p in prompts):
            raise ImportFormatError(f"{where}.prompts should be a list of texts")
        s = {"id": field_(raw, "id", where, str, required=True), "name": field_(raw, "name", where, str, required=True),
             "system_prompt": field_(raw, "system_prompt", where, str), "created_at": timestamp(raw, "created_at", where)}
        s["updated_at"] = timestamp(raw, "updated_at", where, default=s["created_at"])
        try:
            s["name"], s["prompts"] = check_set(s["name"], prompts)
        except HistoryError as exc:
            raise ImportFormatError(f"{where}: {str(exc).rstrip('.')}") from None
        if s["id"] in names:
            raise ImportFormatError(f"{where}.id appears twice")
        names.add(s["id"])
        out_s.append(s)
    return out_c, out_s


def write(conn: sqlite3.Connection, comparisons: list[dict], sets: list[dict]) -> tuple[list[int], list[str], list[str]]:
    """Insert checked comparisons and prompt sets in the caller's transaction.

    One already here (same uid) is skipped, never overwritten; a prompt set whose name
    is taken by another set comes in as "name (2)". Returns (comparison ids, skipped
    uids, prompt set names as imported).
    """
    imported: list[int] = []
    skipped: list[str] = []
    set_names: list[str] = []
    for c in comparisons:
        if conn.execute("SELECT 1 FROM comparisons WHERE uid = ?", (c["id"],)).fetchone():
            skipped.append(c["id"])
            continue
        cid = rows.inserted_id(conn.execute(
            "INSERT INTO comparisons (uid, prompt, system_prompt, settings, prompt_set, batch, rerun_of, created_at, "
            "updated_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (c["id"], c["prompt"], c["system_prompt"], rows.json_text(c["settings"]), c["prompt_set"], c["batch"],
             c["rerun_of"], c["created_at"], c["updated_at"])))
        for a in c["answers"]:
            uid = a["id"]
            if conn.execute("SELECT 1 FROM comparison_answers WHERE uid = ?", (uid,)).fetchone():
                uid = uuid.uuid4().hex  # an answer uid reused across comparisons: keep the answer, not the clash
            status = "interrupted" if a["status"] == "streaming" else a["status"]
            _insert_answer(conn, cid, uid, a["position"], a["model"], a["content"], status, a["error"], a["verdict"],
                           a["best"], a["stats"], a["created_at"], a["updated_at"])
        imported.append(int(cid or 0))
    for s in sets:
        if conn.execute("SELECT 1 FROM prompt_sets WHERE uid = ?", (s["id"],)).fetchone():
            continue
        name, n = s["name"], 1
        while conn.execute("SELECT 1 FROM prompt_sets WHERE name = ?", (name,)).fetchone():
            n += 1
            name = f"{s['name']} ({n})"
        conn.execute("INSERT INTO prompt_sets (uid, name, system_prompt, prompts, created_at, updated_at) "
                     "VALUES (?, ?, ?, ?, ?, ?)",
                     (s["id"], name, s["system_prompt"], json.dumps(s["prompts"]), s["created_at"], s["updated_at"]))
        set_names.append(name)
    return imported, skipped, set_names
