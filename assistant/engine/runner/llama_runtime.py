"""Thin, safe wrappers over llama.cpp's C API (through llama-cpp-python's ctypes).

This is the only module that knows the C API. It adds three things the bindings
lack: the AMX crash guard, a log sink that captures llama.cpp's buffer sizes (the
only place llama.cpp reports KV and compute memory), and a description of the
build and devices for the statistics record.
"""

import ctypes
import re
import threading
from dataclasses import dataclass, field
from functools import lru_cache

import llama_cpp
import llama_cpp.llama_cpp as C

# --- Logging: capture, don't print. llama.cpp logs from its own threads too.
_log_lock = threading.Lock()
_log_lines: list[str] = []
_last_level = [0]
_DEBUG, _CONT = 1, 5  # ggml_log_level: NONE=0, DEBUG=1, INFO=2, WARN=3, ERROR=4, CONT=5
_LOG_KEEP = 5000  # a model load logs its whole metadata; keep enough to see the buffer sizes after it


@C.llama_log_callback
def _log_sink(level, text, user_data):  # noqa: ARG001 - signature fixed by C
    # Debug output (every tensor, every layer) is thousands of lines per load: skip it.
    if level == _CONT:
        level = _last_level[0]
    _last_level[0] = level
    if level == _DEBUG:
        return
    try:
        line = text.decode("utf-8", errors="replace")
    except Exception:  # never raise into C
        return
    with _log_lock:
        _log_lines.append(line)
        del _log_lines[:-_LOG_KEEP]


def _install_log_sink() -> None:
    C.llama_log_set(_log_sink, ctypes.c_void_p(0))


def log_callback():
    """The C log callback that captures llama.cpp's lines, for the libraries beside it (libmtmd) to log into."""
    return _log_sink


def log_mark() -> int:
    with _log_lock:
        return len(_log_lines)


def log_since(mark: int) -> str:
    with _log_lock:
        return "".join(_log_lines[mark:]) if mark <= len(_log_lines) else "".join(_log_lines)


_BUFFER_RE = re.compile(r"(\S+?)(?:_Mapped|_Host|_REPACK)?\s+(model|KV|compute|output|RS)\s+buffer size\s*=\s*([\d.]+)\s*MiB")


@dataclass
class BufferSizes:
    """Bytes llama.cpp allocated, by kind, and how much of it sits on a GPU."""

    weights: int = 0
    kv: int = 0
    compute: int = 0
    output: int = 0
    on_gpu: int = 0
    seen: bool = False


def parse_buffer_sizes(log: str) -> BufferSizes:
    sizes = BufferSizes()
    for device, kind, mib in _BUFFER_RE.findall(log):
        n = int(float(mib) * 1024 * 1024)
        sizes.seen = True
        if kind == "model":
            sizes.weights += n
        elif kind in ("KV", "RS"):
            sizes.kv += n
        elif kind == "compute":
            sizes.compute += n
        else:
            sizes.output += n
        if not device.upper().startswith("CPU"):
            sizes.on_gpu += n
    return sizes


# --- Backend initialisation and the AMX guard.
_init_lock = threading.Lock()
_initialised = False


def ensure_backend() -> None:
    global _initialised
    with _init_lock:
        if not _initialised:
            _install_log_sink()
            C.llama_backend_init()
            _initialised = True


@lru_cache(maxsize=1)
def system_info() -> str:
    ensure_backend()
    return C.llama_print_system_info().decode("utf-8", errors="replace")


def has_amx() -> bool:
    """True when this llama.cpp build would take ggml's AMX path on this CPU."""
    return "AMX_INT8 = 1" in system_info()


def supports_gpu_offload() -> bool:
    ensure_backend()
    return bool(C.llama_supports_gpu_offload())


@dataclass
class BackendInfo:
    llama_cpp_python: str
    system_info: str
    gpu_offload: bool
    amx_guard: bool
    devices: list[str] = field(default_factory=list)

    def kind(self, n_gpu_layers: int) -> str:
        if not (self.gpu_offload and n_gpu_layers):
            return "CPU"
        text = " ".join(self.devices).upper() + " " + self.system_info.upper()
        for name in ("CUDA", "METAL", "VULKAN", "HIP", "SYCL"):
            if name in text:
                return name.title() if name == "METAL" else name
        return "GPU"


@lru_cache(maxsize=1)
def backend_info() -> BackendInfo:
    ensure_backend()
    devices = []
    # ggml's device registry is not bound by llama-cpp-python; its system info names
    # the compiled backends, and the load log names the devices that got buffers.
    for part in system_info().split("|"):
        part = part.strip()
        if part and "=" not in part:
            devices.append(part)
    return BackendInfo(
        llama_cpp_python=llama_cpp.__version__,
        system_info=system_info().strip(),
        gpu_offload=supports_gpu_offload(),
        amx_guard=has_amx(),
        devices=devices,
    )


