"""Small random-weight GGUF models that the real llama.cpp loads and generates from.

`write_tiny_llama` writes a `llama`-architecture model of any shape with a
SentencePiece-style vocabulary: `<unk>`, `<s>`, `</s>`, the 256 byte tokens
`<0x00>`..`<0xFF>` and a few hundred English word pieces. Any UTF-8 text
tokenizes (characters outside the vocabulary fall back to byte tokens, so a
multi-byte character can come out split across tokens) and detokenizes back
exactly. The weights are random: the text is garbage, the speed is real.

`write_random_llama` sizes a model to a parameter count for speed-versus-size
benchmarks; `write_corrupt` writes broken and hostile files for the reader's tests.

Quantized weights are random bytes with their f16 scale fields set to small
finite values: no quantizing pass, so a 50 MB file writes in well under a second.
"""

from __future__ import annotations

import math
import struct
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFReader, GGUFValueType, GGUFWriter, LlamaFileType, TokenType
from gguf.gguf_writer import GGUFValue
from gguf.constants import GGML_QUANT_SIZES

__all__ = [
    "CORRUPT_KINDS",
    "QUANTS",
    "build_vocab",
    "plan_random_llama",
    "write_corrupt",
    "write_random_llama",
    "write_tiny_llama",
]

# quant label -> (file type, main tensor type, type for output/attn_v/ffn_down as in llama.cpp's *_M mixes)
QUANTS: dict[str, tuple[LlamaFileType, T, T]] = {
    "F32": (LlamaFileType.ALL_F32, T.F32, T.F32),
    "F16": (LlamaFileType.MOSTLY_F16, T.F16, T.F16),
    "BF16": (LlamaFileType.MOSTLY_BF16, T.BF16, T.BF16),
    "Q8_0": (LlamaFileType.MOSTLY_Q8_0, T.Q8_0, T.Q8_0),
    "Q5_1": (LlamaFileType.MOSTLY_Q5_1, T.Q5_1, T.Q5_1),
    "Q5_0": (LlamaFileType.MOSTLY_Q5_0, T.Q5_0, T.Q5_0),
    "Q4_1": (LlamaFileType.MOSTLY_Q4_1, T.Q4_1, T.Q4_1),
    "Q4_0": (LlamaFileType.MOSTLY_Q4_0, T.Q4_0, T.Q4_0),
    "Q6_K": (LlamaFileType.MOSTLY_Q6_K, T.Q6_K, T.Q6_K),
    "Q5_K_M": (LlamaFileType.MOSTLY_Q5_K_M, T.Q5_K, T.Q6_K),
    "Q4_K_M": (LlamaFileType.MOSTLY_Q4_K_M, T.Q4_K, T.Q6_K),
    "Q4_K_S": (LlamaFileType.MOSTLY_Q4_K_S, T.Q4_K, T.Q4_K),
    "Q3_K_M": (LlamaFileType.MOSTLY_Q3_K_M, T.Q3_K, T.Q4_K),
    "Q2_K": (LlamaFileType.MOSTLY_Q2_K, T.Q2_K, T.Q3_K),
}

# Byte offsets of each block's f16 scale fields, and a value that keeps weights near +-0.02.
_F16_FIELDS: dict[T, tuple[tuple[int, float], ...]] = {
    T.Q4_0: ((0, 0.004),),
    T.Q4_1: ((0, 0.004), (2, -0.03)),
    T.Q5_0: ((0, 0.002),),
    T.Q5_1: ((0, 0.002), (2, -0.03)),
    T.Q8_0: ((0, 0.0003),),
    T.Q2_K: ((80, 0.001), (82, 0.001)),
    T.Q3_K: ((108, 0.0002),),
    T.Q4_K: ((0, 0.00005), (2, 0.00005)),
    T.Q5_K: ((0, 0.00003), (2, 0.00003)),
    T.Q6_K: ((208, 0.00001),),
}

