"""Issue 20, the right sentence: a full disk as a full disk, a symbolic link loop as a loop, a closed pipe as
nothing at all, and wrong values in settings.json as a notice naming the file."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from assistant.cli.main import main
from assistant.history import HistoryStore
from assistant.preferences import generation_settings, load_preferences
from common.settings_store import SettingsStore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_a_symlink_loop_as_the_model_is_said_as_a_loop(tmp_path, capsys):
    loop = tmp_path / "model.gguf"
    loop.symlink_to(loop)
    code = main(["chat", "--no-save", "-m", str(loop), "hi"])
    err = capsys.readouterr().err
    assert code == 1 and "is a symbolic link that leads back to itself (a loop)" in err
    assert "pull" not in err and "no model file" not in err


def test_a_dangling_symlink_as_the_model_names_its_target(tmp_path, capsys):
    link = tmp_path / "model.gguf"
    link.symlink_to(tmp_path / "gone.gguf")
    code = main(["chat", "--no-save", "-m", str(link), "hi"])
    assert code == 1 and "gone.gguf, which does not exist" in capsys.readouterr().err


def test_history_list_into_head_ends_quietly(tmp_path):
    home = tmp_path / "home"
    home.mkdir()
    with HistoryStore.open(home / "history.db") as store:
        for i in range(800):  # ~90 kB of lines: more than a pipe's buffer, so the writer meets the closed pipe
            store.create_conversation(model="m", title=f"conversation number {i} " + "x" * 80)
    env = {**os.environ, "ASSISTANT_HOME": str(home), "PYTHONPATH": REPO}
    proc = subprocess.run(f"'{sys.executable}' -m assistant.cli.main history list -n 800 | head -1", shell=True,
                          capture_output=True, text=True, env=env, timeout=120)
    assert proc.stdout.count("\n") == 1 and proc.stderr == "", proc.stderr
    log = (home / "logs" / "hearth.log").read_text()
    assert "Traceback" not in log and "BrokenPipe" not in log


@pytest.fixture
def full_disk(tmp_path):
    """A 3 MB tmpfs with a saved conversation, then filled to the last byte (root on Linux; else skipped)."""
    if sys.platform != "linux" or os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a tmpfs needs root on Linux")
    disk = tmp_path / "disk"
    disk.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m,mode=0755", "tmpfs", str(disk)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
    try:
        home = disk / "home"
        home.mkdir()
        with HistoryStore.open(home / "history.db") as store:
            conv = store.create_conversation(model="starter", title="before the disk filled")
            store.add_message(conv.id, "user", "hi")
        with open(disk / "filler", "wb") as f:
            try:
                while True:
                    f.write(b"\0" * 65536)
                    f.flush()
            except OSError:
                pass
        yield home
    finally:
        subprocess.run(["umount", "-l", str(disk)], capture_output=True)


def test_a_full_disk_during_a_chat_is_said_as_a_full_disk(full_disk, monkeypatch, capsys):
    monkeypatch.setenv("ASSISTANT_HOME", str(full_disk))
    code = main(["chat", "--conversation", "1", "-t", "1", "-c", "256", "-n", "2", "and now?"])
    err = capsys.readouterr().err
    assert code == 1 and "is full" in err and "input/output error" not in err, err
    assert "Logging error" not in err and "Traceback" not in err  # the log cannot be written either: quietly


def test_wrong_settings_values_are_replaced_by_defaults_with_a_notice_naming_the_file(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text('{"defaults": {"temperature": "hot", "top_k": 1e309, "seed": "abc", "top_p": 7, '
                    '"context_policy": "forget", "reply_deadline_s": -1, "n_threads": true}}')
    store = SettingsStore(path)
    preferences = load_preferences(store)
    settings = generation_settings(preferences)  # what every API request and window turn starts from
    assert (settings.temperature, settings.top_k, settings.seed, settings.top_p) == (0.8, 40, None, 0.95)
    assert settings.context_policy.value == "drop_oldest" and settings.reply_deadline_s == 1800.0
    notices = store.take_notices()
    assert len(notices) == 7 and all(str(path) in n for n in notices), notices
    assert any('defaults.seed is "abc", which is not a whole number from 0 to 4,294,967,295' in n for n in notices)
    assert store.take_notices() == []  # told once


def test_a_conversations_own_wrong_settings_are_ignored():
    settings = generation_settings(load_preferences(SettingsStore("/nonexistent/settings.json")),
                                   {"temperature": "hot", "top_k": float("inf"), "seed": 5})
    assert settings.temperature == 0.8 and settings.top_k == 40 and settings.seed == 5


def test_the_cli_says_what_was_wrong_in_settings_json(tmp_path, monkeypatch, capsys):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    (home / "settings.json").write_text(json.dumps({"defaults": {"reply_deadline_s": "soon"}}))
    from assistant.cli.common import generation_settings as cli_settings
    from assistant.cli.main import build_parser

    args = build_parser().parse_args(["chat", "hi"])
    assert cli_settings(args).reply_deadline_s == 1800.0
    err = capsys.readouterr().err
    assert "notice: In " in err and "settings.json, the setting defaults.reply_deadline_s is \"soon\"" in err
    args = build_parser().parse_args(["chat", "--reply-deadline", "90", "hi"])
    assert cli_settings(args).reply_deadline_s == 90.0


def test_wrong_cache_settings_in_settings_json_fall_back_to_the_defaults(tmp_path):
    """The KV cache type and flash attention, in the defaults and kept per model, are checked like the rest."""
    import json

    from assistant.preferences import load_preferences, model_load_settings

    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"defaults": {"kv_cache_type": "q9", "flash_attn": [1],
                                             "model_load_settings": {"m": {"kv_cache_type": 7, "flash_attn": "on"}}}}))
    store = SettingsStore(path)
    prefs = load_preferences(store)
    assert prefs["kv_cache_type"] == "f16" and prefs["flash_attn"] == "auto"
    notices = store.take_notices()
    assert any("defaults.kv_cache_type" in n for n in notices) and any("defaults.flash_attn" in n for n in notices)
    assert model_load_settings(prefs, "m") == {"flash_attn": "on"}
