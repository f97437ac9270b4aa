"""Downloads for the window, and the background plumbing the model picker and manager share.

`DownloadController` runs `models.library.pull` on a worker thread per model and
reports on the UI thread through signals. Pause stops the transfer and keeps the
partial file (`blobs/<etag>.incomplete` in the Hugging Face cache); resume pulls
again, which continues from that file with a Range request. Cancel stops and
deletes the partial file. The pulls in progress are listed in
`data_dir()/downloads.json`, so after a restart the controller finds their partial
files again and shows them as paused.

Slow calls (the Hub, the disk, fit and speed figures) go through
`ui.workers.run_in_background`. `describe_error` turns the download and Hub errors into words a person can act on.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
import time
from dataclasses import dataclass, field, replace

import shiboken6
from PySide6.QtCore import QEvent, QObject, Signal, Slot

from common.errors import UserError
from common.formatting import format_params
from ui.workers import background_busy, run_in_background, wait_for_background  # noqa: F401 - re-exported for the picker and manager

log = logging.getLogger(__name__)

# --- words for people ----------------------------------------------------------------------------


def describe_error(exc: BaseException) -> str:
    """A failure as a plain first sentence with what to do, then the details the core wrote."""
    from models import download, hub

    detail = str(exc).strip()
    if isinstance(exc, hub.HubUnreachableError):
        head = "The Hub cannot be reached. Check your connection, or use models already installed."
    elif isinstance(exc, hub.HubAuthError):
        head = ("This model is gated or private. Accept its terms on its Hugging Face page and sign in "
                "(set HF_TOKEN or run `hf auth login`), then try again.")
    elif isinstance(exc, hub.HubNotFoundError):
        head = "The Hub has no such model or file. Check the name, or search the Hub for it."
    elif isinstance(exc, download.ChecksumMismatchError):
        head = "The download was damaged (its checksum did not match), so it was deleted. Download it again."
    elif isinstance(exc, download.NotEnoughSpaceError):
        head = "There is not enough free disk space for this model. Free some space, then download again."
    elif isinstance(exc, download.DiskFullError):
        head = "The disk is full. Free some space, then press Resume: the part downloaded is kept."
    elif isinstance(exc, download.DownloadInterrupted):
        head = "The connection keeps dropping. Press Resume to continue from where it stopped."
    elif isinstance(exc, UserError):
        return detail
    else:
        return (f"Something unexpected went wrong ({type(exc).__name__}: {exc}). "
                "Try again; if it keeps happening, restart the app.")
    return f"{head}\n{detail}" if detail else head


_SIZE_TOKEN = re.compile(r"(?<![\w.])(\d+(?:\.\d+)?[MB])\b")


def size_token(entry) -> str:
    """A catalogue entry's size as people say it: 270M, 1B, 3.8B."""
    m = _SIZE_TOKEN.search(entry.label)
    return m.group(1) if m else format_params(entry.params)


def short_label(entry) -> str:
    """Gemma 3 1B, Llama 3.1 8B, Phi-3.5 mini: the label without "Instruct" and notes."""
    m = _SIZE_TOKEN.search(entry.label)
    if m and entry.label[m.start() - 1:m.start()] != "(":
        return entry.label[:m.end()]
    return re.sub(r"\s*\(.*?\)|\s+Instruct.*$", "", entry.label).strip()


VERDICT_WORDS = {"fits": "fits", "tight": "tight fit", "does not fit": "does not fit"}


# --- fit and speed for every model the views show ----------------------------------------------


@dataclass(frozen=True)
class Figure:
    """What a view shows for one model or quant: size, fit verdict and speed."""

    name: str
    size_bytes: int | None
    size_approx: bool
    params: int | None
    verdict: str | None
    reason: str | None
    tokens_per_s: float | None
    measured: bool
    installed: str | None = None  # the installed name, if installed
    problem: str | None = None