_WORDS = """
the of and to in is it you that he was for on are with as his they be at one have this
from or had by not word but what some we can out other were all there when up use your how
said an each she which do their time if will way about many then them write would like so
these her long make thing see him two has look more day could go come did number sound no
most people my over know water than call first who may down side been now find any new work
part take get place made live where after back little only round man year came show every
good me give our under name very through just form sentence great think say help low line
differ turn cause much mean before move right boy old too same tell does set three want air
well also play small end put home read hand port large spell add even land here must big
high such follow act why ask men change went light kind off need house picture try us again
animal point mother world near build self earth father head stand own page should country
found answer school grow study still learn plant cover food sun four between state keep eye
never last let thought city tree cross farm hard start might story saw far sea draw left late
run while press close night real life few north open seem together next white children begin
got walk example ease paper group always music those both mark often letter until mile river
car feet care second book carry took science eat room friend began idea fish mountain stop
once base hear horse cut sure watch color face wood main enough plain girl usual young ready
above ever red list though feel talk bird soon body dog family direct pose leave song measure
door product black short numeral class wind question happen complete ship area half rock order
fire south problem piece told knew pass since top whole king space heard best hour better true
during hundred five remember step early hold west ground interest reach fast verb sing listen
six table travel less morning ten simple several toward war lay against pattern slow center
love person money serve appear road map rain rule govern pull cold notice voice unit power town
fine certain fly fall lead cry dark machine note wait plan figure star box noun field rest
correct able pound done beauty drive stood contain front teach week final gave green quick
hello thanks please sorry yes model local private assistant chat answer question explain
""".split()
_SPIECE = "\u2581"  # SentencePiece's visible space


def build_vocab(size: int | None = None,
                special: list[tuple[str, TokenType]] | None = None) -> tuple[list[str], list[float], list[int]]:
    """Tokens, scores and types of a SentencePiece-style ("llama") vocabulary.

    Every word piece comes with all its prefixes, so llama.cpp's bigram merging
    can always reach it; longer pieces score higher. `size` pads the vocabulary
    with two- and three-letter pieces, then unused tokens. `special`: extra whole
    tokens (a chat format's markers), each with its type as the real models mark it
    (CONTROL: rendered as nothing by plain detokenizing; USER_DEFINED: as its text).
    """
    tokens = ["<unk>", "<s>", "</s>"] + [f"<0x{b:02X}>" for b in range(256)]
    types = [TokenType.UNKNOWN, TokenType.CONTROL, TokenType.CONTROL] + [TokenType.BYTE] * 256
    for text, kind in special or ():
        tokens.append(text)
        types.append(kind)
    n_fixed = len(tokens)
    pieces: dict[str, None] = dict.fromkeys([_SPIECE] + [chr(c) for c in range(0x21, 0x7F)])
    for word in _WORDS:
        for w in (_SPIECE + word, word):
            for end in range(2, len(w) + 1):
                pieces.setdefault(w[:end])
    if size is not None:
        letters = "etaoinshrdlcumwfgypbvkjxqz"
        fill = [a + b for a in letters for b in letters]
        fill += [a + b + c for a in letters for b in letters for c in letters]
        fill = fill + [_SPIECE + f for f in fill]
        for f in fill:
            if len(tokens) + len(pieces) >= size:
                break
            pieces.setdefault(f)
    tokens += list(pieces)
    types += [TokenType.NORMAL] * len(pieces)
    scores = [0.0] * n_fixed + [float(len(p)) - i * 1e-6 for i, p in enumerate(pieces)]
    if size is not None:
        if size < n_fixed + 96:
            raise ValueError(f"a vocabulary needs at least {259 + 96} tokens: specials, bytes, ASCII")
        del tokens[size:], types[size:], scores[size:]
        while len(tokens) < size:
            tokens.append(f"<unused{len(tokens)}>")
            types.append(TokenType.UNUSED)
            scores.append(-1e9)
    return tokens, scores, [int(t) for t in types]


