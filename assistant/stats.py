"""The statistics record every reply produces, and the memory figures in it.

Times are measured with a monotonic clock around the real work; nothing is
estimated. Memory comes from llama.cpp's own buffer sizes, psutil, and NVML when
an NVIDIA GPU is present.
"""

import os
import resource
import sys
from dataclasses import asdict, dataclass, field

import psutil

STOP_REASONS = ("eos", "length", "stopped", "context_full", "error")


@dataclass
class ModelRef:
    name: str
    file: str
    quant: str | None
    size_bytes: int
    n_params: int


@dataclass
class MemoryStats:
    weights_bytes: int
    kv_bytes: int
    compute_bytes: int
    rss_bytes: int
    rss_peak_bytes: int
    vram_bytes: int | None


@dataclass
class ResponseStats:
    reply: str
    model: ModelRef
    prompt_tokens: int
    cached_tokens: int
    prompt_ms: float
    prompt_tps: float | None
    ttft_ms: float | None
    completion_tokens: int
    gen_ms: float
    gen_tps: float | None
    total_ms: float
    stop_reason: str
    n_ctx: int
    n_threads: int
    memory: MemoryStats
    backend: dict
    context: dict = field(default_factory=dict)  # policy applied, tokens used, turns dropped
    sampling: dict = field(default_factory=dict)
    chat_format: str | None = None
    error: str | None = None

    def to_dict(self) -> dict:
        return asdict(self)


def rss_bytes() -> int:
    return psutil.Process().memory_info().rss


def rss_peak_bytes() -> int:
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


_nvml_state: dict = {}


def vram_bytes() -> int | None:
    """GPU memory this process holds, or None without an NVIDIA GPU and driver."""
    if _nvml_state.get("unavailable"):
        return None
    try:
        import pynvml

        if not _nvml_state.get("ready"):
            pynvml.nvmlInit()
            _nvml_state["ready"] = True
        pid, used = os.getpid(), 0
        for i in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(i)
            for proc in pynvml.nvmlDeviceGetComputeRunningProcesses(handle):
                if proc.pid == pid and proc.usedGpuMemory:
                    used += proc.usedGpuMemory
        return used
    except Exception:  # no library, no driver, no GPU: all mean "no VRAM figure"
        _nvml_state["unavailable"] = True
        return None


def tps(tokens: int, ms: float) -> float | None:
    return round(tokens / ms * 1000.0, 2) if tokens > 0 and ms > 0 else None
