"""Will a model fit this machine at a given context length? An estimate with its parts, and a verdict.

memory = weights (the file is memory-mapped: every page counts once read)
       + KV cache (the attention layers' K and V; a sliding-window layer holds its window)
       + recurrent state (a hybrid's linear-attention layers: a fixed state per sequence)
       + compute buffer (llama.cpp's scratch for one micro-batch, and its output buffer)
       + a fixed allowance for the app and the runtime.

Each part follows what llama.cpp (the pinned 0.3.36) allocates, read from its source and
checked against the buffer sizes it logs for the same file and settings
(tests/test_models_fit_arch.py, within 5% for every class at 4k and 32k tokens):

- The context is padded to 256 cells. A sliding-window layer's cache holds
  min(context, window + one micro-batch) cells, padded to 256, as llama-server
  allocates it (`swa_full=False`); with `swa_full` it holds the whole context.
- A cell of a layer's cache holds its K and V rows in the cache type: f16 (2 bytes a
  value), q8_0 (34 bytes per 32 values) or q4_0 (18 per 32).
- A recurrent layer keeps f32 R (convolution) and S (state) rows for one sequence.
- The compute buffer is the larger of two peaks of the micro-batch's graph: the end,
  where the logits of every position of the micro-batch (n_ubatch × vocabulary × 4 bytes)
  and two rows of activations are alive (above the attention masks' memory in graphs that
  keep the last hidden state as an output: gpt-oss, Qwen3.5, Gemma 4, ...); and a layer, where the attention masks
  (context × n_ubatch, f16 with flash attention, f32 without), three feed-forward-wide
  activations (the experts that run, for a mixture of experts), three embedding-wide
  ones and the attention output are alive, plus the attention scores without flash
  attention, the per-layer inputs of Gemma 3n/4 and the convolution channels of a
  recurrent layer. For every real vocabulary (32k tokens and up) the first peak rules;
  the second is within about 15% of llama.cpp on the random models measured.

Flash attention "auto" (llama.cpp's and llama-server's default) resolves on for the
CPU: llama.cpp checks that the fused op runs on the layer's device, which holds for
the CPU backend, and logs "Flash Attention enabled".

The verdict compares the total with the RAM free now and the RAM installed, and
with each NVIDIA GPU's memory where NVML (nvidia-ml-py) is importable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from common.formatting import format_bytes
from models.shape import KVLayer, ModelShape

log = logging.getLogger(__name__)

DEFAULT_CTX = 4096
N_UBATCH = 512
CELL_PAD = 256  # llama.cpp pads the context, and a sliding-window cache, to this many cells
RUNTIME_OVERHEAD_BYTES = 300 << 20  # Python, llama.cpp and the window, measured at roughly this here
FFN_RATIO = 4  # feed-forward width over embedding width, when the header does not say
# Graphs that keep the last hidden state of every position as an output (for multi-token prediction):
# it sits just above the masks, so the logits cannot reuse the masks' memory (src/models/*.cpp: t_h_nextn).
_KEEPS_HIDDEN_STATE = frozenset("""
    bailingmoe3 cohere2moe deepseek2 deepseek32 dflash eagle3 gemma4 glm-dsa glm4moe glm5-next gpt-oss hy_v3
    mimo2 nemotron_h nemotron_h_moe qwen35 qwen35moe qwen3next step35