def _tensor_plan(n_layers, n_embd, n_heads, n_kv_heads, n_ff, vocab, quant):
    """(name, numpy shape, ggml type) for each tensor of a llama model, in file order."""
    _, main, high = QUANTS[quant]
    kv_dim = n_embd // n_heads * n_kv_heads

    def pick(qtype, cols):
        # llama.cpp's quantizer also falls back when a row does not split into blocks.
        if cols % GGML_QUANT_SIZES[qtype][0] == 0:
            return qtype
        return T.Q8_0 if qtype not in (T.F32, T.F16, T.BF16) and cols % 32 == 0 else T.F16

    plan = [("token_embd.weight", (vocab, n_embd), pick(main, n_embd))]
    for i in range(n_layers):
        b = f"blk.{i}."
        plan += [
            (b + "attn_norm.weight", (n_embd,), T.F32),
            (b + "attn_q.weight", (n_embd, n_embd), pick(main, n_embd)),
            (b + "attn_k.weight", (kv_dim, n_embd), pick(main, n_embd)),
            (b + "attn_v.weight", (kv_dim, n_embd), pick(high, n_embd)),
            (b + "attn_output.weight", (n_embd, n_embd), pick(main, n_embd)),
            (b + "ffn_norm.weight", (n_embd,), T.F32),
            (b + "ffn_gate.weight", (n_ff, n_embd), pick(main, n_embd)),
            (b + "ffn_up.weight", (n_ff, n_embd), pick(main, n_embd)),
            (b + "ffn_down.weight", (n_embd, n_ff), pick(high, n_ff)),
        ]
    plan += [("output_norm.weight", (n_embd,), T.F32), ("output.weight", (vocab, n_embd), pick(high, n_embd))]
    return plan


