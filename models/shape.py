"""A model's shape as the memory and speed estimates need it, from a GGUF header or the catalogue.

Two figures a header summary does not give come from the tensor table
(`tensor_table` walks it):
- how many weight bytes are only looked up, not read whole, per token: an untied
  token-embedding table (its output layer is a separate tensor) is read one row per
  token. For a small model with a large vocabulary that table is a third of the
  file, so the speed estimate would be far off without it;
- how many bytes are in tensor types whose CPU kernels are slow per byte (the
  legacy Q4_1, Q5_0 and Q5_1: see models.speed).
"""

from __future__ import annotations

import mmap
from dataclasses import dataclass
from pathlib import Path

from models.catalogue import CatalogueEntry
from models.gguf_file import GGUFInfo

TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"
SLOW_KERNEL_QUANTS = frozenset({"Q4_1", "Q5_0", "Q5_1"})  # tensor types (and file quants) without repacked CPU kernels


@dataclass(frozen=True)
class ModelShape:
    source: str
    architecture: str
    quant: str
    size_bytes: int  # the file
    weight_bytes: int  # all tensors
    lookup_only_bytes: int  # weights read one row per token (an untied embedding table)
    n_params: int
    n_layers: int | None
    n_heads: int | None
    n_kv_heads: int | None
    embedding_length: int | None
    vocab_size: int | None
    context_length: int | None
    kv_bytes_per_token: int | None  # f16 K+V for all layers, per token of context
    slow_kernel_bytes: int = 0  # weights read per token in types with slow CPU kernels (Q4_1, Q5_0, Q5_1)

    @property
    def bytes_per_token(self) -> int:
        """Weight bytes that generating one token reads: all of them but the looked-up rows."""
        return max(1, self.weight_bytes - self.lookup_only_bytes)


@dataclass(frozen=True)
class TensorTable:
    """What the speed estimate needs from a GGUF's tensor list."""

    lookup_only_bytes: int
    slow_kernel_bytes: int


def from_gguf(info: GGUFInfo, table: TensorTable | None = None) -> ModelShape:
    if table is None:
        table = _table_from_info(info)
    return ModelShape(
        source=info.source,
        architecture=info.architecture,
        quant=info.quant,
        size_bytes=info.size_bytes,
        weight_bytes=info.tensor_bytes,
        lookup_only_bytes=table.lookup_only_bytes,
        n_params=info.n_params,
        n_layers=info.n_layers,
        n_heads=info.n_heads,
        n_kv_heads=info.n_kv_heads,
        embedding_length=info.embedding_length,
        vocab_size=info.vocab_size,
        context_length=info.context_length,
        kv_bytes_per_token=info.kv_bytes_per_token,
        slow_kernel_bytes=table.slow_kernel_bytes,
    )


def from_catalogue(entry: CatalogueEntry) -> ModelShape:
    a = entry.arch
    size = entry.size_bytes or _guess_size(entry)
    lookup = 0
    if not a.tied_embeddings and entry.params:
        lookup = int(size * a.vocab_size * a.embedding_length / entry.params)
    return ModelShape(
        source=entry.name,
        architecture=a.architecture,
        quant=entry.quant,
        size_bytes=size,
        weight_bytes=size,
        lookup_only_bytes=lookup,
        n_params=entry.params,
        n_layers=a.n_layers,
        n_heads=a.n_heads,
        n_kv_heads=a.n_kv_heads,
        embedding_length=a.embedding_length,
        vocab_size=a.vocab_size,
        context_length=entry.context_length,
        kv_bytes_per_token=a.kv_bytes_per_token,
        # A legacy quant is in (nearly) every weight; the few other tensors do not matter here.
        slow_kernel_bytes=(size - lookup) if entry.quant.upper() in SLOW_KERNEL_QUANTS else 0,
    )


