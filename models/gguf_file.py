"""Read and check a GGUF model's header before llama.cpp ever sees the file.

Every defect becomes a `ModelFileError` that names the file and says what is
wrong, so a corrupt, truncated or hostile download never reaches llama.cpp's C
code. The same parser reads a *prefix* of a remote file (`read_gguf_header`),
which is how the app sizes a model before downloading its weights.

Why not `gguf.GGUFReader`, ggml-org's own Python reader? Measured here on the
253 MB starter model it takes 13 s and 730 MB of memory, because it builds
numpy arrays for each of the 262,144 vocabulary strings; it hangs (still
running after 20 s) on a hostile array length at the end of a file; and it
cannot read a prefix, because it maps every tensor's data. So the header is
walked here with `struct`, every length checked against the file size before it
is trusted, and what defines the format (value types, block sizes, file types,
architecture names, key names) comes from the `gguf` package, so an upgrade of
it brings new quant types with it. The checks follow llama.cpp's own loader
(ggml/src/gguf.cpp), which refuses the same files but says only "Failed to
load model from file".
"""

from __future__ import annotations

import math
import re
import stat
import struct
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

from gguf.constants import (
    GGML_QUANT_SIZES,
    GGUF_DEFAULT_ALIGNMENT,
    GGUF_MAGIC,
    GGUF_VERSION,
    MODEL_ARCH_NAMES,
    GGMLQuantizationType,
    GGUFValueType,
    Keys,
    LlamaFileType,
)

from common.errors import ModelFileError

__all__ = ["GGUFInfo", "HeaderIncompleteError", "TensorEntry", "read_gguf_info", "read_gguf_header"]

# gguf's list lags llama.cpp's: these are the names llama.cpp in the pinned
# llama-cpp-python 0.3.36 knows (src/llama-arch.cpp) that gguf 0.19.0 does not.
# Refresh when either pin moves; models/ may not import llama_cpp to ask it.
_LLAMA_CPP_ONLY_ARCHITECTURES = frozenset("""
    bailingmoe3 cohere2moe deepseek32 deepseek4 dflash dots3note eagle3 gemma4-assistant
    glm5-next granite_swa graniteswitch hrm_text hy_v3 hy_v4 kimi-k3 laguna maple mellum
    minimax-01 minimax-m3 muse-glimmer nanbeige pockettts qwen3tts qwen4exp spark2_5 talkie
""".split())
KNOWN_ARCHITECTURES = frozenset(MODEL_ARCH_NAMES.values()) | _LLAMA_CPP_ONLY_ARCHITECTURES

# Limits from llama.cpp's loader (gguf.cpp, ggml.h).
_MAX_STRING = 1 << 30
_MAX_ARRAY = 1 << 30
_MAX_NAME = 64  # GGML_MAX_NAME, including the terminating NUL
_MAX_DIMS = 4
_INT64_MAX = (1 << 63) - 1
# The smallest a metadata entry (8-byte key length, 1-byte key, type, 1-byte
# value) and a tensor description (name length, 1-byte name, n_dims, type,
# offset) can be: with them a header's declared counts are checked against the
# file size before any entry is read.
_MIN_KV_BYTES = 8 + 1 + 4 + 1
_MIN_TENSOR_BYTES = 8 + 1 + 4 + 4 + 8
_FIXED_HEADER = 4 + 4 + 8 + 8  # magic, version, tensor count, metadata count
_FIRST_READ = 16 << 20  # nearly every header fits: a 262k-token vocabulary takes 6.5 MB
# Numeric arrays up to this length are decoded (per-layer head counts);
# longer ones (token scores and types) are skipped.
_DECODE_ARRAY_MAX = 4096
# Longer strings (no real chat template comes near) are skipped, not decoded.
_DECODE_STRING_MAX = 1 << 20

