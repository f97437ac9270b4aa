"""Fit before downloading: the remote header by range requests, the memory estimate, and the verdicts."""

import pytest

from models import catalogue, fit, library
from models.gguf_file import read_gguf_info
from models.remote_header import read_remote_header
from models.shape import from_catalogue, shape_of_file
from tests.support.hub_server import hub, hub_env, medium_model_path  # noqa: F401 - fixtures

GiB = 1 << 30


def test_the_header_of_a_remote_file_is_read_with_range_requests(hub, gemma_model_path):  # noqa: F811
    hub.add_repo("google/gemma-3-270m-GGUF", {"gemma-3-270m-Q4_K_M.gguf": gemma_model_path})
    remote = read_remote_header("google/gemma-3-270m-GGUF", "gemma-3-270m-Q4_K_M.gguf")
    local = read_gguf_info(gemma_model_path)

    for field in ("architecture", "n_layers", "n_heads", "n_kv_heads", "head_dim", "context_length",
                  "embedding_length", "vocab_size", "quant", "n_params", "tensor_bytes", "size_bytes"):
        assert getattr(remote.info, field) == getattr(local, field), field
    assert (remote.info.architecture, remote.info.n_layers, remote.info.n_kv_heads, remote.info.head_dim,
            remote.info.context_length) == ("gemma3", 18, 1, 256, 32768)
    assert remote.shape == shape_of_file(gemma_model_path).__class__(**{
        **shape_of_file(gemma_model_path).__dict__, "source": remote.shape.source})
    # Its 6.5 MB header (a 262k-token vocabulary) in two requests, not the 253 MB file.
    assert local.data_offset <= remote.bytes_read <= 8 << 20 and remote.requests == 2
    gets = [r for r in hub.log if r.method == "GET" and "/resolve/" in r.path]
    assert all(r.range and r.status == 206 for r in gets)
    assert sum(r.body_bytes for r in gets) == remote.bytes_read
    assert remote.sha256 == hub.repos["google/gemma-3-270m-GGUF"].files["gemma-3-270m-Q4_K_M.gguf"].sha256


def test_fit_reads_the_remote_header_or_falls_back_to_the_catalogue(hub, medium_model_path, monkeypatch):  # noqa: F811
    hub.add_repo("acme/medium-GGUF", {"medium-Q4_K_M.gguf": medium_model_path})
    report = library.fit_report("acme/medium-GGUF:Q4_K_M", n_ctx=2048)
    assert report.shape_from.startswith("remote header")
    assert report.shape.n_layers == read_gguf_info(medium_model_path).n_layers
    assert report.verdict.estimate.n_ctx == 2048 and report.speed and not report.speed.measured

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    offline = library.fit_report("llama3.1-8b")
    assert offline.shape_from.startswith("catalogue") and offline.shape_from.endswith("the Hub cannot be reached")
    assert offline.shape.n_layers == 32


def test_the_memory_estimate_has_its_parts():
    shape = from_catalogue(catalogue.get("llama3.1-8b"))
    est = fit.estimate_memory(shape, 4096)
    assert est.weights == catalogue.get("llama3.1-8b").size_bytes
    assert est.kv_cache == 512 * (1 << 20)  # 32 layers × 8 KV heads × 128 × 2 (K, V) × 2 bytes × 4096
    # The logits of a 512-token batch over a 128,256-token vocabulary (250.5 MiB), two rows of activations
    # (8 MiB) and the output buffer (0.5 MiB): what llama.cpp reserves with flash attention on.
    assert est.compute == 512 * 128256 * 4 + 2 * 512 * 4096 * 4 + 128256 * 4
    assert est.total == est.weights + est.kv_cache + est.recurrent_state + est.compute + est.overhead
    assert fit.estimate_memory(shape, 32768).kv_cache == 8 * est.kv_cache
    # Without a context, the default, never past the model's own.
    assert fit.estimate_memory(shape).n_ctx == fit.DEFAULT_CTX
    assert fit.estimate_memory(from_catalogue(catalogue.get("lfm2.5-1.2b"))).n_ctx == 4096


