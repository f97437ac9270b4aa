"""Image projectors (`mmproj-*.gguf`): the file beside a model that lets it see images.

A projector is a GGUF file of architecture `clip`. This module reads its header (through the
same bounded walker as a model's, `models.gguf_file`), finds the projector that sits beside a
model file, and estimates what it costs in memory: its weights, read from the tensor table
(llama.cpp's "model size" for the projector), plus a compute buffer for one image.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from common.errors import ModelFileError
from models.gguf_file import read_gguf_info

PROJECTOR_GLOB = "mmproj*.gguf"
MIN_SIDE, MAX_SIDE = 224, 4096


class ProjectorFileError(ModelFileError):
    """An image projector that cannot be used."""

    def __init__(self, path, reason: str):
        super().__init__(path, reason)
        self.args = (f"The image projector {self.path} cannot be used: {reason}.",)


@dataclass(frozen=True)
class ProjectorInfo:
    path: Path
    size_bytes: int
    weights_bytes: int  # the tensors, as llama.cpp loads them
    projector_type: str  # "gemma3", "mlp", "qwen2.5vl_merger", "pixtral", ...
    image_size: int | None
    patch_size: int | None
    max_pixels: int | None  # dynamic-resolution projectors: the most pixels they take
    embedding_length: int | None  # the vision encoder's width
    feed_forward_length: int | None

    @property
    def max_side(self) -> int:
        """The longest side worth handing the library: larger images are shrunk to it first (never enlarged),
        so what is sent and decoded stays small; the library resizes to exactly what it needs itself."""
        side = 0
        if self.max_pixels:
            side = int(math.isqrt(self.max_pixels))
        if self.image_size:
            side = max(side, 2 * self.image_size)  # tiling projectors (LLaVA-NeXT) take a few tiles
        return min(MAX_SIDE, max(MIN_SIDE, side or 1024))

    @property
    def compute_bytes(self) -> int:
        """The encoder's scratch for one image (approximate): the image as floats, its patches, and a few
        activations per patch of the widest layer. Flash attention (llama.cpp's default here) keeps the
        attention scores out of it."""
        size, patch = self.image_size or 336, self.patch_size or 14
        n_patches = (size // patch) ** 2
        embd = self.embedding_length or 1024
        ff = self.feed_forward_length or 4 * embd
        image = size * size * 3 * 4
        patches = n_patches * patch * patch * 3 * 4 * 2
        activations = 4 * n_patches * (3 * embd + ff) * 4
        return image + patches + activations

    @property
    def memory_bytes(self) -> int:
        return self.weights_bytes + self.compute_bytes


def read_projector_info(path) -> ProjectorInfo:
    """A projector file's header, checked; ModelFileError when it is not an image projector."""
    p = Path(path).expanduser()
    try:
        info = read_gguf_info(p)
    except ModelFileError as exc:
        raise ProjectorFileError(p, exc.reason) from None
    meta = info.clip_meta
    if info.architecture != "clip":
        raise ProjectorFileError(p, f"it is a {info.architecture} model, not an image projector (mmproj)")
    if meta.get("clip.has_vision_encoder") is not True:
        raise ProjectorFileError(p, "it is a projector without a vision encoder, so it cannot read images")
    kind = meta.get("clip.projector_type") or meta.get("clip.vision.projector_type")

    def count(key: str) -> int | None:
        v = meta.get(key)
        return v if isinstance(v, int) and not isinstance(v, bool) and v > 0 else None

    return ProjectorInfo(
        path=p.absolute(), size_bytes=info.size_bytes, weights_bytes=info.tensor_bytes,
        projector_type=kind if isinstance(kind, str) else "?",
        image_size=count("clip.vision.image_size"), patch_size=count("clip.vision.patch_size"),
        max_pixels=count("clip.vision.image_max_pixels"),
        embedding_length=count("clip.vision.embedding_length"),
        feed_forward_length=count("clip.vision.feed_forward_length"),
    )


def find_beside(model_path) -> Path | None:
    """The projector in the model file's folder (`mmproj*.gguf`), or None.

    Several there (F16 and Q8_0 of one projector, say): the one whose name shares most with the
    model's, then the smallest.
    """
    model = Path(model_path)
    try:
        found = [p for p in model.parent.glob(PROJECTOR_GLOB) if p.is_file() and p != model]
    except OSError:
        return None
    if not found:
        return None
    stem = model.stem.lower()

    def shared(p: Path) -> int:
        name = p.stem.lower().removeprefix("mmproj").strip("-_.")
        return next((n for n in range(len(name), 0, -1) if name[:n] in stem), 0)

    return min(found, key=lambda p: (-shared(p), p.stat().st_size, p.name))


def estimate_from_size(size_bytes: int) -> int:
    """A projector's memory known only by its file's size (a catalogue entry not downloaded yet): its weights and
    a compute buffer of about half their size (approximate; the header, once read, gives `ProjectorInfo.memory_bytes`)."""
    return size_bytes + min(1 << 30, max(64 << 20, size_bytes // 2))


def for_model(path, named: str | None = None) -> ProjectorInfo | None:
    """The projector a model file sees images through: the one `named` (an error if it cannot be used), else an
    `mmproj*.gguf` beside it (skipped, not an error, when it cannot be used); None when there is none."""
    if named:
        return read_projector_info(named)
    found = find_beside(path) if path else None
    if found is None:
        return None
    try:
        return read_projector_info(found)
    except ModelFileError:
        return None
