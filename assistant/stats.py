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

STOP_REASONS = ("eos", "length", "stopped", "context_full", "repetition", "error")


@dataclass
class ModelRef:
    name: str
    file: str | None  # None for a remote model
    quant: str | None
    size_bytes: int | None
    n_params: int | None


@dataclass
class MemoryStats:
    """Memory of the model's process (the runner) and, apart, of the app itself.

    None means "not known": a runner that died took its figures with it, and a
    remote model's memory is the server's, never this machine's.
    """

    weights_bytes: int | None
    kv_bytes: int | None
    compute_bytes: int | None
    rss_bytes: int | None  # the model's process, now
    rss_peak_bytes: int | None  # the model's process, its peak
    vram_bytes: int | None  # GPU memory the model's process holds (NVML)
    app_rss_bytes: int | None = None  # the app's own process, apart from the model's
    draft_bytes: int | None = None  # a draft model's weights, KV cache and compute buffer (in rss_bytes too)
    projector_bytes: int | None = None  # an image projector loaded with the model: weights and compute buffer
    checkpoint_bytes: int | None = None  # context checkpoints the model's process keeps (see runner/checkpoints.py)


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
    n_ctx: int | None
    n_threads: int | None
    memory: MemoryStats
    backend: dict
    context: dict = field(default_factory=dict)  # policy applied, tokens used, turns dropped
    sampling: dict = field(default_factory=dict)
    chat_format: str | None = None
    error: str | None = None
    # How the reply reached the app: the runner's own first-token time, the rate the app received
    # text at, how many batches; for a remote model, the server's figures.
    transport: dict = field(default_factory=dict)
    # A reasoning model's thinking, kept apart from the answer: its text, its tokens and the time it took
    # (from the first token to the thinking's end). `reply` is the answer alone. Token accounting:
    # `completion_tokens` counts every generated token, thinking included, so gen_tps, OpenAI's
    # `completion_tokens` and every speed stay right; `thinking_tokens + answer_tokens == completion_tokens`.
    thinking: str | None = None
    thinking_tokens: int = 0
    thinking_ms: float = 0.0
    answer_tokens: int = 0
    thinking_format: str | None = None  # the format the reply was read with (thinking.FORMATS); None: not read
    thinking_unfinished: bool = False  # the reply ended inside its thinking (a length limit, a stop)
    thinking_closed_by_budget: bool = False  # the runner closed the thinking at the thinking budget
    # Images in the prompt: {"count", "tokens", "encode_ms", "projector_bytes"}; empty when there were none.
    images: dict = field(default_factory=dict)
    # Speculative decoding: {"kind": "model"|"lookup", "model", "drafted", "accepted"}; None without drafting.
    draft: dict | None = None
    # The KV cache as allocated: {"type": "f16"|"q8_0"|"q4_0", "flash_attn": bool, "swa": "window"|"full"|None};
    # from the runner also "flash_attn_setting", "recurrent", "checkpoints", "checkpoint_bytes", "max_checkpoints",
    # "resumed_from" (the checkpoint this reply's prompt resumed from).
    kv_cache: dict = field(default_factory=dict)

    def to_dict(self) -> dict:
        return asdict(self)


def rss_bytes(pid: int | None = None) -> int | None:
    try:
        return psutil.Process(pid).memory_info().rss
    except psutil.Error:  # the process is gone
        return None


def rss_peak_bytes() -> int:
    """This process's peak resident memory (call it in the process you measure).

    On Linux, VmHWM of /proc/self/status: getrusage's ru_maxrss survives exec, so a runner
    started by the app would report the app's own peak (measured: a runner started from a
    600 MB process said 584 MB, its VmHWM 11 MB).
    """
    if sys.platform.startswith("linux"):
        try:
            with open("/proc/self/status", encoding="ascii", errors="replace") as f:
                for line in f:
                    if line.startswith("VmHWM:"):
                        return int(line.split()[1]) * 1024  # kB
        except (OSError, ValueError, IndexError):  # no /proc (a sandbox): getrusage is the next best
            pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak if sys.platform == "darwin" else peak * 1024  # Linux reports KiB


_nvml_state: dict = {}


def vram_bytes(pid: int | None = None) -> int | None:
    """GPU memory process `pid` (default: this one) holds, or None without an NVIDIA GPU and driver."""
    if _nvml_state.get("unavailable"):
        return None
    try:
        import pynvml

        if not _nvml_state.get("ready"):
            pynvml.nvmlInit()
            _nvml_state["ready"] = True
        pid, used = pid or os.getpid(), 0
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
