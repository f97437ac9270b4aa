"""`python -m assistant.engine.runner.image_worker`: decode images in a process of their own (started by the app).

The app checks an image a user attaches before it saves anything, and draws its thumbnail,
without decoding the file itself: this process does it, with the runner's decoder
(images.py), under a memory ceiling and a CPU-time limit. It reads one JSON request on stdin,
`{"side": N, "images": [{"name", "data": base64}]}`, and writes one JSON answer on stdout:
for each image, its size and a PNG of it at most `side` pixels long (written by Pillow here),
or the sentence that says why it cannot be used. JSON both ways: whatever a hostile file did to
this process, the app only ever parses plain data from it.
"""

from __future__ import annotations

import base64
import json
import sys

MEMORY_CEILING_BYTES = 2 << 30  # a 50-megapixel image decodes in about 200 MB; the interpreter and Pillow fit
CPU_SECONDS = 60


def main() -> None:
    from assistant.engine.runner.limits import harden_process, set_memory_ceiling

    harden_process()
    set_memory_ceiling(MEMORY_CEILING_BYTES)
    try:
        import resource

        resource.setrlimit(resource.RLIMIT_CPU, (CPU_SECONDS, CPU_SECONDS + 5))
    except (ImportError, ValueError, OSError):
        pass
    request = json.loads(sys.stdin.buffer.read())
    side = int(request.get("side") or 256)
    results = [check_one(item, side) for item in request["images"]]
    sys.stdout.write(json.dumps({"results": results}))
    sys.stdout.flush()


def check_one(item: dict, side: int) -> dict:
    from assistant.engine.runner.images import ImageRefused, image_label, thumbnail_png

    name = item.get("name")
    try:
        data = base64.b64decode(item["data"])
        decoded, png = thumbnail_png(data, side, name=name)
    except ImageRefused as exc:
        return {"ok": False, "sentence": str(exc)}
    except MemoryError:
        return {"ok": False, "sentence": f"{image_label(name)} needs more memory to decode than an image may use."}
    return {"ok": True, "width": decoded.full_size[0], "height": decoded.full_size[1],
            "format": decoded.source_format, "animated": decoded.animated,
            "thumbnail": base64.b64encode(png).decode("ascii")}


if __name__ == "__main__":
    main()
