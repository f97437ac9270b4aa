"""models.gguf_file: reading and checking GGUF headers, local and remote, good and hostile."""

import dataclasses
import re
import time

import numpy as np
import pytest
from gguf import GGUFReader

from common.errors import ModelFileError
from models.gguf_file import GGUFInfo, HeaderIncompleteError, read_gguf_header, read_gguf_info
from tests.support.tiny_gguf import CORRUPT_KINDS, write_corrupt, write_random_llama, write_tiny_llama

TEMPLATE = "{% for m in messages %}<|{{ m.role }}|>{{ m.content }}{% endfor %}<|assistant|>"
URL = "https://example.test/org/repo/resolve/main/model.gguf"


# --- good files -------------------------------------------------------------------------


def test_tiny_model_reads_back(tiny_model_path):
    info = read_gguf_info(tiny_model_path)
    assert isinstance(info, GGUFInfo)
    assert info.path == tiny_model_path and info.source == str(tiny_model_path)
    assert info.size_bytes == tiny_model_path.stat().st_size
    assert (info.version, info.architecture, info.name, info.quant) == (3, "llama", "tiny", "F32")
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.embedding_length) == (2, 4, 2, 64)
    assert (info.head_dim, info.head_dim_v, info.context_length) == (16, 16, 512)
    assert info.chat_template is None
    assert info.kv_heads_per_layer == ()  # the same for every layer
    # K and V, 2 layers, 2 KV heads of 16, 2 bytes each
    assert info.kv_bytes_per_token == 2 * 2 * 2 * 16 * 2
    assert info.kv_cache_bytes(512) == 512 * info.kv_bytes_per_token


def test_figures_agree_with_ggml_orgs_reader(tiny_model_path):
    info = read_gguf_info(tiny_model_path)
    ref = GGUFReader(tiny_model_path)
    assert info.tensor_count == len(ref.tensors)
    assert info.n_params == sum(t.n_elements for t in ref.tensors)
    assert info.tensor_bytes == sum(t.n_bytes for t in ref.tensors)
    assert info.data_offset == ref.data_offset
    assert info.vocab_size == len(ref.fields["tokenizer.ggml.tokens"].data)


