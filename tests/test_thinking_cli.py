"""Thinking at the command line, run as a user runs it: `chat --json` carries thinking and answer apart
with their token counts, the answer alone goes to stdout, and `history search --thinking` finds it.

The model is a random-weight one under Qwen3.5's real template, whose generation prompt opens the
thinking: whatever the model writes is thinking until the budget closes it."""

from __future__ import annotations

import json
import re

import pytest

from tests.support import thinking_models as tm
from tests.test_cli import run

pytestmark = pytest.mark.llama_cpp


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    return tm.write_thinking_model(tmp_path_factory.mktemp("cli-thinking") / "qwen.gguf", "think_tags")


def test_chat_json_has_thinking_answer_and_their_tokens(model, tmp_path):
    proc = run("chat", "--json", "-m", str(model), "-t", "1", "-c", "1024", "-n", "24", "--temperature", "0",
               "--thinking-budget", "6", "--no-repetition-guard", "Why?", env_home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["thinking"] and record["reply"] and record["thinking_format"] == "think_tags"
    assert 6 <= record["thinking_tokens"] <= 11 and record["thinking_closed_by_budget"]
    assert record["thinking_tokens"] + record["answer_tokens"] == record["completion_tokens"] == 24
    assert record["thinking_ms"] > 0 and record["sampling"]["thinking_budget"] == 6

    # Saved with the reply: search finds the thinking only when asked to.
    word = max(re.findall(r"[a-z]{3,}", record["thinking"]), key=len)  # random words: the longest one
    plain = run("history", "search", word, env_home=tmp_path)
    asked = run("history", "search", "--thinking", word, env_home=tmp_path)
    assert "in its thinking" not in plain.stdout
    assert asked.returncode == 0 and "in its thinking" in asked.stdout, asked.stdout


def test_the_answer_goes_to_stdout_and_the_thinking_to_stderr(model, tmp_path):
    proc = run("chat", "-m", str(model), "-t", "1", "-c", "1024", "-n", "24", "--temperature", "0",
               "--thinking-budget", "6", "--no-repetition-guard", "--no-save", "Why?", env_home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert proc.stderr.startswith("Thinking…\n") and "done thinking" in proc.stderr
    stats_line = proc.stderr.strip().splitlines()[-1]
    assert "thinking," in stats_line and "answer)" in stats_line
    assert "Thinking" not in proc.stdout and proc.stdout.strip()


def test_thinking_off_and_a_bad_value(model, tmp_path):
    proc = run("chat", "--json", "-m", str(model), "-t", "1", "-c", "1024", "-n", "8", "--temperature", "0",
               "--thinking", "off", "--no-save", "Why?", env_home=tmp_path)
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    assert record["thinking"] is None and record["thinking_tokens"] == 0 and record["answer_tokens"] == 8
    bad = run("chat", "-m", str(model), "--thinking-effort", "extreme", "--no-save", "Why?", env_home=tmp_path)
    assert bad.returncode == 2 and "--thinking-effort" in bad.stderr
