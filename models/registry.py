"""Which models are installed, under which names, and where their files are.

The record is one small JSON file in the data directory. The starter model is
always there. Pulled and imported models are added by the model commands.
`resolve()` turns what a user types after `-m` into a file: `starter`, an
installed name, or a path to a .gguf file.
"""

import json
import os
import threading
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

from common.errors import ModelNotFoundError
from common.paths import models_dir
from models import starter

_lock = threading.Lock()


@dataclass
class InstalledModel:
    name: str
    path: str
    source: str  # "starter", "local" (imported in place) or "hub"
    chat_format: str | None = None  # a llama-cpp-python chat format when the GGUF has no template
    repo: str | None = None
    filename: str | None = None
    sha256: str | None = None
    revision: str | None = None  # the Hub commit the file was downloaded at
    quant: str | None = None
    added_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))


def _registry_file() -> Path:
    return models_dir() / "installed.json"


def _load() -> dict[str, InstalledModel]:
    try:
        raw = json.loads(_registry_file().read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError):
        # A damaged registry must not stop the app; the files themselves are untouched.
        return {}
    known = InstalledModel.__dataclass_fields__
    return {e["name"]: InstalledModel(**{k: v for k, v in e.items() if k in known}) for e in raw.get("models", [])}


def _save(entries: dict[str, InstalledModel]) -> None:
    path = _registry_file()
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"version": 1, "models": [asdict(e) for e in entries.values()]}, indent=2))
    os.replace(tmp, path)  # atomic: a crash never leaves half a registry


def starter_entry() -> InstalledModel:
    return InstalledModel(
        name=starter.STARTER_NAME,
        path=str(starter.starter_path()),
        source="starter",
        chat_format=starter.STARTER_CHAT_FORMAT,
    )


def list_installed() -> list[InstalledModel]:
    """The starter first, then everything else by name."""
    entries = _load()
    entries.pop(starter.STARTER_NAME, None)
    return [starter_entry()] + sorted(entries.values(), key=lambda e: e.name)


def register(entry: InstalledModel) -> InstalledModel:
    with _lock:
        entries = _load()
        entries[entry.name] = entry
        _save(entries)
    return entry


def unregister(name: str) -> InstalledModel | None:
    with _lock:
        entries = _load()
        removed = entries.pop(name, None)
        if removed:
            _save(entries)
    return removed


def get(name: str) -> InstalledModel | None:
    if name == starter.STARTER_NAME:
        return starter_entry()
    return _load().get(name)


def canonical_name(spec: str) -> str:
    """The name a pull installs `spec` under: `owner/repo:q8_0` → `owner/repo:Q8_0`, `owner/repo` → `…:Q4_K_M`."""
    from models import catalogue, hub  # late: only needed for names not found as typed

    if "/" not in spec:
        entry = catalogue.get(spec)
        return entry.name if entry else spec
    if Path(spec).expanduser().exists():
        return spec
    ref = hub.parse_ref(spec)
    return ref.name if ref else spec


def resolve(spec: str) -> InstalledModel:
    """What `-m SPEC` means: the starter, an installed name, or a .gguf path."""
    if spec == starter.STARTER_NAME:
        entry = starter_entry()
        entry.path = str(starter.ensure_starter())
        return entry
    entries = _load()
    entry = entries.get(spec) or entries.get(canonical_name(spec))
    if entry:
        return entry
    path = Path(spec).expanduser()
    if path.suffix.lower() == ".gguf" or path.exists():
        if not path.exists():
            if "/" in spec and not spec.startswith((".", "/", "~")):
                raise ModelNotFoundError(
                    f"There is no model file at {path}, and no installed model has that name; "
                    f"`assistant models pull {spec}` downloads it from the Hugging Face Hub."
                )
            raise ModelNotFoundError(f"There is no model file at {path}.")
        return InstalledModel(name=path.stem, path=str(path.resolve()), source="local")
    from models import catalogue  # late: the catalogue is only needed for this hint

    if catalogue.get(spec) is not None or "/" in spec:
        raise ModelNotFoundError(
            f"The model {spec!r} is not installed; `assistant models pull {spec}` downloads it."
        )
    raise ModelNotFoundError(
        f"No installed model is named {spec!r}; `assistant models list` shows the installed ones."
    )
