"""Will a model fit this machine at a given context length? An estimate with its parts, and a verdict.

memory = weights (the file is memory-mapped: every page counts once read)
       + KV cache (f16 K and V, every layer, every token of context)
       + compute buffer (llama.cpp's scratch for one batch of 512 tokens)
       + a fixed allowance for the app and the runtime.

The compute-buffer formula follows what llama.cpp (flash attention off, as
llama-cpp-python defaults) reported on this project's machines: the larger of the
batch's logits (n_ubatch × n_vocab × 4 B) and its attention scores and mask
(n_ubatch × n_ctx × (heads + 1) × 4 B) plus the feed-forward activations. It
matched llama.cpp's own figure within 8% for the starter model and random
models from 14 MB to 635 MB at 512 to 16,384 tokens.

The verdict compares the total with the RAM free now and the RAM installed, and
with each NVIDIA GPU's memory where NVML (nvidia-ml-py) is importable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from common.formatting import format_bytes
from models.shape import ModelShape

log = logging.getLogger(__name__)

DEFAULT_CTX = 4096
N_UBATCH = 512
RUNTIME_OVERHEAD_BYTES = 300 << 20  # Python, llama.cpp and the window, measured at roughly this here
FFN_RATIO = 4  # feed-forward width over embedding width, when the header does not say

FITS, TIGHT, NO_FIT = "fits", "tight", "does not fit"


@dataclass(frozen=True)
class MemoryEstimate:
    n_ctx: int
    weights: int
    kv_cache: int
    compute: int
    overhead: int
    projector: int = 0  # an image projector loaded beside the model: its weights and its compute buffer

    @property
    def total(self) -> int:
        return self.weights + self.kv_cache + self.compute + self.overhead + self.projector


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


def kv_type_factor(kv_cache_type: str) -> float:
    """Bytes of a KV cache of this type over the f16 cache's (q8_0: 34 bytes per 32 values against 64)."""
    from gguf.constants import GGML_QUANT_SIZES, GGMLQuantizationType

    kind = GGMLQuantizationType[kv_cache_type.upper()]
    block, type_size = GGML_QUANT_SIZES[kind]
    return type_size / block / 2


def estimate_memory(shape: ModelShape, n_ctx: int | None = None, *, kv_cache_type: str = "f16",
                    swa_full: bool = False, flash_attn: bool | None = None, n_ubatch: int = N_UBATCH,
                    projector_bytes: int = 0) -> MemoryEstimate:
    # swa_full and flash_attn are part of the signature the sliding-window-aware estimate takes; this
    # estimate counts every layer's cache at full size either way.
    ctx = context_for(shape, n_ctx)
    ctx_alloc = (ctx + 255) // 256 * 256  # llama.cpp pads the cache to 256 cells
    kv = int((shape.kv_bytes_per_token or 0) * ctx_alloc * kv_type_factor(kv_cache_type))
    ubatch = min(n_ubatch, ctx_alloc)
    vocab = shape.vocab_size or 32000
    heads = shape.n_heads or 32
    embd = shape.embedding_length or 4096
    logits = ubatch * vocab * 4
    attention = ubatch * ctx_alloc * (heads + 1) * 4 + 2 * ubatch * FFN_RATIO * embd * 4
    compute = max(logits, attention) + (4 << 20)
    return MemoryEstimate(ctx, shape.weight_bytes, kv, compute, RUNTIME_OVERHEAD_BYTES, projector_bytes)


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


def fit(shape: ModelShape, n_ctx: int | None = None, machine: Machine | None = None,
        projector_bytes: int = 0) -> FitVerdict:
    return judge(estimate_memory(shape, n_ctx, projector_bytes=projector_bytes), machine)
