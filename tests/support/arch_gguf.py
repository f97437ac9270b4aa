"""Random-weight GGUF models of the 2025-26 architecture classes, written with the `gguf` package.

One writer per class that the memory and speed estimates treat differently, each
loadable by the pinned llama.cpp (the keys and tensors follow its loaders in
`src/models/*.cpp`):

    write_dense_llama   a dense llama (tiny_gguf's tensor plan)
    write_gemma3        sliding-window attention (5 of every 6 layers attend over a window)
    write_gpt_oss       a mixture of experts, MXFP4 experts, alternating window and full layers,
                        attention sinks
    write_qwen35        a hybrid: gated delta-net (recurrent) layers and every 4th layer attention
    write_gemma4        per-layer embedding tables (the E2B/E4B design), sliding windows with a
                        different head size, layers that share another layer's KV cache

The caller picks layers, widths, vocabulary, extra special tokens (control tokens at the
vocabulary's end; `eos_token` makes one of them the end of turn) and a chat template; the defaults
are a few MB and write in well under a second, with real models' proportions
where the estimates care (head sizes, KV heads, experts used of experts,
per-layer table width). The weights are random: the text is garbage, the memory
and speed are real. Other tests (thinking, images, drafting) reuse these writers.

Tensor shapes are given in llama.cpp's order ({ne0, ne1, ...}: the row length
first), as `src/models/*.cpp` states them, and reversed for numpy.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from gguf import GGMLQuantizationType as T
from gguf import GGUFValueType, GGUFWriter, LlamaFileType, TokenType
from gguf.constants import GGML_QUANT_SIZES

from tests.support.tiny_gguf import _F16_FIELDS, build_vocab

__all__ = [
    "ArchModel",
    "write_dense_llama",
    "write_gemma3",
    "write_gemma4",
    "write_gpt_oss",
    "write_model",
    "write_qwen35",
]

# quant label -> (file type, main type, type of the tensors llama.cpp's *_M mixes keep higher)
MIXES: dict[str, tuple[LlamaFileType, T, T]] = {
    "F32": (LlamaFileType.ALL_F32, T.F32, T.F32),
    "F16": (LlamaFileType.MOSTLY_F16, T.F16, T.F16),
    "Q8_0": (LlamaFileType.MOSTLY_Q8_0, T.Q8_0, T.Q8_0),
    "Q4_0": (LlamaFileType.MOSTLY_Q4_0, T.Q4_0, T.Q4_0),
    "Q4_K_M": (LlamaFileType.MOSTLY_Q4_K_M, T.Q4_K, T.Q6_K),
    "MXFP4_MOE": (LlamaFileType.MOSTLY_MXFP4_MOE, T.Q8_0, T.Q8_0),  # experts MXFP4, the rest Q8_0 (gpt-oss)
}

# MXFP4 blocks: one E8M0 exponent byte, then 16 bytes of 4-bit E2M1 values. 2^(119-127)
# keeps the weights near +-0.02, as the f16 scales of the other types do.
_MXFP4_EXPONENT = 119


@dataclass
class Tensor:
    name: str
    ne: tuple[int, ...]  # llama.cpp's order: row length first
    qtype: T
    fill: str = "random"  # "random", "ones" (norms), "zeros", "small" (biases, sinks)


@dataclass
class ArchModel:
    """What a writer wrote, for tests that compare estimates with llama.cpp."""

    path: Path
    architecture: str
    n_layers: int
    n_vocab: int
    params: dict = field(default_factory=dict)


def _pick(qtype: T, ne0: int) -> T:
    """The type a row of `ne0` values can take: llama.cpp's quantizer falls back the same way."""
    if qtype in (T.F32, T.F16, T.BF16) or ne0 % GGML_QUANT_SIZES[qtype][0] == 0:
        return qtype
    return T.Q8_0 if ne0 % 32 == 0 else T.F16


