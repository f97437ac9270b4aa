"""What the statistics view draws, computed from the history's per-reply figures (no Qt).

    snapshot = build_snapshot(history.speed_history(), only="gemma-3-270m")
    snapshot.series["gen_tps"]   # one Series per model: points in time order, with their hover text
    snapshot.figures             # per model: medians of the replies that ran on a quiet CPU
    snapshot.size_points         # local models: median generation speed against file size

Three rules, so the charts do not mislead:

- **Idle gaps break lines.** Two replies more than `IDLE_GAP_S` apart are not joined:
  a line between them would draw a trend nobody measured.
- **Busy runs are shown, not counted.** A reply during which other programs kept the
  CPU busy (`transport.cpu_other_busy`, judged by `assistant.busy`, the one rule) ran slower
  than the model does; it is drawn (hollow) but left out of every median.
- **Remote replies are kept apart.** A reply from a server (`transport.kind == "remote"`)
  measures the server and the network: its series is marked remote, it has its own
  medians, and it is never put on the speed-against-size chart, whose limit line is
  this machine's memory bandwidth.
"""

from __future__ import annotations

import itertools
import math
import os
import statistics
from collections import defaultdict
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from common.formatting import format_bytes, format_count, format_number
from assistant.busy import run_is_busy

IDLE_GAP_S = 30 * 60  # replies further apart than this belong to different sittings
NO_SIZES = "No replies with a model size yet."
ALL_BUSY = ("Every reply with a model size ran on a busy CPU (other programs held the cores), so there is no "
            "speed to plot yet: chat again when the computer is quieter.")


@dataclass(frozen=True)
class Metric:
    key: str  # the history's column
    title: str
    unit: str  # as the axis and the hover text print it
    tokens_key: str  # the token count that goes with the figure
    tokens_noun: str


METRICS = {
    "gen_tps": Metric("gen_tps", "Generation speed of each reply", "tokens/s", "completion_tokens", "tokens"),
    "prompt_tps": Metric("prompt_tps", "Prompt processing speed", "tokens/s", "prompt_tokens", "prompt tokens"),
    "ttft_ms": Metric("ttft_ms", "Time to first token", "ms", "prompt_tokens", "prompt tokens"),
}


@dataclass(frozen=True)
class Reply:
    """One saved reply's figures, checked: every number is finite or None."""

    model: str  # the series it belongs to (a remote model's name as the history keeps it)
    at: float  # epoch seconds
    gen_tps: float | None
    prompt_tps: float | None
    ttft_ms: float | None
    prompt_tokens: int | None
    completion_tokens: int | None
    size_bytes: int | None
    remote: bool
    server: str | None  # the remote server's name
    cpu_other_busy: float | None  # share of the CPU other programs used meanwhile (0..1)
    busy: bool  # other programs took cores this run needed: slower than the model is
    thinking_tokens: int | None = None  # a reasoning model's thinking, counted in completion_tokens
    thinking_ms: float | None = None

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)


@dataclass(frozen=True)
class Point:
    x: float  # epoch seconds
    y: float
    busy: bool
    detail: str  # the hover text: model, time, figure, tokens


@dataclass(frozen=True)
class Series:
    model: str
    remote: bool
    points: tuple[Point, ...]  # oldest first
    connected: tuple[bool, ...]  # connected[i]: a line from point i to point i + 1 (the last is False)

    @property
    def xs(self) -> list[float]:
        return [p.x for p in self.points]

    @property
    def ys(self) -> list[float]:
        return [p.y for p in self.points]

    def segments(self) -> list[list[Point]]:
        """The runs of points a line joins: a new one after every idle gap."""
        out: list[list[Point]] = []
        for i, point in enumerate(self.points):
            if i == 0 or not self.connected[i - 1]:
                out.append([])
            out[-1].append(point)
        return out


@dataclass(frozen=True)
class ModelFigures:
    """One model's medians, over the replies that ran on a quiet CPU."""

    model: str
    remote: bool
    size_bytes: int | None  # the file size of its latest reply that has one (None for a remote model)
    replies: int
    busy_replies: int  # left out of the medians
    gen_tps: float | None
    prompt_tps: float | None
    ttft_ms: float | None
    # A reasoning model's thinking: its share of all the tokens the model generated, and the median
    # time a reply spent thinking, over the replies that thought (None when none did).
    thinking_replies: int = 0
    thinking_share: float | None = None
    thinking_ms: float | None = None

    def value(self, metric: str) -> float | None:
        return getattr(self, metric)


@dataclass(frozen=True)
class SizePoint:
    model: str
    size_bytes: int
    gen_tps: float  # median over quiet replies
    replies: int  # how many replies the median is over
    detail: str