# --- Model and context.
class LlamaLoadError(RuntimeError):
    pass


class ContextSettingsError(LlamaLoadError):
    """llama.cpp refused a context because of the settings asked for (a cache type the model's heads do not fit)."""


def load_model(path: str, n_gpu_layers: int, use_mmap: bool = True):
    ensure_backend()
    params = C.llama_model_default_params()
    params.n_gpu_layers = n_gpu_layers
    params.use_mmap = use_mmap
    if has_amx():
        # llama.cpp issue #20824: the AMX repacked-weight buffer segfaults on the first
        # Q4_K decode. Without extra buffer types the AVX-512 path runs at the same speed.
        params.use_extra_bufts = False
    model = C.llama_model_load_from_file(path.encode("utf-8"), params)
    if not model:
        raise LlamaLoadError("llama.cpp could not load it")
    return model


# The KV cache types offered (K and V alike), as llama-server's -ctk/-ctv name them.
KV_CACHE_TYPES = {"f16": C.GGML_TYPE_F16, "q8_0": C.GGML_TYPE_Q8_0, "q4_0": C.GGML_TYPE_Q4_0}
FLASH_ATTN = {"auto": C.LLAMA_FLASH_ATTN_TYPE_AUTO, "on": C.LLAMA_FLASH_ATTN_TYPE_ENABLED,
              "off": C.LLAMA_FLASH_ATTN_TYPE_DISABLED}


def new_context(model, *, n_ctx: int, n_batch: int, n_threads: int, kv_cache_type: str = "f16",
                flash_attn: str = "auto", swa_full: bool = False):
    params = C.llama_context_default_params()
    params.n_ctx = n_ctx
    params.n_batch = n_batch
    params.n_ubatch = min(n_batch, 512)
    params.n_seq_max = 1
    params.n_threads = n_threads
    params.n_threads_batch = n_threads
    params.no_perf = True
    # llama-server's default: sliding-window layers get a cache of the window (plus one micro-batch),
    # not of the whole context. A follow-up turn still reuses its prefix through checkpoints
    # (llama_model.Checkpoints); llama-cpp-python's own default (full-size) costs 5x the memory on Gemma 3.
    params.swa_full = swa_full
    params.type_k = params.type_v = KV_CACHE_TYPES[kv_cache_type]
    if kv_cache_type != "f16" and flash_attn == "off":
        flash_attn = "on"  # llama.cpp refuses a quantized V cache without flash attention
    params.flash_attn_type = FLASH_ATTN[flash_attn]
    ctx = C.llama_init_from_model(model, params)
    if not ctx:
        raise LlamaLoadError("llama.cpp could not create a context (not enough memory?)")
    return ctx


_FA_ON_RE = re.compile(r"flash_attn\s*=\s*enabled|Flash Attention enabled|enabling flash_attn")
_FA_OFF_RE = re.compile(r"flash_attn\s*=\s*disabled|Flash Attention not supported|set to disabled")


def flash_attn_used(log: str) -> bool | None:
    """Whether llama.cpp turned flash attention on for a context, from its creation log (None: not said).

    With "auto" llama.cpp decides per backend while it reserves the graphs, and only its log tells."""
    on, off = _FA_ON_RE.search(log), _FA_OFF_RE.search(log)
    if on and off:  # auto first said, then resolved: the later line wins
        return on.start() > off.start()
    return True if on else False if off else None


def context_error(log: str) -> str | None:
    """llama.cpp's reason for refusing a context, when it logged one worth a sentence."""
    match = re.search(r"(K|V) cache type (\S+) with block size (\d+) does not divide n_embd_head_\w=(\d+)", log)
    if match:
        which, kind, block, head = match.groups()
        return (f"a {kind} {which} cache stores blocks of {block} values, and this model's attention heads hold "
                f"{head}; choose the f16 KV cache type for it")
    if "quantized V cache requires flash_attn" in log:
        return "a quantized V cache needs flash attention; turn it on (or auto)"
    return None


def free(model=None, ctx=None) -> None:
    if ctx:
        C.llama_free(ctx)
    if model:
        C.llama_model_free(model)


def backend_record(n_gpu_layers: int) -> dict:
    """The build and device a reply ran on, for its statistics record."""
    info = backend_info()
    return {"llama_cpp_python": info.llama_cpp_python, "kind": info.kind(n_gpu_layers),
            "gpu_offload": info.gpu_offload, "n_gpu_layers": n_gpu_layers, "amx_guard": info.amx_guard,
            "devices": info.devices, "system_info": info.system_info, "process": "runner"}