def _data(rng: np.random.Generator, t: Tensor) -> np.ndarray:
    shape = tuple(reversed(t.ne))  # numpy order
    n = math.prod(shape)
    if t.fill == "ones":
        return np.ones(shape, dtype=np.float32)
    if t.fill == "zeros":
        return np.zeros(shape, dtype=np.float32)
    if t.qtype in (T.F32, T.F16) or t.fill == "small":
        w = rng.standard_normal(shape, dtype=np.float32) * 0.02
        return w.astype(np.float16) if t.qtype == T.F16 else w
    block, type_size = GGML_QUANT_SIZES[t.qtype]
    n_blocks = n // block
    raw = np.frombuffer(rng.bytes(n_blocks * type_size), dtype=np.uint8).reshape(n_blocks, type_size).copy()
    if t.qtype == T.MXFP4:
        raw[:, 0] = _MXFP4_EXPONENT
    else:
        for offset, value in _F16_FIELDS[t.qtype]:
            raw[:, offset:offset + 2] = np.frombuffer(np.float16(value).tobytes(), dtype=np.uint8)
    return raw.reshape(*shape[:-1], shape[-1] // block * type_size)


def _vocab(size: int, extra_tokens: tuple[str, ...]) -> tuple[list[str], list[float], list[int]]:
    """tiny_gguf's SentencePiece-style vocabulary of `size` tokens, the extra special tokens at its end."""
    tokens, scores, types = build_vocab(size - len(extra_tokens))
    for tok in extra_tokens:
        tokens.append(tok)
        scores.append(0.0)
        types.append(int(TokenType.CONTROL))
    return tokens, scores, types


def write_model(
    path,
    architecture: str,
    metadata: dict,
    tensors: list[Tensor],
    *,
    vocab: int,
    file_type: LlamaFileType,
    n_ctx: int,
    extra_tokens: tuple[str, ...] = (),
    chat_template: str | None = None,
    eos_token: str | None = None,
    name: str = "tiny",
    seed: int = 0,
    header_only: bool = False,
) -> Path:
    """Write any architecture: `metadata` is {key: value} ("{arch}" in a key stands for the architecture;
    int -> uint32, float -> float32, bool, str, list of int -> int32 array, list of bool -> bool array).

    `header_only` writes the header of a model of any size and leaves the weights a hole in a sparse
    file of the full size: what a remote header read of a published file sees, written in a moment."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tokens, scores, types = _vocab(vocab, extra_tokens)
    w = GGUFWriter(path, architecture)
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_vocab_size(len(tokens))
    w.add_file_type(int(file_type))
    w.add_quantization_version(2)
    for key, value in metadata.items():
        key = key.format(arch=architecture)
        if isinstance(value, bool):
            w.add_bool(key, value)
        elif isinstance(value, int):
            w.add_uint32(key, value)
        elif isinstance(value, float):
            w.add_float32(key, value)
        elif isinstance(value, str):
            w.add_string(key, value)
        elif isinstance(value, (list, tuple)) and value and all(isinstance(v, bool) for v in value):
            w.add_array(key, [bool(v) for v in value])
        elif isinstance(value, (list, tuple)):
            w.add_key_value(key, [int(v) for v in value], GGUFValueType.ARRAY, sub_type=GGUFValueType.INT32)
        else:
            raise TypeError(f"no GGUF type for {key}={value!r}")
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
    w.add_add_space_prefix(False)
    if chat_template is not None:
        w.add_chat_template(chat_template)

    for t in tensors:
        shape = tuple(reversed(t.ne))
        if t.qtype == T.F32 or len(t.ne) == 1:
            w.add_tensor_info(t.name, shape, np.dtype(np.float32), 4 * math.prod(shape))
        elif t.qtype == T.F16:
            w.add_tensor_info(t.name, shape, np.dtype(np.float16), 2 * math.prod(shape))
        else:
            block, type_size = GGML_QUANT_SIZES[t.qtype]
            byte_shape = (*shape[:-1], shape[-1] // block * type_size)
            w.add_tensor_info(t.name, byte_shape, np.dtype(np.uint8), math.prod(byte_shape), raw_dtype=t.qtype)
    w.write_header_to_file(path)
    w.write_kv_data_to_file()
    w.write_ti_data_to_file()
    if header_only:
        w.fout[0].flush()
        header_end = w.fout[0].tell()
        w.close()
        align = 32  # GGUF_DEFAULT_ALIGNMENT
        pad = lambda n: (n + align - 1) // align * align  # noqa: E731
        total = pad(header_end) + sum(pad(_nbytes(t)) for t in tensors)
        with open(path, "r+b") as f:
            f.truncate(total)
        return path
    rng = np.random.default_rng(seed)
    for t in tensors:
        if len(t.ne) == 1:
            t = Tensor(t.name, t.ne, T.F32, t.fill)
        w.write_tensor_data(_data(rng, t))
    w.close()
    return path


def _nbytes(t: Tensor) -> int:
    n = math.prod(t.ne)
    if len(t.ne) == 1 or t.qtype == T.F32:
        return 4 * n
    block, type_size = GGML_QUANT_SIZES[t.qtype]
    return n // block * type_size


def _norm(name: str, n: int) -> Tensor:
    return Tensor(name, (n,), T.F32, "ones")


def _mix(quant: str) -> tuple[LlamaFileType, T, T]:
    if quant not in MIXES:
        raise ValueError(f"quant must be one of {', '.join(MIXES)}")
    return MIXES[quant]


# --- dense llama --------------------------------------------------------------------------------


def write_dense_llama(path, *, n_layers: int = 4, n_embd: int = 256, n_heads: int = 4, n_kv_heads: int = 2,
                      n_ff: int = 768, vocab: int = 32000, n_ctx: int = 32768, quant: str = "Q4_K_M",
                      extra_tokens: tuple[str, ...] = (), chat_template: str | None = None,
                      eos_token: str | None = None, seed: int = 0, header_only: bool = False) -> ArchModel:
    """A dense llama with tiny_gguf's tensor plan (its quant mixes: F32 ... Q4_K_M)."""
    from tests.support.tiny_gguf import QUANTS, _tensor_plan

    plan = _tensor_plan(n_layers, n_embd, n_heads, n_kv_heads, n_ff, vocab, quant)
    tensors = [Tensor(name, tuple(reversed(shape)), qtype, "ones" if len(shape) == 1 else "random")
               for name, shape, qtype in plan]
    meta = {
        "{arch}.embedding_length": n_embd, "{arch}.block_count": n_layers, "{arch}.feed_forward_length": n_ff,
        "{arch}.attention.head_count": n_heads, "{arch}.attention.head_count_kv": n_kv_heads,
        "{arch}.rope.dimension_count": n_embd // n_heads, "{arch}.rope.freq_base": 10000.0,
        "{arch}.attention.layer_norm_rms_epsilon": 1e-5,
    }
    p = write_model(path, "llama", meta, tensors, vocab=vocab, file_type=QUANTS[quant][0], n_ctx=n_ctx,
                    extra_tokens=extra_tokens, chat_template=chat_template, eos_token=eos_token, seed=seed,
                    header_only=header_only)
    return ArchModel(p, "llama", n_layers, vocab, dict(n_embd=n_embd, n_heads=n_heads, n_kv_heads=n_kv_heads))


# --- gemma3: sliding-window attention -------------------------------------------------------------


def write_gemma3(path, *, n_layers: int = 7, n_embd: int = 256, n_heads: int = 4, n_kv_heads: int = 1,
                 head_dim: int = 256, n_ff: int = 1024, vocab: int = 32000, n_ctx: int = 32768,
                 window: int = 512, pattern: int = 6, quant: str = "Q4_K_M", extra_tokens: tuple[str, ...] = (),
                 chat_template: str | None = None, eos_token: str | None = None, seed: int = 0,
                 header_only: bool = False) -> ArchModel:
    """Gemma 3: of every `pattern` layers the last attends to the whole context, the others over `window`
    tokens (Gemma 3 270M: 18 layers, 640 wide, 4 heads of 256, 1 KV head, window 512)."""
    file_type, main, high = _mix(quant)
    q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
    tensors = [Tensor("token_embd.weight", (n_embd, vocab), _pick(high, n_embd))]
    for i in range(n_layers):
        b = f"blk.{i}."
        tensors += [
            _norm(b + "attn_norm.weight", n_embd),
            Tensor(b + "attn_q.weight", (n_embd, q_dim), _pick(main, n_embd)),
            Tensor(b + "attn_k.weight", (n_embd, kv_dim), _pick(main, n_embd)),
            Tensor(b + "attn_v.weight", (n_embd, kv_dim), _pick(high, n_embd)),
            Tensor(b + "attn_output.weight", (q_dim, n_embd), _pick(main, q_dim)),
            _norm(b + "post_attention_norm.weight", n_embd),
            _norm(b + "attn_k_norm.weight", head_dim),
            _norm(b + "attn_q_norm.weight", head_dim),
            _norm(b + "ffn_norm.weight", n_embd),
            Tensor(b + "ffn_gate.weight", (n_embd, n_ff), _pick(main, n_embd)),
            Tensor(b + "ffn_up.weight", (n_embd, n_ff), _pick(main, n_embd)),
            Tensor(b + "ffn_down.weight", (n_ff, n_embd), _pick(high, n_ff)),
            _norm(b + "post_ffw_norm.weight", n_embd),
        ]
    tensors.append(_norm("output_norm.weight", n_embd))
    meta = {
        "{arch}.embedding_length": n_embd, "{arch}.block_count": n_layers, "{arch}.feed_forward_length": n_ff,
        "{arch}.attention.head_count": n_heads, "{arch}.attention.head_count_kv": n_kv_heads,
        "{arch}.attention.key_length": head_dim, "{arch}.attention.value_length": head_dim,
        "{arch}.attention.layer_norm_rms_epsilon": 1e-6, "{arch}.attention.sliding_window": window,
        "{arch}.attention.sliding_window_pattern": pattern,
        "{arch}.rope.freq_base": 1000000.0, "{arch}.rope.freq_base_swa": 10000.0,
    }
    p = write_model(path, "gemma3", meta, tensors, vocab=vocab, file_type=file_type, n_ctx=n_ctx,
                    extra_tokens=extra_tokens, chat_template=chat_template, eos_token=eos_token, seed=seed,
                    header_only=header_only)
    return ArchModel(p, "gemma3", n_layers, vocab, dict(window=window, pattern=pattern, head_dim=head_dim,
                                                        n_kv_heads=n_kv_heads))


# --- gpt-oss: a mixture of experts in MXFP4 ------------------------------------------------------------


def write_gpt_oss(path, *, n_layers: int = 4, n_embd: int = 256, n_heads: int = 8, n_kv_heads: int = 2,
                  head_dim: int = 64, n_expert: int = 32, n_expert_used: int = 4, n_ff_exp: int = 256,
                  vocab: int = 32000, n_ctx: int = 32768, window: int = 128, quant: str = "MXFP4_MOE",
                  extra_tokens: tuple[str, ...] = (), chat_template: str | None = None,
                  eos_token: str | None = None, seed: int = 0, header_only: bool = False) -> ArchModel:
    """gpt-oss: every layer a router over `n_expert` experts of which `n_expert_used` run per token, the
    experts in MXFP4; even layers attend over a `window` (gpt-oss-20b: 24 layers, 2880 wide, 64 heads
    of 64, 8 KV heads, 32 experts, 4 used, window 128)."""
    file_type, main, high = _mix(quant)
    expert_type = T.MXFP4 if quant == "MXFP4_MOE" else main
    q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
    tensors = [Tensor("token_embd.weight", (n_embd, vocab), _pick(main, n_embd))]
    for i in range(n_layers):
        b = f"blk.{i}."
        tensors += [
            _norm(b + "attn_norm.weight", n_embd),
            _norm(b + "post_attention_norm.weight", n_embd),
            Tensor(b + "attn_q.weight", (n_embd, q_dim), _pick(main, n_embd)),
            Tensor(b + "attn_k.weight", (n_embd, kv_dim), _pick(main, n_embd)),
            Tensor(b + "attn_v.weight", (n_embd, kv_dim), _pick(high, n_embd)),
            Tensor(b + "attn_q.bias", (q_dim,), T.F32, "small"),
            Tensor(b + "attn_k.bias", (kv_dim,), T.F32, "small"),
            Tensor(b + "attn_v.bias", (kv_dim,), T.F32, "small"),
            Tensor(b + "attn_output.weight", (q_dim, n_embd), _pick(main, q_dim)),
            Tensor(b + "attn_output.bias", (n_embd,), T.F32, "small"),
            Tensor(b + "attn_sinks.weight", (n_heads,), T.F32, "small"),
            Tensor(b + "ffn_gate_inp.weight", (n_embd, n_expert), T.F32),
            Tensor(b + "ffn_gate_inp.bias", (n_expert,), T.F32, "small"),
            Tensor(b + "ffn_gate_exps.weight", (n_embd, n_ff_exp, n_expert), _pick(expert_type, n_embd)),
            Tensor(b + "ffn_up_exps.weight", (n_embd, n_ff_exp, n_expert), _pick(expert_type, n_embd)),
            Tensor(b + "ffn_down_exps.weight", (n_ff_exp, n_embd, n_expert), _pick(expert_type, n_ff_exp)),
            Tensor(b + "ffn_gate_exps.bias", (n_ff_exp, n_expert), T.F32, "small"),
            Tensor(b + "ffn_up_exps.bias", (n_ff_exp, n_expert), T.F32, "small"),
            Tensor(b + "ffn_down_exps.bias", (n_embd, n_expert), T.F32, "small"),
        ]
    tensors += [_norm("output_norm.weight", n_embd), Tensor("output.weight", (n_embd, vocab), _pick(main, n_embd))]
    meta = {
        "{arch}.embedding_length": n_embd, "{arch}.block_count": n_layers, "{arch}.feed_forward_length": n_ff_exp,
        "{arch}.expert_feed_forward_length": n_ff_exp, "{arch}.expert_count": n_expert,
        "{arch}.expert_used_count": n_expert_used,
        "{arch}.attention.head_count": n_heads, "{arch}.attention.head_count_kv": n_kv_heads,
        "{arch}.attention.key_length": head_dim, "{arch}.attention.value_length": head_dim,
        "{arch}.rope.dimension_count": head_dim,
        "{arch}.attention.layer_norm_rms_epsilon": 1e-5, "{arch}.attention.sliding_window": window,
        "{arch}.rope.freq_base": 150000.0,
    }
    p = write_model(path, "gpt-oss", meta, tensors, vocab=vocab, file_type=file_type, n_ctx=n_ctx,
                    extra_tokens=extra_tokens, chat_template=chat_template, eos_token=eos_token, seed=seed,
                    header_only=header_only)
    return ArchModel(p, "gpt-oss", n_layers, vocab, dict(n_expert=n_expert, n_expert_used=n_expert_used,
                                                         window=window))


# --- qwen35: a hybrid of recurrent (gated delta-net) and attention layers ----------------------------


def write_qwen35(path, *, n_layers: int = 8, n_embd: int = 256, n_heads: int = 4, n_kv_heads: int = 1,
                 head_dim: int = 128, n_ff: int = 768, vocab: int = 32000, n_ctx: int = 32768,
                 full_attention_interval: int = 4, ssm_conv_kernel: int = 4, ssm_state_size: int = 64,
                 ssm_group_count: int = 4, ssm_time_step_rank: int = 8, quant: str = "Q4_K_M",
                 tied_embeddings: bool = False, extra_tokens: tuple[str, ...] = (),
                 chat_template: str | None = None, eos_token: str | None = None, seed: int = 0,
                 header_only: bool = False) -> ArchModel:
    """Qwen3.5: every `full_attention_interval`-th layer attends (a gated query: Q is twice as wide), the
    others are gated delta-net layers with a fixed state (Qwen3.5 0.8B: 24 layers, 1024 wide, 8 heads of
    256, 2 KV heads; delta-net 16 key heads and 16 value heads of 128, conv kernel 4)."""
    file_type, main, high = _mix(quant)
    head_k = head_v = ssm_state_size
    key_dim, value_dim = head_k * ssm_group_count, head_v * ssm_time_step_rank
    conv_dim = 2 * key_dim + value_dim
    q_dim, kv_dim = n_heads * head_dim, n_kv_heads * head_dim
    tensors = [Tensor("token_embd.weight", (n_embd, vocab), _pick(main, n_embd))]
    for i in range(n_layers):
        b = f"blk.{i}."
        tensors += [_norm(b + "attn_norm.weight", n_embd), _norm(b + "post_attention_norm.weight", n_embd)]
        if (i + 1) % full_attention_interval == 0:
            tensors += [
                Tensor(b + "attn_q.weight", (n_embd, 2 * q_dim), _pick(main, n_embd)),
                Tensor(b + "attn_k.weight", (n_embd, kv_dim), _pick(main, n_embd)),
                Tensor(b + "attn_v.weight", (n_embd, kv_dim), _pick(high, n_embd)),
                Tensor(b + "attn_output.weight", (q_dim, n_embd), _pick(main, q_dim)),
                _norm(b + "attn_q_norm.weight", head_dim),
                _norm(b + "attn_k_norm.weight", head_dim),
            ]
        else:
            tensors += [
                Tensor(b + "attn_qkv.weight", (n_embd, conv_dim), _pick(main, n_embd)),
                Tensor(b + "attn_gate.weight", (n_embd, value_dim), _pick(main, n_embd)),
                Tensor(b + "ssm_conv1d.weight", (ssm_conv_kernel, conv_dim), T.F32, "small"),
                Tensor(b + "ssm_dt.bias", (ssm_time_step_rank,), T.F32, "small"),
                Tensor(b + "ssm_a", (ssm_time_step_rank,), T.F32, "small"),
                Tensor(b + "ssm_beta.weight", (n_embd, ssm_time_step_rank), _pick(main, n_embd)),
                Tensor(b + "ssm_alpha.weight", (n_embd, ssm_time_step_rank), _pick(main, n_embd)),
                _norm(b + "ssm_norm.weight", head_v),
                Tensor(b + "ssm_out.weight", (value_dim, n_embd), _pick(main, value_dim)),
            ]
        tensors += [
            Tensor(b + "ffn_gate.weight", (n_embd, n_ff), _pick(main, n_embd)),
            Tensor(b + "ffn_up.weight", (n_embd, n_ff), _pick(main, n_embd)),
            Tensor(b + "ffn_down.weight", (n_ff, n_embd), _pick(high, n_ff)),
        ]
    tensors.append(_norm("output_norm.weight", n_embd))
    if not tied_embeddings:
        tensors.append(Tensor("output.weight", (n_embd, vocab), _pick(high, n_embd)))
    rot = head_dim // 4  # Qwen3.5 ropes a quarter of each head, in sections
    meta = {
        "{arch}.embedding_length": n_embd, "{arch}.block_count": n_layers, "{arch}.feed_forward_length": n_ff,
        "{arch}.attention.head_count": n_heads, "{arch}.attention.head_count_kv": n_kv_heads,
        "{arch}.attention.key_length": head_dim, "{arch}.attention.value_length": head_dim,
        "{arch}.rope.dimension_count": rot, "{arch}.rope.dimension_sections": [rot // 2 - 2 * (rot // 6), rot // 6, rot // 6, 0],
        "{arch}.attention.layer_norm_rms_epsilon": 1e-6, "{arch}.rope.freq_base": 10000000.0,
        "{arch}.ssm.conv_kernel": ssm_conv_kernel, "{arch}.ssm.inner_size": value_dim,
        "{arch}.ssm.state_size": ssm_state_size, "{arch}.ssm.time_step_rank": ssm_time_step_rank,
        "{arch}.ssm.group_count": ssm_group_count, "{arch}.full_attention_interval": full_attention_interval,
    }
    p = write_model(path, "qwen35", meta, tensors, vocab=vocab, file_type=file_type, n_ctx=n_ctx,
                    extra_tokens=extra_tokens, chat_template=chat_template, eos_token=eos_token, seed=seed,
                    header_only=header_only)
    return ArchModel(p, "qwen35", n_layers, vocab, dict(full_attention_interval=full_attention_interval))


# --- gemma4: per-layer embeddings, two head sizes, shared KV ------------------------------------------


def write_gemma4(path, *, n_layers: int = 7, n_embd: int = 256, n_heads: int = 4, n_kv_heads: int = 1,
                 head_dim: int = 256, head_dim_swa: int = 128, n_ff: int = 1024, n_embd_per_layer: int = 64,
                 vocab: int = 32000, n_ctx: int = 32768, window: int = 512, pattern: int = 5,
                 shared_kv_layers: int = 2, quant: str = "Q4_K_M", extra_tokens: tuple[str, ...] = (),
                 chat_template: str | None = None, eos_token: str | None = None, seed: int = 0,
                 header_only: bool = False) -> ArchModel:
    """Gemma 4 E-model: a per-layer embedding table (`n_embd_per_layer` per layer per token, looked up,
    not read), the last layer of every `pattern` attends fully with `head_dim`, the others over a
    `window` with `head_dim_swa`; the last `shared_kv_layers` layers reuse earlier layers' caches
    (Gemma 4 E2B: 35 layers, 1536 wide, 256 per-layer, window 512)."""
    file_type, main, high = _mix(quant)
    is_swa = [i % pattern < pattern - 1 for i in range(n_layers)]
    n_kv_from_start = n_layers - shared_kv_layers
    tensors = [
        Tensor("token_embd.weight", (n_embd, vocab), _pick(high, n_embd)),
        Tensor("per_layer_token_embd.weight", (n_embd_per_layer * n_layers, vocab),
               _pick(high, n_embd_per_layer * n_layers)),
        Tensor("per_layer_model_proj.weight", (n_embd, n_embd_per_layer * n_layers), T.F16),
        _norm("per_layer_proj_norm.weight", n_embd_per_layer),
        _norm("output_norm.weight", n_embd),
    ]
    rope_freqs_done = False
    for i in range(n_layers):
        b = f"blk.{i}."
        hd = head_dim_swa if is_swa[i] else head_dim
        q_dim, kv_dim = n_heads * hd, n_kv_heads * hd
        tensors += [
            _norm(b + "attn_norm.weight", n_embd),
            Tensor(b + "attn_q.weight", (n_embd, q_dim), _pick(main, n_embd)),
            Tensor(b + "attn_output.weight", (q_dim, n_embd), _pick(main, q_dim)),
            _norm(b + "attn_q_norm.weight", hd),
            _norm(b + "post_attention_norm.weight", n_embd),
        ]
        if i < n_kv_from_start:
            tensors += [
                Tensor(b + "attn_k.weight", (n_embd, kv_dim), _pick(main, n_embd)),
                Tensor(b + "attn_v.weight", (n_embd, kv_dim), _pick(high, n_embd)),
                _norm(b + "attn_k_norm.weight", hd),
            ]
        if not is_swa[i] and not rope_freqs_done:
            tensors.append(_norm("rope_freqs.weight", hd // 2))
            rope_freqs_done = True
        tensors += [
            _norm(b + "ffn_norm.weight", n_embd),
            Tensor(b + "ffn_gate.weight", (n_embd, n_ff), _pick(main, n_embd)),
            Tensor(b + "ffn_up.weight", (n_embd, n_ff), _pick(main, n_embd)),
            Tensor(b + "ffn_down.weight", (n_ff, n_embd), _pick(high, n_ff)),
            _norm(b + "post_ffw_norm.weight", n_embd),
            Tensor(b + "inp_gate.weight", (n_embd, n_embd_per_layer), T.F16),
            Tensor(b + "proj.weight", (n_embd_per_layer, n_embd), T.F16),
            _norm(b + "post_norm.weight", n_embd),
        ]
    meta = {
        "{arch}.embedding_length": n_embd, "{arch}.block_count": n_layers, "{arch}.feed_forward_length": n_ff,
        "{arch}.attention.head_count": n_heads, "{arch}.attention.head_count_kv": n_kv_heads,
        "{arch}.attention.key_length": head_dim, "{arch}.attention.value_length": head_dim,
        "{arch}.attention.key_length_swa": head_dim_swa, "{arch}.attention.value_length_swa": head_dim_swa,
        "{arch}.rope.dimension_count": head_dim, "{arch}.rope.dimension_count_swa": head_dim_swa,
        "{arch}.attention.layer_norm_rms_epsilon": 1e-6, "{arch}.attention.sliding_window": window,
        "{arch}.attention.sliding_window_pattern": is_swa,
        "{arch}.attention.shared_kv_layers": shared_kv_layers,
        "{arch}.embedding_length_per_layer_input": n_embd_per_layer,
        "{arch}.rope.freq_base": 1000000.0, "{arch}.rope.freq_base_swa": 10000.0,
        "{arch}.final_logit_softcapping": 30.0,
    }
    p = write_model(path, "gemma4", meta, tensors, vocab=vocab, file_type=file_type, n_ctx=n_ctx,
                    extra_tokens=extra_tokens, chat_template=chat_template, eos_token=eos_token, seed=seed,
                    header_only=header_only)
    return ArchModel(p, "gemma4", n_layers, vocab, dict(window=window, pattern=pattern,
                                                        shared_kv_layers=shared_kv_layers))