_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")
_SCALARS = {
    GGUFValueType.UINT8: struct.Struct("<B"),
    GGUFValueType.INT8: struct.Struct("<b"),
    GGUFValueType.UINT16: struct.Struct("<H"),
    GGUFValueType.INT16: struct.Struct("<h"),
    GGUFValueType.UINT32: struct.Struct("<I"),
    GGUFValueType.INT32: struct.Struct("<i"),
    GGUFValueType.FLOAT32: struct.Struct("<f"),
    GGUFValueType.BOOL: struct.Struct("<?"),
    GGUFValueType.UINT64: struct.Struct("<Q"),
    GGUFValueType.INT64: struct.Struct("<q"),
    GGUFValueType.FLOAT64: struct.Struct("<d"),
}


class HeaderIncompleteError(ModelFileError):
    """The bytes given end before the header does: fetch at least `needed_bytes` and retry.

    Raised only by `read_gguf_header` on a prefix of a longer file; a local file
    whose header runs past its end is a plain `ModelFileError` (truncated).
    """

    def __init__(self, path, needed_bytes: int, have_bytes: int):
        self.needed_bytes = needed_bytes
        self.have_bytes = have_bytes
        super().__init__(
            path,
            f"only its first {have_bytes:,} bytes were read and its header needs at least {needed_bytes:,}",
        )


class TensorEntry(NamedTuple):
    """One tensor of a GGUF's table: what a size or speed computation needs."""

    name: str
    type_name: str  # ggml type: "Q4_K", "MXFP4", "F32", ...
    n_elements: int
    n_bytes: int
    dims: tuple[int, ...]  # llama.cpp's order: the row length first


@dataclass(frozen=True)
class GGUFInfo:
    """What the header says about a model. Counts that the file does not state are None."""

    path: Path | None  # None for a remote header; see `source`
    source: str  # the path or URL, as shown in messages
    size_bytes: int
    version: int
    architecture: str
    name: str | None
    n_params: int
    quant: str  # "Q4_K_M", "F16", ...
    context_length: int | None
    n_layers: int | None
    n_heads: int | None
    n_kv_heads: int | None  # the largest over layers when it varies by layer
    head_dim: int | None  # key length per head
    head_dim_v: int | None  # value length per head (usually == head_dim)
    embedding_length: int | None
    vocab_size: int | None
    chat_template: str | None
    tensor_count: int
    tensor_bytes: int
    data_offset: int  # where the weights start: the header's size, padding included
    # Set only where the file gives KV heads per layer (hybrid models, with 0 for non-attention layers).
    kv_heads_per_layer: tuple[int, ...] = ()
    # An image projector's (architecture "clip") own entries, scalars only: models/projector.py reads them.
    clip_meta: dict[str, object] = field(default_factory=dict, compare=False, hash=False)
    # The longest token in the vocabulary, in bytes as the file stores it: no token stands for more characters
    # of text, so characters / this is a lower bound on a text's tokens (counted without the tokenizer).
    longest_token_bytes: int | None = None
    # The architecture's own numeric entries ("sliding_window", "expert_count", "ssm.state_size", ...),
    # keys without the "{arch}." prefix; a short array as a tuple. What models.shape needs per architecture.
    arch_meta: tuple[tuple[str, object], ...] = ()
    tensors: tuple[TensorEntry, ...] = ()  # the tensor table, in file order

    def arch_value(self, key: str, default=None):
        """An architecture entry by its key without the prefix ("attention.sliding_window"), else `default`."""
        return next((v for k, v in self.arch_meta if k == key), default)

    @property
    def kv_bytes_per_token(self) -> int | None:
        """Bytes an f16 K+V cache takes per token of context, or None if the header lacks a figure.

        Upper bound: llama.cpp keeps a smaller cache for sliding-window layers (Gemma 3).
        """
        if self.head_dim is None or self.n_layers is None or self.n_kv_heads is None:
            return None
        if self.kv_heads_per_layer:
            kv_heads = sum(self.kv_heads_per_layer[: self.n_layers])
        else:
            kv_heads = self.n_layers * self.n_kv_heads
        head_dim_v = self.head_dim_v if self.head_dim_v is not None else self.head_dim
        return kv_heads * (self.head_dim + head_dim_v) * 2

    def kv_cache_bytes(self, n_ctx: int) -> int | None:
        per_token = self.kv_bytes_per_token
        return None if per_token is None else per_token * n_ctx