@dataclass(frozen=True)
class StatsSnapshot:
    models: tuple[str, ...]  # every model with a reply, sorted (the filter lists these)
    remote_models: frozenset[str]
    series: dict[str, tuple[Series, ...]]  # metric key -> series, for the model chosen (or all)
    figures: dict[str, ModelFigures]  # every model, whatever the filter
    size_points: tuple[SizePoint, ...]  # local models with a size and a quiet median
    busy_replies: int  # in the whole history
    left_off_size_chart: tuple[str, ...]  # sentences: which models are not on it, and why
    size_empty: str = NO_SIZES  # what the size chart says when it has no point: none yet, or all busy

    def describe(self, metric: str) -> str:
        """A sentence per series for a screen reader: each model's median and how many replies."""
        unit = METRICS[metric].unit
        parts = []
        for series in self.series.get(metric, ()):
            fig = self.figures.get(series.model)
            median = fig.value(metric) if fig is not None else None
            where = " (remote)" if series.remote else ""
            figure = f"median {format_number(median)} {unit}" if median is not None else "no quiet reply"
            parts.append(f"{series.model}{where}: {figure} over {_count(len(series.points), 'reply')}")
        return "; ".join(parts)

    def thinking_note(self) -> str:
        """Each model that thinks: the share of its tokens spent thinking and its median thinking time."""
        parts = []
        for model in self.models:
            fig = self.figures[model]
            if not fig.thinking_replies or fig.thinking_share is None:
                continue
            time = f", median {fig.thinking_ms / 1000:.1f} s a reply" if fig.thinking_ms is not None else ""
            parts.append(f"{model} {fig.thinking_share:.0%} of its tokens{time} "
                         f"({_count(fig.thinking_replies, 'reply')} that thought)")
        return ("Thinking: " + "; ".join(parts) + ".") if parts else ""

    def size_note(self) -> str:
        """What the speed-against-size chart leaves out, in a line (empty when nothing)."""
        notes = list(self.left_off_size_chart)
        if self.busy_replies:
            notes.insert(0, f"Medians leave out {_count(self.busy_replies, 'reply')} on a busy CPU "
                            "(hollow markers).")
        return " ".join(notes)


# --- reading the history's rows ---------------------------------------------------------------


def _finite(value: Any, *, positive: bool = True) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    value = float(value)
    if not math.isfinite(value) or (positive and value <= 0):
        return None
    return value


def _count_of(value: Any) -> int | None:
    number = _finite(value, positive=False)
    return int(number) if number is not None and number >= 0 else None


def _epoch(iso: Any) -> float | None:
    try:
        return datetime.fromisoformat(iso).timestamp()
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def replies_from_rows(rows: list[dict[str, Any]], n_cores: int | None = None) -> list[Reply]:
    """The history's `speed_history()` rows as checked Replies, oldest first; rows without a model
    or a readable time are skipped (they cannot be placed on a chart)."""
    cores = n_cores or os.cpu_count() or 1
    raw = []
    for row in rows:
        model, at = row.get("model"), _epoch(row.get("created_at"))
        if not isinstance(model, str) or not model or at is None:
            continue
        remote = row.get("transport_kind") == "remote"
        busy_share = None if remote else _finite(row.get("cpu_other_busy"), positive=False)
        if busy_share is not None:
            busy_share = min(1.0, max(0.0, busy_share))
        server = row.get("remote") if isinstance(row.get("remote"), str) else None
        raw.append(Reply(
            model=model, at=at, gen_tps=_finite(row.get("gen_tps")), prompt_tps=_finite(row.get("prompt_tps")),
            ttft_ms=_finite(row.get("ttft_ms")), prompt_tokens=_count_of(row.get("prompt_tokens")),
            completion_tokens=_count_of(row.get("completion_tokens")),
            size_bytes=None if remote else _count_of(row.get("size_bytes")) or None,
            remote=remote, server=server, cpu_other_busy=busy_share,
            busy=not remote and run_is_busy(busy_share, _count_of(row.get("n_threads")), cores),
            thinking_tokens=_count_of(row.get("thinking_tokens")), thinking_ms=_finite(row.get("thinking_ms"))))
    # A name used both here and on a server is two series: the remote one is told apart.
    local_names = {r.model for r in raw if not r.remote}
    replies = [replace(r, model=f"{r.model} (remote)") if r.remote and r.model in local_names else r for r in raw]
    replies.sort(key=lambda r: r.at)
    return replies


# --- aggregation --------------------------------------------------------------------------------


