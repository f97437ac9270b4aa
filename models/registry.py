"""Which models are installed, under which names, and where their files are.

The list is one small JSON file in the data directory (`installed.json`). The
built-in models (the starter and Gemma 3 270M base) are always there and never
stored. Pulled and imported models are added by the model commands, from any
number of processes at once:

- Every change reads, modifies and writes the list inside one file lock
  (`installed.lock`), and the new list replaces the old with an atomic rename of a
  uniquely named, fsynced temporary file: concurrent imports all land, and a reader
  never sees half a list.
- Every change is also appended to a side record (`installed.journal`, one JSON
  line each). If the list is ever found damaged, it is moved aside (never
  deleted), rebuilt from the side record (entries whose files still exist) and from
  the GGUF files in the Hugging Face cache, and a notice says what happened until
  the user has seen it (`pending_notices()` / `dismiss_notices()`).

`resolve()` turns what a user types after `-m` into a file: a built-in name, an
installed name, or a path to a .gguf file.
"""

from __future__ import annotations

import contextlib
import errno
import json
import logging
import os
import re
import secrets
from dataclasses import asdict, dataclass, field
from dataclasses import replace as replace_fields
from datetime import datetime, timezone
from pathlib import Path

from common.errors import ModelNotFoundError, UserError
from common.paths import models_dir
from common.terminal import safe_text
from models import atomic_file, catalogue, hub, projector, starter
from models.catalogue import CatalogueEntry

log = logging.getLogger(__name__)

LIST_VERSION = 1
LOCK_TIMEOUT_S = 60.0  # a change takes milliseconds; a minute means a stuck process
JOURNAL_COMPACT_BYTES = 256 << 10  # past this the journal is rewritten as one line per installed model
STORED_SOURCES = ("hub", "local")

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")


class RegistryBusyError(UserError):
    """Another process has held the installed-models list's lock for too long."""


class RegistryUnreadableError(UserError):
    """The installed-models list exists but cannot be read (permissions, I/O error)."""


@dataclass
class InstalledModel:
    name: str
    path: str
    # "starter": built in, installed from the package index (the starter and Gemma 3 270M base);
    # "local": imported in place; "hub": downloaded into the Hugging Face cache.
    source: str
    chat_format: str | None = None  # a llama-cpp-python chat format when the GGUF has no template
    repo: str | None = None
    filename: str | None = None
    sha256: str | None = None
    revision: str | None = None  # the Hub commit the file was downloaded at
    quant: str | None = None
    added_at: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
    projector: str | None = None  # the image projector (mmproj) file it sees images through

    @property
    def is_builtin(self) -> bool:
        return self.source == "starter"

    @property
    def is_base(self) -> bool:
        """Marked a base model (continues text, does not follow instructions) by its built-in or catalogue entry.

        A GGUF without a chat template is one too; only its header says so (models.library, the engine).
        """
        builtin = starter.builtin(self.name) if self.is_builtin else None
        if builtin is not None:
            return builtin.is_base
        if self.source == "local":
            return False
        entry = catalogue.get(self.name)
        if entry is None and self.repo and self.filename:
            entry = catalogue.entry_for_hub_file(self.repo, self.filename)
        return bool(entry and entry.is_base)


class _Damaged(Exception):
    """The list's content is not a list of models (the reason says how)."""


# --- files ---------------------------------------------------------------------------------


def _list_file() -> Path:
    return models_dir() / "installed.json"


def _journal_file() -> Path:
    return models_dir() / "installed.journal"


def _notices_file() -> Path:
    return models_dir() / "installed.notices.json"


