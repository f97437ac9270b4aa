"""A model's shape as the memory and speed estimates need it, by architecture, from a GGUF header or the catalogue.

What differs by architecture, and how llama.cpp (the pinned 0.3.36's `src/models/*.cpp`,
`llama-kv-cache*.cpp`, `llama-memory-recurrent.cpp`) treats it:

- **Sliding-window layers** (Gemma 2/3/3n/4, gpt-oss, Cohere 2, EXAONE 4, LFM2 with a
  window): their KV cache holds the window plus one micro-batch of cells, padded to
  256, not the context. Which layers slide follows each loader: a per-layer array in
  the header (Gemma 4), else a period ("the last of every 6" for Gemma 3, every other
  layer for gpt-oss) that a header key may override. Their head size may differ
  (Gemma 4's key_length_swa).
- **Layers that share another layer's cache** (Gemma 3n/4's last layers): no KV of their own.
- **Recurrent / linear-attention layers** (Qwen3.5's gated delta-net, LFM2's short
  convolutions, Granite 4 H's Mamba 2): a fixed f32 state per sequence (llama.cpp's R and
  S buffers), no KV. Which layers: Qwen3.5 every layer but each `full_attention_interval`-th;
  LFM2 and Granite hybrids the layers with 0 KV heads.
- **Mixtures of experts**: each token runs `expert_used_count` of `expert_count` experts,
  so it reads the other weights whole and that share of the expert tensors.
- **Tables looked up, not read, per token**: an untied token-embedding table (its output
  layer is a separate tensor) and Gemma 3n/4's per-layer embedding tables give one row
  per token. For a small model with a large vocabulary the first is a third of the
  file; for Gemma 4 E2B the second is most of it.
- **Tensor types** come from `gguf`'s GGML_QUANT_SIZES (MXFP4 and every later type) via
  the header walk in models.gguf_file; `slow_kernel_bytes` counts the legacy Q4_1, Q5_0
  and Q5_1, whose CPU kernels are slow per byte (see models.speed).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

from models.catalogue import CatalogueEntry
from models.gguf_file import GGUFInfo, TensorEntry

TOKEN_EMBEDDING = "token_embd.weight"
OUTPUT = "output.weight"
PER_LAYER_EMBEDDING = "per_layer_token_embd.weight"
SLOW_KERNEL_QUANTS = frozenset({"Q4_1", "Q5_0", "Q5_1"})  # tensor types (and file quants) without repacked CPU kernels
_EXPERT_TENSOR = re.compile(r"\.ffn_\w+_(?:ch)?exps\.")  # routed experts; shared experts (_shexp) run for every token
_BLOCK = re.compile(r"^blk\.(\d+)\.")

# Sliding-window layers by architecture, as each loader sets them: (period, dense_first, needs a window key).
# set_swa_pattern(n): layer il slides unless it is the last of each n (dense_first: the first of each n).
_SWA_PERIOD = {
    "gemma2": (2, False, False), "gemma3": (6, False, True), "gemma3n": (5, False, False),
    "gemma-embedding": (6, False, False), "gpt-oss": (2, False, False), "cohere2": (4, False, False),
    "cohere2moe": (4, True, False), "exaone4": (4, False, True), "exaone-moe": (4, False, False),
    "afmoe": (4, False, True), "laguna": (4, True, True),
}
_SWA_ARRAY = frozenset({"gemma4", "granite_swa", "dots3note"})  # the pattern is a per-layer array in the header
_KV_FROM_START = {"gemma3n": 20}  # layers past this reuse an earlier layer's cache
_INTERVAL_HYBRIDS = frozenset({"qwen35", "qwen35moe", "qwen3next"})  # recurrent but every interval-th layer
_ZERO_KV_HYBRIDS = frozenset({"lfm2", "lfm2moe", "granitehybrid", "nemotron_h", "nemotron_h_moe", "jamba"})
_RECURRENT = frozenset({"mamba", "mamba2", "rwkv6", "rwkv6qwen2", "rwkv7", "arwkv7"})


@dataclass(frozen=True)
class KVLayer:
    """One layer's own KV cache: values per cell of K and of V, and whether it holds only a window."""

    k: int
    v: int
    sliding: bool = False


