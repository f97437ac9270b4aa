"""The app's half of speculative decoding: which draft to load beside a model, and what it costs.

Checked before any process starts, like the model itself: the draft's name resolves
to an installed file, its header reads, it has not crashed the runner before, and
its weights, KV cache and compute buffer are added to the memory the load needs. A
draft that fails any check is left out with one sentence; the model loads anyway.
The runner checks what only llama.cpp can (the vocabularies match) the same way.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from assistant.engine import crash_registry
from common.errors import UserError
from models import fit, registry
from models.draft_gain import TYPICAL_ACCEPTANCE, expected_speedup
from models.gguf_file import read_gguf_info
from models.shape import from_gguf

OFF = ("", "off", "none", "no")
LOOKUP = "lookup"
CHECKPOINT_FLOOR_BYTES = 16 << 20
# A second model and context in the runner take address space beyond their buffers (their threads' stacks and
# malloc arenas, load-time mappings): measured 350 MiB past the estimate for a 1B Q4_K_M beside a 3B, 2 threads.
CONTEXT_ADDRESS_BYTES = 512 << 20
AUTO = "auto"  # the smallest installed catalogue size that can draft for the model, if any (the window's default)


@dataclass
class DraftPlan:
    request: dict[str, Any] | None = None  # what the runner gets: {"kind", "path", "name", "draft_max", "adaptive"}
    notice: str | None = None  # why the draft asked for is left out (one sentence)
    memory: fit.MemoryEstimate | None = None  # the draft model's own share (no runtime overhead: one process)
    checkpoint_bytes: int = 0  # the most its context checkpoints may hold

    @property
    def extra_bytes(self) -> int:
        m = self.memory
        return m.weights + m.kv_cache + m.compute + self.checkpoint_bytes if m else 0

    @property
    def ceiling_bytes(self) -> int:
        """What the draft adds to the runner's address-space ceiling: its memory and its context's overhead."""
        return self.extra_bytes + CONTEXT_ADDRESS_BYTES if self.memory else 0

    @property
    def is_model(self) -> bool:
        return bool(self.request and self.request.get("kind") == "model")


def plan_draft(spec: str | None, n_ctx: int, *, draft_max: int = 8, adaptive: bool = True,
               target_path: str | None = None, target_name: str | None = None, kv_cache_type: str = "f16",
               flash_attn: bool | None = None) -> DraftPlan:
    """What `--draft SPEC` means for a load at `n_ctx` tokens of context."""
    if spec is None or spec.strip().lower() in OFF:
        return DraftPlan()
    if spec.strip().lower() == AUTO:
        found = drafts_for(target_name) if target_name else []
        if not found:
            return DraftPlan()  # nothing installed drafts for it: no drafting, nothing to say
        spec = found[0]
    base = {"draft_max": max(1, int(draft_max)), "adaptive": adaptive}
    if spec.strip().lower() == LOOKUP:
        return DraftPlan(request={"kind": "lookup", **base})
    try:
        entry = registry.resolve(spec)
        info = read_gguf_info(entry.path)
    except UserError as exc:
        why = str(exc).rstrip(".")
        return DraftPlan(notice=f"The draft model {spec} was left out: {why[:1].lower()}{why[1:]}; replies go on "
                                "without drafting.")
    if crash_registry.crash_record(entry.path, entry.sha256) and entry.path != target_path:
        return DraftPlan(notice=f"The draft model {entry.name} crashed the model's process before, so it was left "
                                "out; replies go on without drafting.")
    memory = fit.estimate_memory(from_gguf(info), n_ctx, kv_cache_type=kv_cache_type, flash_attn=flash_attn)
    # Its own context checkpoints (a sliding-window draft keeps them, as the model does): a quarter of its cache.
    checkpoints = max(CHECKPOINT_FLOOR_BYTES, memory.kv_cache // 4)
    return DraftPlan(request={"kind": "model", "path": entry.path, "name": entry.name,
                              "checkpoint_bytes_max": checkpoints, **base}, memory=memory, checkpoint_bytes=checkpoints)


def drafts_for(name: str) -> list[str]:
    """Installed catalogue models that can draft for the catalogue model `name`, smallest first."""
    entry = registry.catalogue_entry(name)
    if entry is None or not entry.drafts:
        return []
    installed = {m.name for m in registry.list_installed()}
    return [d for d in entry.drafts if d in installed]


@dataclass(frozen=True)
class DraftOffer:
    """A draft the window can offer for a model: both installed, with the gain to expect."""

    model: str
    draft: str
    speedup: float  # expected, at a typical acceptance (models.draft_gain)
    draft_bytes: int

    @property
    def sentence(self) -> str:
        from common.formatting import format_bytes

        return (f"{self.draft} can draft for {self.model}: about {self.speedup:.1f}× faster replies expected "
                f"(if about {100 * TYPICAL_ACCEPTANCE:.0f}% of its drafts are kept), for "
                f"{format_bytes(self.draft_bytes)} more memory.")


def draft_offer(name: str | None) -> DraftOffer | None:
    """The draft the window offers for the installed model `name`, or None when no size of its family is
    installed to draft for it (or the pair would not pay even at a typical acceptance)."""
    if not name:
        return None
    found = drafts_for(name)
    if not found:
        return None
    target, draft = registry.get(name), registry.get(found[0])
    target_size = _file_size(target.path) if target else 0
    draft_size = _file_size(draft.path) if draft else 0
    if not target_size or not draft_size:
        return None
    speedup, _ = expected_speedup(draft_size, target_size)
    if speedup <= 1.0:
        return None
    return DraftOffer(model=name, draft=found[0], speedup=speedup, draft_bytes=draft_size)


def _file_size(path: str | None) -> int:
    import os

    try:
        return os.path.getsize(path) if path else 0
    except OSError:
        return 0