# Average bits per weight of common quants, for a catalogue quant whose size the Hub has not told yet.
_BITS_PER_WEIGHT = {
    "Q2_K": 3.0, "Q3_K_S": 3.5, "Q3_K_M": 3.9, "Q3_K_L": 4.3, "IQ3_M": 3.7, "IQ3_XS": 3.5, "Q3_K_XL": 4.3,
    "IQ4_XS": 4.3, "Q4_0": 4.5, "Q4_K_S": 4.6, "Q4_K_M": 4.9, "Q4_K_L": 5.0, "Q5_0": 5.5, "Q5_K_S": 5.5,
    "Q5_K_M": 5.7, "Q5_K_L": 5.8, "Q6_K": 6.6, "Q6_K_L": 6.7, "Q8_0": 8.5, "F16": 16.0, "FP16": 16.0,
    "BF16": 16.0, "F32": 32.0, "Q2_K_L": 3.3, "IQ2_M": 2.7,
}


def _guess_size(entry: CatalogueEntry) -> int:
    bits = _BITS_PER_WEIGHT.get(entry.quant.upper(), 4.9)
    return int(entry.params * bits / 8)


def _table_from_info(info: GGUFInfo) -> TensorTable:
    """Read the tensor table of a local file; zeros if that is not possible (the estimate is then a bit off)."""
    if info.path is None:
        return TensorTable(0, 0)
    try:
        with open(info.path, "rb") as f, mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_READ) as data:
            return tensor_table(data, info.size_bytes, str(info.path)) or TensorTable(0, 0)
    except (OSError, ValueError):
        return TensorTable(0, 0)


def tensor_table(data, total_size: int, source: str) -> TensorTable | None:
    """The TensorTable of a GGUF: a whole file or a prefix that holds the header (a remote range read)."""
    tensors = tensor_types(data, total_size, source)
    if tensors is None:
        return None
    # Tied: the output layer is token_embd itself, read whole every token; untied: one row of it.
    lookup = tensors[TOKEN_EMBEDDING][0] if OUTPUT in tensors and TOKEN_EMBEDDING in tensors else 0
    slow = sum(n for name, (n, kind) in tensors.items()
               if kind in SLOW_KERNEL_QUANTS and not (lookup and name == TOKEN_EMBEDDING))
    return TensorTable(lookup, slow)


def lookup_only_bytes(data, total_size: int, source: str) -> int:
    """Bytes of an untied token-embedding table in a GGUF's tensor table (0 if tied or unknown)."""
    table = tensor_table(data, total_size, source)
    return table.lookup_only_bytes if table else 0


def tensor_types(data, total_size: int, source: str) -> dict[str, tuple[int, str]] | None:
    """{tensor name: (bytes, type name)} from the header, or None if it cannot be walked."""
    # The checked header walk lives in gguf_file; its cursor is reused so the
    # bounds checks are the same ones and nothing is parsed twice in two ways.
    from models import gguf_file as g

    try:
        r = g._Reader(data, total_size, source)
        r.pos = 8  # magic and version were checked by read_gguf_info / read_gguf_header
        n_tensors = r.unpack(g._U64, "the tensor count")
        n_kv = r.unpack(g._U64, "the metadata count")
        for i in range(n_kv):
            key = r.string(f"metadata entry {i}", decode=True) or f"(key {i}, too long to read)"
            r.value(r.unpack(g._U32, f"metadata entry {key!r}"), key)
        names: set[str] = set()
        tensors = {}
        for i in range(n_tensors):
            t = g._read_tensor_info(r, i, names)
            tensors[t.name] = (t.n_bytes, t.ggml_type.name)
        return tensors
    except Exception:  # a private helper changed, or a header it refuses: fall back to no correction
        return None


def tensor_sizes(data, total_size: int, source: str) -> dict[str, int] | None:
    """{tensor name: bytes} from the header, or None if it cannot be walked."""
    tensors = tensor_types(data, total_size, source)
    return None if tensors is None else {name: n for name, (n, _kind) in tensors.items()}


def shape_of_file(path) -> ModelShape:
    from models.gguf_file import read_gguf_info

    return from_gguf(read_gguf_info(Path(path)))