""".split())
_KV_TYPE_SIZE = {"f16": (1, 2), "q8_0": (32, 34), "q4_0": (32, 18)}  # (values per block, bytes per block)
KV_CACHE_TYPES = tuple(_KV_TYPE_SIZE)

FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    recurrent_state: int = 0
    kv_cache_type: str = "f16"
    flash_attn: bool = True
    kv_layers: int = 0  # layers with their own KV cache
    kv_layers_windowed: int = 0  # of them, those holding only a window
    window_cells: int = 0  # cells of a sliding-window layer's cache
    projector: int = 0  # an image projector loaded beside the model: its weights and its compute buffer

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.recurrent_state + self.compute + self.overhead + self.projector

    def describe_kv(self) -> str:
        """How the KV cache is made up, for people: "f16; 40 of 48 layers window-sized"."""
        parts = [self.kv_cache_type]
        if self.kv_layers_windowed:
            parts.append(f"{self.kv_layers_windowed} of {self.kv_layers} layers window-sized "
                         f"({self.window_cells:,} cells)")
        elif self.kv_layers:
            parts.append(f"{self.kv_layers} layers" if self.kv_layers > 1 else "1 layer")
        return "; ".join(parts)


@dataclass(frozen=True)
class GPU:
    name: str
    total: int
    free: int


@dataclass(frozen=True)
class Machine:
    total_ram: int
    available_ram: int
    gpus: tuple[GPU, ...] = ()


@dataclass(frozen=True)
class FitVerdict:
    verdict: str  # FITS, TIGHT or NO_FIT
    where: str  # "RAM" or the GPU's name
    reason: str  # one sentence
    estimate: MemoryEstimate
    machine: Machine
    gpu_verdicts: tuple[tuple[str, str], ...] = field(default_factory=tuple)  # (gpu name, verdict)


def context_for(shape: ModelShape, n_ctx: int | None) -> int:
    """The context to estimate for: the one asked, else the default, never past what the model was trained on."""
    ctx = n_ctx or DEFAULT_CTX
    if shape.context_length and not n_ctx:
        ctx = min(ctx, shape.context_length)
    return max(ctx, 1)


def _pad(n: int, to: int = CELL_PAD) -> int:
    return (n + to - 1) // to * to


def kv_row_bytes(values: int, kv_cache_type: str) -> int:
    """Bytes of one cache row of `values` values in the cache type."""
    if kv_cache_type not in _KV_TYPE_SIZE:
        raise ValueError(f"kv_cache_type must be one of {', '.join(KV_CACHE_TYPES)}, not {kv_cache_type!r}")
    block, size = _KV_TYPE_SIZE[kv_cache_type]
    return (values + block - 1) // block * size


def _kv_layers(shape: ModelShape) -> tuple[KVLayer, ...]:
    if shape.kv_layers:
        return shape.kv_layers
    if not shape.kv_bytes_per_token or not shape.n_layers:
        return ()
    per_layer = shape.kv_bytes_per_token // (4 * shape.n_layers)  # f16 K and V of equal width
    return (KVLayer(per_layer, per_layer),) * shape.n_layers


def estimate_memory(shape: ModelShape, n_ctx: int | None = None, *, kv_cache_type: str = "f16",
                    swa_full: bool = False, flash_attn: bool | None = None, n_ubatch: int = N_UBATCH,
                    projector_bytes: int = 0) -> MemoryEstimate:
    """What loading `shape` at `n_ctx` tokens takes, by part, as llama.cpp allocates it.

    kv_cache_type: "f16", "q8_0" or "q4_0" for K and V. swa_full: sliding-window layers keep the whole
    context (llama-cpp-python's default) rather than their window (llama-server's). flash_attn: None is
    llama.cpp's "auto", which resolves on for the CPU. n_ubatch: the micro-batch (llama.cpp's default 512).
    projector_bytes: an image projector loaded beside the model (models.projector), counted as its own part.
    """
    ctx = context_for(shape, n_ctx)
    cells = _pad(ctx)
    ubatch = max(1, min(n_ubatch, ctx))
    flash = True if flash_attn is None else bool(flash_attn)
    layers = _kv_layers(shape)
    window = shape.sliding_window or 0
    window_cells = cells if swa_full or not window else min(cells, _pad(window + ubatch))
    kv = sum((kv_row_bytes(layer.k, kv_cache_type) + kv_row_bytes(layer.v, kv_cache_type))
             * (window_cells if layer.sliding else cells) for layer in layers)
    compute = _compute_bytes(shape, cells, window_cells if any(x.sliding for x in layers) else 0,
                             any(not x.sliding for x in layers) or not layers, ubatch, flash)
    return MemoryEstimate(
        ctx, shape.weight_bytes, kv, compute, RUNTIME_OVERHEAD_BYTES, shape.recurrent_state_bytes,
        kv_cache_type, flash, len(layers), sum(1 for x in layers if x.sliding), window_cells if window else 0,
        projector_bytes,
    )


def _compute_bytes(shape: ModelShape, cells: int, window_cells: int, full_layers: bool, ubatch: int,
                   flash: bool) -> int:
    """llama.cpp's compute buffer for one micro-batch, and its output buffer (see the module's docstring)."""
    f32 = 4
    vocab = shape.vocab_size or 32000
    embd = shape.embedding_length or 4096
    heads = shape.n_heads or 32
    # A layer: the masks live through every layer; the widest layer's activations on top.
    mask_cells = (cells if full_layers else 0) + window_cells
    masks = mask_cells * ubatch * (2 if flash else f32)
    # The end of the graph: every position's logits, the last hidden state and its norm; above the masks'
    # freed block where the hidden state is kept and the logits do not fit in that block.
    logits = ubatch * vocab * f32 + 2 * ubatch * embd * f32
    if shape.architecture in _KEEPS_HIDDEN_STATE and masks < ubatch * vocab * f32:
        logits += masks
    ffn = shape.n_ff or FFN_RATIO * embd
    if shape.n_expert and shape.n_ff_exp:
        ffn = max(shape.n_ff or 0, shape.n_ff_exp * max(1, shape.n_expert_used))
    ffn = max(ffn, shape.recurrent_width)
    attention = shape.attention_width or embd
    layer = masks + (3 * ffn + 3 * embd + attention + 2 * shape.per_layer_embedding_width) * ubatch * f32
    if not flash:  # the attention scores are a tensor of their own: positions × cells × heads
        layer += max(cells if full_layers else 0, window_cells) * ubatch * heads * f32
    output = vocab * f32  # the output buffer: one row of logits
    return max(logits, layer) + output


def this_machine() -> Machine:
    import psutil

    vm = psutil.virtual_memory()
    return Machine(vm.total, vm.available, tuple(_gpus()))


def _gpus() -> list[GPU]:
    try:
        import pynvml  # from nvidia-ml-py
    except ImportError:
        return []
    try:
        pynvml.nvmlInit()
    except Exception as exc:  # no driver, no GPU: NVML raises its own error types
        log.debug("no NVIDIA GPU: %s", exc)
        return []
    gpus = []
    try:
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            mem = pynvml.nvmlDeviceGetMemoryInfo(handle)
            name = pynvml.nvmlDeviceGetName(handle)
            gpus.append(GPU(name.decode() if isinstance(name, bytes) else str(name), int(mem.total), int(mem.free)))
    except Exception as exc:  # a driver that answers nvmlInit but not a query: count what was read
        log.warning("reading the GPUs through NVML failed after %d of them: %s", len(gpus), exc)
    finally:
        try:
            pynvml.nvmlShutdown()
        except Exception as exc:
            log.debug("nvmlShutdown: %s", exc)
    return gpus


def _headroom(total: int) -> int:
    # What the system and other programs need left to them: a tenth of memory, at least 1 GiB.
    return max(1 << 30, total // 10)


def _judge(need: int, total: int, free: int) -> str:
    if need + _headroom(total) <= free:
        return FITS
    if need <= total - _headroom(total) // 2:
        return TIGHT
    return NO_FIT


def judge(estimate: MemoryEstimate, machine: Machine | None = None) -> FitVerdict:
    machine = machine or this_machine()
    need = estimate.total
    ram = _judge(need, machine.total_ram, machine.available_ram)
    gpu_verdicts = tuple((g.name, _judge(need - estimate.overhead, g.total, g.free)) for g in machine.gpus)
    rank = {FITS: 0, TIGHT: 1, NO_FIT: 2}
    best_gpu = min(gpu_verdicts, key=lambda gv: rank[gv[1]], default=None)

    if best_gpu and rank[best_gpu[1]] < rank[ram]:
        name, verdict = best_gpu
        gpu = next(g for g in machine.gpus if g.name == name)
        reason = f"It needs about {format_bytes(need - estimate.overhead)} of GPU memory; {name} has {format_bytes(gpu.free)} free."
        return FitVerdict(verdict, name, reason, estimate, machine, gpu_verdicts)

    if ram == FITS:
        reason = f"It needs about {format_bytes(need)}; {format_bytes(machine.available_ram)} of {format_bytes(machine.total_ram)} RAM is free."
    elif ram == TIGHT:
        reason = (
            f"It needs about {format_bytes(need)} and {format_bytes(machine.available_ram)} RAM is free now: "
            "close other programs or choose a shorter context."
        )
    else:
        reason = (
            f"It needs about {format_bytes(need)} but this machine has {format_bytes(machine.total_ram)} RAM: "
            "choose a smaller size or quant, or a shorter context."
        )
    return FitVerdict(ram, "RAM", reason, estimate, machine, gpu_verdicts)


def fit(shape: ModelShape, n_ctx: int | None = None, machine: Machine | None = None, *,
        kv_cache_type: str = "f16", projector_bytes: int = 0) -> FitVerdict:
    return judge(estimate_memory(shape, n_ctx, kv_cache_type=kv_cache_type, projector_bytes=projector_bytes),
                 machine)
