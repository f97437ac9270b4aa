"""The model library service: what is installed, what fits, downloads, and the models of remote servers.

One per process (built by `AppServices`), shared by the window and the CLI. No Qt:
listeners get plain events on whichever thread the change happened, and a front
end relays them (the window's `ui.library_bridge`).

- **The installed index**: name -> installed model, each matched to the catalogue
  once (`models.library.InstalledIndex`); re-read when this service changes it, or on
  `refresh_installed()` when another process may have.
- **The fit and speed table** (`models.model_table`): built off the caller's thread
  (`request_table()` runs it on the service's own worker) and kept until something it
  depends on changes (the installed models, the loaded model's context, a measured
  speed). Every view reads this one table, so a model shows the same figure everywhere.
- **Import, remove, search, fit reports**: the `models.library` calls, with the
  loaded model's context and the loaded model refused for removal.
- **Downloads**: `downloads`, a `models.download_manager.DownloadManager` (queue, pause,
  resume, cancel, restore after a restart); `assistant models pull` uses the same class.
- **Remote servers** (`assistant.remotes`): add, remove, test a connection, and their
  models as `MODEL@REMOTE` specs that load through the chat service like any model.

Events: `InstalledChanged`, `TableReady`, `RemotesChanged`, and the download manager's
`DownloadEvent`s.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant import remotes
from assistant.chat_service import ModelLoaded, TurnFinished
from common.errors import UserError
from common.listeners import Listeners
from common.terminal import safe_text
from models import hub, library
from models.download_manager import DownloadEvent, DownloadManager
from models.library import InstalledIndex
from models.model_table import ModelTable, model_table
from models.registry import InstalledModel

log = logging.getLogger(__name__)

HUB_STATUS_MAX_AGE_S = 30.0  # how long "the Hub answered" (or did not) is believed
REMOTE_MODELS_MAX_AGE_S = 60.0


# --- events --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class InstalledChanged:
    index: InstalledIndex


@dataclass(frozen=True)
class TableReady:
    table: ModelTable


@dataclass(frozen=True)
class RemotesChanged:
    servers: tuple[RemoteServer, ...]


Listener = Callable[[Any], None]


# --- what the calls return -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Removal:
    model: InstalledModel
    freed: int  # bytes deleted from the Hugging Face cache
    sentence: str  # what was done, for people


@dataclass(frozen=True)
class HubStatus:
    online: bool
    sentence: str  # why downloads are off, when they are
    checked_at: float


@dataclass(frozen=True)
class RemoteServer:
    name: str
    url: str
    host: str
    has_key: bool


@dataclass(frozen=True)
class RemoteModel:
    spec: str  # what loads it: MODEL@REMOTE
    model: str
    remote: str
    host: str


@dataclass(frozen=True)
class RemoteModels:
    models: tuple[RemoteModel, ...] = ()
    problems: tuple[tuple[str, str], ...] = ()  # (remote's name, why its models could not be listed)


@dataclass(frozen=True)
class ConnectionTest:
    remote: str
    models: tuple[str, ...]  # as MODEL@REMOTE
    round_trip_ms: float
    software: str | None
    version: str | None

    @property
    def sentence(self) -> str:
        what = " ".join(x for x in (self.software, self.version) if x) or "an OpenAI-compatible server"
        offered = ", ".join(self.models) if self.models else "no models"
        return f"{self.remote} is {safe_text(what)}, {self.round_trip_ms:.0f} ms away; it offers {safe_text(offered)}."


# --- the service ---------------------------------------------------------------------------------------


class LibraryService:
    def __init__(self, *, default_context: Callable[[], int | None] = lambda: None,
                 downloads: DownloadManager | None = None, restore_downloads: bool = True) -> None:
        self._default_context = default_context
        self._listeners = Listeners()
        self._lock = threading.RLock()
        self._index: InstalledIndex | None = None
        self._table: ModelTable | None = None
        self._table_stale = True
        self._table_lock = threading.Lock()  # one build at a time; a second caller gets its result
        self._pending: Future | None = None
        self._loaded: tuple[str, ...] = ()  # the loaded model's names (its installed name, spec, file)
        self._loaded_ctx: int | None = None
        self._hub: HubStatus | None = None
        self._remote_models: tuple[float, RemoteModels] | None = None
        self._worker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="library")
        self._closed = False
        self.downloads = downloads or DownloadManager(restore=restore_downloads)
        self._unsubscribe = self.downloads.subscribe(self._on_download)

    # --- listening
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear the library's events (and every download's); returns the function that stops it."""
        return self._listeners.add(listener)

    def _emit(self, event: Any) -> None:
        self._listeners.emit(event)

    def _on_download(self, event: DownloadEvent) -> None:
        self._emit(event)
        if event.kind == "finished":
            self.refresh_installed()

    def on_chat_event(self, event: Any) -> None:
        """The chat service's events (its engine thread): what is loaded, and when a reply measured a speed."""
        if isinstance(event, ModelLoaded):
            s = event.summary
            with self._lock:
                self._loaded = tuple(dict.fromkeys(n for n in (s.spec, s.name, s.path) if n))
                self._loaded_ctx = (s.n_ctx or None) if s.kind == "local" else None
                self._table_stale = True
                wanted = self._table is not None
            if wanted:  # views show the table: size it for the new model
                self.request_table()
        elif isinstance(event, TurnFinished):
            # A reply measured a speed: the table is rebuilt when a view next asks, not now, while the
            # CPU may be busy with the next reply (and a busy CPU would slow that reply).
            with self._lock:
                self._table_stale = True

    # --- installed models
    def index(self) -> InstalledIndex:
        """The installed models, each with its catalogue entry (a small JSON read the first time)."""
        with self._lock:
            if self._index is None:
                self._index = library.installed_index()
            return self._index

    def refresh_installed(self) -> InstalledIndex:
        """Read the installed list again (this service or another process changed it) and tell the views."""
        index = library.installed_index()
        with self._lock:
            self._index = index
            self._table_stale = True
            wanted = self._table is not None
        self._emit(InstalledChanged(index))
        if wanted:
            self.request_table()
        return index

    def is_loaded(self, name: str) -> bool:
        with self._lock:
            return name in self._loaded

    def loaded_name(self) -> str | None:
        """The name the loaded model was loaded by (an installed name, a path, or MODEL@REMOTE)."""
        with self._lock:
            return self._loaded[0] if self._loaded else None

    def import_file(self, path: str | Path, name: str | None = None) -> InstalledModel:
        """Register a .gguf on disk (not copied) under its model's own name, or the next free one (slow: reads it)."""
        model = library.import_file(path, name, by_model_name=True)
        self.refresh_installed()
        return model

    def remove(self, name: str) -> Removal:
        """Uninstall a model (a downloaded one's file is deleted); the loaded model is refused."""
        if self.is_loaded(name):
            raise UserError(f"{safe_text(name)} is loaded now. Load another model first, then delete this one.")
        model, freed = library.remove(name)
        self.refresh_installed()
        return Removal(model, freed, library.describe_removal(model, freed))

    # --- fit and speed
    def context_size(self) -> int | None:
        """The context the table is sized for: the loaded model's, else the user's default."""
        with self._lock:
            loaded = self._loaded_ctx
        return loaded or self._default_context() or None

    def cached_table(self) -> ModelTable | None:
        """The last table built (perhaps stale), at once; None before the first."""
        with self._lock:
            return self._table

    def table(self, fresh: bool = False) -> ModelTable:
        """The table, built now if it is stale, or always with `fresh` (free RAM changes). Slow: not on a UI thread."""
        with self._table_lock:
            with self._lock:
                current = None if fresh or self._table_stale else self._table
            if current is not None and current.n_ctx == self.context_size():
                return current
            index = self.index()
            with self._lock:
                self._table_stale = False  # a change from now on makes this build stale again
            built = model_table(self.context_size(), index=index)
            with self._lock:
                self._table = built
        self._emit(TableReady(built))
        return built

    def request_table(self, fresh: bool = False) -> Future:
        """Build the table on the service's worker; listeners get `TableReady`. Requests while one waits share it."""
        with self._lock:
            pending = self._pending
            if pending is not None and not pending.done() and not pending.running():
                return pending
            if self._closed:  # the app is closing: nobody is left to show it
                pending = Future()
                pending.cancel()
                return pending
            self._pending = self._worker.submit(self.table, fresh)
            return self._pending

    def fit_report(self, name: str) -> library.FitReport:
        """Memory and speed of one model, installed, catalogued or on the Hub (a header range-read; slow)."""
        return library.fit_report(name, self.context_size())

    # --- the Hub
    def cached_hub_status(self) -> HubStatus | None:
        """The last answer of `hub_status`, at once (offline mode is always known); None before the first."""
        if hub.is_offline():
            return self.hub_status()
        with self._lock:
            return self._hub

    def hub_status(self, fresh: bool = False) -> HubStatus:
        """Whether downloads can work now: offline mode, or the Hub answering (one quick request; slow)."""
        with self._lock:
            known = self._hub
        if not fresh and known is not None and time.monotonic() - known.checked_at < HUB_STATUS_MAX_AGE_S \
                and not hub.is_offline():
            return known
        try:
            hub.probe("the Hub")
            status = HubStatus(True, "", time.monotonic())
        except UserError as exc:
            status = HubStatus(False, str(exc), time.monotonic())
        with self._lock:
            self._hub = status
        return status

    def search(self, query: str, limit: int = 20) -> list[hub.SearchHit]:
        return hub.search(query, limit=limit)

    # --- remote servers
    def remote_servers(self) -> tuple[RemoteServer, ...]:
        return tuple(RemoteServer(r.name, r.url, r.host, bool(remotes.get_key(r.name))) for r in remotes.list_remotes())

    def add_remote(self, name: str, url: str, api_key: str | None = None) -> RemoteServer:
        remote = remotes.add(name.strip(), url, api_key or None)
        self._remotes_changed()
        return RemoteServer(remote.name, remote.url, remote.host, bool(api_key))

    def remove_remote(self, name: str) -> None:
        remotes.remove(name)
        self._remotes_changed()

    def _remotes_changed(self) -> None:
        with self._lock:
            self._remote_models = None
        self._emit(RemotesChanged(self.remote_servers()))

    def test_remote(self, name: str) -> ConnectionTest:
        """Connect to a remote server: its models and a measured round trip (network: slow)."""
        from assistant.engine.remote import RemoteEngine

        remote = remotes.require(name)
        info = RemoteEngine(remote, remotes.get_key(remote.name)).probe()
        return ConnectionTest(remote.name, tuple(f"{m}@{remote.name}" for m in info["models"]),
                              float(info["round_trip_ms"]), info.get("software"), info.get("version"))

    def remote_models(self, fresh: bool = False) -> RemoteModels:
        """Every remote server's models, asked in parallel (network: slow); kept a minute."""
        from assistant.engine.remote import LISTING_SECONDS, RemoteEngine

        with self._lock:
            cached = self._remote_models
        if not fresh and cached is not None and time.monotonic() - cached[0] < REMOTE_MODELS_MAX_AGE_S:
            return cached[1]
        servers = remotes.list_remotes()

        def ask(remote: remotes.Remote) -> tuple[remotes.Remote, list[str] | str]:
            try:
                # a listing beside others: a dead server gets a short wait (`remote test` waits longer)
                return remote, RemoteEngine(remote, remotes.get_key(remote.name)).list_models(timeout=LISTING_SECONDS)
            except UserError as exc:
                return remote, str(exc)

        found: list[RemoteModel] = []
        problems: list[tuple[str, str]] = []
        if servers:
            with ThreadPoolExecutor(max_workers=min(8, len(servers))) as pool:
                for remote, answer in pool.map(ask, servers):
                    if isinstance(answer, str):
                        problems.append((remote.name, answer))
                    else:
                        found += [RemoteModel(f"{m}@{remote.name}", m, remote.name, remote.host) for m in answer]
        result = RemoteModels(tuple(found), tuple(problems))
        with self._lock:
            self._remote_models = (time.monotonic(), result)
        return result

    # --- closing
    def close(self, wait_s: float = 5.0) -> None:
        """Pause the downloads (they resume next time) and stop the worker."""
        with self._lock:
            self._closed = True
        self._unsubscribe()
        self.downloads.shutdown(wait_s)
        self._worker.shutdown(wait=False, cancel_futures=True)
