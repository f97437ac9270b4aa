"""A hostile Hub (a mirror, a proxy or an HF_ENDPOINT): names that would lead out of the cache never touch the disk."""

import pytest

from assistant.cli.main import main
from models import download, library, registry, repo_path
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures

REPO = "acme/medium-GGUF"


def run(capsys, *argv):
    code = main(["models", *argv])
    out, err = capsys.readouterr()
    return code, out, err


def _cache_files(hub_env):
    root = hub_env / "hub"
    return sorted(p for p in root.rglob("*") if p.is_file() or p.is_symlink()) if root.exists() else []


@pytest.fixture
def victim(tmp_path):
    """A file of the user's, which a hostile listing names by its absolute path."""
    path = tmp_path / "mine" / "notes-Q4_K_M.gguf"
    path.parent.mkdir()
    path.write_text("my own notes; nothing may replace or delete this file")
    return path


HOSTILE = {
    "absolute": lambda victim: str(victim),
    "dotdot": lambda victim: "../../../../outside-Q4_K_M.gguf",
    "dotdot-inside": lambda victim: "sub/../../escape-Q4_K_M.gguf",
    "escape": lambda victim: "\x1b]0;pwned\x07\x1b[2J-Q4_K_M.gguf",
    "newline": lambda victim: "model\n-Q4_K_M.gguf",
    "backslash": lambda victim: "..\\..\\evil-Q4_K_M.gguf",
    "drive": lambda victim: "C:/Windows/evil-Q4_K_M.gguf",
    "empty segment": lambda victim: "sub//evil-Q4_K_M.gguf",
    "bidi": lambda victim: "evil\u202efg.gguf-Q4_K_M.gguf",
}


@pytest.mark.parametrize("kind", sorted(HOSTILE))
def test_a_hostile_listing_is_refused_with_a_sentence_and_nothing_is_written(
        capsys, kind, victim, hub, hub_env, medium_model_path):  # noqa: F811
    before = victim.read_bytes()
    name = HOSTILE[kind](victim)
    hub.add_repo(REPO, {name: medium_model_path, "fine-Q8_0.gguf": medium_model_path})

    for spec in (REPO, f"{REPO}:Q4_K_M", f"{REPO}:Q8_0"):
        code, out, err = run(capsys, "pull", spec)
        assert code == 1, (spec, out)
        (line,) = err.splitlines()
        assert line.startswith("error: The Hub's file list for acme/medium-GGUF names the file")
        assert "nothing was written" in line and "HF_ENDPOINT" in line
        assert "\x1b" not in line and "\x07" not in line and "\u202e" not in line  # escaped, not acted on
    assert victim.read_bytes() == before and not victim.is_symlink()
    assert _cache_files(hub_env) == [] and not any(f.method == "GET" for f in hub.file_requests())
    assert registry.get(f"{REPO}:Q4_K_M") is None

    code, out, err = run(capsys, "search", "medium")  # search says why, for that repo only
    assert code == 0 and "names the file" in out and "\x1b" not in out and "\u202e" not in out


@pytest.mark.parametrize("filename", [
    "../../outside.gguf", "/etc/model.gguf", "a/../../b.gguf", "sub//x.gguf", "x\x1b[2J.gguf", "C:\\x.gguf",
])
def test_a_hostile_file_name_is_refused_before_any_request(filename, victim, hub, hub_env, medium_model_path):  # noqa: F811
    hub.add_repo(REPO, {filename: medium_model_path})
    with pytest.raises(repo_path.UnsafeRepoPathError, match="cannot be used"):
        download.download(REPO, filename)
    assert hub.log == [] and _cache_files(hub_env) == []


@pytest.mark.parametrize("spec", [
    f"{REPO}/../../outside.gguf", f"{REPO}/sub/../../x.gguf", f"{REPO}/blob/../x.gguf", f"{REPO}/resolve/../x.gguf",
])
def test_a_typed_name_that_leaves_the_repo_is_one_clear_sentence(capsys, spec, hub, hub_env):  # noqa: F811
    code, out, err = run(capsys, "pull", spec)
    assert code == 1 and err.startswith("error: ") and err.count("\n") == 1, err
    assert "cannot be used" in err or "not a Hub name" in err or "neither in the catalogue" in err
    assert hub.log == [] and _cache_files(hub_env) == []


@pytest.mark.parametrize("commit", ["../../../../escaped", "/tmp/abs", "0" * 39 + "/", "main"])
def test_a_hostile_commit_header_is_refused(commit, hub, hub_env, medium_model_path):  # noqa: F811
    hub.add_repo(REPO, {"medium-Q4_K_M.gguf": medium_model_path})
    hub.commit_header = commit
    with pytest.raises(repo_path.UnsafeRepoPathError, match="not a git commit id; nothing was written"):
        download.download(REPO, "medium-Q4_K_M.gguf")
    assert [p for p in _cache_files(hub_env) if "blobs" in p.parts] == []
    assert not any(r.method == "GET" for r in hub.file_requests())


def test_rm_never_deletes_outside_the_cache_and_still_removes_the_entry(capsys, victim, hub_env):
    # As an older version could have recorded it after a hostile pull: a "hub" entry at the user's own file.
    registry.register(registry.InstalledModel(name="acme/evil:Q4_K_M", path=str(victim), source="hub",
                                              repo="acme/evil", filename=str(victim)))
    code, out, err = run(capsys, "rm", "acme/evil:Q4_K_M")
    assert code == 0, err
    assert "outside the Hugging Face cache, so it was left where it is" in out
    assert victim.exists() and registry.get("acme/evil:Q4_K_M") is None
    with pytest.raises(registry.UserError, match="not a model file in the Hugging Face cache"):
        download.delete_cached(victim)


def test_a_cache_link_that_points_out_of_the_cache_loses_only_the_link(victim, hub, hub_env, medium_model_path):  # noqa: F811
    hub.add_repo(REPO, {"medium-Q4_K_M.gguf": medium_model_path})
    model, result = library.pull(f"{REPO}:Q4_K_M")
    blob = result.path.resolve()
    result.path.unlink()
    result.path.symlink_to(victim)  # another tool (or an attacker) re-pointed the snapshot link
    library.remove(model.name)
    assert victim.exists() and not result.path.is_symlink()
    assert blob.exists()  # not this link's blob any more: left for `hf cache` tools to judge


@pytest.mark.parametrize("path, reason", [
    ("model.gguf", None), ("sub/dir/model-Q4_K_M.gguf", None), ("Modèle 日本語 🙂.gguf", None),
    ("", "empty"), ("/abs.gguf", "absolute"), ("a/../b.gguf", "'..'"), ("./a.gguf", "'.'"), ("a/", "empty folder"),
    ("a\\b.gguf", "backslash"), ("c:x.gguf", "drive"), ("ab:c.gguf", "colon"), ("a\x00b", "control"),
    ("a\tb", "control"), ("a\u2028b", "control"), ("...", "dot or a space"), ("a /b.gguf", "dot or a space"),
    ("x" * 300 + ".gguf", "longer than"),
])
def test_the_rules_for_a_path_inside_a_repository(path, reason):
    found = repo_path.problem(path)
    assert (found is None) if reason is None else (reason in found), found
