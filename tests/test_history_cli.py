"""`assistant history list | search | show | export | import | rename | rm | check`."""

import argparse
import json

import pytest

from assistant.cli import history_cmd
from common import terminal
from common.errors import UserError
from assistant.history import HistoryStore


def run(capsys, *argv):
    """Like assistant.cli.main.main, with only the history commands (the others are other issues)."""
    parser = argparse.ArgumentParser(prog="assistant")
    history_cmd.add_parser(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["history", *argv])
    with terminal.install():  # as main() does: everything printed passes through the terminal's escaping
        try:
            code = args.func(args) or 0
        except UserError as exc:
            print(f"error: {exc}", file=__import__("sys").stderr)
            code = 1
    out, err = capsys.readouterr()
    return code, out, err


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path))
    with HistoryStore.open(tmp_path / "history.db") as store:
        a = store.create_conversation(model="gemma-3-270m")
        store.add_message(a.id, "user", "How do penguins stay warm?")
        store.add_message(a.id, "assistant", "Penguins have dense feathers.",
                          stats={"gen_tps": 41.2, "completion_tokens": 5, "model": {"name": "gemma-3-270m"}})
        b = store.create_conversation()
        store.add_message(b.id, "user", "Write a haiku about tea")
    return tmp_path


def test_list(home, capsys):
    code, out, _ = run(capsys, "list")
    lines = out.splitlines()
    assert code == 0 and len(lines) == 2
    assert lines[0].startswith("2 ") and "Write a haiku about tea" in lines[0]
    assert "How do penguins stay warm?" in lines[1] and "[gemma-3-270m]" in lines[1] and "2 msg" in lines[1]
    code, out, _ = run(capsys, "list", "-n", "1")
    assert "1 older" in out


def test_search(home, capsys):
    code, out, _ = run(capsys, "search", "penguins")
    assert code == 0 and "**Penguins**" in out and out.startswith("1  How do penguins")
    assert run(capsys, "search", 'NEAR("(*')[1] == "No matches.\n"


def test_show(home, capsys):
    code, out, _ = run(capsys, "show", "1")
    assert code == 0 and out.startswith("# How do penguins stay warm?")
    assert "*41.2 tok/s · 5 tokens · gemma-3-270m*" in out
    code, _, err = run(capsys, "show", "99")
    assert code == 1 and err.startswith("error: There is no conversation 99") and len(err.splitlines()) == 1


def test_export_import_round_trip(home, capsys, tmp_path_factory):
    out_file = tmp_path_factory.mktemp("x") / "all.json"
    code, _, err = run(capsys, "export", "-o", str(out_file))  # format from the extension
    assert code == 0 and "Exported 2 conversations" in err
    doc = json.loads(out_file.read_text(encoding="utf-8"))
    assert len(doc["conversations"]) == 2

    code, out, _ = run(capsys, "export", "1", "--format", "md")
    assert out.startswith("# How do penguins")
    code, out, _ = run(capsys, "export", "2", "--format", "json")
    assert json.loads(out)["conversations"][0]["title"] == "Write a haiku about tea"

    assert run(capsys, "import", str(out_file))[1] == "Imported 0 conversations; skipped 2 already in the history.\n"
    assert run(capsys, "rm", "1", "--yes")[0] == 0
    assert run(capsys, "import", str(out_file))[1] == "Imported 1 conversation; skipped 1 already in the history.\n"


def test_import_errors(home, capsys, tmp_path_factory):
    bad = tmp_path_factory.mktemp("x") / "bad.json"
    bad.write_text('{"format": "hearthchat-history", "version": 99, "conversations": []}')
    code, _, err = run(capsys, "import", str(bad))
    assert code == 1 and "newer HearthChat" in err and "Nothing was changed" in err
    code, _, err = run(capsys, "import", str(bad) + ".missing")
    assert code == 1 and "cannot be read" in err and "Nothing was changed" in err


def test_rename_and_rm(home, capsys):
    assert run(capsys, "rename", "2", "Tea", "poems")[0] == 0
    assert "Tea poems" in run(capsys, "list")[1]
    code, out, _ = run(capsys, "rm", "2")  # not a terminal: no prompt
    assert code == 0 and 'Deleted conversation 2 "Tea poems" (1 message)' in out
    assert "Tea" not in run(capsys, "list")[1]
    assert run(capsys, "search", "haiku")[1] == "No matches.\n"


def test_damaged_database_warns_where_it_went(home, capsys):
    (home / "history.db").write_bytes(b"this is not a database" * 10)
    for suffix in ("-wal", "-shm"):
        (home / f"history.db{suffix}").unlink(missing_ok=True)
    code, out, err = run(capsys, "list")
    assert code == 0 and out == "No saved conversations yet.\n"
    assert err.startswith("warning: The chat history database") and "history.damaged-" in err
    assert len(list(home.glob("history.damaged-*.db"))) == 1


def test_check(home, capsys):
    code, out, _ = run(capsys, "check")
    assert code == 0 and "is sound" in out


