"""Decoded images kept by the runner between turns, so a follow-up turn about a picture does not decode it again.

Bounded by bytes of pixels (the oldest go first). An image arrives from the app as
`{"sha256", "data", "name"}`: the file's bytes and what it is called; its pixels are decoded
here, in the runner (images.py), and a decode that fails is an `ImageRefused` sentence.
"""

from __future__ import annotations

import hashlib
from collections import OrderedDict
from typing import Any

from assistant.engine.runner import images
from assistant.engine.runner.images import DecodedImage, ImageRefused

DEFAULT_BUDGET_BYTES = 256 << 20


class DecodedImages:
    def __init__(self, budget_bytes: int = DEFAULT_BUDGET_BYTES) -> None:
        self.budget = budget_bytes
        self._by_key: OrderedDict[tuple[str, int | None], DecodedImage] = OrderedDict()
        self._bytes = 0

    def get(self, image: dict[str, Any], max_side: int | None) -> DecodedImage:
        data = image.get("data")
        if not isinstance(data, (bytes, bytearray)):
            raise ImageRefused(f"{images.image_label(image.get('name'))} did not reach the model's process.")
        sha = hashlib.sha256(data).hexdigest()
        key = (sha, max_side)
        found = self._by_key.get(key)
        if found is not None:
            self._by_key.move_to_end(key)
            return found
        decoded = images.decode(bytes(data), name=image.get("name"), max_side_out=max_side, sha256=sha)
        self._by_key[key] = decoded
        self._bytes += len(decoded.rgb)
        while self._bytes > self.budget and len(self._by_key) > 1:
            _, old = self._by_key.popitem(last=False)
            self._bytes -= len(old.rgb)
        return decoded
