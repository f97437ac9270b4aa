"""The figures of compared answers, for people: a side-by-side table, a batch summary, one sentence per pair.

    On your 12 comparisons, SmolLM2 135M was good enough in 9; it is 3.1× faster and needs 0.4× the memory
    of Gemma 3 1B.

Shared by `assistant compare`, the window's Compare page and (through
`pair_summaries`) whatever view sums up the history. Figures print through
common.formatting. A remote model's memory is its server's, never this machine's:
its memory cells say "on NAME". A speed measured while other programs held the CPU
(`assistant.busy`) is shown marked "(busy CPU)" and never compared: medians and
"N× faster" use quiet answers only, or say that there are none.
"""

from __future__ import annotations

import logging
import math
import statistics
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from assistant.busy import BUSY_MARK, is_busy
from assistant.model_choices import label_of, short_label
from assistant.stats_format import model_label
from common.errors import UserError
from common.formatting import format_bytes, format_duration, format_tps

log = logging.getLogger(__name__)

NOT_KNOWN = "–"


def _num(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def _part(record: dict[str, Any], key: str) -> dict[str, Any]:
    value = record.get(key)
    return value if isinstance(value, dict) else {}


def remote_name(stats: dict[str, Any] | None) -> str | None:
    """The remote server's name for a remote answer, else None."""
    transport = (stats or {}).get("transport")
    if isinstance(transport, dict) and transport.get("kind") == "remote":
        return str(transport.get("remote") or transport.get("host") or "a remote server")
    return None


def figures(stats: dict[str, Any] | None) -> dict[str, Any]:
    """The figures compare shows, as numbers (None: not known); memory is None for a remote model."""
    record: dict[str, Any] = stats if isinstance(stats, dict) else {}
    memory, model, transport = _part(record, "memory"), _part(record, "model"), _part(record, "transport")
    remote = remote_name(record)
    return {
        "gen_tps": _num(record.get("gen_tps")),
        "server_gen_tps": _num(transport.get("server_gen_tps")),
        "ttft_ms": _num(record.get("ttft_ms")),
        "completion_tokens": _num(record.get("completion_tokens")),
        "thinking_tokens": _num(record.get("thinking_tokens")),
        "thinking_ms": _num(record.get("thinking_ms")),
        "total_ms": _num(record.get("total_ms")),
        "weights_bytes": None if remote else _num(memory.get("weights_bytes")),
        "kv_bytes": None if remote else _num(memory.get("kv_bytes")),
        "compute_bytes": None if remote else _num(memory.get("compute_bytes")),
        "rss_peak_bytes": None if remote else _num(memory.get("rss_peak_bytes")),
        "size_bytes": _num(model.get("size_bytes")),
        "quant": model.get("quant") if isinstance(model.get("quant"), str) else None,
        "stop_reason": record.get("stop_reason") if isinstance(record.get("stop_reason"), str) else None,
        "runner_pid": transport.get("runner_pid"),
        "remote": remote,
        "cpu_busy": is_busy(record),
    }


BUSY_NOTE = (f"({BUSY_MARK}): other programs used the CPU during that reply, so its speed is below what this "
             "machine gives and is not compared")
NO_QUIET_BOTH = "both runs were on a busy CPU: run again for a speed comparison"
NO_QUIET_ALL = "every run of both models was on a busy CPU: run again for a speed comparison"


# (key, label): the rows under each column, in the order.
FIGURE_ROWS = (
    ("gen_tps", "tok/s"), ("ttft_ms", "first token"), ("completion_tokens", "tokens"),
    ("thinking_tokens", "thinking"), ("total_ms", "total time"),
    ("weights_bytes", "weights"), ("kv_bytes", "KV cache"), ("compute_bytes", "compute"),
    ("rss_peak_bytes", "peak RAM"), ("size_bytes", "file size"), ("quant", "quant"),
)
PEAK_RAM_NOTE = "peak RAM: the most resident memory the model's own process (its runner) used"
# Why a reply ended, in a word or two beside its token count (the natural end says nothing).
SHORT_STOPS = {"length": "limit", "stopped": "stopped", "context_full": "context full", "repetition": "loop",
               "error": "error"}
_MEMORY_KEYS = {"weights_bytes", "kv_bytes", "compute_bytes", "rss_peak_bytes"}


def format_figure(key: str, fig: dict[str, Any]) -> str:
    """One figure as text: '41 tok/s', '0.21 s', '1.3 GB', 'on gpu-box' (a remote model's memory)."""
    value = fig.get(key)
    if key in _MEMORY_KEYS and fig.get("remote"):
        return f"on {fig['remote']}"
    if key == "gen_tps":
        text = format_tps(value, unknown=NOT_KNOWN)
        server = fig.get("server_gen_tps")
        text = f"{text} (server {format_tps(server)})" if server else text
        return f"{text} ({BUSY_MARK})" if fig.get("cpu_busy") else text
    if key in ("ttft_ms", "total_ms"):
        return format_duration(value / 1000 if value is not None else None, unknown=NOT_KNOWN)
    if key == "completion_tokens":
        if value is None:
            return NOT_KNOWN
        stop = fig.get("stop_reason")
        note = f" ({SHORT_STOPS.get(stop, stop)})" if stop and stop not in ("eos", "stop") else ""
        return f"{int(value)}{note}"
    if key == "thinking_tokens":  # what "is the small model enough" costs in thinking: tokens and seconds
        if not value:
            return "none"
        seconds = format_duration((fig.get("thinking_ms") or 0) / 1000, unknown=NOT_KNOWN)
        return f"{int(value)} tokens · {seconds}"
    if key == "quant":
        return str(value) if value else NOT_KNOWN
    return format_bytes(value, unknown=NOT_KNOWN)


def figure_table(stats_list: list[dict[str, Any] | None]) -> list[tuple[str, list[str]]]:
    """Rows of (label, one cell per answer): the side-by-side table."""
    figs = [figures(s) for s in stats_list]
    thought = any(f.get("thinking_tokens") for f in figs)  # the thinking row only where a model thought
    return [(label, [format_figure(key, f) for f in figs]) for key, label in FIGURE_ROWS
            if key != "thinking_tokens" or thought]


# --- Names people use --------------------------------------------------------------------------------------

def display_name(spec: str, stats: dict[str, Any] | None = None) -> str:
    """'SmolLM2 135M' for starter, 'Gemma 3 1B' for gemma3-1b; a remote's MODEL@REMOTE as it is."""
    if "@" in spec:
        return spec
    try:
        from models import registry

        entry = registry.catalogue_entry(spec)
    except UserError as exc:  # an unreadable installed list must not cost a summary its names
        log.info("no catalogue name for %s: %s", spec, exc)
        entry = None
    if entry is not None:
        return short_label(entry)
    model = (stats or {}).get("model")
    if isinstance(model, dict) and model_label(model):
        return model_label(model)
    return label_of(spec)


# --- A batch (prompt set) summary --------------------------------------------------------------------------


@dataclass
class Cell:
    """One answer as the summaries see it."""

    stats: dict[str, Any]
    ok: bool
    good_enough: bool | None  # None: not judged


@dataclass
class ModelRow:
    model: str
    name: str
    answered: int
    median_tps: float | None
    median_ttft_ms: float | None
    good: int
    judged: int
    peak_memory_bytes: float | None  # the model process's peak over the batch; None for a remote model
    remote: str | None
    busy: int = 0  # answers measured on a busy CPU: left out of the median speed

    def cells(self) -> list[str]:
        """model · answers · median tok/s · median first token · good enough · memory"""
        good = f"{self.good} of {self.judged} judged" if self.judged else "not judged yet"
        memory = f"on {self.remote}" if self.remote else format_bytes(self.peak_memory_bytes, unknown=NOT_KNOWN)
        ttft = format_duration(self.median_ttft_ms / 1000 if self.median_ttft_ms is not None else None,
                               unknown=NOT_KNOWN)
        tps = format_tps(self.median_tps, unknown=NOT_KNOWN)
        if self.busy:
            tps += f" ({BUSY_MARK})" if self.median_tps is None else f" ({self.busy} on a {BUSY_MARK} left out)"
        return [self.name, str(self.answered), tps, ttft, good, memory]


SUMMARY_HEADERS = ["model", "answers", "median tok/s", "median first token", "good enough", "peak RAM"]


def _median(values: Iterable[float | None]) -> float | None:
    kept = [v for v in values if v is not None]
    return statistics.median(kept) if kept else None


def summarize_models(rows: list[dict[str, Cell]], models: list[str]) -> list[ModelRow]:
    """Per model over a batch: median tok/s and first token, good-enough count, peak memory."""
    out = []
    for model in models:
        cells = [r[model] for r in rows if model in r]
        ok = [c for c in cells if c.ok]
        figs = [figures(c.stats) for c in ok]
        remote = next((f["remote"] for f in figs if f["remote"]), None)
        peaks = [f["rss_peak_bytes"] for f in figs if f["rss_peak_bytes"] is not None]
        first = next((c.stats for c in ok), None)
        quiet = [f for f in figs if not f["cpu_busy"]]
        out.append(ModelRow(
            model=model, name=display_name(model, first), answered=len(ok),
            median_tps=_median(f["gen_tps"] for f in quiet), median_ttft_ms=_median(f["ttft_ms"] for f in figs),
            good=sum(1 for c in cells if c.good_enough), judged=sum(1 for c in cells if c.good_enough is not None),
            peak_memory_bytes=max(peaks) if peaks and not remote else None, remote=remote,
            busy=len(figs) - len(quiet)))
    return out


def cells_of_saved(comparisons: Iterable[Any]) -> list[dict[str, Cell]]:
    """Saved comparisons (assistant.history comparisons) as rows of cells, by model."""
    rows = []
    for c in comparisons:
        rows.append({a.model: Cell(a.stats or {}, a.status != "error", a.good_enough) for a in c.answers})
    return rows


def cells_of_result(result: Any) -> list[dict[str, Cell]]:
    """A fresh CompareResult as rows of cells (nothing judged yet)."""
    return [{a.model: Cell(a.stats, a.ok, None) for a in row if a is not None} for row in result.answers]


# --- One sentence per pair ----------------------------------------------------------------------------------


@dataclass
class PairSummary:
    subject: str  # the smaller model: "is it enough?"
    other: str
    subject_name: str
    other_name: str
    comparisons: int
    good: int  # the subject's answers judged good enough (or best)
    judged: int
    speed_ratio: float | None  # subject's median tok/s over the other's, quiet answers only
    memory_ratio: float | None  # subject's median peak RAM over the other's (both local)
    sentence: str
    speed_note: str | None = None  # why there is no speed ratio: the runs were on a busy CPU


def _size(stats: dict[str, Any]) -> float:
    model = _part(stats, "model")
    if remote_name(stats):
        return float("inf")  # a remote model is the big one
    return _num(model.get("size_bytes")) or _num(model.get("n_params")) or float("inf")


def _times(ratio: float) -> str:
    return f"{ratio:.1f}×" if ratio < 9.95 else f"{ratio:.0f}×"


def pair_sentence(s: PairSummary) -> str:
    n = f"{s.comparisons} comparison{'' if s.comparisons == 1 else 's'}"
    speed = None
    if s.speed_ratio is not None:
        r = s.speed_ratio
        speed = (("is about as fast", "as") if 0.95 < r < 1.05
                 else (f"is {_times(r)} faster", "than") if r >= 1.05 else (f"is {_times(1 / r)} slower", "than"))
    memory = f"needs {_times(s.memory_ratio)} the memory" if s.memory_ratio is not None else None
    note = f"; {s.speed_note}" if s.speed_note and speed is None else ""
    return _pair_sentence(s, n, speed, memory) + (note + "." if note else "")


def _pair_sentence(s: PairSummary, n: str, speed: tuple[str, str] | None, memory: str | None) -> str:
    """The sentence without its final full stop when a note on speed follows, else with it."""
    end = "" if s.speed_note and speed is None else "."
    if speed and memory:
        figures_ = f"{speed[0]} and {memory} of {s.other_name}"
    elif speed:
        figures_ = f"{speed[0]} {speed[1]} {s.other_name}"
    elif memory:
        figures_ = f"{memory} of {s.other_name}"
    else:
        figures_ = None
    if s.judged:
        judged = "" if s.judged == s.comparisons else f" of the {s.judged} you judged"
        verdict = f"{s.subject_name} was good enough in {s.good}{judged}"
        if figures_ is None:
            return f"On your {n} with {s.other_name}, {verdict}{end}"
        return f"On your {n}, {verdict}; it {figures_}{end}"
    if figures_ is None:
        if end == "":  # the note says why: the speeds were measured on a busy CPU
            return f"On your {n} with {s.other_name} (none judged yet), {s.subject_name} has no speed to compare"
        return f"On your {n} with {s.other_name} (none judged yet), {s.subject_name} has no figures to compare."
    return f"On your {n} (none judged yet), {s.subject_name} {figures_}{end}"


def pair_summaries(comparisons: Iterable[Any]) -> list[PairSummary]:
    """For every pair of models compared on the same prompts: the smaller one's verdicts, speed and memory."""
    rows = cells_of_saved(comparisons)
    pairs: dict[tuple[str, str], list[tuple[Cell, Cell]]] = {}
    for row in rows:
        models = sorted(m for m, c in row.items() if c.ok)
        for i, a in enumerate(models):
            for b in models[i + 1:]:
                pairs.setdefault((a, b), []).append((row[a], row[b]))
    out = []
    for (a, b), both in pairs.items():
        a_size = _median(_size(x.stats) for x, _ in both) or float("inf")
        b_size = _median(_size(y.stats) for _, y in both) or float("inf")
        if b_size < a_size:  # the subject is the smaller model
            a, b, both = b, a, [(y, x) for x, y in both]
        fa = [figures(x.stats) for x, _ in both]
        fb = [figures(y.stats) for _, y in both]
        speed, speed_note = _speed_ratio(fa, fb, display_name(a, both[0][0].stats), display_name(b, both[0][1].stats))
        memory = _ratio(_median(f["rss_peak_bytes"] for f in fa), _median(f["rss_peak_bytes"] for f in fb))
        summary = PairSummary(
            subject=a, other=b, subject_name=display_name(a, both[0][0].stats),
            other_name=display_name(b, both[0][1].stats), comparisons=len(both),
            good=sum(1 for x, _ in both if x.good_enough), judged=sum(1 for x, _ in both if x.good_enough is not None),
            speed_ratio=speed, memory_ratio=memory, sentence="", speed_note=speed_note)
        summary.sentence = pair_sentence(summary)
        out.append(summary)
    out.sort(key=lambda s: -s.comparisons)
    return out


def _speed_ratio(fa: list[dict[str, Any]], fb: list[dict[str, Any]], name_a: str,
                 name_b: str) -> tuple[float | None, str | None]:
    """The ratio of the two models' median speeds over their quiet answers only; or, when a side has
    none (every answer it gave ran on a busy CPU), no ratio and a note saying so."""
    qa = [f["gen_tps"] for f in fa if f["gen_tps"] is not None and not f["cpu_busy"]]
    qb = [f["gen_tps"] for f in fb if f["gen_tps"] is not None and not f["cpu_busy"]]
    if qa and qb:
        return _ratio(_median(qa), _median(qb)), None
    busy_a = any(f["cpu_busy"] for f in fa)
    busy_b = any(f["cpu_busy"] for f in fb)
    if not qa and not qb and busy_a and busy_b:
        return None, NO_QUIET_BOTH if len(fa) == 1 else NO_QUIET_ALL
    if not qa and busy_a:
        return None, f"{name_a}'s runs were on a busy CPU: run again for a speed comparison"
    if not qb and busy_b:
        return None, f"{name_b}'s runs were on a busy CPU: run again for a speed comparison"
    return None, None


def _ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None