def test_main_entry_point_registers_history(home, capsys):
    main = pytest.importorskip("assistant.cli.main")
    try:
        parser = main.build_parser()
    except ImportError:
        pytest.skip("the other command modules are not there yet")
    args = parser.parse_args(["history", "list"])
    assert args.func(args) == 0


# -- terminal escapes: what users or models wrote never acts on the terminal -----------

HOSTILE = "\x1b]0;pwned\x07\x1b[2J\x9b31m\u202eevil\x00"


@pytest.fixture
def hostile_home(tmp_path, monkeypatch):
    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path))
    with HistoryStore.open(tmp_path / "history.db") as store:
        conv = store.create_conversation(model=f"model{HOSTILE}", title=f"title {HOSTILE}")
        store.add_message(conv.id, "user", f"question about penguins {HOSTILE}")
        store.add_message(conv.id, "assistant", f"penguins answer {HOSTILE} and more",
                          stats={"gen_tps": 10.0, "model": {"name": f"m{HOSTILE}"}})
    return tmp_path


def _inert(text: str) -> bool:
    return not any(c in text for c in ("\x1b", "\x07", "\x9b", "\u202e", "\x00"))


@pytest.mark.parametrize("argv", [["list"], ["search", "penguins"], ["search", "nguins"], ["show", "1"],
                                  ["rm", "1", "--yes"]])
def test_titles_models_and_text_are_escaped_on_the_terminal(hostile_home, capsys, argv):
    code, out, err = run(capsys, *argv)
    assert code == 0 and _inert(out) and _inert(err), (out, err)
    assert "\\e]0;pwned\\x07\\e[2J\\x9b31m\\u202eevil\\x00" in out


def test_search_bold_on_a_terminal_is_the_only_escape(hostile_home, capsys, monkeypatch):
    monkeypatch.setattr("sys.stdout.isatty", lambda: True, raising=False)
    code, out, _ = run(capsys, "search", "penguins")
    assert code == 0 and "\x1b[1mpenguins\x1b[0m" in out
    assert _inert(out.replace("\x1b[1m", "").replace("\x1b[0m", ""))


def test_a_moved_aside_notice_is_escaped_too(tmp_path, capsys, monkeypatch):
    home = tmp_path / "odd\x1b[2Jname"
    home.mkdir()
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    (home / "history.db").write_bytes(b"junk" * 1000)
    code, out, err = run(capsys, "list")
    assert code == 0 and "\x1b" not in err and "odd\\e[2Jname" in err


# -- imports with limits, and their sentences ------------------------------------------

def test_import_of_an_endless_device_stops_at_once_with_a_sentence(home, capsys):
    import time

    started = time.monotonic()
    code, _, err = run(capsys, "import", "/dev/zero")
    assert code == 1 and time.monotonic() - started < 5
    assert "not a HearthChat history export" in err and "0x00" in err and "Nothing was changed" in err


def test_import_names_the_limit_it_hit(home, capsys, tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad")
    deep = folder / "deep.json"
    deep.write_text('{"format": "hearthchat-history", "version": 1, "x": ' + "[" * 100_000 + "]" * 100_000 + "}")
    big = folder / "big.json"
    big.write_text('{"format": "hearthchat-history", "version": 1, "conversations": [], "n": 1' + "0" * 30 + "}")
    huge = folder / "huge.json"
    with open(huge, "wb") as f:  # sparse: 600 MB on paper, nothing on disk
        f.truncate(600 * 1024 * 1024)
    for path, words in ((deep, "nesting limit"), (big, "number size limit"), (huge, "size limit")):
        code, _, err = run(capsys, "import", str(path))
        assert code == 1 and words in err and "Nothing was changed" in err, (path, err)
        assert "did not expect" not in err and "Error" not in err
    assert run(capsys, "list")[1].count("\n") == 2  # nothing imported


def test_a_data_folder_that_cannot_be_created_is_a_sentence(tmp_path, capsys, monkeypatch):
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    monkeypatch.setenv("ASSISTANT_HOME", str(blocker / "home"))
    code, _, err = run(capsys, "list")
    assert code == 1 and err.startswith("error: Cannot create the data folder") and "a-file" in err


def test_chat_shows_a_notice_too(tmp_path, capsys, monkeypatch):
    from assistant.cli import chat_cmd

    monkeypatch.setenv("ASSISTANT_HOME", str(tmp_path))
    # dim() binds the stderr of its import time; capsys swaps stderr per test.
    monkeypatch.setattr(chat_cmd, "dim", lambda text, stream=None: text)
    (tmp_path / "history.db").write_bytes(b"junk" * 1000)
    HistoryStore.open(tmp_path / "history.db").close()
    capsys.readouterr()
    store = chat_cmd._open_history(argparse.Namespace(no_save=False))
    store.close()
    err = capsys.readouterr().err
    assert "history.damaged-" in err and "assistant history dismiss 1" in err
