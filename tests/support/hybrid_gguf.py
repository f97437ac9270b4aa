"""Small random-weight models of the architectures whose cache is not a plain KV cache, for the runner's tests.

- `write_tiny_lfm2`: a hybrid (LFM2: short-convolution layers with a recurrent state, and a few attention
  layers): its state cannot be rolled back, so a follow-up turn needs a context checkpoint;
- `write_tiny_gemma3`: sliding-window attention (Gemma 3: five of every six layers see only the last
  `sliding_window` tokens), whose window-sized caches need checkpoints to go back further than the window;
- `write_tiny_qwen3moe`: a mixture of experts (a plain KV cache; for the memory benchmark).

All use `tiny_gguf`'s SentencePiece-style vocabulary and random tensors, and load in the pinned llama.cpp.
The tensor names and shapes follow llama.cpp's loaders (`src/models/lfm2.cpp`, `gemma3.cpp`, `qwen3moe.cpp`).
`scale` sets the weights' spread: larger makes a random model's next token depend more on what came before,
which a test of restored state needs (with tiny weights every context gives nearly the same logits).
"""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
from gguf import GGUFWriter, LlamaFileType

from tests.support.tiny_gguf import build_vocab


def _writer(path: Path, arch: str, *, n_layers: int, n_embd: int, n_heads: int, n_kv_heads, n_ff: int,
            n_ctx: int, name: str, head_dim: int | None = None, special_tokens=None, eos_token: str | None = None,
            chat_template: str | None = None) -> tuple[GGUFWriter, int]:
    tokens, scores, types = build_vocab(special=special_tokens)
    w = GGUFWriter(path, arch)
    w.add_name(name)
    w.add_context_length(n_ctx)
    w.add_embedding_length(n_embd)
    w.add_block_count(n_layers)
    w.add_feed_forward_length(n_ff)
    w.add_head_count(n_heads)
    w.add_head_count_kv(n_kv_heads)
    head_dim = head_dim or n_embd // n_heads
    w.add_key_length(head_dim)
    w.add_value_length(head_dim)
    w.add_rope_dimension_count(head_dim)
    w.add_rope_freq_base(10000.0)
    w.add_layer_norm_rms_eps(1e-6)
    w.add_vocab_size(len(tokens))
    w.add_file_type(int(LlamaFileType.ALL_F32))
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
    return w, len(tokens)


def _write_tensors(w: GGUFWriter, plan: list[tuple[str, tuple[int, ...]]], seed: int, scale: float) -> None:
    """F32 tensors: norms are ones, the rest normal(0, scale / sqrt(fan-in))."""
    rng = np.random.default_rng(seed)
    for name, shape in plan:
        if len(shape) == 1:
            w.add_tensor(name, np.ones(shape, dtype=np.float32))
        else:
            data = rng.standard_normal(shape, dtype=np.float32) * np.float32(scale / math.sqrt(shape[-1]))
            w.add_tensor(name, data)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()


