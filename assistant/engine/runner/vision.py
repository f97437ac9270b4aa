"""A model's image projector (mmproj) through llama.cpp's multimodal library (libmtmd).

The projector turns pixels into image tokens: `tokenize` splits a rendered prompt at its image
markers into text tokens and image chunks, counted as the library counts them; `evaluate`
encodes one image chunk and decodes its embeddings into the model's KV cache. Only raw RGB
pixels from `images.decode` reach the library: its own file decoder is never used.

In the prompt's token list an image is a run of placeholder ids, one per KV position it takes,
derived from the image's SHA-256: negative, so no real token can equal one. A follow-up turn
about the same image therefore matches the cached prefix through it, and a different image
differs at its first placeholder, so the cache is kept up to there and evaluated from there.
"""

from __future__ import annotations

import ctypes
import re
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

from assistant.engine.runner import llama_runtime as rt
from assistant.engine.runner.images import DecodedImage


class ProjectorLoadError(RuntimeError):
    pass


_MODEL_SIZE_RE = re.compile(r"model size:\s*([\d.]+)\s*MiB")
_COMPUTE_RE = re.compile(r"(\S+)\s+compute buffer size\s*=\s*([\d.]+)\s*MiB")
_MISMATCH_RE = re.compile(r"mismatch between text model \(n_embd = (\d+)\) and mmproj \(n_embd = (\d+)\)")


def placeholder(sha256: str, i: int) -> int:
    """The id standing for position `i` of an image in the prompt's token list (never a real token)."""
    return -1 - ((int(sha256[:12], 16) << 20) + i)


@dataclass
class ImageSpan:
    """One image chunk of a tokenized prompt: where it starts in the token list and what it takes."""

    start: int
    n_pos: int  # KV positions (M-RoPE models: fewer than its tokens)
    n_tokens: int  # as the library counts them
    sha256: str
    chunk: Any  # the library's chunk, alive while its PromptChunks is


@dataclass
class PromptChunks:
    """A prompt split into text tokens and images; `close()` frees the library's chunks."""

    tokens: list[int]
    spans: dict[int, ImageSpan] = field(default_factory=dict)  # by start index
    _handle: Any = None
    _bitmaps: list = field(default_factory=list)

    @property
    def image_tokens(self) -> int:
        return sum(s.n_tokens for s in self.spans.values())

    def close(self) -> None:
        from llama_cpp import mtmd_cpp as M

        if self._handle is not None:
            M.mtmd_input_chunks_free(self._handle)
            self._handle = None
        for bitmap in self._bitmaps:
            M.mtmd_bitmap_free(bitmap)
        self._bitmaps = []


