"""Hub names, search, a repo's GGUF files, tokens and errors, against a local Hub."""

import pytest

from models import hub as hubmod, library
from tests.support.hub_server import hub, hub_env  # noqa: F401 - fixtures


@pytest.mark.parametrize(
    "spec, repo, filename, quant",
    [
        ("bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M", "bartowski/Llama-3.2-1B-Instruct-GGUF", None, "Q4_K_M"),
        ("bartowski/Llama-3.2-1B-Instruct-GGUF:q8_0", "bartowski/Llama-3.2-1B-Instruct-GGUF", None, "Q8_0"),
        ("Qwen/Qwen2.5-0.5B-Instruct-GGUF", "Qwen/Qwen2.5-0.5B-Instruct-GGUF", None, None),
        ("hf.co/unsloth/gemma-3-1b-it-GGUF:Q4_K_M", "unsloth/gemma-3-1b-it-GGUF", None, "Q4_K_M"),
        ("owner/repo/sub/dir/model-Q4_K_M.gguf", "owner/repo", "sub/dir/model-Q4_K_M.gguf", None),
        ("https://huggingface.co/owner/repo/blob/main/m.gguf", "owner/repo", "m.gguf", None),
    ],
)
def test_hub_names(spec, repo, filename, quant):
    ref = hubmod.parse_ref(spec)
    assert (ref.repo_id, ref.filename, ref.quant) == (repo, filename, quant)


def test_names_that_are_not_hub_names(tmp_path):
    local = tmp_path / "a" / "b.gguf"
    local.parent.mkdir()
    local.write_bytes(b"x")
    for spec in ("starter", "llama3.2-1b", str(local), "", "just/one/"):
        assert hubmod.parse_ref(spec) is None


@pytest.mark.parametrize(
    "filename, quant",
    [
        ("Llama-3.2-1B-Instruct-Q4_K_M.gguf", "Q4_K_M"),
        ("qwen2.5-0.5b-instruct-q4_k_m.gguf", "Q4_K_M"),
        ("gemma-3-1b-it-f16.gguf", "F16"),
        ("qwen2.5-7b-instruct-fp16.gguf", "F16"),
        ("tinyllama-1.1b-chat-v1.0.Q5_K_S.gguf", "Q5_K_S"),
        ("Phi-3.5-mini-instruct-IQ2_M.gguf", "IQ2_M"),
        ("Llama-3.2-1B-Instruct-Q4_0_4_4.gguf", "Q4_0_4_4"),
        ("Qwen3-8B-UD-Q4_K_XL.gguf", "Q4_K_XL"),
        ("qwen2.5-7b-instruct-q4_k_m-00001-of-00002.gguf", "Q4_K_M"),
        ("model.gguf", None),
    ],
)
def test_quant_of_filename(filename, quant):
    assert hubmod.quant_of_filename(filename) == quant


@pytest.fixture
def repos(hub, tiny_model_path):  # noqa: F811
    data = tiny_model_path.read_bytes()
    hub.add_repo("acme/llama-GGUF", {
        "llama-Q4_K_M.gguf": tiny_model_path,
        "llama-Q8_0.gguf": data + b"\0" * 1000,
        "mmproj-llama-f16.gguf": b"projector",
        "README.md": b"# readme",
    }, downloads=100)
    hub.add_repo("acme/llama-small-GGUF", {"small-Q4_0.gguf": data, "small-IQ4_XS.gguf": data + b"\0" * 8}, downloads=50)
    hub.add_repo("acme/split-GGUF", {
        "big-q4_k_m-00001-of-00002.gguf": data, "big-q4_k_m-00002-of-00002.gguf": b"rest",
    })
    hub.add_repo("acme/no-gguf", {"model.safetensors": b"weights"})
    hub.add_repo("meta/gated-GGUF", {"gated-Q4_K_M.gguf": tiny_model_path}, gated=True, allowed_tokens={"hf_ok"})
    hub.add_repo("me/private-GGUF", {"p-Q4_K_M.gguf": tiny_model_path}, private=True)
    hub.valid_tokens.update({"hf_ok", "hf_other"})
    return hub


def test_search_lists_gguf_repos_with_their_quants_and_sizes(repos, tiny_model_path):
    hits = hubmod.search("llama")
    assert [h.repo_id for h in hits] == ["acme/llama-GGUF", "acme/llama-small-GGUF"]  # most downloaded first
    first = hits[0]
    assert {f.quant: f.size for f in first.files} == {
        "Q4_K_M": tiny_model_path.stat().st_size, "Q8_0": tiny_model_path.stat().st_size + 1000,
    }  # no projector, no README
    assert all(len(f.sha256) == 64 for f in first.files)
    assert hubmod.search("no-such-thing") == []
    assert [h.repo_id for h in hubmod.search("gguf", limit=1)] == ["acme/llama-GGUF"]


def test_choose_a_file_by_quant(repos):
    listing = hubmod.list_gguf_files("acme/llama-GGUF")
    assert listing.commit == repos.repos["acme/llama-GGUF"].commit
    assert hubmod.choose_file(listing).path == "llama-Q4_K_M.gguf"  # Q4_K_M by default
    assert hubmod.choose_file(listing, quant="q8_0").path == "llama-Q8_0.gguf"
    with pytest.raises(hubmod.HubNotFoundError, match="it offers are: Q4_K_M, Q8_0"):
        hubmod.choose_file(listing, quant="Q2_K")
    small = hubmod.list_gguf_files("acme/llama-small-GGUF")
    assert hubmod.choose_file(small).quant == "IQ4_XS"  # no Q4_K_M: the next 4-bit choice
    split = hubmod.list_gguf_files("acme/split-GGUF")
    with pytest.raises(hubmod.UserError, match="split into 2 files"):
        hubmod.choose_file(split)
    with pytest.raises(hubmod.HubNotFoundError, match="no GGUF model file"):
        hubmod.choose_file(hubmod.list_gguf_files("acme/no-gguf"))


