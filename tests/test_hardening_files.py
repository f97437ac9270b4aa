"""Issue 20, files a person names: nothing but a regular file is ever replaced, a folder gets the file
inside it, and a file read as a chat template is bounded (no device, no FIFO, no 300 MB)."""

from __future__ import annotations

import os
import socket
import stat
import time

import pytest

from assistant.cli.main import main
from assistant.history import HistoryStore
from common.user_files import UserFileError, read_text, write_text


@pytest.fixture
def history(tmp_path, monkeypatch):
    home = tmp_path / "home"
    monkeypatch.setenv("ASSISTANT_HOME", str(home))
    home.mkdir()
    with HistoryStore.open(home / "history.db") as store:
        conv = store.create_conversation(model="m", title="Penguins / and: ice")
        store.add_message(conv.id, "user", "How cold is it?")
    return tmp_path


def _export(capsys, *args: str) -> tuple[int, str]:
    code = main(["history", "export", *args])
    return code, capsys.readouterr().err


def test_export_onto_a_fifo_refuses_and_leaves_it_a_fifo(history, capsys):
    fifo = history / "pipe"
    os.mkfifo(fifo)
    started = time.monotonic()
    code, err = _export(capsys, "1", "-o", str(fifo))
    assert code == 1 and "is a named pipe (FIFO), not a regular file, so it was not replaced" in err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode) and time.monotonic() - started < 5


def test_export_onto_a_socket_refuses_and_leaves_it(history, capsys):
    path = history / "sock"
    with socket.socket(socket.AF_UNIX) as s:
        s.bind(str(path))
        code, err = _export(capsys, "1", "-o", str(path))
    assert code == 1 and "is a socket, not a regular file" in err and stat.S_ISSOCK(os.lstat(path).st_mode)


def test_export_onto_a_device_refuses(history, capsys):
    code, err = _export(capsys, "1", "-o", "/dev/full")
    assert code == 1 and "/dev/full is a character device, not a regular file" in err
    assert stat.S_ISCHR(os.stat("/dev/full").st_mode)


def test_export_through_a_symlink_to_a_fifo_refuses(history, capsys):
    fifo, link = history / "pipe", history / "link.md"
    os.mkfifo(fifo)
    link.symlink_to(fifo)
    code, err = _export(capsys, "1", "-o", str(link))
    assert code == 1 and "named pipe" in err and link.is_symlink() and stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_export_through_a_symlink_to_a_file_writes_the_file_and_keeps_the_link(history, capsys):
    real, link = history / "real.md", history / "link.md"
    real.write_text("old")
    real.chmod(0o640)
    link.symlink_to(real)
    code, _ = _export(capsys, "1", "-o", str(link))
    assert code == 0 and link.is_symlink() and "# Penguins / and: ice" in real.read_text()
    assert stat.S_IMODE(real.stat().st_mode) == 0o640  # the file keeps its permissions


def test_export_into_a_folder_names_the_file_after_the_conversation(history, capsys, monkeypatch):
    folder = history / "out"
    folder.mkdir()
    monkeypatch.chdir(folder)
    code, err = _export(capsys, "1", "-o", "./")
    assert code == 0 and (folder / "Penguins and ice.md").read_text().startswith("# Penguins")
    assert "Penguins and ice.md" in err
    code, _ = _export(capsys, "-o", str(folder), "--format", "json")  # all of them: a dated name
    assert code == 0 and len(list(folder.glob("hearth-history-*.json"))) == 1


def test_export_to_proc_says_what_is_wrong(history, capsys):
    code, err = _export(capsys, "1", "-o", "/proc/version")
    assert code == 1 and "the folder /proc does not take new files" in err
    assert "No such file or directory" not in err


def test_a_symlink_loop_is_said_as_a_loop(history, capsys):
    loop = history / "loop.md"
    loop.symlink_to(loop)
    code, err = _export(capsys, "1", "-o", str(loop))
    assert code == 1 and "symbolic link that leads back to itself" in err


def test_a_failed_write_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "out.txt"
    target.write_text("kept")
    os.mkfifo(tmp_path / "pipe")
    with pytest.raises(UserFileError):
        write_text(tmp_path / "pipe", "new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.txt", "pipe"] and target.read_text() == "kept"


# --- Reading a chat template ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["/dev/zero", "fifo", "huge", "directory"])
def test_a_chat_template_file_that_is_not_a_small_regular_file_is_one_sentence_at_once(tmp_path, capsys, kind):
    path = {"/dev/zero": "/dev/zero", "fifo": str(tmp_path / "fifo"), "huge": str(tmp_path / "huge.jinja"),
            "directory": str(tmp_path)}[kind]
    if kind == "fifo":
        os.mkfifo(path)
    elif kind == "huge":
        with open(path, "wb") as f:
            f.truncate(300_000_000)  # sparse: 300 MB that costs no disk
    started = time.monotonic()
    code = main(["chat", "--no-save", "--chat-template", path, "Hi"])
    err = capsys.readouterr().err
    assert code == 1 and time.monotonic() - started < 5
    expected = {"/dev/zero": "is a character device, not a regular file", "fifo": "is a named pipe (FIFO)",
                "huge": "is 300 MB, more than the 1.0 MB", "directory": "is a folder, not a regular file"}[kind]
    assert f"The chat template file {path} {expected}" in err, err


def test_a_template_file_that_is_not_utf8_is_one_sentence(tmp_path):
    path = tmp_path / "t.jinja"
    path.write_bytes(b"{{ messages }}\xff")
    with pytest.raises(UserFileError, match="is not UTF-8 text"):
        read_text(path, 1 << 20, "The chat template file")
