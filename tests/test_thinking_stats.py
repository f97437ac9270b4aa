"""What a reasoning model's thinking costs, where people read figures: the reply's stats line, the
statistics view's per-model thinking share and time, and Compare's thinking tokens and time per column."""

from __future__ import annotations

from assistant.compare_summary import figure_table
from assistant.history import HistoryStore
from assistant.stats_format import format_stats_line
from assistant.stats_series import build_snapshot

THINKER = {"model": {"name": "qwen3.5-4b", "quant": "Q4_K_M", "size_bytes": 2_740_937_888}, "gen_tps": 20.0,
           "completion_tokens": 400, "thinking_tokens": 300, "answer_tokens": 100, "thinking_ms": 15_000.0,
           "thinking": "hmm", "ttft_ms": 200.0, "stop_reason": "eos", "transport": {"cpu_other_busy": 0.0},
           "n_threads": 2}
PLAIN = {"model": {"name": "smollm2", "quant": "Q4_1", "size_bytes": 98_362_432}, "gen_tps": 60.0,
         "completion_tokens": 50, "ttft_ms": 40.0, "stop_reason": "eos", "transport": {"cpu_other_busy": 0.0},
         "n_threads": 2}


def test_the_stats_line_counts_thinking_and_answer_apart():
    line = format_stats_line(THINKER)
    assert "400 tokens (300 thinking, 100 answer)" in line and "thought 15.0 s" in line
    assert "thinking" not in format_stats_line(PLAIN) and "50 tokens" in format_stats_line(PLAIN)


def test_the_statistics_view_shows_each_models_thinking_share_and_time(tmp_path):
    with HistoryStore.open(tmp_path / "h.db") as store:
        conv = store.create_conversation()
        for record in (THINKER, {**THINKER, "thinking_tokens": 100, "answer_tokens": 300, "thinking_ms": 5000.0},
                       {**THINKER, "thinking_tokens": 0, "answer_tokens": 400, "thinking_ms": 0.0, "thinking": None},
                       PLAIN):
            store.add_message(conv.id, "assistant", "x", stats=record)
        rows = store.speed_history()
    assert rows[0]["thinking_tokens"] == 300 and rows[0]["thinking_ms"] == 15_000.0
    snapshot = build_snapshot(rows)
    fig = snapshot.figures["qwen3.5-4b"]
    assert fig.thinking_replies == 2 and fig.thinking_share == 400 / 1200 and fig.thinking_ms == 10_000.0
    assert snapshot.figures["smollm2"].thinking_share is None
    note = snapshot.thinking_note()
    assert note == "Thinking: qwen3.5-4b 33% of its tokens, median 10.0 s a reply (2 replies that thought)."


def test_compare_shows_thinking_tokens_and_time_per_column():
    table = dict(figure_table([THINKER, PLAIN]))
    assert table["thinking"] == ["300 tokens · 15 s", "none"]
    assert table["tokens"] == ["400", "50"]
    assert "thinking" not in dict(figure_table([PLAIN, PLAIN]))  # no row where no model thought
