"""The `assistant` command line, run as a user runs it: a real process, the real engine."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.support.tiny_gguf import write_corrupt

pytestmark = pytest.mark.llama_cpp

ASSISTANT = Path(sys.prefix) / "bin" / "assistant"


def run(*args, input=None, timeout=180, env_home=None):
    env = dict(os.environ)
    if env_home:
        env["ASSISTANT_HOME"] = str(env_home)
    return subprocess.run([str(ASSISTANT), *args], input=input, capture_output=True, text=True,
                          timeout=timeout, env=env)


def test_one_question_streams_the_reply_then_one_stats_line(starter_model_path):
    proc = run("chat", "-m", str(starter_model_path), "-n", "16", "--seed", "1", "--no-save",
               "Why is the sky blue?")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip()
    last = proc.stderr.strip().splitlines()[-1]
    assert "tok/s" in last and "tokens" in last and "to first token" in last and "Q4_1" in last


def test_json_output_has_every_stats_key_for_the_starter_by_name():
    proc = run("chat", "--json", "-m", "starter", "-n", "12", "--seed", "2", "Hi")
    assert proc.returncode == 0, proc.stderr
    record = json.loads(proc.stdout)
    for key in ("reply", "model", "prompt_tokens", "cached_tokens", "prompt_ms", "prompt_tps", "ttft_ms",
                "completion_tokens", "gen_ms", "gen_tps", "total_ms", "stop_reason", "n_ctx", "n_threads",
                "memory", "backend"):
        assert key in record
    assert record["model"]["name"] == "starter" and record["model"]["quant"] == "Q4_1"
    assert set(record["memory"]) >= {"weights_bytes", "kv_bytes", "compute_bytes", "rss_bytes",
                                     "rss_peak_bytes", "vram_bytes"}


@pytest.mark.parametrize("kind", ["missing", "not_gguf", "truncated"])
def test_errors_are_one_sentence_on_stderr_without_a_traceback(tmp_path, kind):
    path = tmp_path / "model.gguf"
    if kind != "missing":
        write_corrupt(path, kind)
    proc = run("chat", "-m", str(path), "--no-save", "hi")
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and str(path) in lines[0]


def test_unknown_model_name_says_how_to_find_one():
    proc = run("chat", "-m", "no-such-model", "--no-save", "hi")
    assert proc.returncode == 1 and "assistant models list" in proc.stderr and "Traceback" not in proc.stderr


def test_interactive_chat_keeps_turns_and_switches_models(starter_model_path, tiny_model_path):
    script = f"Hello there\n/new\n/model {tiny_model_path}\nhi\n/model /nope.gguf\n/quit\n"
    proc = run("chat", "-m", str(starter_model_path), "-n", "8", "--seed", "1", "--no-save", input=script)
    assert proc.returncode == 0, proc.stderr
    err = proc.stderr
    assert "[new conversation]" in err
    assert "now using tiny" in err
    assert "error: There is no model file at /nope.gguf." in err
    assert err.count("tok/s") + err.count(" tokens") >= 2  # a stats line per reply


def test_ctrl_c_stops_the_reply_and_the_chat_goes_on(gemma_model_path):
    proc = subprocess.Popen([str(ASSISTANT), "chat", "-m", str(gemma_model_path), "--no-save",
                             "--temperature", "0.9", "--seed", "5", "-n", "3000"],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    proc.stdin.write("Tell me a very long story.\n")
    proc.stdin.flush()
    first = proc.stdout.read(1)  # blocks until the reply starts streaming (after the ">>> " prompt)
    assert first
    time.sleep(0.5)
    proc.send_signal(signal.SIGINT)
    time.sleep(0.5)
    proc.stdin.write("/quit\n")
    proc.stdin.flush()
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "stopped" in err  # the stats line says the reply was stopped, and the program did not exit


def test_bench_json_reports_pp_tg_and_stream_ratios(tiny_model_path):
    proc = run("bench", "-m", str(tiny_model_path), "--json", "--pp", "64", "--tokens", "16",
               "--lengths", "16,32", "-t", "1")
    assert proc.returncode == 0, proc.stderr
    [result] = json.loads(proc.stdout)  # a list, one object per model (-m may repeat)
    assert result["threads"] == 1 and result["pp"]["tokens"] == 64 and result["tg"]["tokens"] == 16
    assert result["pp"]["tps"] > 0 and result["tg"]["tps"] > 0
    assert [row["tokens"] for row in result["stream"]] == [16, 32]
    for row in result["stream"]:
        assert row["native_tps"] > 0 and row["stream_tps"] > 0 and row["ratio"] > 0


def test_an_unexpected_failure_is_still_one_sentence(tmp_path):
    """Even a bug (here: the history path is a directory's child of a file) prints no traceback."""
    home = tmp_path / "home"
    home.mkdir()
    (home / "history.db").mkdir()  # a directory where the database file should be
    proc = run("history", "list", env_home=home)
    assert proc.returncode != 0 and "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) <= 2 and proc.stderr.startswith("error: ")