def read_gguf_info(path) -> GGUFInfo:
    """Read and check a local GGUF file's header; raise ModelFileError if it cannot be used."""
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ModelFileError(p, "it does not exist") from None
    except OSError as exc:
        raise ModelFileError(p, f"it cannot be read ({exc.strerror or exc})") from exc
    if stat.S_ISDIR(st.st_mode):
        raise ModelFileError(p, "it is a folder, not a file")
    if not stat.S_ISREG(st.st_mode):
        raise ModelFileError(p, "it is not a regular file")
    if st.st_size == 0:
        raise ModelFileError(p, "it is empty (0 bytes)")
    try:
        # Read the header, not the file, growing the read as the parser asks: the same
        # path as a remote prefix. Plain reads rather than mmap, so a file that shrinks
        # meanwhile gives an error, not a SIGBUS that kills the app.
        with open(p, "rb") as f:
            data = f.read(_FIRST_READ)
            while True:
                try:
                    return _parse(data, st.st_size, str(p), p)
                except HeaderIncompleteError as exc:
                    more = f.read(max(exc.needed_bytes, 4 * len(data)) - len(data))
                    if not more:
                        raise ModelFileError(p, "it got shorter while it was being read") from None
                    data += more
    except ModelFileError:
        raise
    except Exception as exc:  # OSError, MemoryError, anything unforeseen: never a crash
        raise ModelFileError(p, f"it could not be read ({type(exc).__name__}: {exc})") from exc


def read_gguf_header(data: bytes, total_size: int, source: str) -> GGUFInfo:
    """Read the header from the first bytes of a remote file of `total_size` bytes.

    Tensor bounds are checked against `total_size`. If `data` ends inside the
    header, raises HeaderIncompleteError: fetch at least `needed_bytes` and call
    again. It is a lower bound (the header's remaining entries at their smallest),
    so fetch generously, e.g. max(needed_bytes, 2 * len(data)), to keep round trips few.
    """
    if len(data) > total_size:
        raise ModelFileError(source, f"{len(data):,} bytes were read from a file said to hold {total_size:,}")
    if total_size == 0:
        raise ModelFileError(source, "it is empty (0 bytes)")
    try:
        return _parse(data, total_size, source, None)
    except ModelFileError:
        raise
    except Exception as exc:
        raise ModelFileError(source, f"its header could not be read ({type(exc).__name__}: {exc})") from exc


# --- the walk --------------------------------------------------------------------------


class _Array(NamedTuple):
    item_type: GGUFValueType
    length: int
    values: tuple | None  # None when not decoded (long, or strings)
    longest: int = 0  # for an array of strings: the longest, in bytes


class _Tensor(NamedTuple):
    name: str
    ggml_type: GGMLQuantizationType
    n_elements: int
    n_bytes: int
    offset: int  # relative to the start of the data section
    dims: tuple[int, ...] = ()