def test_a_sliding_window_model_fits_at_128k_and_a_moe_reads_its_active_experts():
    """The issue's cases: gemma3-12b at 131,072 tokens (40 of 48 layers attend over 1,024 tokens) fits 25 GB."""
    shape = from_catalogue(catalogue.get("gemma3-12b"))
    windowed = fit.estimate_memory(shape, 131072)
    full = fit.estimate_memory(shape, 131072, swa_full=True)
    assert 8e9 < windowed.kv_cache < 10e9 and full.kv_cache > 50e9  # about 9 GB, not 51.5 GB
    assert fit.judge(windowed, fit.Machine(25 * GiB, 24 * GiB)).verdict == fit.FITS
    gpt = from_catalogue(catalogue.get("gpt-oss-20b"))
    assert gpt.is_moe and gpt.bytes_per_token < gpt.weight_bytes / 4  # about 3.6B of 21B parameters
    assert gpt.active_params == pytest.approx(3.61e9, rel=0.01)
    qwen = fit.estimate_memory(from_catalogue(catalogue.get("qwen3.5-4b")), 32768)
    assert qwen.recurrent_state > 0 and qwen.kv_layers == 8  # 24 of 32 layers keep a state, not a cache


@pytest.mark.parametrize(
    "name, total_gib, free_gib, verdict",
    [
        ("qwen3.5-0.8b", 8, 6, fit.FITS),
        ("llama3.1-8b", 16, 12, fit.FITS),
        ("llama3.1-8b", 8, 6, fit.TIGHT),  # fits the RAM, not what is free now beside other programs
        ("llama3.1-8b", 16, 4, fit.TIGHT),
        ("ministral3-14b", 8, 7, fit.NO_FIT),
        ("llama3.1-8b", 4, 3, fit.NO_FIT),
    ],
)
def test_verdicts(name, total_gib, free_gib, verdict):
    machine = fit.Machine(total_gib * GiB, free_gib * GiB)
    result = fit.fit(from_catalogue(catalogue.get(name)), 4096, machine)
    assert result.verdict == verdict and result.where == "RAM"
    assert result.reason.endswith(".") and " GB" in result.reason


def test_a_gpu_with_room_makes_it_fit():
    machine = fit.Machine(8 * GiB, 3 * GiB, (fit.GPU("RTX 4090", 24 * GiB, 23 * GiB),))
    result = fit.fit(from_catalogue(catalogue.get("ministral3-14b")), 4096, machine)
    assert result.verdict == fit.FITS and result.where == "RTX 4090"
    assert result.gpu_verdicts == (("RTX 4090", fit.FITS),)
    long = fit.fit(from_catalogue(catalogue.get("ministral3-14b")), 131072, machine)
    assert long.verdict == fit.NO_FIT  # 20 GiB of KV cache at 128k tokens


def test_this_machine_is_read():
    m = fit.this_machine()
    assert 0 < m.available_ram <= m.total_ram


@pytest.mark.llama_cpp
def test_the_estimate_matches_what_llama_cpp_allocates_for_the_built_in_models(
        starter_model_path, gemma_model_path, medium_model_path):  # noqa: F811
    from tests.support.llama_buffers import measure

    for path, n_ctx in ((starter_model_path, 8192), (gemma_model_path, 32768), (medium_model_path, 8192)):
        real = measure(path, n_ctx)  # window-sized caches, flash attention "auto": llama-server's defaults
        est = fit.estimate_memory(shape_of_file(path), n_ctx)
        assert est.weights == pytest.approx(real["weights"], rel=0.01), path.name
        assert est.kv_cache == pytest.approx(real["kv"], rel=0.01), path.name
        assert est.compute == pytest.approx(real["compute"] + real["output"], rel=0.05), path.name
    # Gemma 3 270M at 32k: window-sized caches hold 111 MiB of KV, not the 576 MiB of full-size ones.
    assert fit.estimate_memory(shape_of_file(gemma_model_path), 32768).kv_cache == 111 << 20