@dataclass(frozen=True)
class Facts:
    """Fit and speed for installed models, catalogue sizes and their other quants, computed off the UI thread."""

    n_ctx: int | None
    rows: tuple = ()  # models.library.ModelRow, installed first
    installed_by_entry: dict = field(default_factory=dict)  # (catalogue base name, QUANT) -> installed name
    figures: dict = field(default_factory=dict)  # catalogue name ("gemma3-1b", "gemma3-1b:Q8_0") -> Figure
    machine: str = ""

    def row(self, name: str):
        return next((r for r in self.rows if r.name == name), None)


def catalogue_entry_of(name: str):
    """The catalogue entry an installed or catalogue name stands for (through its repo and file), or None."""
    from models import catalogue, registry

    entry = catalogue.get(name)
    if entry is None:
        m = registry.get(name)
        if m is not None and m.source != "local" and m.repo and m.filename:
            entry = catalogue.get(f"{m.repo}/{m.filename}")
    return entry


def compute_facts(n_ctx: int | None = None, quants: bool = True) -> Facts:
    """Slow (header reads, the bandwidth probe the first time): call it through run_in_background."""
    from models import catalogue, fit, library, speed
    from models.shape import from_catalogue

    rows = library.list_models(n_ctx)
    installed_by_entry: dict = {}
    figures: dict = {}
    for r in rows:
        if r.installed:
            entry = catalogue_entry_of(r.name) if r.source != "local" else None
            if entry is not None:
                installed_by_entry.setdefault((entry.base_name, entry.quant.upper()), r.name)
                figures[entry.name] = Figure(entry.name, r.size_bytes, False, r.params, r.verdict, r.fit_reason,
                                             r.tokens_per_s, r.speed_measured, r.name, r.problem)
        else:
            figures[r.name] = Figure(r.name, r.size_bytes, r.size_approx, r.params, r.verdict, r.fit_reason,
                                     r.tokens_per_s, False)
    machine = fit.this_machine()
    calib = speed.calibration()
    if quants:
        for entry in catalogue.entries():
            if entry.is_starter:
                continue
            for q in entry.quants:
                other = entry.with_quant(q)
                if other is None or other.name in figures:
                    continue
                shape = from_catalogue(other)
                verdict = fit.fit(shape, n_ctx, machine)
                fig = speed.estimate_speed(shape, calib=calib)
                figures[other.name] = Figure(
                    other.name, shape.size_bytes, True, entry.params, verdict.verdict, verdict.reason,
                    fig.tokens_per_s, False, installed_by_entry.get((entry.base_name, other.quant.upper())),
                )
    gib = 1 << 30
    gpus = ", ".join(f"{g.name} ({g.total / gib:.0f} GiB)" for g in machine.gpus) or "no GPU"
    text = (f"This machine: {machine.total_ram / gib:.1f} GiB RAM ({machine.available_ram / gib:.1f} GiB free), "
            f"{gpus}, memory bandwidth {calib.bandwidth / 1e9:.0f} GB/s. Sized for a "
            f"{n_ctx or fit.DEFAULT_CTX}-token context; ~ marks an estimate, a plain figure was measured here.")
    return Facts(n_ctx, tuple(rows), installed_by_entry, figures, text)


# --- downloads -------------------------------------------------------------------------------------

STARTING, DOWNLOADING, PAUSING, PAUSED, CANCELLING, FAILED = (
    "starting", "downloading", "pausing", "paused", "cancelling", "failed")
ACTIVE = (STARTING, DOWNLOADING, PAUSING, CANCELLING)


@dataclass
class Download:
    """One pull the controller knows about, as the views show it."""

    name: str  # the key: what was asked for (a catalogue name or Hub reference)
    label: str
    status: str = STARTING
    done: int = 0
    total: int | None = None
    rate: float = 0.0
    eta: float | None = None
    message: str = ""  # why it failed, in plain words
    repo: str | None = None
    filename: str | None = None
    sha256: str | None = None  # the finished file's SHA-256: its partial file is blobs/<sha256>.incomplete
    pull_name: str | None = None  # None for a partial found in the cache whose file is looked up on resume
    installed_as: str | None = None
    found_in_cache: bool = False
    _cancel: threading.Event = field(default_factory=threading.Event, repr=False)
    _discard: threading.Event = field(default_factory=threading.Event, repr=False)
    _thread: threading.Thread | None = field(default=None, repr=False)
    _resume_after_stop: bool = field(default=False, repr=False)
    _partials_before: frozenset | None = field(default=None, repr=False)  # etags of the repo's partials before

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    @property
    def active(self) -> bool:
        return self.status in ACTIVE


