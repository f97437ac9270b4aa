"""Target and draft models of one vocabulary whose agreement is known in advance (speculative decoding).

Random weights cannot make a draft "good", so the pairs are built from one model:

- "agrees": the draft is a small random model; the target is the same model with extra
  layers whose output projections (attn_output, ffn_down) are zero, so they add nothing
  to the residual stream. It computes exactly the draft's function while reading more
  weights per token: every greedy draft is accepted, at a real size ratio (the ceiling).
- "never": the draft is the target with its output layer negated: it proposes the
  target's least likely token, so no greedy draft is ever accepted (the floor).
- "between": the draft is the target with noise on its output layer: it agrees sometimes.
- "self": the target drafts for itself (one file).

All share `build_vocab`'s vocabulary, so llama.cpp's compatibility check passes.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
from gguf import GGUFReader

from tests.support.tiny_gguf import _llama_params, plan_random_llama, write_tiny_llama

_ZEROED = re.compile(r"blk\.(\d+)\.(attn_output|ffn_down)\.weight")
# Per quant of the output layer: (block bytes, offsets of the f16 scales that multiply every value of a block).
# Flipping their sign bits negates the block. Q4_K_M writes its output layer as Q6_K.
_SCALES = {"Q4_K_M": (210, (208,)), "Q6_K": (210, (208,)), "Q8_0": (34, (0,)), "Q4_0": (18, (0,))}


def _tensors(path: Path) -> dict[str, np.ndarray]:
    reader = GGUFReader(path)
    return {t.name: np.array(t.data) for t in reader.tensors}


def _negate(data: np.ndarray, quant: str) -> np.ndarray:
    if data.dtype in (np.float32, np.float16):
        return -data
    block_bytes, offsets = _SCALES[quant]
    out = data.copy()
    blocks = out.reshape(-1, block_bytes)
    for off in offsets:
        blocks[:, off + 1] ^= 0x80  # little-endian f16: the sign is the top bit of the high byte
    return out


def write_agreeing_pair(folder, *, n_layers: int = 2, extra_layers: int = 4, seed: int = 0, quant: str = "F32",
                        **shape) -> tuple[Path, Path]:
    """(target, draft): the target is the draft plus `extra_layers` layers that change nothing."""
    folder = Path(folder)
    draft = write_tiny_llama(folder / "draft-agrees.gguf", n_layers=n_layers, seed=seed, quant=quant, **shape)
    base = _tensors(draft)

    def transform(name: str, data: np.ndarray) -> np.ndarray:
        if name in base and base[name].shape == data.shape:
            return base[name]
        m = _ZEROED.fullmatch(name)
        if m and int(m.group(1)) >= n_layers:
            return np.zeros_like(data)
        return data

    target = write_tiny_llama(folder / "target-agrees.gguf", n_layers=n_layers + extra_layers, seed=seed + 1,
                              quant=quant, transform=transform, **shape)
    return target, draft


def write_random_agreeing_pair(folder, draft_params: float, target_params: float, *, quant: str = "Q4_K_M",
                               seed: int = 0, n_ctx: int = 4096) -> tuple[Path, Path]:
    """A realistic size pair (e.g. 1B drafting for 3B) that always agrees: the target is the draft widened in
    depth with layers that change nothing, so it reads `target_params` worth of weights per token."""
    shape = plan_random_llama(int(draft_params))
    one = {k: v for k, v in shape.items() if k != "n_layers"}
    per_layer = _llama_params(n_layers=1, **one) - _llama_params(n_layers=0, **one)
    extra = max(1, round((target_params - draft_params) / per_layer))
    layers = shape.pop("n_layers")
    return write_agreeing_pair(folder, n_layers=layers, extra_layers=extra, seed=seed, quant=quant, n_ctx=n_ctx,
                               **shape)


def write_never_draft(path, *, seed: int, quant: str = "F32", **shape) -> Path:
    """The target (written with these arguments) with its output layer negated."""

    def transform(name: str, data: np.ndarray) -> np.ndarray:
        return _negate(data, quant) if name == "output.weight" else data

    return write_tiny_llama(path, seed=seed, quant=quant, transform=transform, **shape)


def write_noisy_draft(path, *, seed: int, noise: float, **shape) -> Path:
    """The target written with these arguments (F32), with Gaussian noise of `noise` times the weights' scale
    added to its output layer: it agrees with the target on some tokens, not all."""
    rng = np.random.default_rng(seed + 1000)

    def transform(name: str, data: np.ndarray) -> np.ndarray:
        if name != "output.weight":
            return data
        return (data + rng.standard_normal(data.shape).astype(np.float32) * 0.02 * noise).astype(data.dtype)

    return write_tiny_llama(path, seed=seed, quant="F32", transform=transform, **shape)
