"""How the catalogue's models are named to people: "Gemma 3 1B", "1B", "Gemma 3 1B Q8_0".

The window's picker, its model manager, the download list and the CLI all name a
catalogue entry through these, so a model reads the same everywhere.
"""

from __future__ import annotations

import re

from common.formatting import format_params
from models.catalogue import CatalogueEntry

# "1B", "0.8B", "135M"; Gemma's effective sizes "E2B"; a mixture of experts' "26B-A4B".
_SIZE_TOKEN = re.compile(r"(?<![\w.])(E?\d+(?:\.\d+)?[MB](?:-A\d+(?:\.\d+)?B)?)\b")


def size_token(entry: CatalogueEntry) -> str:
    """A catalogue entry's size as people say it: 270M, 1B, 3.8B, E2B, 26B-A4B."""
    m = _SIZE_TOKEN.search(entry.label)
    return m.group(1) if m else format_params(entry.params)


def short_label(entry: CatalogueEntry) -> str:
    """Gemma 3 1B, Llama 3.1 8B, Phi-3.5 mini: the label without "Instruct" and notes."""
    m = _SIZE_TOKEN.search(entry.label)
    if m and entry.label[m.start() - 1:m.start()] != "(":
        return entry.label[:m.end()]
    return re.sub(r"\s*\(.*?\)|\s+Instruct.*$", "", entry.label).strip()


def entry_label(entry: CatalogueEntry) -> str:
    """The short label, with the quant when it is not the family's default one: "Gemma 3 1B Q8_0"."""
    label = short_label(entry)
    return f"{label} {entry.quant}" if entry.quant.upper() != entry.default_quant.upper() else label


def family_name(entry: CatalogueEntry) -> str:
    """The family without its maker: "Gemma 3" for "Gemma 3 (Google)"."""
    return entry.family_label.split(" (")[0]


def params_label(params: int | None, active: int | None = None) -> str:
    """A parameter count as people say it, with a mixture of experts' active share: "21B, 3.6B active"."""
    text = format_params(params)
    if active and params and active < params:
        text += f", {format_params(active)} active"
    return text