@dataclass(frozen=True)
class ModelShape:
    source: str
    architecture: str
    quant: str
    size_bytes: int  # the file
    weight_bytes: int  # all tensors
    lookup_only_bytes: int  # weights read one row per token (untied token embeddings, per-layer embeddings)
    n_params: int
    n_layers: int | None
    n_heads: int | None
    n_kv_heads: int | None
    embedding_length: int | None
    vocab_size: int | None
    context_length: int | None
    kv_bytes_per_token: int | None  # f16 K+V of every layer with a cache, per token of context (the upper bound)
    slow_kernel_bytes: int = 0  # weights read per token in types with slow CPU kernels (Q4_1, Q5_0, Q5_1)
    # --- by architecture (defaults: a dense, full-attention model) ---
    kv_layers: tuple[KVLayer, ...] = ()  # layers with their own cache; empty: derive from kv_bytes_per_token
    sliding_window: int | None = None
    recurrent_layers: int = 0
    recurrent_state_bytes: int = 0  # f32 R and S state of all recurrent layers, for one sequence
    recurrent_width: int = 0  # channels of a recurrent layer's convolution (its working set per token)
    n_expert: int = 0
    n_expert_used: int = 0
    expert_bytes: int = 0  # weights of the routed experts (all of them)
    expert_params: int = 0
    unused_bytes: int = 0  # tensors generation never reads (multi-token-prediction layers)
    n_ff: int | None = None  # the widest dense feed-forward
    n_ff_exp: int | None = None  # one expert's feed-forward width
    attention_width: int | None = None  # heads × value size: an attention layer's output
    per_layer_embedding_width: int = 0  # Gemma 3n/4: per-layer input values per token, all layers
    approx: bool = False  # the shape was not confirmed from the model's own header
    tensor_types: tuple[tuple[str, int], ...] = field(default=(), compare=False)  # (ggml type, bytes), largest first
    # (ggml type, bytes one token reads in it), largest first: what the speed estimate weighs by kernel.
    read_types: tuple[tuple[str, int], ...] = field(default=(), compare=False)

    @property
    def bytes_per_token(self) -> int:
        """Weight bytes that generating one token reads: all of them but the looked-up rows, the unused
        layers, and the experts that do not run."""
        idle_experts = self.expert_bytes * (1 - self.expert_share) if self.n_expert else 0
        return max(1, int(self.weight_bytes - self.lookup_only_bytes - self.unused_bytes - idle_experts))

    @property
    def expert_share(self) -> float:
        """The share of the expert weights one token runs: used / total (1 for a dense model)."""
        return self.n_expert_used / self.n_expert if self.n_expert and self.n_expert_used else 1.0

    @property
    def is_moe(self) -> bool:
        return self.n_expert > 1 and 0 < self.n_expert_used < self.n_expert

    @property
    def active_params(self) -> int:
        """Parameters one token uses: all of them for a dense model."""
        if not self.is_moe:
            return self.n_params
        return int(self.n_params - self.expert_params * (1 - self.expert_share))

    @property
    def sliding_layers(self) -> int:
        return sum(1 for layer in self.kv_layers if layer.sliding)


# --- from a GGUF header -------------------------------------------------------------------------


def _per_layer(info: GGUFInfo, key: str, n: int, default=None) -> list:
    """A per-layer value: an array entry, or a scalar for every layer, or `default`."""
    value = info.arch_value(key)
    if isinstance(value, tuple):
        return [value[i] if i < len(value) else (value[-1] if value else default) for i in range(n)]
    return [value if value is not None else default] * n


