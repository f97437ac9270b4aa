"""The installed-models list: concurrent changes from many processes, and a damaged list moved aside and rebuilt."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from assistant.cli.main import main
from common.paths import models_dir
from models import library, registry
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures

ASSISTANT = Path(sys.prefix) / "bin" / "assistant"


def _copies(source: Path, folder: Path, names: list[str]) -> list[Path]:
    paths = []
    for i, name in enumerate(names):
        target = folder / f"d{i}" / name
        target.parent.mkdir(parents=True)
        target.write_bytes(source.read_bytes())
        paths.append(target)
    return paths


def _stored() -> dict:
    return {m["name"]: m for m in json.loads((models_dir() / "installed.json").read_text())["models"]}


def test_eight_concurrent_import_processes_all_land(tmp_path, tiny_model_path):
    named = _copies(tiny_model_path, tmp_path / "named", [f"m{i}.gguf" for i in range(4)])
    same_stem = _copies(tiny_model_path, tmp_path / "same", ["same.gguf"] * 4)
    commands = [[str(ASSISTANT), "models", "import", str(p), "--name", f"model-{i}"] for i, p in enumerate(named)]
    commands += [[str(ASSISTANT), "models", "import", str(p)] for p in same_stem]  # each takes a free name
    procs = [subprocess.Popen(c, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for c in commands]
    results = [(p.wait(timeout=120), *p.communicate()) for p in procs]

    for code, out, err in results:
        assert code == 0 and "Imported" in out and err == "", err
    stored = _stored()
    assert {f"model-{i}" for i in range(4)} | {"same", "same-2", "same-3", "same-4"} == set(stored)
    assert {stored[f"model-{i}"]["path"] for i in range(4)} == {str(p.resolve()) for p in named}
    assert {stored[n]["path"] for n in ("same", "same-2", "same-3", "same-4")} == {str(p.resolve()) for p in same_stem}
    leftovers = [p.name for p in models_dir().iterdir() if p.name.endswith(".tmp")]
    assert leftovers == []
    journal = (models_dir() / "installed.journal").read_text().splitlines()
    assert len(journal) >= 8 and all(json.loads(line) for line in journal)


def test_a_name_given_twice_for_two_files_is_refused_and_the_same_file_again_is_fine(tmp_path, tiny_model_path):
    a, b = _copies(tiny_model_path, tmp_path, ["a.gguf", "b.gguf"])
    assert library.import_file(a, "mine").path == str(a.resolve())
    assert library.import_file(a, "mine").path == str(a.resolve())  # the same file: no conflict
    with pytest.raises(registry.UserError, match="already installed from") as caught:
        library.import_file(b, "mine")
    assert str(a.resolve()) in str(caught.value)
    assert library.import_file(b).name == "b"


def _damage(content: bytes = b'{"version": 1, "models": [{"name": "x", "pa') -> Path:
    path = models_dir() / "installed.json"
    path.write_bytes(content)
    return path


def _table_names(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("NAME")) + 1
    end = lines.index("", start)
    return [line.split()[0] for line in lines[start:end]]


def run(capsys, *argv):
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def test_a_damaged_list_is_moved_aside_rebuilt_and_the_user_is_told_once(
        capsys, tmp_path, tiny_model_path, hub, medium_model_path, hub_env):  # noqa: F811
    hub.add_repo("acme/medium-GGUF", {"medium-Q4_K_M.gguf": medium_model_path})
    pulled, _ = library.pull("acme/medium-GGUF:Q4_K_M")
    one, two, three, gone = _copies(tiny_model_path, tmp_path, ["one.gguf", "two.gguf", "three.gguf", "gone.gguf"])
    for path in (one, two, three, gone):
        library.import_file(path)
    library.remove("two")
    gone.unlink()
    damaged = b"\x00\x00garbage, as a failing disk leaves it"
    _damage(damaged)

    code, out, err = run(capsys, "list", "--installed")
    assert code == 0
    names = _table_names(out)
    assert {"one", "three", pulled.name} <= set(names) and "two" not in names and "gone" not in names
    (notice,) = [line for line in err.splitlines() if line.startswith("notice:")]
    (aside,) = models_dir().glob("installed.damaged-*.json")
    assert aside.read_bytes() == damaged  # kept as it was, for the user to look at
    assert "damaged" in notice and str(aside) in notice and "1 downloaded model(s) and 2 imported file(s)" in notice
    assert "no longer exist: gone" in notice
    assert registry.resolve("one").path == str(one.resolve())
    assert registry.resolve(pulled.name).path == pulled.path

    code, out, err = run(capsys, "list", "--installed")
    assert code == 0 and "notice:" not in err  # shown once
    four = _copies(tiny_model_path, tmp_path / "more", ["four.gguf"])[0]
    library.import_file(four)  # the next change builds on the rebuilt list
    assert {"one", "three", "four", pulled.name} <= set(_stored())


@pytest.mark.parametrize("content", [
    b"", b"[]", b'{"models": {}}', b'{"models": [{"name": "a"}]}', b'{"models": [{"name": "a", "path": 3, "source": "local"}]}',
    b'{"models": [{"name": "a", "path": "/x.gguf", "source": "starter"}]}', b"\xff\xfe not utf-8",
])
def test_every_kind_of_damage_is_recovered_without_losing_the_side_record(tmp_path, tiny_model_path, content):
    (kept,) = _copies(tiny_model_path, tmp_path, ["kept.gguf"])
    library.import_file(kept)
    _damage(content)
    assert [m.name for m in registry.list_installed()][2:] == ["kept"]
    assert registry.pending_notices() and len(list(models_dir().glob("installed.damaged-*.json"))) == 1


def test_a_list_from_before_the_side_record_is_rebuilt_from_the_hub_cache(
        tmp_path, hub, medium_model_path, hub_env):  # noqa: F811
    hub.add_repo("acme/medium-GGUF", {"medium-Q4_K_M.gguf": medium_model_path})
    pulled, _ = library.pull("acme/medium-GGUF:Q4_K_M")
    (models_dir() / "installed.journal").unlink()
    _damage()
    (restored,) = [m for m in registry.list_installed() if not m.is_builtin]
    assert (restored.name, restored.path, restored.source) == (pulled.name, pulled.path, "hub")
    assert restored.sha256 == pulled.sha256 and restored.revision == pulled.revision


def test_an_unreadable_list_is_not_damage_and_is_never_moved(tmp_path):
    path = models_dir() / "installed.json"
    path.mkdir()  # reading it fails with an I/O error, as a permission or disk problem would
    with pytest.raises(registry.RegistryUnreadableError, match="cannot be read"):
        registry.list_installed()
    assert path.is_dir() and not list(models_dir().glob("installed.damaged-*"))


def test_a_torn_journal_line_costs_only_that_line(tmp_path, tiny_model_path):
    a, b = _copies(tiny_model_path, tmp_path, ["a.gguf", "b.gguf"])
    library.import_file(a)
    library.import_file(b)
    with open(models_dir() / "installed.journal", "a") as f:
        f.write('{"op": "add", "model": {"name": "half"')  # a crash in the middle of a line
    _damage()
    assert [m.name for m in registry.list_installed()][2:] == ["a", "b"]
    assert "1 line(s) of its side record" in registry.pending_notices()[0]


def test_the_list_is_written_atomically_through_a_unique_temporary_file(monkeypatch, tmp_path, tiny_model_path):
    from models import atomic_file

    (a,) = _copies(tiny_model_path, tmp_path, ["a.gguf"])
    library.import_file(a)
    before = (models_dir() / "installed.json").read_bytes()
    calls = []

    def failing_replace(src, dst):
        calls.append(src)
        raise OSError(28, "No space left on device")

    (b,) = _copies(tiny_model_path, tmp_path / "b", ["b.gguf"])
    with monkeypatch.context() as patched, pytest.raises(OSError):
        patched.setattr(atomic_file.os, "replace", failing_replace)
        library.import_file(b)
    assert (models_dir() / "installed.json").read_bytes() == before  # the old list is intact
    assert calls and not os.path.exists(calls[0])  # and its temporary file was cleaned up
    assert [m.name for m in registry.list_installed()][2:] == ["a"]
