"""A random-weight model that sees images: a tiny llama text model and a tiny Gemma 3 projector beside it.

The projector (`mmproj-*.gguf`, architecture `clip`, projector type `gemma3`) holds what
llama.cpp's multimodal library requires for that type (tools/mtmd/clip.cpp: `load_hparams`,
`load_tensors`, and the SigLIP graph in models/siglip.cpp): a patch embedding, position
embeddings, `n_layers` ViT blocks, a post-norm, and Gemma 3's soft-embedding norm and input
projection into the text model's width. With `image_size` 64, `patch_size` 8 and a pooling
factor of 2, an image becomes (64 / 8 / 2)^2 = 16 image tokens, whatever its own size.

Images for tests are written with Pillow: ordinary ones, and every kind of bad file the
app must refuse with one sentence.
"""

from __future__ import annotations

import io
import struct
import zlib
from pathlib import Path

import numpy as np
from gguf import GGUFWriter

from tests.support.tiny_gguf import write_tiny_llama

TOKENS_PER_IMAGE = 16  # (image_size / patch_size / merge) ** 2 with the defaults below


def write_tiny_projector(path, *, text_embd: int = 64, n_embd: int = 32, n_heads: int = 2, n_ff: int = 64,
                         n_layers: int = 1, image_size: int = 64, patch_size: int = 8, merge: int = 2,
                         seed: int = 0) -> Path:
    """Write a random Gemma 3-type image projector whose output is `text_embd` wide; return its path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    w = GGUFWriter(str(path), "clip")
    w.add_name("tiny-projector")
    w.add_bool("clip.has_vision_encoder", True)
    w.add_string("clip.projector_type", "gemma3")
    w.add_uint32("clip.vision.embedding_length", n_embd)
    w.add_uint32("clip.vision.feed_forward_length", n_ff)
    w.add_uint32("clip.vision.block_count", n_layers)
    w.add_uint32("clip.vision.projection_dim", text_embd)
    w.add_uint32("clip.vision.attention.head_count", n_heads)
    w.add_float32("clip.vision.attention.layer_norm_epsilon", 1e-6)
    w.add_uint32("clip.vision.image_size", image_size)
    w.add_uint32("clip.vision.patch_size", patch_size)
    w.add_uint32("clip.vision.projector.scale_factor", merge)
    w.add_array("clip.vision.image_mean", [0.5, 0.5, 0.5])
    w.add_array("clip.vision.image_std", [0.5, 0.5, 0.5])
    w.add_bool("clip.use_gelu", True)
    n_patches = (image_size // patch_size) ** 2

    def tensor(name: str, shape: tuple[int, ...], ones: bool = False) -> None:
        values = np.ones(shape, np.float32) if ones else rng.standard_normal(shape).astype(np.float32) * 0.02
        w.add_tensor(name, values)

    tensor("v.patch_embd.weight", (n_embd, 3, patch_size, patch_size))
    tensor("v.patch_embd.bias", (n_embd,))
    tensor("v.position_embd.weight", (n_patches, n_embd))
    for i in range(n_layers):
        b = f"v.blk.{i}."
        for part in ("attn_q", "attn_k", "attn_v", "attn_out"):
            tensor(b + part + ".weight", (n_embd, n_embd))
            tensor(b + part + ".bias", (n_embd,))
        for norm in ("ln1", "ln2"):
            tensor(b + norm + ".weight", (n_embd,), ones=True)
            tensor(b + norm + ".bias", (n_embd,))
        tensor(b + "ffn_up.weight", (n_ff, n_embd))
        tensor(b + "ffn_up.bias", (n_ff,))
        tensor(b + "ffn_down.weight", (n_embd, n_ff))
        tensor(b + "ffn_down.bias", (n_embd,))
    tensor("v.post_ln.weight", (n_embd,), ones=True)
    tensor("v.post_ln.bias", (n_embd,))
    tensor("mm.input_projection.weight", (n_embd, text_embd))
    tensor("mm.soft_emb_norm.weight", (n_embd,), ones=True)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path


CHATML = ("{% for m in messages %}<|im_start|>{{ m['role'] }}\n{{ m['content'] }}<|im_end|>\n{% endfor %}"
          "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}")


def write_tiny_vision_model(folder, *, seed: int = 0) -> tuple[Path, Path]:
    """A tiny llama (64 wide, with a chat template) and its projector beside it: (model, projector)."""
    folder = Path(folder)
    model = write_tiny_llama(folder / "tiny-vision.gguf", chat_template=CHATML, n_ctx=2048, seed=seed)
    projector = write_tiny_projector(folder / "mmproj-tiny-vision.gguf", seed=seed)
    return model, projector


# --- images --------------------------------------------------------------------------------------------------


def png_bytes(width: int = 48, height: int = 32, color=(200, 40, 40), mode: str = "RGB", **save) -> bytes:
    from PIL import Image

    image = Image.new(mode, (width, height), color)
    out = io.BytesIO()
    image.save(out, format="PNG", **save)
    return out.getvalue()


def jpeg_bytes(width: int = 40, height: int = 30, color=(20, 120, 220), orientation: int | None = None) -> bytes:
    from PIL import Image

    image = Image.new("RGB", (width, height), color)
    out = io.BytesIO()
    if orientation is not None:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(out, format="JPEG", exif=exif.tobytes())
    else:
        image.save(out, format="JPEG")
    return out.getvalue()


def huge_png_header(width: int = 20_000, height: int = 20_000) -> bytes:
    """A few hundred bytes that claim width x height pixels: a decompression bomb's header (the pixel data is one
    small compressed row, cut short: nothing here should ever try to inflate it)."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" * (width * 3 + 1))
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


def animated_gif_bytes(frames: int = 3, size: int = 24) -> bytes:
    from PIL import Image

    images = [Image.new("RGB", (size, size), (i * 60 % 256, 80, 160)) for i in range(frames)]
    out = io.BytesIO()
    images[0].save(out, format="GIF", save_all=True, append_images=images[1:], duration=50, loop=0)
    return out.getvalue()


def png_bytes_noise(width: int, height: int, seed: int = 0) -> bytes:
    from PIL import Image

    pixels = np.random.default_rng(seed).integers(0, 255, (height, width, 3), dtype=np.uint8)
    out = io.BytesIO()
    Image.fromarray(pixels, "RGB").save(out, format="PNG")
    return out.getvalue()


# Each kind of file the app must refuse, with the words its sentence must hold.
BAD_IMAGES: dict[str, tuple[bytes, str]] = {}


def bad_images() -> dict[str, tuple[bytes, str]]:
    """{kind: (bytes, a word the refusal says)} for every class of bad image file."""
    if not BAD_IMAGES:
        BAD_IMAGES.update({
            "empty": (b"", "empty"),
            "not_an_image": (b"This is a text file that someone named photo.png\n" * 4, "not a picture"),
            "mislabelled_gguf": (b"GGUF\x03\x00\x00\x00" + b"\x00" * 64, "not a picture"),
            "huge_dimensions": (huge_png_header(), "megapixels"),
            "truncated": (png_bytes_noise(64, 64)[:300], "damaged"),
            "too_many_bytes": (b"\x89PNG\r\n\x1a\n" + b"\x00" * (21 * 1024 * 1024), "more than"),
        })
    return BAD_IMAGES