class _Reader:
    """A cursor that refuses to read past the bytes it has, or past the file's end."""

    def __init__(self, data, total: int, source: str):
        self.data = data
        self.have = len(data)
        self.total = total
        self.source = source
        self.pos = 0
        self.reserve = 0  # the least the rest of the header still needs, for HeaderIncompleteError

    def bad(self, reason: str) -> ModelFileError:
        return ModelFileError(self.source, reason)

    def need(self, n: int, what: str) -> None:
        end = self.pos + n
        if end <= self.have:
            return
        if end > self.total:
            raise self.bad(
                f"it is truncated or corrupt: its header needs {end:,} bytes for {what} "
                f"but the file has only {self.total:,}"
            )
        raise HeaderIncompleteError(self.source, min(end + self.reserve, self.total), self.have)

    def unpack(self, st: struct.Struct, what: str):
        self.need(st.size, what)
        (value,) = st.unpack_from(self.data, self.pos)
        self.pos += st.size
        return value

    def string(self, what: str, decode: bool = True) -> str | None:
        n = self.unpack(_U64, what)
        if n > _MAX_STRING:
            raise self.bad(f"{what} claims to be {n:,} bytes long")
        self.need(n, what)
        raw = self.data[self.pos:self.pos + n] if decode and n <= _DECODE_STRING_MAX else None
        self.pos += n
        return None if raw is None else bytes(raw).decode("utf-8", errors="replace")

    def raw_string(self, what: str) -> bytes:
        n = self.unpack(_U64, what)
        if n > _MAX_STRING:
            raise self.bad(f"{what} claims to be {n:,} bytes long")
        self.need(n, what)
        raw = bytes(self.data[self.pos:self.pos + n])
        self.pos += n
        return raw

    def value(self, vtype: int, key: str):
        try:
            vtype = GGUFValueType(vtype)
        except ValueError:
            raise self.bad(f"metadata entry {key!r} has an unknown value type ({vtype})") from None
        if vtype == GGUFValueType.STRING:
            return self.string(f"metadata entry {key!r}")
        if vtype == GGUFValueType.ARRAY:
            return self.array(key)
        return self.unpack(_SCALARS[vtype], f"metadata entry {key!r}")

    def array(self, key: str) -> _Array:
        what = f"metadata entry {key!r}"
        itype = self.unpack(_U32, what)
        count = self.unpack(_U64, what)
        try:
            itype = GGUFValueType(itype)
        except ValueError:
            raise self.bad(f"{what} is an array of an unknown type ({itype})") from None
        if itype == GGUFValueType.ARRAY:
            raise self.bad(f"{what} is an array of arrays, which GGUF does not allow")
        if count > _MAX_ARRAY:
            raise self.bad(f"{what} claims {count:,} elements")
        if itype == GGUFValueType.STRING:
            # Each string has at least its 8-byte length: check the whole array fits first.
            if self.pos + 8 * count > self.total:
                raise self.bad(f"{what} claims {count:,} strings, more than the file can hold")
            reserve = self.reserve
            if key == Keys.Tokenizer.LIST:
                # llama.cpp aborts the whole process on a vocabulary with a string twice: find it here.
                seen: set[bytes] = set()
                for i in range(count):
                    self.reserve = reserve + 8 * (count - i - 1)
                    token = self.raw_string(what)
                    if token in seen:
                        shown = token.decode("utf-8", errors="replace")
                        raise self.bad(f"its vocabulary lists the token {shown!r} twice")
                    seen.add(token)
                self.reserve = reserve
                return _Array(itype, count, None, max(map(len, seen), default=0))  # one pass in C
            else:
                for i in range(count):
                    self.reserve = reserve + 8 * (count - i - 1)
                    self.string(what, decode=False)
            self.reserve = reserve
            return _Array(itype, count, None)
        st = _SCALARS[itype]
        self.need(st.size * count, what)
        values = None
        if count <= _DECODE_ARRAY_MAX:
            values = struct.unpack_from(f"<{count}{st.format[1:]}", self.data, self.pos)
        self.pos += st.size * count
        return _Array(itype, count, values)


def _pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


def _not_gguf_reason(head: bytes) -> str:
    reason = "it is not a GGUF file"
    if head.startswith(b"version https://git-lfs"):
        return reason + " but a Git LFS pointer: the model's data was never downloaded"
    if head.lstrip()[:15].lower().startswith((b"<!doctype html", b"<html")):
        return reason + " but a web page (a failed download?)"
    if head[:4] in (b"lmgg", b"fmgg", b"tjgg", b"ggml", b"ggmf", b"ggjt"):
        return reason + " but an old GGML-format model, which llama.cpp no longer reads"
    if len(head) >= 10 and head[8:10] == b'{"':
        return reason + " but a safetensors file: llama.cpp needs it converted to GGUF"
    return reason


