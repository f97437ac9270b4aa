"""The remote header read of a catalogue repo gives the shape the catalogue states.

Each catalogue entry below is served by the local Hub server (tests/support/hub_server.py) as a
header-only file of its real shape and size (a sparse file: the header written, the weights a
hole), under the entry's own repo and file name; `read_remote_header` fetches its first
megabytes by range requests, and the shape it reads must be the one the catalogue states:
layers, heads, caches by kind, the window, recurrent layers and their state, experts.
"""

from collections import Counter

import pytest

from models import catalogue, fit
from models.remote_header import read_remote_header
from models.shape import from_catalogue
from tests.support import arch_gguf
from tests.support.hub_server import HubFile, HubRepo, hub, hub_env  # noqa: F401 - fixtures


def _write(entry, path):
    """A header-only file with the catalogue entry's shape, written by the arch_gguf writer of its class."""
    a = entry.arch
    common = dict(n_layers=a.n_layers, n_embd=a.embedding_length, n_heads=a.n_heads, n_kv_heads=a.n_kv_heads,
                  vocab=a.vocab_size, n_ctx=entry.context_length, header_only=True)
    if a.architecture == "llama":
        return arch_gguf.write_dense_llama(path, n_ff=a.n_ff, **common)
    if a.architecture == "gemma3":
        return arch_gguf.write_gemma3(path, head_dim=a.head_dim, n_ff=a.n_ff, window=a.sliding_window, **common)
    if a.architecture == "gpt-oss":
        return arch_gguf.write_gpt_oss(path, head_dim=a.head_dim, n_expert=a.n_expert, n_expert_used=a.n_expert_used,
                                       n_ff_exp=a.n_ff_exp, window=a.sliding_window, **common)
    if a.architecture == "qwen35":
        heads = a.recurrent_width // 3 // 128  # key heads = value heads here: channels = 3 × 16 × 128
        return arch_gguf.write_qwen35(path, head_dim=a.head_dim, n_ff=a.n_ff, ssm_state_size=128, ssm_group_count=heads,
                                      ssm_time_step_rank=heads, tied_embeddings=a.tied_embeddings, **common)
    if a.architecture == "gemma4":
        n_kv = a.kv_layers if a.kv_layers is not None else a.n_layers
        return arch_gguf.write_gemma4(path, head_dim=a.head_dim, head_dim_swa=a.head_dim_swa, n_ff=a.n_ff,
                                      n_embd_per_layer=a.n_embd_per_layer, window=a.sliding_window, pattern=5,
                                      shared_kv_layers=a.n_layers - n_kv, **common)
    raise AssertionError(f"no writer for {a.architecture}")


# One entry of each class the estimates treat differently.
ENTRIES = ("llama3.2-1b", "gemma3-1b", "gpt-oss-20b", "qwen3.5-0.8b", "gemma4-e2b")


@pytest.mark.parametrize("name", ENTRIES)
def test_the_remote_header_of_a_catalogue_repo_gives_the_catalogues_shape(hub, tmp_path, name):  # noqa: F811
    entry = catalogue.get(name)
    model = _write(entry, tmp_path / entry.file)
    # The sparse file's SHA-256 is not read (it would read gigabytes of hole); any stable value will do.
    hub.repos[entry.repo] = HubRepo(entry.repo, {entry.file: HubFile(entry.file, model.path, sha256="ab" * 32)})
    remote = read_remote_header(entry.repo, entry.file)
    stated, read = from_catalogue(entry), remote.shape
    assert remote.bytes_read < 16 << 20 and remote.info.size_bytes == model.path.stat().st_size
    for field in ("architecture", "n_layers", "n_heads", "n_kv_heads", "embedding_length", "vocab_size",
                  "sliding_window", "sliding_layers", "recurrent_layers", "recurrent_state_bytes", "n_expert",
                  "n_expert_used", "per_layer_embedding_width", "kv_bytes_per_token", "attention_width"):
        assert getattr(read, field) == getattr(stated, field), (name, field)
    assert Counter(read.kv_layers) == Counter(stated.kv_layers), name
    for n_ctx in (4096, 32768):
        assert fit.estimate_memory(read, n_ctx).kv_cache == fit.estimate_memory(stated, n_ctx).kv_cache
    if stated.is_moe:  # the experts' share of the bytes read, from the tensor table: 4 of 32 experts
        assert read.bytes_per_token < read.weight_bytes / 4 and read.active_params < read.n_params / 4