def write_tiny_lfm2(path, *, n_layers: int = 4, attention_layers: tuple[int, ...] = (2,), n_embd: int = 64,
                    n_heads: int = 4, n_kv_heads: int = 2, n_ff: int = 128, n_ctx: int = 4096, l_cache: int = 3,
                    scale: float = 1.0, seed: int = 0, special_tokens=None, eos_token: str | None = None,
                    chat_template: str | None = None) -> Path:
    """An LFM2 hybrid: short-convolution (recurrent) layers, attention in `attention_layers`.
    `special_tokens`, `eos_token` and `chat_template` as in tiny_gguf.write_tiny_llama."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    kv_heads = [n_kv_heads if i in attention_layers else 0 for i in range(n_layers)]
    w, vocab = _writer(path, "lfm2", n_layers=n_layers, n_embd=n_embd, n_heads=n_heads, n_kv_heads=kv_heads,
                       n_ff=n_ff, n_ctx=n_ctx, name="tiny-lfm2", special_tokens=special_tokens, eos_token=eos_token,
                       chat_template=chat_template)
    w.add_shortconv_l_cache(l_cache)
    head_dim = n_embd // n_heads
    plan: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (vocab, n_embd)),
                                               ("token_embd_norm.weight", (n_embd,))]
    for i in range(n_layers):
        b = f"blk.{i}."
        plan += [(b + "attn_norm.weight", (n_embd,)), (b + "ffn_norm.weight", (n_embd,)),
                 (b + "ffn_gate.weight", (n_ff, n_embd)), (b + "ffn_up.weight", (n_ff, n_embd)),
                 (b + "ffn_down.weight", (n_embd, n_ff))]
        if i in attention_layers:
            plan += [(b + "attn_q_norm.weight", (head_dim,)), (b + "attn_k_norm.weight", (head_dim,)),
                     (b + "attn_q.weight", (n_embd, n_embd)), (b + "attn_k.weight", (head_dim * n_kv_heads, n_embd)),
                     (b + "attn_v.weight", (head_dim * n_kv_heads, n_embd)),
                     (b + "attn_output.weight", (n_embd, n_embd))]
        else:
            plan += [(b + "shortconv.conv.weight", (n_embd, l_cache)),
                     (b + "shortconv.in_proj.weight", (3 * n_embd, n_embd)),
                     (b + "shortconv.out_proj.weight", (n_embd, n_embd))]
    _write_tensors(w, plan, seed, scale)
    return path


def write_tiny_gemma3(path, *, n_layers: int = 6, n_embd: int = 128, n_heads: int = 4, n_kv_heads: int = 1,
                      head_dim: int = 64, n_ff: int = 256, n_ctx: int = 8192, sliding_window: int = 128,
                      scale: float = 1.0, seed: int = 0) -> Path:
    """A Gemma 3: five of every six layers attend over the last `sliding_window` tokens only."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, vocab = _writer(path, "gemma3", n_layers=n_layers, n_embd=n_embd, n_heads=n_heads, n_kv_heads=n_kv_heads,
                       n_ff=n_ff, n_ctx=n_ctx, name="tiny-gemma3", head_dim=head_dim)
    w.add_sliding_window(sliding_window)
    plan: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (vocab, n_embd)), ("output_norm.weight", (n_embd,))]
    for i in range(n_layers):
        b = f"blk.{i}."
        plan += [(b + "attn_norm.weight", (n_embd,)), (b + "attn_q.weight", (head_dim * n_heads, n_embd)),
                 (b + "attn_k.weight", (head_dim * n_kv_heads, n_embd)),
                 (b + "attn_v.weight", (head_dim * n_kv_heads, n_embd)),
                 (b + "attn_output.weight", (n_embd, head_dim * n_heads)),
                 (b + "attn_q_norm.weight", (head_dim,)), (b + "attn_k_norm.weight", (head_dim,)),
                 (b + "post_attention_norm.weight", (n_embd,)), (b + "ffn_norm.weight", (n_embd,)),
                 (b + "ffn_gate.weight", (n_ff, n_embd)), (b + "ffn_up.weight", (n_ff, n_embd)),
                 (b + "ffn_down.weight", (n_embd, n_ff)), (b + "post_ffw_norm.weight", (n_embd,))]
    _write_tensors(w, plan, seed, scale)
    return path


def write_tiny_qwen3moe(path, *, n_layers: int = 2, n_embd: int = 64, n_heads: int = 4, n_kv_heads: int = 2,
                        n_expert: int = 8, n_expert_used: int = 2, n_ff_exp: int = 64, n_ctx: int = 8192,
                        scale: float = 1.0, seed: int = 0) -> Path:
    """A Qwen3 mixture of experts: `n_expert` feed-forward experts per layer, `n_expert_used` per token."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    w, vocab = _writer(path, "qwen3moe", n_layers=n_layers, n_embd=n_embd, n_heads=n_heads, n_kv_heads=n_kv_heads,
                       n_ff=n_ff_exp * n_expert_used, n_ctx=n_ctx, name="tiny-qwen3moe")
    w.add_expert_count(n_expert)
    w.add_expert_used_count(n_expert_used)
    w.add_expert_feed_forward_length(n_ff_exp)
    head_dim = n_embd // n_heads
    plan: list[tuple[str, tuple[int, ...]]] = [("token_embd.weight", (vocab, n_embd)), ("output_norm.weight", (n_embd,)),
                                               ("output.weight", (vocab, n_embd))]
    for i in range(n_layers):
        b = f"blk.{i}."
        plan += [(b + "attn_norm.weight", (n_embd,)), (b + "attn_q.weight", (n_embd, n_embd)),
                 (b + "attn_k.weight", (head_dim * n_kv_heads, n_embd)),
                 (b + "attn_v.weight", (head_dim * n_kv_heads, n_embd)),
                 (b + "attn_output.weight", (n_embd, n_embd)),
                 (b + "attn_q_norm.weight", (head_dim,)), (b + "attn_k_norm.weight", (head_dim,)),
                 (b + "ffn_norm.weight", (n_embd,)), (b + "ffn_gate_inp.weight", (n_expert, n_embd)),
                 (b + "ffn_gate_exps.weight", (n_expert, n_ff_exp, n_embd)),
                 (b + "ffn_up_exps.weight", (n_expert, n_ff_exp, n_embd)),
                 (b + "ffn_down_exps.weight", (n_expert, n_embd, n_ff_exp))]
    _write_tensors(w, plan, seed, scale)
    return path


__all__ = ["write_tiny_gemma3", "write_tiny_lfm2", "write_tiny_qwen3moe"]
