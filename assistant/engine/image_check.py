"""Check images before anything is saved, and make their thumbnails, without decoding them in the app.

`check_images` hands the files to `python -m assistant.engine.runner.image_worker`, a process
of its own with the runner's decoder under a memory ceiling and a CPU-time limit, and reads
back plain JSON: each image's size and a small PNG the worker wrote, or one sentence. A file
that crashes or hangs the decoder costs that process; the app says so in a sentence.
"""

from __future__ import annotations

import base64
import dataclasses
import json
import logging
import os
import subprocess
import sys
from dataclasses import dataclass

import assistant
from assistant.images import ImageAttachment, ImageError

log = logging.getLogger(__name__)

THUMBNAIL_SIDE = 256
CHECK_SECONDS = 60.0
MAX_ANSWER_BYTES = 64 << 20


@dataclass(frozen=True)
class CheckedImage:
    image: ImageAttachment  # with its width and height filled in
    thumbnail_png: bytes  # at most `side` pixels long, written by the worker
    animated: bool = False


def check_images(images: list[ImageAttachment], side: int = THUMBNAIL_SIDE) -> list[CheckedImage]:
    """Decode each image in the worker process; ImageError (the first bad image's sentence) if one cannot be used."""
    if not images:
        return []
    request = json.dumps({"side": side, "images": [
        {"name": i.name, "data": base64.b64encode(i.data).decode("ascii")} for i in images]}).encode("ascii")
    root = os.path.dirname(os.path.dirname(os.path.abspath(assistant.__file__)))
    env = dict(os.environ)
    env["PYTHONPATH"] = root + (os.pathsep + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    try:
        done = subprocess.run([sys.executable, "-m", "assistant.engine.runner.image_worker"], input=request,
                              capture_output=True, timeout=CHECK_SECONDS, env=env, cwd=root)
    except subprocess.TimeoutExpired:
        raise ImageError(f"{_which(images)} took longer than {CHECK_SECONDS:.0f} s to decode, so it was refused as "
                         "damaged or hostile.") from None
    except OSError as exc:
        raise ImageError(f"The images could not be checked: the checking process did not start ({exc}).") from None
    if done.returncode != 0 or len(done.stdout) > MAX_ANSWER_BYTES:
        log.warning("the image check ended with %s: %s", done.returncode, done.stderr[-2000:].decode("utf-8", "replace"))
        raise ImageError(f"{_which(images)} made the image decoder fail ({_how(done.returncode)}), so it was refused "
                         "as damaged or hostile; the app was not affected.")
    try:
        results = json.loads(done.stdout)["results"]
        if len(results) != len(images):
            raise ValueError("wrong number of results")
    except (ValueError, KeyError, TypeError) as exc:
        raise ImageError(f"The image check gave an answer that could not be read ({exc}).") from None
    checked = []
    for image, result in zip(images, results, strict=True):
        if not isinstance(result, dict) or not result.get("ok"):
            sentence = result.get("sentence") if isinstance(result, dict) else None
            raise ImageError(str(sentence or f"{image.label} cannot be used."))
        width, height = _count(result.get("width")), _count(result.get("height"))
        try:
            png = base64.b64decode(str(result.get("thumbnail") or ""), validate=True)
        except ValueError:
            png = b""
        checked.append(CheckedImage(dataclasses.replace(image, width=width, height=height), png,
                                    bool(result.get("animated"))))
    return checked


def _count(value) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else None


def _which(images: list[ImageAttachment]) -> str:
    return images[0].label if len(images) == 1 else "One of the images"


def _how(returncode: int) -> str:
    if returncode < 0:
        import signal

        try:
            return f"it was ended by {signal.Signals(-returncode).name}"
        except ValueError:
            return f"it was ended by signal {-returncode}"
    return f"exit code {returncode}"