def _parse(data, total: int, source: str, path: Path | None) -> GGUFInfo:
    r = _Reader(data, total, source)
    if total < 4:
        raise r.bad(f"it is too small to be a model ({total:,} bytes)")
    r.reserve = _FIXED_HEADER - 4
    r.need(4, "the magic number")
    if bytes(data[:4]) != _U32.pack(GGUF_MAGIC):
        raise r.bad(_not_gguf_reason(bytes(data[:64])))
    if total < _FIXED_HEADER:
        raise r.bad(f"it is too small to be a model ({total:,} bytes)")
    r.pos, r.reserve = 4, 0
    version = r.unpack(_U32, "the version")
    if version & 0xFFFF == 0:
        raise r.bad("it was written for a big-endian machine and cannot be read on this one")
    if version == 1:
        raise r.bad("it uses GGUF version 1, which llama.cpp no longer reads")
    if version == 0 or version > GGUF_VERSION:
        raise r.bad(f"it uses GGUF version {version}, which this app cannot read (it reads 2 to {GGUF_VERSION})")
    n_tensors = r.unpack(_U64, "the tensor count")
    n_kv = r.unpack(_U64, "the metadata count")
    if n_tensors == 0:
        raise r.bad("it holds no tensors")
    # Fail fast on hostile counts, before one entry is read.
    if n_kv * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_BYTES > total - _FIXED_HEADER:
        raise r.bad(
            f"its header declares {n_kv:,} metadata entries and {n_tensors:,} tensors, "
            f"more than a {total:,}-byte file can hold"
        )

    meta: dict[str, object] = {}
    for i in range(n_kv):
        r.reserve = (n_kv - i - 1) * _MIN_KV_BYTES + n_tensors * _MIN_TENSOR_BYTES
        key = r.string(f"metadata entry {i}")
        if not key:
            raise r.bad(f"metadata entry {i} has an empty or oversized name")
        if key in meta:
            raise r.bad(f"metadata entry {key!r} appears twice")
        meta[key] = r.value(r.unpack(_U32, f"metadata entry {key!r}"), key)

    tensors: list[_Tensor] = []
    names: set[str] = set()
    for i in range(n_tensors):
        r.reserve = (n_tensors - i - 1) * _MIN_TENSOR_BYTES
        tensors.append(_read_tensor_info(r, i, names))

    alignment = meta.get(Keys.General.ALIGNMENT, GGUF_DEFAULT_ALIGNMENT)
    if isinstance(alignment, bool) or not isinstance(alignment, int) or alignment <= 0 or alignment & (alignment - 1):
        raise r.bad(f"its alignment ({alignment!r}) is not a power of two")
    data_offset = _pad(r.pos, alignment)

    arch = meta.get(Keys.General.ARCHITECTURE)
    if arch is None:
        raise r.bad("it has no general.architecture entry, so nothing says what kind of model it is")
    if not isinstance(arch, str):
        raise r.bad("its general.architecture entry is not text")
    if arch not in KNOWN_ARCHITECTURES:
        raise r.bad(f"its architecture {arch!r} is not one llama.cpp knows")

    # Data offsets must run back to back (llama.cpp requires it) and end inside the file.
    expected = 0
    for t in tensors:
        start, end = data_offset + t.offset, data_offset + t.offset + t.n_bytes
        if start > total or (start == total and t.n_bytes):
            raise r.bad(f"tensor {t.name!r} starts at byte {start:,}, past the end of the file ({total:,} bytes)")
        if end > total:
            raise r.bad(f"it is truncated: tensor {t.name!r} ends at byte {end:,} but the file has only {total:,} bytes")
        if t.offset != expected:
            raise r.bad(f"tensor {t.name!r} is at data offset {t.offset:,} where {expected:,} was expected")
        expected += _pad(t.n_bytes, alignment)

    return _info(meta, tensors, arch, r, path, version, data_offset)


