"""A user's image file in, raw RGB pixels out: decoded with Pillow, inside a process that may crash.

Only runner-side processes import this (the model's runner, and the image check that the app
starts on its own when no model can look): an image file is untrusted input, and a decoder bug
must cost a child process, never the app. llama.cpp never sees the file itself, only the
pixels this module hands over, so its own image decoder (stb_image) never parses a user's file.

Every image is checked within limits before its pixels are decoded:
- bytes: at most `max_bytes`;
- what it is: Pillow identifies it by its content (a JPEG named .png is read as a JPEG, a
  text file named .png is refused), from PNG, JPEG, GIF, WebP and BMP only;
- pixels: the header's width and height, read before decoding, at most `max_pixels` and
  `max_side` (a 20,000 x 20,000 PNG of a few kilobytes is refused without decoding it);
- frames: an animated GIF, PNG or WebP gives its first frame; later frames are never decoded;
- damage: a truncated or corrupt file is refused with what Pillow found.
It is then turned upright (EXIF orientation), flattened onto white where it has transparency,
converted to RGB, and shrunk (never enlarged) to the longest side the projector can use.
"""

from __future__ import annotations

import hashlib
import io
import struct
import warnings
from dataclasses import dataclass

from common.errors import UserError
from common.formatting import format_bytes

FORMATS = ("PNG", "JPEG", "GIF", "WEBP", "BMP")


@dataclass(frozen=True)
class ImageLimits:
    max_bytes: int = 20 * 1024 * 1024  # OpenAI's own limit per image
    max_pixels: int = 50_000_000  # a 48-megapixel phone photo fits; decoding it takes about 200 MB
    max_side: int = 20_000 - 1  # no real photo is this long; a hostile header often is


LIMITS = ImageLimits()


class ImageRefused(UserError):
    """An image that cannot be used, with one sentence saying why."""


@dataclass(frozen=True)
class DecodedImage:
    """Pixels ready for llama.cpp: `width * height * 3` bytes, RGBRGB..."""

    sha256: str  # of the file's bytes: the image's identity in the KV cache and in the history
    width: int
    height: int
    rgb: bytes
    source_format: str  # "PNG", "JPEG", ...
    source_size: tuple[int, int]  # as stored, before it was turned upright and shrunk
    animated: bool = False  # only its first frame was used
    full_size: tuple[int, int] = (0, 0)  # upright, before it was shrunk: the picture's own size


def image_label(name: str | None) -> str:
    return f"The image {name!r}" if name else "The image"


def decode(data: bytes, *, name: str | None = None, max_side_out: int | None = None,
           limits: ImageLimits = LIMITS, sha256: str | None = None) -> DecodedImage:
    """Decode one image file's bytes; ImageRefused (one sentence) when it cannot be used. `sha256`: the
    bytes' hash when the caller has it already (a 20 MB file is not hashed twice)."""
    from PIL import Image, ImageOps, UnidentifiedImageError

    label = image_label(name)
    if not data:
        raise ImageRefused(f"{label} is empty (0 bytes).")
    if len(data) > limits.max_bytes:
        raise ImageRefused(f"{label} is {format_bytes(len(data))}, more than the {format_bytes(limits.max_bytes)} "
                           "an image may be.")
    # Pillow's own bomb check stays as a backstop, set above ours: ours names the picture's size in its sentence.
    Image.MAX_IMAGE_PIXELS = 2 * limits.max_side * limits.max_side
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)  # our own check below says more
            image = Image.open(io.BytesIO(data), formats=FORMATS)
            width, height = image.size
            _check_size(label, width, height, limits)
            animated = bool(getattr(image, "is_animated", False))
            if animated:
                image.seek(0)
            fmt = image.format or "?"
            if fmt == "JPEG" and max_side_out:
                # Decode a large JPEG at a reduced scale straight away: less memory, less time.
                image.draft("RGB", (max_side_out, max_side_out))
            image.load()
            before = image.size  # a JPEG's draft may have scaled it already
            image = _upright(image, ImageOps)
            turned = before[0] != before[1] and image.size == (before[1], before[0])
            full_size = (height, width) if turned else (width, height)
            rgb_image = _to_rgb(image, Image)
            if max_side_out and max(rgb_image.size) > max_side_out:
                rgb_image.thumbnail((max_side_out, max_side_out), Image.Resampling.BICUBIC)
            w, h = rgb_image.size
            pixels = rgb_image.tobytes()
    except ImageRefused:
        raise
    except UnidentifiedImageError:
        raise ImageRefused(f"{label} is not a picture Hearth can read: it is not a PNG, JPEG, GIF, WebP or BMP "
                           "file, whatever its name says.") from None
    except Image.DecompressionBombError:
        raise ImageRefused(f"{label} declares more pixels than the {limits.max_pixels // 1_000_000} megapixels "
                           "an image may have, so it was not decoded.") from None
    except MemoryError:
        raise ImageRefused(f"{label} needs more memory to decode than the model's process is allowed.") from None
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError, struct.error) as exc:
        # Pillow's words for a damaged file ("image file is truncated", "broken data stream", ...).
        why = str(exc).strip().rstrip(".") or type(exc).__name__
        raise ImageRefused(f"{label} is damaged or cut short, so it cannot be read ({why}).") from None
    if w < 1 or h < 1 or len(pixels) != w * h * 3:
        raise ImageRefused(f"{label} decoded to no usable pixels.")
    return DecodedImage(sha256 or hashlib.sha256(data).hexdigest(), w, h, pixels, fmt, (width, height), animated, full_size)


def _check_size(label: str, width: int, height: int, limits: ImageLimits) -> None:
    if width < 1 or height < 1:
        raise ImageRefused(f"{label} says it is {width} x {height} pixels, which is no picture at all.")
    if width * height > limits.max_pixels or max(width, height) > limits.max_side:
        mp = width * height / 1_000_000
        raise ImageRefused(f"{label} is {width:,} x {height:,} pixels ({mp:,.0f} megapixels), more than the "
                           f"{limits.max_pixels // 1_000_000} megapixels an image may have, so it was not decoded.")


def _upright(image, ImageOps):
    """Turned as its camera's EXIF orientation says; a broken EXIF block is ignored, not fatal."""
    try:
        return ImageOps.exif_transpose(image) or image
    except Exception:  # a damaged EXIF block: the pixels are still good, shown as stored
        return image


def _to_rgb(image, Image):
    """RGB; transparency flattened onto white (a transparent logo on black would be invisible)."""
    if image.mode == "RGB":
        return image
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba.getchannel("A"))
        return background
    return image.convert("RGB")


def thumbnail_png(data: bytes, side: int, *, name: str | None = None, limits: ImageLimits = LIMITS) -> tuple[
        DecodedImage, bytes]:
    """The image decoded, and a PNG of it at most `side` pixels on its longest edge (written by Pillow,
    so the window shows a file this code made, never the user's)."""
    from PIL import Image

    decoded = decode(data, name=name, max_side_out=side, limits=limits)
    out = io.BytesIO()
    Image.frombytes("RGB", (decoded.width, decoded.height), decoded.rgb).save(out, format="PNG")
    return decoded, out.getvalue()