def _random_tensor(rng: np.random.Generator, shape, qtype: T) -> np.ndarray:
    if len(shape) == 1:  # norm weights: ones keep activations sane
        return np.ones(shape, dtype=np.float32)
    if qtype in (T.F32, T.F16, T.BF16):
        w = rng.standard_normal(shape, dtype=np.float32)
        w *= 0.02
        if qtype == T.F16:
            return w.astype(np.float16)
        if qtype == T.BF16:
            return (w.view(np.uint32) >> 16).astype(np.uint16).view(np.uint8)
        return w
    block, type_size = GGML_QUANT_SIZES[qtype]
    rows, cols = shape
    n_blocks = rows * cols // block
    raw = np.frombuffer(rng.bytes(n_blocks * type_size), dtype=np.uint8).reshape(n_blocks, type_size).copy()
    for offset, value in _F16_FIELDS[qtype]:
        raw[:, offset:offset + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
    return raw.reshape(rows, cols // block * type_size)


def write_tiny_llama(
    path,
    *,
    n_layers: int = 2,
    n_embd: int = 64,
    n_heads: int = 4,
    n_kv_heads: int = 2,
    n_ff: int = 128,
    n_ctx: int = 512,
    vocab: int | None = None,
    chat_template: str | None = None,
    quant: str = "F32",
    seed: int = 0,
    name: str | None = "tiny",
    architecture: str | None = "llama",
    metadata: dict | None = None,
    duplicate_token: bool = False,
    special_tokens: list[tuple[str, TokenType]] | None = None,
    eos_token: str | None = None,
    transform=None,
) -> Path:
    """Write a random-weight llama model that llama.cpp loads; return its path.

    `vocab` None gives the natural vocabulary (about 2,500 tokens); a number pads
    or cuts it to that size. `quant` is a key of QUANTS; tensors whose rows do not
    split into the type's blocks fall back to Q8_0 or F16, as llama.cpp's quantizer does.
    `architecture` None drops general.architecture (a corrupt file for tests).
    `metadata` sets or replaces keys after the usual ones: {key: (value, GGUFValueType)}, "{arch}" in a
    key stands for the architecture. `duplicate_token` makes two vocabulary entries the same string.
    `special_tokens` adds whole tokens (see build_vocab); `eos_token` names one of them as the end of
    sequence (default `</s>`).
    `transform(name, data) -> data` may replace a tensor's data (same shape and dtype) as it is written:
    related models for speculative decoding (tests/support/draft_pairs.py).
    """
    if quant not in QUANTS:
        raise ValueError(f"quant must be one of {', '.join(QUANTS)}")
    if n_embd % n_heads or n_heads % n_kv_heads:
        raise ValueError("n_embd must split into n_heads, and n_heads into n_kv_heads")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = build_vocab(vocab, special_tokens)
    if duplicate_token:
        tokens[-1] = tokens[-2]
    file_type = QUANTS[quant][0]

    w = GGUFWriter(path, architecture or "llama")
    if architecture is None:
        del w.kv_data[0]["general.architecture"]
    if name:
        w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    w.add_rope_dimension_count(n_embd // n_heads)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-5)
    w.add_vocab_size(len(tokens))
    w.add_file_type(int(file_type))
    w.add_quantization_version(2)
    # What llama.cpp's SPM ("llama") tokenizer reads; the rest default.
    w.add_tokenizer_model("llama")
    w.add_tokenizer_pre("default")
    w.add_token_list(tokens)
    w.add_token_scores(scores)
    w.add_token_types(types)
    w.add_unk_token_id(0)
    w.add_bos_token_id(1)
    w.add_eos_token_id(tokens.index(eos_token) if eos_token else 2)
    w.add_add_bos_token(True)
    w.add_add_eos_token(False)
    # No space prefix (as Gemma): decoded pieces then concatenate to exactly the text.
    w.add_add_space_prefix(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)
    for key, (value, vtype) in (metadata or {}).items():
        w.kv_data[0][key.format(arch=architecture or "llama")] = GGUFValue(value, vtype)

    # Declare every tensor first, then stream the data: memory stays at one tensor.
    plan = _tensor_plan(n_layers, n_embd, n_heads, n_kv_heads, n_ff, len(tokens), quant)
    for tname, shape, qtype in plan:
        if qtype == T.F32 or len(shape) == 1:
            w.add_tensor_info(tname, shape, np.dtype(np.float32), 4 * math.prod(shape))
        elif qtype == T.F16:
            w.add_tensor_info(tname, shape, np.dtype(np.float16), 2 * math.prod(shape))
        else:
            block, type_size = GGML_QUANT_SIZES[qtype]
            byte_shape = (*shape[:-1], shape[-1] // block * type_size)
            w.add_tensor_info(tname, byte_shape, np.dtype(np.uint8), math.prod(byte_shape), raw_dtype=qtype)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    rng = np.random.default_rng(seed)
    for tname, shape, qtype in plan:
        data = _random_tensor(rng, shape, qtype)
        if transform is not None:
            data = transform(tname, data)
        w.write_tensor_data(data)
    w.close()
    return path


def _llama_params(n_embd, n_layers, n_heads, n_kv_heads, n_ff, vocab) -> int:
    kv_dim = n_embd // n_heads * n_kv_heads
    per_layer = 2 * n_embd + 2 * n_embd * n_embd + 2 * n_embd * kv_dim + 3 * n_embd * n_ff
    return 2 * vocab * n_embd + n_embd + n_layers * per_layer


def plan_random_llama(target_params: int, vocab: int = 32000) -> dict:
    """A llama shape near `target_params`, with real models' proportions (about 128 width per layer)."""
    best = None
    for n_embd in (256, 384, 512, 768, 1024, 1536, 2048, 2560, 3072, 4096, 5120, 6144, 8192):
        head_dim = 64 if n_embd < 2048 else 128
        n_heads = n_embd // head_dim
        n_kv_heads = max(1, n_heads // 4)
        n_ff = (n_embd * 8 // 3 + 255) // 256 * 256
        per_layer = _llama_params(n_embd, 1, n_heads, n_kv_heads, n_ff, vocab) - _llama_params(
            n_embd, 0, n_heads, n_kv_heads, n_ff, vocab
        )
        n_layers = round((target_params - _llama_params(n_embd, 0, n_heads, n_kv_heads, n_ff, vocab)) / per_layer)
        if n_layers < 1:
            continue
        shape = dict(n_embd=n_embd, n_layers=n_layers, n_heads=n_heads, n_kv_heads=n_kv_heads, n_ff=n_ff, vocab=vocab)
        miss = abs(math.log(n_layers / (n_embd / 128)))
        if best is None or miss < best[0]:
            best = (miss, shape)
    if best is None:
        raise ValueError(f"{target_params:,} parameters is too few for a {vocab:,}-token vocabulary")
    return best[1]


def write_random_llama(path, target_params: int, *, quant: str = "Q4_0", vocab: int = 32000, **kwargs) -> Path:
    """Write a random llama of about `target_params` parameters (e.g. 100e6 at Q4_0: about 60 MB)."""
    shape = plan_random_llama(int(target_params), vocab)
    shape.update(kwargs)
    return write_tiny_llama(path, quant=quant, **shape)


# --- broken and hostile files ------------------------------------------------------------

CORRUPT_KINDS = (
    "empty",
    "not_gguf",
    "lfs_pointer",
    "bad_magic",
    "bad_version",
    "big_endian",
    "truncated",
    "truncated_header",
    "tensor_out_of_bounds",
    "huge_kv_count",
    "huge_tensor_count",
    "huge_array",
    "no_tensors",
    "negative_dim",
    "unknown_tensor_type",
    "no_architecture",
    "unknown_architecture",
)


def _layout(path: Path) -> dict[str, int]:
    """Byte positions of a few header fields of a good file, found with ggml-org's own reader."""
    r = GGUFReader(path)
    t0 = r.tensors[0]
    name = t0.field.parts[1].nbytes
    tensor_at = t0.field.offset + 8 + name  # -> n_dims
    scores = r.fields["tokenizer.ggml.scores"]
    pos = {
        "n_dims": tensor_at,
        "dim0": tensor_at + 4,
        "type": tensor_at + 4 + 8 * len(t0.shape),
        "offset": tensor_at + 4 + 8 * len(t0.shape) + 4,
        "scores_count": scores.offset + 8 + len("tokenizer.ggml.scores") + 4 + 4,
        "data_offset": r.data_offset,
    }
    del r
    return pos


def _patch(path: Path, at: int, fmt: str, value) -> None:
    with open(path, "r+b") as f:
        f.seek(at)
        f.write(struct.pack(fmt, value))


def write_corrupt(path, kind: str, *, seed: int = 0) -> Path:
    """Write a broken GGUF file of the given kind (see CORRUPT_KINDS); return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    if kind == "empty":
        path.write_bytes(b"")
    elif kind == "not_gguf":
        path.write_bytes(np.random.default_rng(seed).bytes(4096))
    elif kind == "lfs_pointer":
        path.write_text(
            "version https://git-lfs.github.com/spec/v1\n"
            "oid sha256:a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818\nsize 253113024\n"
        )
    elif kind == "no_architecture":
        write_tiny_llama(path, seed=seed, architecture=None)
    elif kind == "unknown_architecture":
        write_tiny_llama(path, seed=seed, architecture="notarealarch")
    elif kind in CORRUPT_KINDS:
        write_tiny_llama(path, seed=seed)
        pos = _layout(path)
        if kind == "bad_magic":
            _patch(path, 0, "4s", b"GGUX")
        elif kind == "bad_version":
            _patch(path, 4, "<I", 99)
        elif kind == "big_endian":
            _patch(path, 4, ">I", 3)
        elif kind == "truncated":  # a whole header, half the weights
            size = path.stat().st_size
            with open(path, "r+b") as f:
                f.truncate(pos["data_offset"] + (size - pos["data_offset"]) // 2)
        elif kind == "truncated_header":
            with open(path, "r+b") as f:
                f.truncate(pos["data_offset"] // 2)
        elif kind == "tensor_out_of_bounds":
            _patch(path, pos["offset"], "<Q", 1 << 40)
        elif kind == "huge_kv_count":
            _patch(path, 16, "<Q", 1 << 40)
        elif kind == "huge_tensor_count":
            _patch(path, 8, "<Q", 1 << 40)
        elif kind == "huge_array":  # the token scores claim 2**40 entries
            _patch(path, pos["scores_count"], "<Q", 1 << 40)
        elif kind == "no_tensors":
            _patch(path, 8, "<Q", 0)
        elif kind == "negative_dim":
            _patch(path, pos["dim0"], "<q", -64)
        elif kind == "unknown_tensor_type":
            _patch(path, pos["type"], "<I", 9999)
    else:
        raise ValueError(f"unknown kind {kind!r}; one of {', '.join(CORRUPT_KINDS)}")
    return path



# Model files that pass a plain GGUF parse but make llama.cpp abort, hang or exhaust memory
# (issue 8), written with the gguf package. Each kind is a class of attack, not one byte pattern.
HOSTILE_TEMPLATES = {
    # Unsafe attribute access that the Jinja sandbox renders as nothing: an empty prompt.
    "template_lipsum_globals": "{{ lipsum.__globals__ }}",
    "template_self_context": "{{ self._TemplateReference__context }}",
    "template_attr_class": "{{ messages|attr('__class__') }}",
    "template_format_class": "{{ '{0.__class__}'.format(messages) }}",
    "template_renders_nothing": "{% if false %}never{% endif %}",
    "template_whitespace": "{% for m in messages %}   {% endfor %}",
    # Work without end: minutes of loops, gigabytes of text.
    "template_nested_loop": "{% for i in range(100000) %}{% for j in range(100000) %}{% endfor %}{% endfor %}x",
    "template_huge_string": "{{ 'x' * 1000000000 }}",
    "template_huge_at_render": "{% set n = messages|length * 1000000000 %}{{ 'x' * n }}",
    "template_recursive_macro": "{% macro f(n) %}{{ f(n + 1) }}{% endmacro %}{{ f(0) }}",
}
HOSTILE_HEADERS = {
    "block_count_zero": {"{arch}.block_count": (0, GGUFValueType.UINT32)},
    "block_count_huge": {"{arch}.block_count": (1_000_000_000, GGUFValueType.UINT32)},
    "block_count_beyond_tensors": {"{arch}.block_count": (7, GGUFValueType.UINT32)},
    "nan_norm_eps": {"{arch}.attention.layer_norm_rms_epsilon": (float("nan"), GGUFValueType.FLOAT32)},
    "inf_norm_eps": {"{arch}.attention.layer_norm_rms_epsilon": (float("inf"), GGUFValueType.FLOAT32)},
    "zero_heads": {"{arch}.attention.head_count": (0, GGUFValueType.UINT32)},
    "zero_embedding": {"{arch}.embedding_length": (0, GGUFValueType.UINT32)},
    "vocab_size_mismatch": {"{arch}.vocab_size": (50_000, GGUFValueType.UINT32)},
}
HOSTILE_KINDS = (*HOSTILE_TEMPLATES, *HOSTILE_HEADERS, "duplicate_vocab")


def write_hostile(path, kind: str, *, seed: int = 0) -> Path:
    """Write a model file of one hostile kind (see HOSTILE_KINDS); return its path."""
    if kind in HOSTILE_TEMPLATES:
        return write_tiny_llama(path, seed=seed, chat_template=HOSTILE_TEMPLATES[kind])
    if kind in HOSTILE_HEADERS:
        return write_tiny_llama(path, seed=seed, metadata=HOSTILE_HEADERS[kind])
    if kind == "duplicate_vocab":
        return write_tiny_llama(path, seed=seed, duplicate_token=True)
    raise ValueError(f"unknown kind {kind!r}; one of {', '.join(HOSTILE_KINDS)}")