class Projector:
    """One loaded projector, tied to the model it was loaded for."""

    def __init__(self, path: str, model, *, n_threads: int, use_gpu: bool, max_side: int | None = None):
        from llama_cpp import mtmd_cpp as M

        self._M = M
        self.path = path
        self.max_side = max_side
        # A marker no user can type by chance: the image's place in the rendered prompt.
        self.marker = f"<__hearth_image_{secrets.token_hex(8)}__>"
        self._marker_bytes = self.marker.encode()
        rt.ensure_backend()
        M.mtmd_helper_log_set(rt.log_callback(), ctypes.c_void_p(0))  # its words into the runner's log
        params = M.mtmd_context_params_default()
        params.use_gpu = use_gpu
        params.n_threads = n_threads
        params.print_timings = False
        params.media_marker = self._marker_bytes
        params.warmup = True  # reserves the compute buffer now, so its size is known (llama-server does too)
        mark = rt.log_mark()
        t0 = time.perf_counter()
        self.ctx = M.mtmd_init_from_file(path.encode("utf-8"), model.model, params)
        self.load_ms = round((time.perf_counter() - t0) * 1000, 1)
        log = rt.log_since(mark)
        if not self.ctx:
            raise ProjectorLoadError(_load_failure(log))
        if not M.mtmd_support_vision(self.ctx):
            M.mtmd_free(self.ctx)
            self.ctx = None
            raise ProjectorLoadError("it is not an image projector (it has no vision encoder)")
        self.weights_bytes = sum(int(float(x) * 1024 * 1024) for x in _MODEL_SIZE_RE.findall(log))
        self.compute_bytes = sum(int(float(mib) * 1024 * 1024) for _dev, mib in _COMPUTE_RE.findall(log))
        self.on_gpu = any(not dev.upper().startswith("CPU") for dev, _mib in _COMPUTE_RE.findall(log))

    @property
    def memory_bytes(self) -> int:
        return self.weights_bytes + self.compute_bytes

    def record(self) -> dict[str, Any]:
        return {"path": self.path, "weights_bytes": self.weights_bytes, "compute_bytes": self.compute_bytes,
                "bytes": self.memory_bytes, "on_gpu": self.on_gpu, "load_ms": self.load_ms}

    def tokenize(self, text: str, images: list[DecodedImage], add_special: bool) -> PromptChunks:
        """Split `text` at its markers, one image each, in order; UserError-worthy problems raise ValueError."""
        M = self._M
        n_markers = text.count(self.marker)
        if n_markers != len(images):
            raise ValueError(f"the chat template placed {n_markers} image markers for {len(images)} images (it "
                             "repeats or drops messages' text)")
        prompt = PromptChunks(tokens=[])
        try:
            for image in images:
                buf = (ctypes.c_ubyte * len(image.rgb)).from_buffer_copy(image.rgb)
                bitmap = M.mtmd_bitmap_init(image.width, image.height, buf)
                if not bitmap:
                    raise ValueError("the multimodal library could not take the image's pixels")
                prompt._bitmaps.append(bitmap)
                M.mtmd_bitmap_set_id(bitmap, image.sha256.encode("ascii"))
            prompt._handle = M.mtmd_input_chunks_init()
            data = text.encode("utf-8")
            inp = M.mtmd_input_text()
            inp.text, inp.text_len, inp.add_special, inp.parse_special = data, len(data), add_special, True
            array = (M.mtmd_bitmap_p_ctypes * max(1, len(images)))(*prompt._bitmaps)
            rc = M.mtmd_tokenize(self.ctx, prompt._handle, ctypes.byref(inp), array, len(images))
            if rc != 0:
                raise ValueError({1: "the prompt's image markers and its images do not match",
                                  2: "the multimodal library could not prepare an image"}.get(rc, f"error {rc}"))
            for i in range(M.mtmd_input_chunks_size(prompt._handle)):
                chunk = M.mtmd_input_chunks_get(prompt._handle, i)
                if M.mtmd_input_chunk_get_type(chunk) == M.MTMD_INPUT_CHUNK_TYPE_TEXT:
                    n = ctypes.c_size_t(0)
                    ids = M.mtmd_input_chunk_get_tokens_text(chunk, ctypes.byref(n))
                    prompt.tokens.extend(ids[: n.value])
                else:
                    raw_id = M.mtmd_input_chunk_get_id(chunk)
                    sha = raw_id.decode("ascii", "replace") if raw_id else secrets.token_hex(32)
                    n_pos = int(M.mtmd_input_chunk_get_n_pos(chunk))
                    span = ImageSpan(start=len(prompt.tokens), n_pos=n_pos,
                                     n_tokens=int(M.mtmd_input_chunk_get_n_tokens(chunk)), sha256=sha, chunk=chunk)
                    prompt.spans[span.start] = span
                    prompt.tokens.extend(placeholder(sha, j) for j in range(n_pos))
        except BaseException:
            prompt.close()
            raise
        return prompt

    def evaluate(self, span: ImageSpan, lctx, n_past: int, n_batch: int) -> tuple[int, float]:
        """Encode the image and decode its embeddings at `n_past`: (rc, encode ms). rc 0 is success."""
        M = self._M
        t0 = time.perf_counter()
        rc = M.mtmd_encode_chunk(self.ctx, span.chunk)
        encode_ms = (time.perf_counter() - t0) * 1000
        if rc != 0:
            return rc, encode_ms
        embd = M.mtmd_get_output_embd(self.ctx)
        new_n_past = ctypes.c_int32(0)
        rc = M.mtmd_helper_decode_image_chunk(self.ctx, lctx, span.chunk, embd, n_past, 0, n_batch,
                                              ctypes.byref(new_n_past), M.mtmd_helper_post_decode_callback(), None)
        return rc, encode_ms

    def close(self) -> None:
        if self.ctx:
            self._M.mtmd_free(self.ctx)
            self.ctx = None


def _load_failure(log: str) -> str:
    mismatch = _MISMATCH_RE.search(log)
    if mismatch:
        return (f"it was made for another model: it gives {mismatch.group(2)}-wide image embeddings and this model "
                f"takes {mismatch.group(1)}")
    lines = [line.strip() for line in log.splitlines() if "error" in line.lower() or "failed" in line.lower()]
    return f"llama.cpp could not load it ({lines[-1][:200]})" if lines else "llama.cpp could not load it"