@contextlib.contextmanager
def _locked():
    """The one lock around every read-modify-write of the list, across threads and processes."""
    from filelock import FileLock, Timeout

    path = models_dir() / "installed.lock"
    lock = FileLock(str(path), timeout=LOCK_TIMEOUT_S)
    try:
        lock.acquire()
    except Timeout:
        raise RegistryBusyError(
            f"Another process has been changing the installed-models list for over {LOCK_TIMEOUT_S:.0f} s "
            f"({path} is locked); close other copies of the app and try again."
        ) from None
    except OSError as exc:
        raise UserError(f"The installed-models list in {path.parent} cannot be changed: {exc.strerror or exc}.") from exc
    try:
        yield
    finally:
        lock.release()


def _entry_from(raw) -> InstalledModel:
    if not isinstance(raw, dict):
        raise _Damaged("an entry is not an object")
    known = InstalledModel.__dataclass_fields__
    values = {k: v for k, v in raw.items() if k in known}
    for key in ("name", "path", "source"):
        if not isinstance(values.get(key), str) or not values[key]:
            raise _Damaged(f"an entry has no {key}")
    if values["source"] not in STORED_SOURCES:
        raise _Damaged(f"an entry has the unknown source {values['source']!r}")
    for key, value in values.items():
        if value is not None and not isinstance(value, str):
            raise _Damaged(f"an entry's {key} is not text")
    return InstalledModel(**values)