def _int(info: GGUFInfo, key: str, default: int = 0) -> int:
    value = info.arch_value(key)
    if isinstance(value, tuple):
        value = max(value, default=default)
    return int(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def _swa_flags(info: GGUFInfo, n: int, recurrent: list[bool], kv_heads: list[int]) -> tuple[list[bool], int | None]:
    arch = info.architecture
    window = _int(info, "attention.sliding_window") or None
    pattern = info.arch_value("attention.sliding_window_pattern")
    if arch in ("lfm2", "lfm2moe"):
        return ([not r for r in recurrent] if window else [False] * n), window
    if isinstance(pattern, tuple) and (arch in _SWA_ARRAY or arch in _SWA_PERIOD or window):
        flags = [bool(pattern[i]) if i < len(pattern) else False for i in range(n)]
        return flags, window if any(flags) else None
    rule = _SWA_PERIOD.get(arch)
    if rule is None or (rule[2] and not window):
        return [False] * n, None
    period, dense_first = (pattern if isinstance(pattern, int) and not isinstance(pattern, bool) else rule[0]), rule[1]
    if dense_first:
        flags = [period == 0 or i % period != 0 for i in range(n)]
    else:
        flags = [period == 0 or i % period < period - 1 for i in range(n)]
    return flags, window if any(flags) else None


def _recurrent_flags(info: GGUFInfo, n: int, kv_heads: list[int]) -> list[bool]:
    arch = info.architecture
    if arch in _RECURRENT:
        return [True] * n
    if arch in _INTERVAL_HYBRIDS:
        explicit = info.arch_value("attention.recurrent_layers")
        if isinstance(explicit, tuple) and explicit:
            return [bool(explicit[i]) if i < len(explicit) else False for i in range(n)]
        interval = _int(info, "full_attention_interval", 4) or 4
        return [(i + 1) % interval != 0 for i in range(n)]
    if arch in _ZERO_KV_HYBRIDS or info.arch_value("ssm.state_size") is not None:
        return [h == 0 for h in kv_heads]
    return [False] * n


def _recurrent_state(info: GGUFInfo) -> tuple[int, int]:
    """(values per sequence in one recurrent layer's R and S state, its convolution's channels)."""
    embd = info.embedding_length or 0
    l_cache = _int(info, "shortconv.l_cache")
    if l_cache:  # LFM2: a short convolution over the embedding, no S state
        return embd * (l_cache - 1), 3 * embd
    d_conv, d_inner = _int(info, "ssm.conv_kernel"), _int(info, "ssm.inner_size")
    d_state, n_group = _int(info, "ssm.state_size"), _int(info, "ssm.group_count")
    channels = d_inner + 2 * n_group * d_state
    return max(0, d_conv - 1) * channels + d_state * d_inner, channels


def from_gguf(info: GGUFInfo) -> ModelShape:
    """The shape of a model from its header (a local file's or a remote range read's)."""
    n_all = info.n_layers or 0
    n = max(0, n_all - _int(info, "nextn_predict_layers"))  # multi-token-prediction layers come last
    heads = _per_layer(info, "attention.head_count", n, info.n_heads or 0)
    kv_heads = _per_layer(info, "attention.head_count_kv", n, None)
    kv_heads = [h if h is not None else heads[i] for i, h in enumerate(kv_heads)]
    recurrent = _recurrent_flags(info, n, kv_heads)
    sliding, window = _swa_flags(info, n, recurrent, kv_heads)
    embd = info.embedding_length or 0
    hd_k = info.head_dim or (embd // max(1, info.n_heads or 1))
    hd_v = info.head_dim_v or hd_k
    hd_k_swa = _int(info, "attention.key_length_swa", hd_k)
    hd_v_swa = _int(info, "attention.value_length_swa", hd_v)
    kv_from_start = n
    if info.architecture == "gemma4":
        kv_from_start = n_all - _int(info, "attention.shared_kv_layers")
    elif info.architecture in _KV_FROM_START:
        kv_from_start = min(n, _KV_FROM_START[info.architecture])

    kv_layers = []
    attention_width = 0
    for il in range(n):
        if recurrent[il]:
            continue
        k_head, v_head = (hd_k_swa, hd_v_swa) if sliding[il] else (hd_k, hd_v)
        attention_width = max(attention_width, heads[il] * v_head)
        if il < kv_from_start and kv_heads[il] > 0:
            kv_layers.append(KVLayer(kv_heads[il] * k_head, kv_heads[il] * v_head, sliding[il]))
    n_recurrent = sum(recurrent)
    state_values, recurrent_width = _recurrent_state(info) if n_recurrent else (0, 0)

    tensors = info.tensors
    names = {t.name for t in tensors}
    lookup = sum(t.n_bytes for t in tensors if t.name == PER_LAYER_EMBEDDING)
    if OUTPUT in names:  # untied: the output layer is its own tensor, the embedding table only looked up
        lookup += sum(t.n_bytes for t in tensors if t.name == TOKEN_EMBEDDING)
    unused = sum(t.n_bytes for t in tensors if (m := _BLOCK.match(t.name)) and int(m.group(1)) >= n)
    experts = [t for t in tensors if _EXPERT_TENSOR.search(t.name)]
    n_expert = _int(info, "expert_count")
    n_used = _int(info, "expert_used_count")
    share = n_used / n_expert if n_expert and n_used else 1.0
    read_by_type: dict[str, float] = {}
    for t in tensors:
        looked_up = t.name == PER_LAYER_EMBEDDING or (t.name == TOKEN_EMBEDDING and OUTPUT in names)
        idle = (m := _BLOCK.match(t.name)) is not None and int(m.group(1)) >= n
        if not looked_up and not idle:
            read_by_type[t.type_name] = (read_by_type.get(t.type_name, 0.0)
                                         + t.n_bytes * (share if _EXPERT_TENSOR.search(t.name) else 1.0))
    slow = sum(b for kind, b in read_by_type.items() if kind in SLOW_KERNEL_QUANTS)
    n_ff = _int(info, "feed_forward_length") or None
    n_ff_exp = _int(info, "expert_feed_forward_length") or (n_ff if n_expert else None)
    return ModelShape(
        source=info.source,
        architecture=info.architecture,
        quant=info.quant,
        size_bytes=info.size_bytes,
        weight_bytes=info.tensor_bytes,
        lookup_only_bytes=lookup,
        n_params=info.n_params,
        n_layers=info.n_layers,
        n_heads=info.n_heads,
        n_kv_heads=info.n_kv_heads,
        embedding_length=info.embedding_length,
        vocab_size=info.vocab_size,
        context_length=info.context_length,
        kv_bytes_per_token=sum(2 * (layer.k + layer.v) for layer in kv_layers) if n else info.kv_bytes_per_token,
        slow_kernel_bytes=int(slow),
        kv_layers=tuple(kv_layers),
        sliding_window=window,
        recurrent_layers=n_recurrent,
        recurrent_state_bytes=4 * state_values * n_recurrent,
        recurrent_width=recurrent_width,
        n_expert=n_expert,
        n_expert_used=n_used,
        expert_bytes=sum(t.n_bytes for t in experts),
        expert_params=sum(t.n_elements for t in experts),
        unused_bytes=unused,
        n_ff=n_ff,
        n_ff_exp=n_ff_exp if n_expert else None,
        attention_width=attention_width or None,
        per_layer_embedding_width=_int(info, "embedding_length_per_layer_input") * n,
        tensor_types=_type_totals(tensors),
        read_types=tuple(sorted(((k, int(b)) for k, b in read_by_type.items()), key=lambda kv: -kv[1])),
    )


def _type_totals(tensors: tuple[TensorEntry, ...]) -> tuple[tuple[str, int], ...]:
    totals: dict[str, int] = {}
    for t in tensors:
        totals[t.type_name] = totals.get(t.type_name, 0) + t.n_bytes
    return tuple(sorted(totals.items(), key=lambda kv: -kv[1]))


# --- from the catalogue ------------------------------------------------------------------------------


def from_catalogue(entry: CatalogueEntry) -> ModelShape:
    """The shape the catalogue states, before any download (the file's header replaces it when read)."""
    a = entry.arch
    size = entry.size_bytes or _guess_size(entry)
    per_param = size / entry.params if entry.params else 0.0
    lookup_params = a.vocab_size * a.n_embd_per_layer * a.n_layers
    if not a.tied_embeddings:
        lookup_params += a.vocab_size * a.embedding_length
    n_kv = a.kv_layers if a.kv_layers is not None else a.n_layers - a.recurrent_layers
    n_swa = min(a.swa_layers, n_kv)
    head_swa = a.head_dim_swa or a.head_dim
    kv_layers = ([KVLayer(a.n_kv_heads * a.head_dim, a.n_kv_heads * a.head_dim)] * (n_kv - n_swa)
                 + [KVLayer(a.n_kv_heads * head_swa, a.n_kv_heads * head_swa, True)] * n_swa)
    expert_params = 0
    if a.n_expert and a.n_expert_used and entry.active_params and entry.active_params < entry.params:
        expert_params = int((entry.params - entry.active_params) / (1 - a.n_expert_used / a.n_expert))
    lookup = int(lookup_params * per_param)
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
        kv_bytes_per_token=sum(2 * (layer.k + layer.v) for layer in kv_layers),
        # A legacy quant is in (nearly) every weight; the few other tensors do not matter here.
        slow_kernel_bytes=(size - lookup) if entry.quant.upper() in SLOW_KERNEL_QUANTS else 0,
        kv_layers=tuple(kv_layers),
        sliding_window=a.sliding_window if n_swa else None,
        recurrent_layers=a.recurrent_layers,
        recurrent_state_bytes=a.recurrent_state_bytes,
        recurrent_width=a.recurrent_width,
        n_expert=a.n_expert,
        n_expert_used=a.n_expert_used,
        expert_bytes=int(expert_params * per_param),
        expert_params=expert_params,
        n_ff=a.n_ff,
        n_ff_exp=a.n_ff_exp,
        attention_width=a.n_heads * a.head_dim,
        per_layer_embedding_width=a.n_embd_per_layer * a.n_layers,
        approx=a.approx,
    )


# Average bits per weight of common quants, for a catalogue quant whose size the Hub has not told yet.
_BITS_PER_WEIGHT = {
    "Q2_K": 3.0, "Q3_K_S": 3.5, "Q3_K_M": 3.9, "Q3_K_L": 4.3, "IQ3_M": 3.7, "IQ3_XS": 3.5, "Q3_K_XL": 4.3,
    "IQ4_XS": 4.3, "Q4_0": 4.5, "Q4_K_S": 4.6, "Q4_K_M": 4.9, "Q4_K_L": 5.0, "Q5_0": 5.5, "Q5_K_S": 5.5,
    "Q5_K_M": 5.7, "Q5_K_L": 5.8, "Q6_K": 6.6, "Q6_K_L": 6.7, "Q8_0": 8.5, "F16": 16.0, "FP16": 16.0,
    "BF16": 16.0, "F32": 32.0, "Q2_K_L": 3.3, "IQ2_M": 2.7, "MXFP4": 4.25, "MXFP4_MOE": 4.6,
}


def _guess_size(entry: CatalogueEntry) -> int:
    bits = _BITS_PER_WEIGHT.get(entry.quant.upper(), 4.9)
    return int(entry.params * bits / 8)


def shape_of_file(path) -> ModelShape:
    from models.gguf_file import read_gguf_info

    return from_gguf(read_gguf_info(Path(path)))
