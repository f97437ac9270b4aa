"""The curated catalogue of models (catalogue.json): families of sizes, each a 4-bit GGUF on the Hub.

A family groups the sizes of one model line, smallest first, so that "switch to
the bigger one" is one step: `sizes_in_family(name)` and `neighbour(name, +1)`.
A name may carry a quant (`llama3.2-1b:Q8_0`); the entry then points at that
quant's file. Hub references (`owner/repo:QUANT`) of a catalogued repo map back
to their entry, so a model pulled either way belongs to its family.

This module is data only: it knows nothing of what is installed. The entry of an
installed model (found through the repo and file it was pulled from) is
`models.registry.catalogue_entry(name)`; the family helpers take either a name or
an entry.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, replace
from functools import lru_cache
from importlib import resources

DEFAULT_QUANT = "Q4_K_M"


@dataclass(frozen=True)
class Arch:
    """The shape a memory estimate needs, known before any download."""

    architecture: str
    n_layers: int
    n_heads: int
    n_kv_heads: int
    head_dim: int
    embedding_length: int
    vocab_size: int
    tied_embeddings: bool = True  # the output layer reuses token_embd, so each token reads it whole
    # By architecture (see models.shape); the defaults describe a dense, full-attention model.
    sliding_window: int | None = None  # tokens a sliding-window layer attends over
    swa_layers: int = 0  # of the layers with their own KV cache, those that slide
    head_dim_swa: int | None = None  # their head size, where it differs (Gemma 4)
    kv_layers: int | None = None  # layers with their own KV cache (None: every layer not recurrent)
    recurrent_layers: int = 0  # linear-attention / state-space layers: a fixed state, no KV
    recurrent_state_bytes: int = 0  # their f32 state for one sequence, all of them together
    recurrent_width: int = 0  # channels of one recurrent layer's convolution
    n_expert: int = 0
    n_expert_used: int = 0
    n_ff: int | None = None  # the dense feed-forward width
    n_ff_exp: int | None = None  # one expert's feed-forward width
    n_embd_per_layer: int = 0  # Gemma 3n/4: per-layer embedding width (a table looked up per token)
    approx: bool = False  # not read from the published file's header: the header replaces it when read

    @property
    def kv_bytes_per_token(self) -> int:
        # f16 K and V for every layer with a cache: the upper bound (sliding-window layers keep less).
        n_kv = self.kv_layers if self.kv_layers is not None else self.n_layers - self.recurrent_layers
        return n_kv * self.n_kv_heads * self.head_dim * 2 * 2


# How a family's replies mark their thinking (the parser for each lives with the engine).
THINKING_FORMATS = ("think_tags", "gemma4_channel", "harmony", "mistral_think")
#   think_tags: <think>...</think> (Qwen3, Qwen3.5, SmolLM3, DeepSeek-R1 distills, LFM2.5-Thinking)
#   gemma4_channel: <|channel>thought ... <channel|> (Gemma 4; special tokens)
#   harmony: <|channel|>analysis<|message|>...<|end|> then <|channel|>final<|message|> (gpt-oss; special tokens)
#   mistral_think: [THINK]...[/THINK] (Ministral 3 Reasoning, Magistral)


@dataclass(frozen=True)
class ProjectorFile:
    """The image projector (mmproj-*.gguf) a model that sees images needs, in the same repo."""

    file: str
    size_bytes: int
    size_approx: bool = True
    sha256: str | None = None


@dataclass(frozen=True)
class CatalogueEntry:
    name: str
    label: str
    family: str
    family_label: str
    repo: str | None  # None for the built-in starter
    file: str
    quant: str
    quants: tuple[str, ...]
    size_bytes: int
    size_approx: bool
    params: int
    context_length: int
    arch: Arch
    chat_format: str | None = None
    file_template: str | None = None
    sha256: str | None = None
    source: str = "hub"  # "hub", or "package": built in, installed from the package index
    default_quant: str = DEFAULT_QUANT
    base: bool = False  # a base model: continues text, does not follow instructions
    licence: str = ""
    active_params: int | None = None  # a mixture of experts: parameters used per token (None: all of them)
    thinking: str | None = None  # one of THINKING_FORMATS when the model thinks before it answers
    projector: ProjectorFile | None = None  # set when the model sees images
    drafts: tuple[str, ...] = ()  # catalogue names of smaller sizes that can draft for this one (same vocabulary)
    older: bool = False  # a family a 2026 user would not pick first: listed after the current ones

    @property
    def sees_images(self) -> bool:
        return self.projector is not None

    @property
    def is_moe(self) -> bool:
        return self.active_params is not None and self.active_params < self.params

    @property
    def is_base(self) -> bool:
        return self.base

    @property
    def is_starter(self) -> bool:
        """Built in (the starter or another model installed from the package index): never downloaded."""
        return self.source == "package"

    @property
    def base_name(self) -> str:
        return self.name.split(":", 1)[0]

    def file_for(self, quant: str) -> str | None:
        """The file name of another quant in the same repo, or None if the repo does not list it."""
        listed = next((q for q in self.quants if q.upper() == quant.upper()), None)
        if listed is None:
            return None
        if listed.upper() == self.quant.upper():
            return self.file
        if not self.file_template:
            return None
        return self.file_template.format(quant=listed, quant_lower=listed.lower())

    def with_quant(self, quant: str) -> CatalogueEntry | None:
        """This entry for another quant of its repo (size unknown until the Hub is asked)."""
        if quant.upper() == self.quant.upper():
            return self
        file = self.file_for(quant)
        if file is None:
            return None
        canonical = next(q for q in self.quants if q.upper() == quant.upper()).upper()
        return replace(
            self,
            name=f"{self.base_name}:{canonical}",
            file=file,
            quant=canonical,
            size_bytes=0,
            size_approx=True,
            sha256=None,
        )


@dataclass(frozen=True)
class Family:
    id: str
    label: str
    licence: str
    sizes: tuple[CatalogueEntry, ...]  # smallest first
    older: bool = False  # a family a 2026 user would not pick first: listed after the current ones


@lru_cache(maxsize=1)
def _raw() -> dict:
    return json.loads(resources.files("models").joinpath("catalogue.json").read_text(encoding="utf-8"))


def revised() -> str:
    """When the catalogue was last checked against the publishers' repos (an ISO date), or "" if it does not say."""
    value = _raw().get("revised")
    return value if isinstance(value, str) else ""