def model_figures(replies: list[Reply]) -> dict[str, ModelFigures]:
    by_model: dict[str, list[Reply]] = defaultdict(list)
    for reply in replies:
        by_model[reply.model].append(reply)
    out = {}
    for model, mine in by_model.items():
        quiet = [r for r in mine if not r.busy]
        sizes = [r.size_bytes for r in mine if r.size_bytes]
        thought = [r for r in mine if r.thinking_tokens]
        counted = [r for r in mine if r.completion_tokens]
        total = sum(r.completion_tokens or 0 for r in counted)
        out[model] = ModelFigures(
            model=model, remote=mine[0].remote, size_bytes=sizes[-1] if sizes else None, replies=len(mine),
            busy_replies=len(mine) - len(quiet), gen_tps=_median(r.gen_tps for r in quiet),
            prompt_tps=_median(r.prompt_tps for r in quiet), ttft_ms=_median(r.ttft_ms for r in quiet),
            thinking_replies=len(thought),
            # Tokens are tokens whatever the CPU was doing: every reply counts towards the share.
            thinking_share=min(1.0, sum(r.thinking_tokens or 0 for r in counted) / total) if thought and total else None,
            thinking_ms=_median(r.thinking_ms for r in thought if not r.busy))
    return out


def _median(values) -> float | None:
    present = [v for v in values if v is not None]
    return statistics.median(present) if present else None


def series(replies: list[Reply], metric: str, only: str | None = None,
           gap_s: float = IDLE_GAP_S) -> tuple[Series, ...]:
    """One Series per model (sorted by name) of `metric` over time; lines break across idle gaps."""
    spec = METRICS[metric]
    by_model: dict[str, list[tuple[Reply, float]]] = defaultdict(list)
    for reply in replies:
        value = reply.value(metric)
        if (only is None or reply.model == only) and value is not None:
            by_model[reply.model].append((reply, value))
    out = []
    for model in sorted(by_model):
        pairs = by_model[model]
        mine = [r for r, _ in pairs]
        points = tuple(Point(r.at, value, r.busy, _detail(r, spec)) for r, value in pairs)
        connected = tuple(b.at - a.at <= gap_s for a, b in itertools.pairwise(mine)) + (False,)
        out.append(Series(model, mine[0].remote, points, connected))
    return tuple(out)


def _detail(reply: Reply, metric: Metric) -> str:
    value = reply.value(metric.key)
    figure = f"{format_number(value)} {metric.unit}"
    if metric.key == "ttft_ms":
        figure += " to first token"
    elif metric.key == "prompt_tps":
        figure += " reading the prompt"
    tokens = getattr(reply, metric.tokens_key)
    lines = [reply.model, _local_time(reply.at),
             figure + (f" · {tokens:,} {metric.tokens_noun}" if tokens is not None else "")]
    if reply.remote:
        lines.append(f"remote: on {reply.server or 'a server'} (its speed, and the network's)")
    elif reply.busy:
        share = f" (other programs used {reply.cpu_other_busy:.0%} of it)" if reply.cpu_other_busy is not None else ""
        lines.append(f"busy CPU{share}: left out of the medians")
    return "\n".join(lines)


def _local_time(at: float) -> str:
    return datetime.fromtimestamp(at).astimezone().strftime("%Y-%m-%d %H:%M")


def size_points(figures: dict[str, ModelFigures]) -> tuple[tuple[SizePoint, ...], tuple[str, ...]]:
    """Local models with a size and a quiet median; and a sentence for each model left off, saying why."""
    points, left_off = [], []
    remote = sorted(m for m, f in figures.items() if f.remote)
    if remote:
        left_off.append(f"Remote models ({', '.join(remote)}) are not on this chart: their speed is the server's, "
                        "not this machine's memory.")
    for model in sorted(figures):
        fig = figures[model]
        if fig.remote:
            continue
        if fig.gen_tps is None and fig.busy_replies:
            left_off.append(f"{model}: every reply ran on a busy CPU.")
            continue
        if fig.gen_tps is None or not fig.size_bytes:
            continue
        quiet = fig.replies - fig.busy_replies
        detail = (f"{model}\n{format_bytes(fig.size_bytes)} file\nmedian {format_number(fig.gen_tps)} tokens/s "
                  f"over {_count(quiet, 'quiet reply')}"
                  + (f"\n{_count(fig.busy_replies, 'reply')} on a busy CPU left out" if fig.busy_replies else ""))
        points.append(SizePoint(model, fig.size_bytes, fig.gen_tps, quiet, detail))
    return tuple(points), tuple(left_off)


def build_snapshot(rows: list[dict[str, Any]], only: str | None = None, *, n_cores: int | None = None,
                   gap_s: float = IDLE_GAP_S) -> StatsSnapshot:
    """Everything the statistics view draws, from `speed_history()` rows; `only`: one model over time."""
    replies = replies_from_rows(rows, n_cores)
    figures = model_figures(replies)
    points, left_off = size_points(figures)
    sized = [r for r in replies if not r.remote and r.size_bytes and r.gen_tps]
    return StatsSnapshot(
        models=tuple(sorted(figures)),
        remote_models=frozenset(m for m, f in figures.items() if f.remote),
        series={key: series(replies, key, only, gap_s) for key in METRICS},
        figures=figures, size_points=points, busy_replies=sum(r.busy for r in replies),
        left_off_size_chart=left_off, size_empty=ALL_BUSY if sized and all(r.busy for r in sized) else NO_SIZES)


_count = format_count