def _records_path():
    from common.paths import data_dir

    return data_dir() / "downloads.json"


def load_records() -> dict:
    try:
        raw = json.loads(_records_path().read_text())
    except (OSError, ValueError):
        return {}
    downloads = raw.get("downloads") if isinstance(raw, dict) else None
    return downloads if isinstance(downloads, dict) else {}


def save_records(records: dict) -> None:
    path = _records_path()
    tmp = path.with_suffix(f".{os.getpid()}.tmp")
    tmp.write_text(json.dumps({"version": 1, "downloads": records}, indent=1))
    os.replace(tmp, path)


class DownloadController(QObject):
    """Pulls on worker threads, one per model; every signal is emitted on the UI thread."""

    added = Signal(str)  # a download appeared (started, or found paused after a restart)
    changed = Signal(str)  # its status or figures changed
    progress = Signal(str, object, object, float, object)  # name, done, total, bytes/s, seconds left (or None)
    finished = Signal(str)  # installed: controller.get(name).installed_as says under which name
    failed = Signal(str, str)  # name, a message for people
    paused = Signal(str)
    cancelled = Signal(str)  # stopped and its partial file deleted; the download is gone
    removed = Signal(str)  # gone from the list (finished or cancelled)
    installedChanged = Signal()  # the set of installed models changed (a download, a delete, an import)
    _event = Signal(str, str, object)  # from the worker threads

    def __init__(self, parent: QObject | None = None, *, restore: bool = True):
        super().__init__(parent)
        self._downloads: dict[str, Download] = {}
        self._finished: dict[str, Download] = {}
        self._event.connect(self._on_event)
        if restore:
            self.restore()
        if parent is not None and hasattr(parent, "installEventFilter"):
            parent.installEventFilter(self)  # pause everything when the window closes

    # --- what the views read
    def downloads(self) -> list[Download]:
        return list(self._downloads.values())

    def get(self, name: str) -> Download | None:
        return self._downloads.get(name) or self._finished.get(name)

    def is_active(self, name: str) -> bool:
        d = self._downloads.get(name)
        return d is not None and d.active

    # --- actions
    def start(self, name: str, label: str | None = None) -> Download:
        """Start (or resume) pulling `name`: a catalogue name, owner/repo:QUANT or owner/repo/file.gguf."""
        d = self._downloads.get(name)
        if d is not None:
            self.resume(name)
            return d
        d = Download(name=name, label=label or _label_for(name), pull_name=name)
        self._finished.pop(name, None)
        self._downloads[name] = d
        self.added.emit(name)
        self._spawn(d)
        return d

    def resume(self, name: str) -> None:
        d = self._downloads.get(name)
        if d is None:
            return
        if d.status in (PAUSING, CANCELLING):
            d._resume_after_stop = d.status == PAUSING
            return
        if d.status in (PAUSED, FAILED):
            self._spawn(d)

    def pause(self, name: str) -> None:
        """Stop the transfer; the partial file stays for resume."""
        d = self._downloads.get(name)
        if d is not None and d.status in (STARTING, DOWNLOADING):
            d.status = PAUSING
            d._resume_after_stop = False
            d._cancel.set()
            self.changed.emit(name)

    def cancel(self, name: str) -> None:
        """Stop the transfer and delete its partial file."""
        d = self._downloads.get(name)
        if d is None or d.status == CANCELLING:
            return
        d._resume_after_stop = False
        d._discard.set()
        if d.status in (STARTING, DOWNLOADING, PAUSING):
            d.status = CANCELLING
            d._cancel.set()
            self.changed.emit(name)
        else:  # paused or failed: nothing runs; delete its partial file off the UI thread
            d.status = CANCELLING
            self.changed.emit(name)
            self._spawn(d, discard_only=True)

    def pause_all(self) -> None:
        for name in list(self._downloads):
            self.pause(name)

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Pause every download and wait for its thread (the partial files stay, to resume next time)."""
        self.pause_all()
        for d in list(self._downloads.values()):
            if d._thread is not None:
                d._thread.join(wait_s)

    def notify_installed_changed(self) -> None:
        self.installedChanged.emit()

    def eventFilter(self, watched, event) -> bool:
        if event.type() == QEvent.Type.Close and watched is self.parent():
            # The window closes: stop the transfers (their partial files resume next time), and let the
            # background calls finish their writes to the data dir before the app goes.
            self.shutdown(wait_s=2.0)
            wait_for_background(3.0)
        return False

    # --- a restart: partial files in the cache, with the names downloads.json remembers
    def restore(self) -> list[str]:
        """Show partial downloads in the Hub cache as paused; returns their names."""
        from models import catalogue, download, registry

        records = load_records()
        try:
            partials = download.partial_downloads()
        except OSError:
            partials = []
        known_repos = {e.repo.lower() for e in catalogue.entries() if e.repo}
        known_repos |= {m.repo.lower() for m in registry.list_installed() if m.repo}
        kept: dict = {}
        names = []
        for p in partials:
            rec_name, rec = next(((n, r) for n, r in records.items()
                                  if r.get("repo") == p.repo_id and r.get("sha256") == p.etag), (None, None))
            if rec is None and p.repo_id.lower() not in known_repos:
                continue  # another tool's download of a model this app does not know
            if rec is not None:
                d = Download(name=rec_name, label=rec.get("label") or _label_for(rec_name), status=PAUSED,
                             done=p.size, total=rec.get("size"), repo=p.repo_id, filename=rec.get("filename"),
                             sha256=p.etag, pull_name=rec.get("pull_name") or rec_name)
                kept[rec_name] = rec
            else:
                entry = next((e for e in catalogue.entries() if e.repo and e.repo.lower() == p.repo_id.lower()),
                             None)
                label = f"{entry.family_label.split(' (')[0]} from {p.repo_id}" if entry else p.repo_id
                d = Download(name=f"{p.repo_id}@{p.etag[:12]}", label=label, status=PAUSED, done=p.size,
                             repo=p.repo_id, sha256=p.etag, pull_name=None, found_in_cache=True)
            if d.name in self._downloads:
                continue
            self._downloads[d.name] = d
            names.append(d.name)
            self.added.emit(d.name)
        if kept != records:
            save_records(kept)  # forget pulls whose partial file is gone (finished, deleted elsewhere)
        return names

    # --- the worker
    def _spawn(self, d: Download, discard_only: bool = False) -> None:
        if not discard_only:
            d._cancel = threading.Event()
            d._discard = threading.Event()
            d.status = STARTING
            d.message = ""
            d.rate, d.eta = 0.0, None
            self.changed.emit(d.name)
        cancel, discard = d._cancel, d._discard
        d._thread = threading.Thread(target=self._work, args=(d, cancel, discard, discard_only),
                                     name=f"pull {d.name}", daemon=True)
        d._thread.start()

    def _post(self, name: str, kind: str, payload=None) -> None:
        try:
            self._event.emit(name, kind, payload)
        except RuntimeError:  # the controller is gone (the window closed): the partial file stays
            pass

    def _work(self, d: Download, cancel: threading.Event, discard: threading.Event, discard_only: bool) -> None:
        from models import download, library

        name = d.name
        repo, sha, before = d.repo, d.sha256, d._partials_before
        if discard_only:
            self._discard_files(repo, sha, before)
            self._post(name, "cancelled")
            return
        try:
            pull_name, plan = self._plan(d)
            repo, sha = plan.target.repo_id, plan.sha256 or sha
            before = frozenset(p.etag for p in download.partial_downloads() if p.repo_id == repo and p.etag != sha)
            if cancel.is_set():
                raise download.DownloadCancelled("stopped before the transfer began")
            self._post(name, "planned", {
                "pull_name": pull_name, "repo": plan.target.repo_id, "filename": plan.filename,
                "size": plan.size, "sha256": plan.sha256, "before": before,
            })

            def on_progress(done, total, rate, eta):
                self._post(name, "progress", (done, total, rate, eta))

            model, _result = library.pull(pull_name, on_progress=on_progress, cancel=cancel, plan=plan)
            self._post(name, "finished", model.name)
        except download.DownloadCancelled:
            if discard.is_set():
                self._discard_files(repo, sha or d.sha256, before)
                self._post(name, "cancelled")
            else:
                self._post(name, "paused")
        except Exception as exc:  # every failure becomes a message on the row
            if not isinstance(exc, UserError):
                log.exception("the download of %s failed", name)
            if discard.is_set():
                self._discard_files(repo, sha or d.sha256, before)
                self._post(name, "cancelled")
            else:
                self._post(name, "failed", (describe_error(exc), self._kept(repo, sha or d.sha256)))

    @staticmethod
    def _plan(d: Download):
        """(name to pull, PullPlan with the file's SHA-256 where the Hub lists it): runs on the worker."""
        from models import catalogue, hub, library

        if d.pull_name is None:  # a partial file found in the cache: which file of the repo is it?
            listing = hub.list_gguf_files(d.repo)
            f = next((f for f in listing.files if f.sha256 == d.sha256), None)
            if f is None:
                raise UserError(f"The file this partial download belongs to is no longer published in {d.repo}; "
                                "cancel it to free its space.")
            entry = catalogue.get(f"{d.repo}/{f.path}")
            name = entry.name if entry is not None else f"{d.repo}/{f.path}"
            return name, library.PullPlan(library.pull_target(name), f.path, f.size, f.sha256)
        target = library.pull_target(d.pull_name)
        plan = library.plan_pull(target)
        if plan.sha256 is None and not hub.is_offline():
            # Knowing the SHA-256 names the partial file (to delete it on cancel, to find it after a restart),
            # and the pull checks the finished file against it.
            try:
                listing = hub.list_gguf_files(target.repo_id, target.revision)
            except UserError:
                listing = None  # the pull reports why (or finds the file in the cache)
            f = next((f for f in listing.files if f.path == plan.filename), None) if listing else None
            if f is not None:
                plan = replace(plan, size=f.size, sha256=f.sha256)
        return d.pull_name, plan

    @staticmethod
    def _kept(repo: str | None, sha: str | None) -> int | None:
        """Bytes of the partial file after a failure (0 when it was deleted, as a bad checksum does)."""
        from models import download, hub

        if not (repo and sha):
            return None
        partial = download.repo_folder(repo, hub.cache_dir()) / "blobs" / f"{sha}.incomplete"
        try:
            return partial.stat().st_size
        except OSError:
            return 0

    @staticmethod
    def _discard_files(repo: str | None, sha: str | None, before: frozenset | None) -> None:
        from models import download

        try:
            if repo and sha:
                download.discard_partial(repo, sha)
            elif repo and before is not None:  # not known by hash: the partial files this pull created
                for p in download.partial_downloads():
                    if p.repo_id == repo and p.etag not in before:
                        download.discard_partial(p.repo_id, p.etag)
        except (OSError, UserError):
            log.exception("could not remove the partial files of a cancelled download")

    # --- back on the UI thread
    @Slot(str, str, object)
    def _on_event(self, name: str, kind: str, payload) -> None:
        d = self._downloads.get(name)
        if d is None:
            return
        if kind == "planned":
            d.pull_name = payload["pull_name"]
            d.repo, d.filename = payload["repo"], payload["filename"]
            d.sha256 = payload["sha256"] or d.sha256
            d.total = payload["size"] or d.total
            d._partials_before = payload["before"]
            if d.status == STARTING:
                d.status = DOWNLOADING
            self._remember(d)
            self.changed.emit(name)
        elif kind == "progress":
            done, total, rate, eta = payload
            d.done, d.total, d.rate, d.eta = done, total, rate, eta
            if d.status == STARTING:
                d.status = DOWNLOADING
            if d.sha256 is None:
                self._find_partial(d)
            self.progress.emit(name, done, total, float(rate or 0.0), eta)
        elif kind == "finished":
            d.installed_as = payload
            d.status = "done"
            d.done = d.total or d.done
            self._forget(d)
            del self._downloads[name]
            self._finished[name] = d
            self.changed.emit(name)
            self.finished.emit(name)
            self.removed.emit(name)
            self.installedChanged.emit()
        elif kind == "paused":
            d.status, d.rate, d.eta = PAUSED, 0.0, None
            self.changed.emit(name)
            self.paused.emit(name)
            if d._resume_after_stop:
                d._resume_after_stop = False
                self._spawn(d)
        elif kind == "failed":
            message, kept = payload
            d.status, d.message, d.rate, d.eta = FAILED, message, 0.0, None
            if kept is not None:
                d.done = kept
            self.changed.emit(name)
            self.failed.emit(name, message)
        elif kind == "cancelled":
            self._forget(d)
            del self._downloads[name]
            self.changed.emit(name)
            self.cancelled.emit(name)
            self.removed.emit(name)

    def _find_partial(self, d: Download) -> None:
        """A file the Hub listing gave no SHA-256 for: its partial file is the one this pull created."""
        from models import download

        if d._partials_before is None:
            return
        new = [p for p in download.partial_downloads() if p.repo_id == d.repo and p.etag not in d._partials_before]
        if len(new) == 1:
            d.sha256 = new[0].etag
            self._remember(d)

    def _remember(self, d: Download) -> None:
        records = load_records()
        records[d.name] = {"label": d.label, "pull_name": d.pull_name, "repo": d.repo, "filename": d.filename,
                           "sha256": d.sha256, "size": d.total}
        save_records(records)

    def _forget(self, d: Download) -> None:
        records = load_records()
        if records.pop(d.name, None) is not None:
            save_records(records)


def _label_for(name: str) -> str:
    from models import catalogue

    entry = catalogue.get(name)
    if entry is None:
        return name
    label = short_label(entry)
    return f"{label} {entry.quant}" if entry.quant.upper() != entry.default_quant.upper() else label


def controller_for(window) -> DownloadController:
    """The window's one download controller, shared by the picker and the manager (made on first use)."""
    controller = getattr(window, "download_controller", None) if window is not None else None
    if controller is not None and shiboken6.isValid(controller):
        return controller
    controller = DownloadController(parent=window if isinstance(window, QObject) else None)
    if window is not None:
        try:
            window.download_controller = controller
        except AttributeError:
            pass
    return controller


# --- the fit mark the views share --------------------------------------------------------------------

VERDICT_COLOURS = {"fits": "#2e7d32", "tight": "#e0a000", "does not fit": "#c62828"}
_ICONS: dict = {}


def verdict_icon(verdict: str | None):
    """A small coloured disc: green fits, amber tight, red does not fit, grey not known yet."""
    from PySide6.QtCore import Qt
    from PySide6.QtGui import QColor, QIcon, QPainter, QPixmap

    key = verdict or ""
    if key not in _ICONS:
        pix = QPixmap(12, 12)
        pix.fill(Qt.GlobalColor.transparent)
        painter = QPainter(pix)
        painter.setRenderHint(QPainter.RenderHint.Antialiasing)
        painter.setPen(Qt.PenStyle.NoPen)
        painter.setBrush(QColor(VERDICT_COLOURS.get(key, "#9e9e9e")))
        painter.drawEllipse(1, 1, 10, 10)
        painter.end()
        _ICONS[key] = QIcon(pix)
    return _ICONS[key]