@lru_cache(maxsize=1)
def _load() -> tuple[Family, ...]:
    raw = _raw()
    default_quant = raw.get("default_quant", DEFAULT_QUANT)
    families = []
    for fam in raw["families"]:
        sizes = []
        for e in fam["sizes"]:
            sizes.append(
                CatalogueEntry(
                    name=e["name"],
                    label=e["label"],
                    family=fam["id"],
                    family_label=fam["label"],
                    repo=e.get("repo"),
                    file=e["file"],
                    quant=e["quant"],
                    quants=tuple(e.get("quants", [e["quant"]])),
                    size_bytes=int(e["size_bytes"]),
                    size_approx=bool(e.get("size_approx", False)),
                    params=int(e["params"]),
                    context_length=int(e["context_length"]),
                    arch=Arch(**e["arch"]),
                    chat_format=e.get("chat_format"),
                    file_template=e.get("file_template"),
                    sha256=e.get("sha256"),
                    source=e.get("source", "hub"),
                    default_quant=default_quant,
                    base=bool(e.get("base", False)),
                    licence=e.get("licence", fam.get("licence", "")),
                    active_params=int(e["active_params"]) if e.get("active_params") else None,
                    thinking=e.get("thinking"),
                    projector=ProjectorFile(**e["projector"]) if e.get("projector") else None,
                    drafts=tuple(e.get("drafts", ())),
                    older=bool(fam.get("older", False)),
                )
            )
        sizes.sort(key=lambda s: s.params)
        families.append(Family(fam["id"], fam["label"], fam.get("licence", ""), tuple(sizes), bool(fam.get("older"))))
    families.sort(key=lambda f: f.older)  # stable: the file's order within the current and the older ones
    return tuple(families)


def families() -> list[Family]:
    return list(_load())


def entries() -> list[CatalogueEntry]:
    return [e for fam in _load() for e in fam.sizes]


def _by_repo(repo: str, filename: str | None = None, quant: str | None = None) -> CatalogueEntry | None:
    for e in entries():
        if e.repo and e.repo.lower() == repo.lower():
            if filename:
                if filename == e.file:
                    return e
                for q in e.quants:
                    if e.file_for(q) == filename:
                        return e.with_quant(q)
                return None
            if quant:
                return e.with_quant(quant)
            return e
    return None


def entry_for_hub_file(repo: str, filename: str) -> CatalogueEntry | None:
    """The entry (at the quant that file is) of a catalogued repo's file; None if not catalogued."""
    return _by_repo(repo, filename=filename)


def get(name: str) -> CatalogueEntry | None:
    """The catalogue entry a name means: `llama3.2-1b`, `llama3.2-1b:Q8_0`, or a Hub reference to a catalogued repo."""
    if not name:
        return None
    base, _, quant = name.partition(":")
    for e in entries():
        if e.name == base:
            return e.with_quant(quant) if quant else e
    if "/" in name:
        parts = name.removeprefix("hf.co/").removeprefix("huggingface.co/").split("/")
        if len(parts) >= 3 and parts[-1].lower().endswith(".gguf"):
            return _by_repo("/".join(parts[:2]), filename="/".join(parts[2:]))
        if len(parts) == 2:
            repo, _, q = "/".join(parts).partition(":")
            return _by_repo(repo, quant=q or None)
    return None


def _entry_of(name_or_entry: str | CatalogueEntry) -> CatalogueEntry | None:
    return name_or_entry if isinstance(name_or_entry, CatalogueEntry) else get(name_or_entry)


def family_of(name_or_entry: str | CatalogueEntry) -> Family | None:
    """The family a catalogue name, Hub reference or entry belongs to; None if none."""
    entry = _entry_of(name_or_entry)
    if entry is None:
        return None
    return next(f for f in _load() if f.id == entry.family)


def sizes_in_family(name_or_entry: str | CatalogueEntry) -> list[CatalogueEntry]:
    """All sizes of the family, smallest first (default quant); empty if it has no family."""
    fam = family_of(name_or_entry)
    return list(fam.sizes) if fam else []


def neighbour(name_or_entry: str | CatalogueEntry, step: int) -> CatalogueEntry | None:
    """The next bigger (step=+1) or smaller (step=-1) size in the family, or None at the end."""
    entry = _entry_of(name_or_entry)
    sizes = sizes_in_family(entry) if entry else []
    if entry is None or not sizes:
        return None
    names = [s.name for s in sizes]
    i = names.index(entry.base_name) + step
    return sizes[i] if 0 <= i < len(sizes) else None