def _parse(text: str) -> dict[str, InstalledModel]:
    try:
        raw = json.loads(text)
    except ValueError as exc:
        raise _Damaged(f"it is not valid JSON ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise _Damaged("it has no list of models")
    entries: dict[str, InstalledModel] = {}
    for item in raw["models"]:
        entry = _entry_from(item)
        entries[entry.name] = entry
    return entries


def _read_list() -> dict[str, InstalledModel]:
    """The stored entries; {} if there is no list yet. Raises _Damaged, or RegistryUnreadableError."""
    path = _list_file()
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        return {}
    except OSError as exc:
        # Not damage: the file may be fine once the disk or its permissions are. Never moved aside for this.
        raise RegistryUnreadableError(
            f"The installed-models list {path} cannot be read ({exc.strerror or exc}); nothing was changed."
        ) from exc
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise _Damaged("it is not UTF-8 text") from None
    return _parse(text)


def _write_list(entries: dict[str, InstalledModel]) -> None:
    atomic_file.write_json(_list_file(), {"version": LIST_VERSION, "models": [asdict(e) for e in entries.values()]})


def _journal(**record) -> None:
    line = json.dumps({**record, "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    atomic_file.append_line(_journal_file(), line)


def _compact_journal(entries: dict[str, InstalledModel]) -> None:
    lines = [json.dumps({"op": "add", "model": asdict(e)}) for e in entries.values()]
    atomic_file.write_bytes(_journal_file(), "".join(line + "\n" for line in lines).encode("utf-8"))


def _load() -> dict[str, InstalledModel]:
    """The stored entries. A damaged list is moved aside and rebuilt, under the lock, once."""
    try:
        return _read_list()
    except _Damaged:
        pass
    with _locked():
        try:  # another process may have rebuilt it while this one waited for the lock
            return _read_list()
        except _Damaged as damage:
            return _recover(str(damage))


def _change(modify):
    """Apply `modify(entries) -> (result, journal record or None)` inside the lock; store the list atomically."""
    with _locked():
        try:
            entries = _read_list()
        except _Damaged as damage:
            entries = _recover(str(damage))
        result, record = modify(entries)
        _write_list(entries)
        try:
            compact = _journal_file().stat().st_size > JOURNAL_COMPACT_BYTES
        except FileNotFoundError:
            compact = True  # no side record yet (a list from before it existed): start it from the whole list
        if compact:
            _compact_journal(entries)
        elif record is not None:
            _journal(**record)
        return result


# --- recovery ------------------------------------------------------------------------------------


def _replay_journal() -> tuple[dict[str, InstalledModel], int]:
    """The entries the side record describes, and how many of its lines could not be read."""
    entries: dict[str, InstalledModel] = {}
    bad = 0
    try:
        text = _journal_file().read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        return entries, 0
    except OSError as exc:
        log.warning("the installed-models journal cannot be read: %s", exc)
        return entries, 0
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
            if record["op"] == "add":
                entry = _entry_from(record["model"])
                entries[entry.name] = entry
            elif record["op"] == "remove":
                entries.pop(record["name"], None)
            else:
                bad += 1
        except (ValueError, KeyError, TypeError, _Damaged):
            bad += 1  # a torn last line after a crash, or damage: the other lines still count
    return entries, bad


def _hub_name(repo: str, filename: str, quant: str | None, taken: set[str]) -> str | None:
    entry = catalogue.entry_for_hub_file(repo, filename)
    for name in (entry.name if entry else None, f"{repo}:{quant}" if quant else None, f"{repo}/{filename}"):
        if name and name not in taken:
            return name
    return None


def cached_hub_models(taken: dict[str, InstalledModel] | None = None) -> list[InstalledModel]:
    """Entries for the GGUF model files in the Hugging Face cache that `taken` does not already cover.

    One file per repo and path: the snapshot that the repo's `main` points to, else the newest.
    """
    taken = dict(taken or {})
    known_paths = {_same_file_key(e.path) for e in taken.values()}
    found: list[InstalledModel] = []
    cache = hub.cache_dir()
    try:
        storages = sorted(p for p in cache.glob("models--*--*") if p.is_dir())
    except OSError as exc:
        log.warning("the Hugging Face cache %s cannot be read: %s", cache, exc)
        return found
    for storage in storages:
        repo = "/".join(storage.name.split("--")[1:])
        try:
            main = (storage / "refs" / "main").read_text().strip()
        except OSError:
            main = None
        best: dict[str, tuple[bool, float, str, Path]] = {}  # file → (is main, mtime, commit, path)
        for snapshot in sorted((storage / "snapshots").glob("*")):
            for path in sorted(snapshot.rglob("*")):
                rel = path.relative_to(snapshot).as_posix()
                if not rel.lower().endswith(".gguf") or path.name.lower().startswith("mmproj"):
                    continue
                shard = hub.shard_of_filename(rel)
                if shard and shard[0] != 1:
                    continue
                try:
                    mtime = path.stat().st_mtime  # follows the link: a dangling one is skipped
                except OSError:
                    continue
                rank = (snapshot.name == main, mtime, snapshot.name, path)
                if rel not in best or rank[:2] > best[rel][:2]:
                    best[rel] = rank
        for rel, (_, _, commit, path) in sorted(best.items()):
            if _same_file_key(str(path)) in known_paths:
                continue
            quant = hub.quant_of_filename(rel)
            name = _hub_name(repo, rel, quant, set(taken))
            if name is None:
                continue
            blob = Path(os.path.realpath(path)).name
            listed = catalogue.entry_for_hub_file(repo, rel)
            beside = projector.find_beside(path) if listed is not None and listed.projector else None
            entry = InstalledModel(
                name=name, path=str(path), source="hub", repo=repo, filename=rel,
                sha256=blob if _SHA256_RE.match(blob) else None, revision=commit, quant=quant,
                chat_format=listed.chat_format if listed else None, projector=str(beside) if beside else None,
            )
            taken[name] = entry
            found.append(entry)
    return found


def _same_file_key(path: str) -> str:
    try:
        return os.path.realpath(path)
    except (OSError, ValueError):
        return path


def _recover(reason: str) -> dict[str, InstalledModel]:
    """Move the damaged list aside, rebuild it from the side record and the Hub cache, leave a notice."""
    source = _list_file()
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    aside = source.with_name(f"installed.damaged-{stamp}-{secrets.token_hex(3)}.json")
    os.replace(source, aside)
    journaled, bad_lines = _replay_journal()
    kept: dict[str, InstalledModel] = {}
    missing: list[str] = []
    for entry in journaled.values():
        if Path(entry.path).exists():
            kept[entry.name] = entry
        else:
            missing.append(entry.name)
    from_cache = cached_hub_models(kept)
    for entry in from_cache:
        kept[entry.name] = entry
    _write_list(kept)
    _compact_journal(kept)

    imported = sum(1 for e in kept.values() if e.source == "local")
    downloaded = len(kept) - imported
    parts = [
        f"The installed-models list was damaged ({reason}); it was moved to {aside} and rebuilt with "
        f"{downloaded} downloaded model(s) and {imported} imported file(s)."
    ]
    if missing:
        parts.append(f"Not restored, as their files no longer exist: {', '.join(sorted(missing))}.")
    if bad_lines:
        parts.append(f"{bad_lines} line(s) of its side record {_journal_file()} could not be read.")
    message = " ".join(parts)
    log.warning("%s", message)
    _add_notice(message, aside)
    return kept


# --- notices -------------------------------------------------------------------------------------


def _read_notices() -> list[dict]:
    try:
        data = json.loads(_notices_file().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return []
    except (OSError, ValueError) as exc:
        log.warning("the installed-models notices cannot be read: %s", exc)
        return []
    return [n for n in data if isinstance(n, dict) and isinstance(n.get("message"), str)] if isinstance(data, list) else []


def _add_notice(message: str, moved_to: Path) -> None:
    notices = _read_notices()
    notices.append({"message": message, "moved_to": str(moved_to),
                    "at": datetime.now(timezone.utc).isoformat(timespec="seconds")})
    atomic_file.write_json(_notices_file(), notices)


def pending_notices() -> list[str]:
    """What happened to the list that the user has not seen yet (a damaged list moved aside and rebuilt)."""
    return [n["message"] for n in _read_notices()]


def dismiss_notices() -> None:
    """The user has seen the notices: they are not shown again."""
    with _locked():
        _notices_file().unlink(missing_ok=True)


# --- the built-in models ---------------------------------------------------------------------------


def builtin_entry(model: starter.BuiltinModel) -> InstalledModel:
    try:
        path = str(model.path())
    except starter.BuiltinModelMissingError as exc:
        log.info("%s", exc)
        path = ""  # listed all the same; using it says what is missing
    return InstalledModel(name=model.name, path=path, source="starter", chat_format=model.chat_format,
                          quant=model.quant)


def starter_entry() -> InstalledModel:
    return builtin_entry(starter.STARTER)


# --- reading and changing the list -------------------------------------------------------------------


def list_installed() -> list[InstalledModel]:
    """The built-in models first (the starter on top), then everything else by name."""
    entries = _load()
    builtins = [builtin_entry(b) for b in starter.BUILTINS]
    for b in builtins:
        entries.pop(b.name, None)
    return builtins + sorted(entries.values(), key=lambda e: e.name)


def get(name: str) -> InstalledModel | None:
    model = starter.builtin(name)
    if model is not None:
        return builtin_entry(model)
    return _load().get(name)


class NameTakenError(UserError):
    """The name is installed from another file."""

    def __init__(self, name: str, existing: InstalledModel):
        self.name, self.existing = name, existing
        super().__init__(
            f"A model named {safe_text(repr(name))} is already installed from {safe_text(existing.path)}; "
            "choose another name."
        )


def register(entry: InstalledModel) -> InstalledModel:
    """Add or replace an entry by name."""
    return add(entry, replace=True)


def is_reserved_name(name: str) -> bool:
    """A built-in, catalogue or Hub name, which an imported model may not take."""
    return starter.is_builtin(name) or catalogue.get(name) is not None or hub.parse_ref(name) is not None


def add(entry: InstalledModel, *, replace: bool = False, free_name: bool = False) -> InstalledModel:
    """Add an entry, deciding about its name inside the lock (so two processes cannot both take one name).

    A name installed from the same file is simply updated. One installed from another
    file is replaced (`replace`), or the next free `name-2`, `name-3`… is taken
    (`free_name`), or NameTakenError is raised. Returns the entry as stored.
    """
    if starter.is_builtin(entry.name):
        raise UserError(f"{safe_text(repr(entry.name))} is the name of a built-in model; choose another.")
    if entry.source not in STORED_SOURCES:
        raise ValueError(f"cannot store a model of source {entry.source!r}")

    def modify(entries: dict[str, InstalledModel]):
        name = entry.name
        n = 1
        while True:
            existing = entries.get(name)
            if replace or existing is None or _same_file_key(existing.path) == _same_file_key(entry.path):
                break
            if not free_name:
                raise NameTakenError(name, existing)
            n += 1
            name = f"{entry.name}-{n}"
            while is_reserved_name(name):
                n += 1
                name = f"{entry.name}-{n}"
        stored = replace_fields(entry, name=name)
        entries[name] = stored
        return stored, {"op": "add", "model": asdict(stored)}

    return _change(modify)


def unregister(name: str) -> InstalledModel | None:
    def modify(entries: dict[str, InstalledModel]):
        removed = entries.pop(name, None)
        return removed, ({"op": "remove", "name": name} if removed is not None else None)

    return _change(modify)


def catalogue_entry(name: str) -> CatalogueEntry | None:
    """The catalogue entry of a name: a catalogue name or Hub reference, or an installed model's repo and file."""
    entry = catalogue.get(name)
    if entry is not None:
        return entry
    installed = _load().get(name)
    if installed is None or not installed.repo or not installed.filename:
        return None
    return catalogue.entry_for_hub_file(installed.repo, installed.filename)


def canonical_name(spec: str) -> str:
    """The name a pull installs `spec` under: `owner/repo:q8_0` → `owner/repo:Q8_0`, `owner/repo` → `…:Q4_K_M`."""
    if "/" not in spec:
        entry = catalogue.get(spec)
        return entry.name if entry else spec
    if Path(spec).expanduser().exists():
        return spec
    ref = hub.parse_ref(spec)
    return ref.name if ref else spec


def resolve(spec: str) -> InstalledModel:
    """What `-m SPEC` means: a built-in model, an installed name, or a .gguf path."""
    model = starter.builtin(spec)
    if model is not None:
        entry = builtin_entry(model)
        entry.path = str(model.ensure())
        return entry
    entries = _load()
    found = entries.get(spec) or entries.get(canonical_name(spec))
    if found:
        return found
    path = Path(spec).expanduser()
    if path.is_symlink():
        try:
            os.stat(path)
        except OSError as exc:
            if exc.errno == errno.ELOOP:  # Path.exists() says False for a loop, which reads as "missing"
                raise ModelNotFoundError(f"{path} is a symbolic link that leads back to itself (a loop), not a "
                                         "model file; point it at a .gguf file.") from None
            if exc.errno == errno.ENOENT:
                raise ModelNotFoundError(f"{path} is a symbolic link to {os.readlink(path)}, which does not "
                                         "exist.") from None
    if path.suffix.lower() == ".gguf" or path.exists():
        if not path.exists():
            if "/" in spec and not spec.startswith((".", "/", "~")):
                raise ModelNotFoundError(
                    f"There is no model file at {path}, and no installed model has that name; "
                    f"`assistant models pull {spec}` downloads it from the Hugging Face Hub."
                )
            raise ModelNotFoundError(f"There is no model file at {path}.")
        return InstalledModel(name=path.stem, path=str(path.resolve()), source="local")
    if catalogue.get(spec) is not None or "/" in spec:
        raise ModelNotFoundError(
            f"The model {spec!r} is not installed; `assistant models pull {spec}` downloads it."
        )
    raise ModelNotFoundError(
        f"No installed model is named {spec!r}; `assistant models list` shows the installed ones."
    )