@pytest.mark.parametrize(
    "quant, shape",
    [
        ("Q8_0", dict(n_embd=64, n_ff=128)),
        ("F16", dict(n_embd=64, n_ff=128)),
        ("Q4_K_M", dict(n_embd=256, n_ff=512)),
    ],
)
def test_shapes_quants_and_template_read_back(tmp_path, quant, shape):
    path = write_tiny_llama(
        tmp_path / "m.gguf", n_layers=3, n_heads=8, n_kv_heads=2, n_ctx=1024,
        vocab=1000, chat_template=TEMPLATE, quant=quant, name="Shape test", **shape,
    )
    info = read_gguf_info(path)
    n_embd, n_ff = shape["n_embd"], shape["n_ff"]
    kv_dim = n_embd // 8 * 2
    per_layer = 2 * n_embd + 2 * n_embd * n_embd + 2 * n_embd * kv_dim + 3 * n_embd * n_ff
    assert info.n_params == 2 * 1000 * n_embd + n_embd + 3 * per_layer
    assert (info.quant, info.name, info.chat_template) == (quant, "Shape test", TEMPLATE)
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.head_dim) == (3, 8, 2, n_embd // 8)
    assert (info.context_length, info.vocab_size, info.tensor_count) == (1024, 1000, 2 + 3 * 9 + 1)


def test_header_bigger_than_the_first_read(tiny_model_path, monkeypatch):
    import models.gguf_file

    whole = read_gguf_info(tiny_model_path)
    monkeypatch.setattr(models.gguf_file, "_FIRST_READ", 100)
    assert read_gguf_info(tiny_model_path) == whole


def test_quant_label_falls_back_to_the_commonest_tensor_type(tmp_path):
    path = write_tiny_llama(tmp_path / "m.gguf", quant="Q8_0")
    data = path.read_bytes()
    assert data.count(b"general.file_type") == 1
    path.write_bytes(data.replace(b"general.file_type", b"general.file_typX"))  # same length
    assert read_gguf_info(path).quant == "Q8_0"


def test_architecture_llama_cpp_knows_but_gguf_does_not(tmp_path):
    # granite_swa is in llama.cpp 0.3.36 but not in gguf 0.19.0's MODEL_ARCH_NAMES
    path = write_tiny_llama(tmp_path / "m.gguf", architecture="granite_swa")
    assert read_gguf_info(path).architecture == "granite_swa"


def test_starter_model(gemma_model_path):
    started = time.perf_counter()
    info = read_gguf_info(gemma_model_path)
    assert time.perf_counter() - started < 2  # gguf.GGUFReader takes ~13 s on it
    assert (info.architecture, info.quant, info.chat_template) == ("gemma3", "Q4_K_M", None)
    assert info.n_params == pytest.approx(268e6, rel=0.01)
    assert (info.n_layers, info.n_heads, info.n_kv_heads, info.head_dim) == (18, 4, 1, 256)
    assert (info.context_length, info.vocab_size, info.embedding_length) == (32768, 262144, 640)
    assert info.size_bytes == 253_113_024
    assert info.kv_bytes_per_token == 18 * 1 * (256 + 256) * 2


def test_larger_benchmark_model_writes_fast_and_reads(tmp_path):
    started = time.perf_counter()
    path = write_random_llama(tmp_path / "bench.gguf", 100e6, quant="Q4_0")
    assert time.perf_counter() - started < 5
    info = read_gguf_info(path)
    assert info.n_params == pytest.approx(100e6, rel=0.1)
    assert info.quant == "Q4_0" and 40e6 < info.size_bytes < 80e6


# --- bad files --------------------------------------------------------------------------

EXPECTED_REASONS = {
    "empty": "it is empty",
    "not_gguf": "it is not a GGUF file",
    "lfs_pointer": "Git LFS pointer",
    "bad_magic": "it is not a GGUF file",
    "bad_version": "GGUF version 99",
    "big_endian": "big-endian",
    "truncated": "it is truncated: tensor 'blk.",
    "truncated_header": "it is truncated or corrupt: its header needs",
    "tensor_out_of_bounds": "tensor 'token_embd.weight' starts at byte 1,099,511,",
    "huge_kv_count": "declares 1,099,511,627,776 metadata entries",
    "huge_tensor_count": "1,099,511,627,776 tensors, more than",
    "huge_array": "'tokenizer.ggml.scores' claims 1,099,511,627,776 elements",
    "no_tensors": "it holds no tensors",
    "negative_dim": "tensor 'token_embd.weight' has a negative dimension",
    "unknown_tensor_type": "tensor 'token_embd.weight' has an unknown data type (9999)",
    "no_architecture": "no general.architecture",
    "unknown_architecture": "architecture 'notarealarch' is not one llama.cpp knows",
}


def test_every_corrupt_kind_has_an_expected_reason():
    assert set(EXPECTED_REASONS) == set(CORRUPT_KINDS)


@pytest.mark.parametrize("kind", CORRUPT_KINDS)
def test_corrupt_file_is_refused_with_its_reason(tmp_path, kind):
    path = write_corrupt(tmp_path / f"{kind}.gguf", kind)
    started = time.perf_counter()
    with pytest.raises(ModelFileError) as caught:
        read_gguf_info(path)
    assert time.perf_counter() - started < 1  # hostile counts fail fast
    err = caught.value
    assert not isinstance(err, HeaderIncompleteError)
    assert err.path == str(path)
    assert str(err).startswith(f"The model file {path} cannot be used: ")
    assert EXPECTED_REASONS[kind] in err.reason
    assert err.__cause__ is None  # the parser said why, not a catch-all


def test_missing_file_and_folder(tmp_path):
    with pytest.raises(ModelFileError, match="does not exist"):
        read_gguf_info(tmp_path / "nope.gguf")
    with pytest.raises(ModelFileError, match="is a folder"):
        read_gguf_info(tmp_path)


def test_tiny_files_are_too_small(tmp_path):
    for content, reason in [(b"GG", "too small"), (b"GGUF\x03\x00\x00\x00", "too small"), (b"hello", "not a GGUF")]:
        path = tmp_path / "small.gguf"
        path.write_bytes(content)
        with pytest.raises(ModelFileError, match=reason):
            read_gguf_info(path)


def test_random_damage_never_escapes_as_anything_but_model_file_error(tiny_model_path):
    """Flip bytes, plant huge numbers and cut the header: only ModelFileError, each with its own reason."""
    good = tiny_model_path.read_bytes()
    header_end = read_gguf_info(tiny_model_path).data_offset
    rng = np.random.default_rng(1)
    huge = [1 << 31, 1 << 40, (1 << 63) + 5, (1 << 64) - 1]
    refused = 0
    for i in range(400):
        data = bytearray(good)
        at = int(rng.integers(4, header_end - 8))
        if i % 3 == 0:
            data[at:at + 8] = huge[int(rng.integers(len(huge)))].to_bytes(8, "little")
        elif i % 3 == 1:
            data[at] = int(rng.integers(256))
        else:
            del data[int(rng.integers(0, header_end)):]
        try:
            read_gguf_header(bytes(data), len(data), "fuzz.gguf")
        except ModelFileError as err:
            assert not isinstance(err, HeaderIncompleteError)
            assert err.__cause__ is None, f"unforeseen {err.__cause__!r}"
            refused += 1
    assert refused > 100


def test_hostile_layer_count_costs_no_memory(tmp_path):
    path = write_tiny_llama(tmp_path / "m.gguf")
    data = bytearray(path.read_bytes())
    at = data.index(b"llama.block_count") + len(b"llama.block_count") + 4  # after the u32 type
    data[at:at + 4] = (2**32 - 1).to_bytes(4, "little")
    path.write_bytes(data)
    started = time.perf_counter()
    with pytest.raises(ModelFileError, match="4,294,967,295 layers but its tensors hold only 2"):
        read_gguf_info(path)
    assert time.perf_counter() - started < 1


@pytest.mark.parametrize("kind, reason", [
    ("block_count_zero", "block_count is 0"),
    ("block_count_huge", "1,000,000,000 layers but its tensors hold only 2"),
    ("block_count_beyond_tensors", "7 layers but its tensors hold only 2"),
    ("nan_norm_eps", "layer_norm_rms_epsilon is nan"),
    ("inf_norm_eps", "layer_norm_rms_epsilon is inf"),
    ("zero_heads", "head_count is 0"),
    ("zero_embedding", "embedding_length is 0"),
    ("vocab_size_mismatch", "vocab_size says 50,000 tokens"),
    ("duplicate_vocab", "lists the token"),
])
def test_impossible_header_values_are_refused_with_the_reason(tmp_path, kind, reason):
    """Values that parse but make llama.cpp abort or misbehave never reach it (issue 8)."""
    from tests.support.tiny_gguf import write_hostile

    path = write_hostile(tmp_path / f"{kind}.gguf", kind)
    with pytest.raises(ModelFileError, match=re.escape(reason)) as err:
        read_gguf_info(path)
    assert str(path) in str(err.value)


# --- remote headers ---------------------------------------------------------------------


def test_remote_header_matches_the_local_read(tiny_model_path):
    data = tiny_model_path.read_bytes()
    local = read_gguf_info(tiny_model_path)
    remote = read_gguf_header(data[:local.data_offset], len(data), URL)
    assert (remote.path, remote.source) == (None, URL)
    assert dataclasses.replace(remote, path=local.path, source=local.source) == local


@pytest.mark.parametrize("grow", [False, True])
def test_remote_header_asks_for_more_bytes_until_it_fits(tiny_model_path, grow):
    data = tiny_model_path.read_bytes()
    header_end = read_gguf_info(tiny_model_path).data_offset
    have, rounds = 0, 0
    while True:
        try:
            info = read_gguf_header(data[:have], len(data), URL)
            break
        except HeaderIncompleteError as err:
            # progress, and a true lower bound: never past the header's end
            assert err.have_bytes == have < err.needed_bytes <= header_end
            assert URL in str(err) and f"{err.needed_bytes:,}" in str(err)
            # `grow` is the fetch policy the docstring suggests; without it, the strict bound
            have, rounds = (max(err.needed_bytes, 2 * have) if grow else err.needed_bytes), rounds + 1
    assert info.architecture == "llama"
    assert rounds <= (7 if grow else 30)


def test_remote_header_of_the_starter_model(gemma_model_path):
    with open(gemma_model_path, "rb") as f:
        data = f.read(8 << 20)
    with pytest.raises(HeaderIncompleteError) as caught:
        read_gguf_header(data[: 1 << 20], 253_113_024, URL)
    # 262,144 vocabulary strings need at least 8 bytes each
    assert caught.value.needed_bytes > 2 * 1024 * 1024
    info = read_gguf_header(data, 253_113_024, URL)
    assert (info.architecture, info.quant, info.n_layers) == ("gemma3", "Q4_K_M", 18)


def test_remote_hostile_header_fails_without_asking_for_more(tmp_path):
    path = write_corrupt(tmp_path / "h.gguf", "huge_kv_count")
    with pytest.raises(ModelFileError, match="metadata entries") as caught:
        read_gguf_header(path.read_bytes()[:64], path.stat().st_size, URL)
    assert not isinstance(caught.value, HeaderIncompleteError)


def test_remote_file_shorter_than_its_tensors(tiny_model_path):
    data = tiny_model_path.read_bytes()
    header_end = read_gguf_info(tiny_model_path).data_offset
    with pytest.raises(ModelFileError, match="it is truncated: tensor 'output.weight' ends at byte"):
        read_gguf_header(data[:header_end], len(data) - 1000, URL)


def test_remote_inconsistent_sizes(tiny_model_path):
    data = tiny_model_path.read_bytes()
    with pytest.raises(ModelFileError, match="said to hold"):
        read_gguf_header(data, len(data) - 1, URL)
    with pytest.raises(ModelFileError, match="empty"):
        read_gguf_header(b"", 0, URL)


# --- the real llama.cpp -----------------------------------------------------------------


@pytest.mark.llama_cpp
@pytest.mark.parametrize("quant", ["F32", "Q4_K_M"])
def test_llama_cpp_loads_and_generates_from_a_tiny_model(tmp_path, tiny_model_path, quant):
    llama_cpp = pytest.importorskip("llama_cpp")
    path = tiny_model_path if quant == "F32" else write_tiny_llama(tmp_path / "q.gguf", n_embd=256, n_ff=512, quant=quant)
    llm = llama_cpp.Llama(model_path=str(path), n_ctx=256, n_threads=1, verbose=False)
    try:
        assert llm.n_vocab() == read_gguf_info(path).vocab_size
        assert llm.token_bos() == 1 and llm.token_eos() == 2

        text = "Hello world, the café is open.\n  Naïve 日本 🙂!"
        tokens = llm.tokenize(text.encode(), add_bos=False)
        assert llm.detokenize(tokens).decode() == text
        # é is not in the vocabulary: it comes out as its two UTF-8 bytes, in two tokens
        e_tokens = llm.tokenize("é".encode(), add_bos=False)
        assert [llm.detokenize([t]) for t in e_tokens] == [b"\xc3", b"\xa9"]

        generated = []
        for token in llm.generate(llm.tokenize(b"the people"), temp=0.8, top_k=40):
            generated.append(token)
            if len(generated) == 8:
                break
        assert len(generated) == 8 and all(0 <= t < llm.n_vocab() for t in generated)
    finally:
        llm.close()