def test_a_pull_without_a_quant_is_installed_under_the_quant_chosen(repos):
    model, _ = library.pull("acme/llama-small-GGUF")
    assert model.name == "acme/llama-small-GGUF:IQ4_XS" and model.quant == "IQ4_XS"
    exact, _ = library.pull("acme/llama-GGUF/llama-Q4_K_M.gguf")
    assert exact.name == "acme/llama-GGUF/llama-Q4_K_M.gguf"
    from models import registry

    assert registry.resolve("acme/llama-GGUF/llama-Q4_K_M.gguf").path == exact.path


def test_a_gated_repo_without_a_token_says_what_to_do(repos):
    with pytest.raises(hubmod.HubAuthError) as err:
        library.pull("meta/gated-GGUF:Q4_K_M")
    message = str(err.value)
    assert "gated" in message and "HF_TOKEN" in message and "hf auth login" in message
    assert f"{repos.url}/meta/gated-GGUF" in message


def test_a_gated_repo_with_tokens(repos, monkeypatch, hub_env):  # noqa: F811
    monkeypatch.setenv("HF_TOKEN", "hf_other")  # valid, but the terms were not accepted with it
    with pytest.raises(hubmod.HubAuthError, match="has no access"):
        library.pull("meta/gated-GGUF:Q4_K_M")
    monkeypatch.setenv("HF_TOKEN", "hf_expired")
    with pytest.raises(hubmod.HubAuthError, match="refused your token"):
        library.pull("meta/gated-GGUF:Q4_K_M")
    # The token `hf auth login` stores, in HF_HOME.
    monkeypatch.delenv("HF_TOKEN")
    hub_env.mkdir(parents=True, exist_ok=True)
    (hub_env / "token").write_text("hf_ok\n")
    model, result = library.pull("meta/gated-GGUF:Q4_K_M")
    assert result.downloaded_bytes == result.size
    assert all(r.authorization == "Bearer hf_ok" for r in repos.file_requests())


def test_a_private_or_missing_repo(repos, monkeypatch):
    with pytest.raises(hubmod.HubNotFoundError, match="if it is private, set HF_TOKEN"):
        library.pull("me/private-GGUF:Q4_K_M")
    with pytest.raises(hubmod.HubNotFoundError, match="No model named acme/nothing"):
        library.pull("acme/nothing:Q4_K_M")
    with pytest.raises(hubmod.HubNotFoundError, match="has no file named"):
        library.pull("acme/llama-GGUF/missing.gguf")
    monkeypatch.setenv("HF_TOKEN", "hf_ok")
    model, _ = library.pull("me/private-GGUF:Q4_K_M")
    assert model.repo == "me/private-GGUF"


def test_offline_search_and_listing_make_no_request(repos, monkeypatch):
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    before = len(repos.log)
    with pytest.raises(hubmod.HubUnreachableError, match="HF_HUB_OFFLINE"):
        hubmod.search("llama")
    with pytest.raises(hubmod.HubUnreachableError):
        hubmod.list_gguf_files("acme/llama-GGUF")
    assert len(repos.log) == before


def test_settings_are_read_when_called(monkeypatch, tmp_path):
    monkeypatch.setenv("HF_ENDPOINT", "http://example.test:1234/")
    monkeypatch.setenv("HF_HOME", str(tmp_path / "hf"))
    monkeypatch.delenv("HF_HUB_CACHE", raising=False)
    assert hubmod.endpoint() == "http://example.test:1234"
    assert hubmod.cache_dir() == tmp_path / "hf" / "hub"
    monkeypatch.setenv("HF_HUB_CACHE", str(tmp_path / "elsewhere"))
    assert hubmod.cache_dir() == tmp_path / "elsewhere"


def test_a_catalogue_name_pulls_its_repo_file_and_keeps_its_family(hub, tiny_model_path):  # noqa: F811
    from models import catalogue, registry

    hub.add_repo("bartowski/Llama-3.2-1B-Instruct-GGUF", {"Llama-3.2-1B-Instruct-Q4_K_M.gguf": tiny_model_path})
    # The publisher renamed its files since the catalogue was written: the live list is used.
    hub.add_repo("Qwen/Qwen2.5-0.5B-Instruct-GGUF", {"Qwen2.5-0.5B-Instruct.Q4_K_M.gguf": tiny_model_path})
    model, _ = library.pull("llama3.2-1b")
    assert model.name == "llama3.2-1b" and model.repo == "bartowski/Llama-3.2-1B-Instruct-GGUF"
    assert catalogue.family_of("llama3.2-1b").id == "llama3"
    renamed, _ = library.pull("qwen2.5-0.5b")
    assert renamed.filename == "Qwen2.5-0.5B-Instruct.Q4_K_M.gguf"
    assert registry.resolve("qwen2.5-0.5b").path == renamed.path


def test_a_pulled_model_is_found_however_its_quant_is_spelled(repos):
    from models import registry

    model, _ = library.pull("acme/llama-GGUF:q4_k_m")
    assert model.name == "acme/llama-GGUF:Q4_K_M"
    for spec in ("acme/llama-GGUF:q4_k_m", "acme/llama-GGUF:Q4_K_M", "acme/llama-GGUF"):
        assert registry.resolve(spec).path == model.path
    with pytest.raises(hubmod.ModelNotFoundError, match="models pull acme/llama-GGUF:Q8_0"):
        registry.resolve("acme/llama-GGUF:Q8_0")