def _read_tensor_info(r: _Reader, i: int, names: set[str]) -> _Tensor:
    name = r.string(f"tensor {i}'s name")
    if name is None or len(name.encode()) >= _MAX_NAME:
        raise r.bad(f"tensor {i}'s name is longer than llama.cpp allows")
    if name in names:
        raise r.bad(f"tensor {name!r} appears twice")
    names.add(name)
    what = f"tensor {name!r}"
    n_dims = r.unpack(_U32, what)
    if n_dims > _MAX_DIMS:
        raise r.bad(f"{what} has {n_dims:,} dimensions; llama.cpp allows {_MAX_DIMS}")
    dims = [r.unpack(_U64, what) for _ in range(n_dims)]
    if any(d > _INT64_MAX for d in dims):  # stored unsigned, read signed by llama.cpp
        raise r.bad(f"{what} has a negative dimension")
    n_elements = 1
    for d in dims:
        n_elements *= d
    if n_elements > _INT64_MAX:
        raise r.bad(f"{what} has a shape {dims} too large to address")
    raw_type = r.unpack(_U32, what)
    try:
        ggml_type = GGMLQuantizationType(raw_type)
        block, type_size = GGML_QUANT_SIZES[ggml_type]
    except (ValueError, KeyError):
        raise r.bad(f"{what} has an unknown data type ({raw_type})") from None
    if dims and dims[0] % block:
        raise r.bad(f"{what} has rows of {dims[0]:,} values, not a multiple of {ggml_type.name}'s block of {block}")
    offset = r.unpack(_U64, what)
    return _Tensor(name, ggml_type, n_elements, n_elements // block * type_size, offset, tuple(dims))


def _info(meta, tensors, arch, r: _Reader, path, version, data_offset) -> GGUFInfo:
    def count(key: str) -> int | None:
        v = meta.get(key.format(arch=arch))
        if v is None:
            return None
        if isinstance(v, bool) or not isinstance(v, int) or v < 0:
            raise r.bad(f"its {key.format(arch=arch)} entry ({v!r}) is not a count")
        return v

    def per_layer(key: str) -> tuple[int, ...] | None:
        v = meta.get(key.format(arch=arch))
        if isinstance(v, _Array):  # some architectures vary head counts by layer
            if v.values is None or any(isinstance(x, (bool, float)) or x < 0 for x in v.values):
                raise r.bad(f"its {key.format(arch=arch)} entry is not a list of counts")
            return tuple(int(x) for x in v.values)
        c = count(key)
        return None if c is None else (c,)

    n_layers = count(Keys.LLM.BLOCK_COUNT)
    embedding = count(Keys.LLM.EMBEDDING_LENGTH)
    heads = per_layer(Keys.Attention.HEAD_COUNT)
    kv_heads = per_layer(Keys.Attention.HEAD_COUNT_KV) or heads  # llama.cpp's default: no GQA
    n_heads = max(heads) if heads else None
    head_dim = count(Keys.Attention.KEY_LENGTH)
    if head_dim is None and embedding and n_heads:
        head_dim = embedding // n_heads
    head_dim_v = count(Keys.Attention.VALUE_LENGTH)
    if head_dim_v is None:
        head_dim_v = head_dim

    vocab = count(Keys.LLM.VOCAB_SIZE)
    tokens = meta.get(Keys.Tokenizer.LIST)
    if vocab is None and isinstance(tokens, _Array):
        vocab = tokens.length
    _check_plausible(r, meta, tensors, arch, n_layers=n_layers, embedding=embedding, heads=heads,
                     kv_heads_key=meta.get(Keys.Attention.HEAD_COUNT_KV.format(arch=arch)),
                     tokens=tokens if isinstance(tokens, _Array) else None, vocab_key=count(Keys.LLM.VOCAB_SIZE))

    name = meta.get(Keys.General.NAME)
    template = meta.get(Keys.Tokenizer.CHAT_TEMPLATE)
    return GGUFInfo(
        path=path,
        source=r.source,
        size_bytes=r.total,
        version=version,
        architecture=arch,
        name=name if isinstance(name, str) and name else None,
        n_params=sum(t.n_elements for t in tensors),
        quant=_quant_label(meta.get(Keys.General.FILE_TYPE), tensors),
        context_length=count(Keys.LLM.CONTEXT_LENGTH),
        n_layers=n_layers,
        n_heads=n_heads,
        n_kv_heads=max(kv_heads) if kv_heads else None,
        head_dim=head_dim,
        head_dim_v=head_dim_v,
        embedding_length=embedding,
        vocab_size=vocab,
        chat_template=template if isinstance(template, str) and template else None,
        tensor_count=len(tensors),
        tensor_bytes=sum(t.n_bytes for t in tensors),
        data_offset=data_offset,
        # never expanded to n_layers entries: a hostile block count would make that tuple huge
        kv_heads_per_layer=kv_heads if kv_heads and len(kv_heads) > 1 else (),
        clip_meta={k: v for k, v in meta.items() if k.startswith("clip.") and isinstance(v, (bool, int, float, str))}
        if arch == "clip" else {},
        longest_token_bytes=tokens.longest or None if isinstance(tokens, _Array) else None,
        arch_meta=_arch_meta(meta, arch),
        tensors=tuple(TensorEntry(t.name, t.ggml_type.name, t.n_elements, t.n_bytes, t.dims) for t in tensors),
    )


def _arch_meta(meta, arch: str) -> tuple[tuple[str, object], ...]:
    """The "{arch}.*" entries that are numbers or short decoded arrays of numbers, prefix removed."""
    prefix = f"{arch}."
    out = []
    for key, value in meta.items():
        if not key.startswith(prefix):
            continue
        if isinstance(value, _Array):
            if value.values is None:
                continue
            value = tuple(value.values)
        elif not isinstance(value, (int, float)):  # bool is an int
            continue
        out.append((key[len(prefix):], value))
    return tuple(out)


_BLOCK = re.compile(r"^blk\.(\d+)\.")


def _check_plausible(r: _Reader, meta, tensors: list[_Tensor], arch: str, *, n_layers, embedding, heads,
                     kv_heads_key, tokens: _Array | None, vocab_key) -> None:
    """Values that parse but that llama.cpp cannot work with: it would abort the process, crash or hang.

    Each is refused with what is wrong, before llama.cpp sees the file.
    """
    blocks = {int(m.group(1)) for t in tensors if (m := _BLOCK.match(t.name))}
    if n_layers is not None and blocks:
        if n_layers == 0:
            raise r.bad(f"its {arch}.block_count is 0, so the model has no layers")
        if n_layers > max(blocks) + 1:
            raise r.bad(f"its header says it has {n_layers:,} layers but its tensors hold only {max(blocks) + 1}")
    if embedding == 0:
        raise r.bad(f"its {arch}.embedding_length is 0")
    if heads is not None and (len(heads) == 1 and heads[0] == 0 or max(heads, default=0) == 0):
        raise r.bad(f"its {arch}.attention.head_count is 0")
    if isinstance(kv_heads_key, int) and not isinstance(kv_heads_key, bool) and kv_heads_key == 0:
        raise r.bad(f"its {arch}.attention.head_count_kv is 0")
    for key, value in meta.items():
        if key.endswith(("_epsilon", ".norm_eps", "_eps")) and isinstance(value, float):
            if not math.isfinite(value) or value < 0:
                raise r.bad(f"its {key} is {value!r}, not a small positive number")
    embeddings = next((t for t in tensors if t.name == "token_embd.weight"), None)
    if tokens is not None:
        if embeddings is not None and len(embeddings.dims) >= 2 and embeddings.dims[1] != tokens.length:
            raise r.bad(f"its vocabulary lists {tokens.length:,} tokens but its embedding table has "
                        f"{embeddings.dims[1]:,} rows")
        if vocab_key is not None and vocab_key != tokens.length:
            raise r.bad(f"its {arch}.vocab_size says {vocab_key:,} tokens but its vocabulary lists {tokens.length:,}")


def _quant_label(file_type, tensors: list[_Tensor]) -> str:
    """general.file_type's name ("Q4_K_M"); else the type holding most weights ("Q4_K")."""
    if isinstance(file_type, int) and not isinstance(file_type, bool):
        try:
            ft = LlamaFileType(file_type)
        except ValueError:
            ft = None
        if ft is not None and ft != LlamaFileType.GUESSED:
            return ft.name.removeprefix("MOSTLY_").removeprefix("ALL_")
    weights: Counter[GGMLQuantizationType] = Counter()
    for t in tensors:
        weights[t.ggml_type] += t.n_elements
    return weights.most_common(1)[0][0].name
