"""Downloads that outlive a window and a process: a queue, pause, resume, cancel, and restore after a restart.

`DownloadManager` pulls models (`models.library.pull`) on worker threads, at most
`max_active` at a time; the others wait, queued, in the order they were asked for.

- **Pause** stops the transfer and keeps the partial file (`blobs/<sha256>.incomplete`
  in the Hugging Face cache); **resume** pulls again, which continues from that file
  with a Range request. **Cancel** stops and deletes the partial file.
- **State across restarts.** Every pull that has not finished is recorded in
  `data_dir()/downloads.json` (read, changed and written under a file lock: the window
  and `assistant models pull` share it). A new manager (the app started again, or the
  CLI) shows those pulls as paused, with the bytes their partial files hold, and offers
  partial files that no record names when they belong to a repo the app knows
  (another tool's or an older version's interrupted download of a catalogued model).

No Qt here. Listeners get a `DownloadEvent` on the thread where the change happened
(a worker's, or the caller's for pause and cancel), one at a time and in order: a
front end relays them (the window through a queued signal, the CLI to its progress bar).
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import threading
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from filelock import Timeout

from common.errors import UserError
from common.listeners import Listeners
from common.paths import data_dir
from models import atomic_file, catalogue, download, hub, labels, library, registry, repo_path

log = logging.getLogger(__name__)

QUEUED, STARTING, DOWNLOADING, PAUSING, PAUSED, CANCELLING, FAILED, DONE = (
    "queued", "starting", "downloading", "pausing", "paused", "cancelling", "failed", "done")
RUNNING = (STARTING, DOWNLOADING)  # bytes may be moving: pause and cancel stop them
BUSY = (STARTING, DOWNLOADING, PAUSING, CANCELLING)  # a worker thread owns it
RECORDS_VERSION = 1
_HASH = re.compile(r"^[0-9a-f]{40}(?:[0-9a-f]{24})?$")  # a file's SHA-256 (LFS), or its git blob id
DEFAULT_MAX_ACTIVE = 2


# --- words for people ----------------------------------------------------------------------------


def describe_error(exc: BaseException) -> str:
    """A download or Hub failure as a plain first sentence with what to do, then the details the core wrote."""
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
        head = "The disk is full. Free some space, then resume: the part downloaded is kept."
    elif isinstance(exc, download.DownloadInterrupted):
        head = "The connection keeps dropping. Resume to continue from where it stopped."
    elif isinstance(exc, UserError):
        return detail
    else:
        return (f"Something unexpected went wrong ({type(exc).__name__}: {exc}). "
                "Try again; if it keeps happening, restart the app.")
    return f"{head}\n{detail}" if detail else head


def label_for(name: str) -> str:
    """How a download of `name` is titled: "Gemma 3 1B", "Gemma 3 1B Q8_0", or the name itself."""
    entry = catalogue.get(name)
    return labels.entry_label(entry) if entry is not None else name


# --- what listeners see ----------------------------------------------------------------------------


@dataclass(frozen=True)
class DownloadInfo:
    """One download as it stands: a snapshot, safe to hand to another thread."""

    name: str  # the key: the name it was asked for, normalised (`library.pull_target(name).name`)
    label: str
    status: str = QUEUED
    done: int = 0
    total: int | None = None
    rate: float = 0.0  # bytes/s
    eta: float | None = None  # seconds left
    message: str = ""  # why it failed, in plain words, with what to do (`describe_error`)
    error: str = ""  # why it failed, as the core said it: one sentence (for a command line)
    repo: str | None = None
    filename: str | None = None
    sha256: str | None = None  # the finished file's SHA-256: its partial file is blobs/<sha256>.incomplete
    installed_as: str | None = None
    found_in_cache: bool = False  # a partial file found in the cache, not started by this app's records
    resumed_from: int = 0  # bytes an earlier attempt had left (when done)
    from_cache: bool = False  # the finished file was in the cache already (when done)

    @property
    def fraction(self) -> float | None:
        return self.done / self.total if self.total else None

    @property
    def active(self) -> bool:
        """Queued or running: a worker will (or does) move its bytes."""
        return self.status == QUEUED or self.status in BUSY

    @property
    def stopped(self) -> bool:
        """Paused or failed: it waits for the user to resume or cancel it."""
        return self.status in (PAUSED, FAILED)


ADDED, CHANGED, PROGRESS, PAUSED_EVENT, FAILED_EVENT, FINISHED, CANCELLED, REMOVED = (
    "added", "changed", "progress", "paused", "failed", "finished", "cancelled", "removed")


@dataclass(frozen=True)
class DownloadEvent:
    """`kind`: added, changed (its status), progress, paused, failed, finished (installed), cancelled
    (stopped and its partial file deleted), removed (gone from the list: finished or cancelled)."""

    kind: str
    download: DownloadInfo


Listener = Callable[[DownloadEvent], None]


# --- the record of unfinished pulls -------------------------------------------------------------


def _records_path() -> Path:
    return data_dir() / "downloads.json"


def load_records() -> dict[str, dict]:
    """name -> {label, pull_name, repo, filename, sha256, size, installs_as}: the pulls not finished, by any process."""
    try:
        raw = json.loads(_records_path().read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:  # a damaged record costs the names of paused pulls, not their bytes
        log.warning("the record of unfinished downloads %s cannot be read: %s", _records_path(), exc)
        return {}
    downloads = raw.get("downloads") if isinstance(raw, dict) else None
    if not isinstance(downloads, dict):
        return {}
    return {k: _clean_record(v) for k, v in downloads.items() if isinstance(k, str) and k and isinstance(v, dict)}


def _clean_record(rec: dict) -> dict:
    """Only values of the right kind: the file is the user's to edit, and a name in it must never make a
    path outside the Hugging Face cache (a partial file is deleted by repo and hash)."""
    clean: dict = {k: v if isinstance(v, str) and v else None
                   for k, v in ((k, rec.get(k)) for k in ("label", "pull_name", "repo", "filename", "sha256",
                                                          "installs_as"))}
    if clean["repo"] is not None:
        try:
            repo_path.require_repo_id(clean["repo"])
        except UserError:
            clean["repo"] = None
    if clean["filename"] is not None and repo_path.problem(clean["filename"]) is not None:
        clean["filename"] = None
    if clean["sha256"] is not None and not _HASH.match(clean["sha256"]):
        clean["sha256"] = None
    size = rec.get("size")
    clean["size"] = size if isinstance(size, int) and not isinstance(size, bool) and size > 0 else None
    return clean


@contextlib.contextmanager
def _changing_records():
    """Read-modify-write of the record under a file lock: the window and the CLI may change it at once."""
    from filelock import FileLock

    with FileLock(str(_records_path().with_suffix(".lock")), timeout=10):
        records = load_records()
        before = json.dumps(records, sort_keys=True)
        yield records
        if json.dumps(records, sort_keys=True) != before:
            atomic_file.write_json(_records_path(), {"version": RECORDS_VERSION, "downloads": records})


# --- the manager -------------------------------------------------------------------------------------


@dataclass
class _Job:
    """A download's state, changed only under the manager's lock."""

    info: DownloadInfo
    pull_name: str | None  # what to pull; None for a partial found in the cache (its file is looked up)
    plan: library.PullPlan | None = None
    cancel: threading.Event = field(default_factory=threading.Event)
    discard: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None
    resume_after_stop: bool = False
    partials_before: frozenset | None = None  # the repo's partial files before this pull began


class DownloadManager:
    """Pulls on worker threads, `max_active` at a time; the state of each is a `DownloadInfo`."""

    def __init__(self, *, max_active: int = DEFAULT_MAX_ACTIVE, restore: bool = True) -> None:
        self.max_active = max(1, max_active)
        self._lock = threading.RLock()
        self._changed = threading.Condition(self._lock)
        self._jobs: dict[str, _Job] = {}  # in the order they were asked for: the queue's order
        self._finished: dict[str, DownloadInfo] = {}
        self._listeners = Listeners()
        self._closed = False
        if restore:
            self.restore()

    # --- listening
    def subscribe(self, listener: Listener) -> Callable[[], None]:
        """Hear every download's events; returns the function that stops it."""
        return self._listeners.add(listener)

    def _emit(self, kind: str, info: DownloadInfo) -> None:
        # Under the lock: listeners see each download's changes one at a time, in the order they happened.
        with self._lock:
            self._changed.notify_all()
            self._listeners.emit(DownloadEvent(kind, info))

    def _update(self, job: _Job, kind: str | None = CHANGED, **changes) -> DownloadInfo:
        with self._lock:
            job.info = replace(job.info, **changes)
            if kind is not None:
                self._emit(kind, job.info)
            return job.info

    # --- what front ends read
    def downloads(self) -> list[DownloadInfo]:
        """The downloads not finished (queued, running, paused, failed), in the order they were asked for."""
        with self._lock:
            return [j.info for j in self._jobs.values()]

    def get(self, name: str) -> DownloadInfo | None:
        """A download by its key, or the last state of one that finished in this manager."""
        with self._lock:
            job = self._jobs.get(name)
            return job.info if job is not None else self._finished.get(name)

    def key(self, name: str) -> str:
        """The key a pull of `name` is known by (`owner/repo` and `owner/repo:q4_k_m` are one download)."""
        with self._lock:
            if name in self._jobs:
                return name
        return library.pull_target(name).name

    def is_active(self, name: str) -> bool:
        info = self.get(name)
        return info is not None and info.active

    # --- actions
    def start(self, name: str, label: str | None = None, *, plan: library.PullPlan | None = None) -> DownloadInfo:
        """Queue a pull of `name` (a catalogue name, owner/repo:QUANT or owner/repo/file.gguf), or resume it.

        Raises a UserError at once for a name that is neither (nothing is queued then).
        """
        key = self.key(name)
        with self._lock:
            self._check_open()
            job = self._jobs.get(key)
            if job is not None:
                job.plan = plan or job.plan
                self.resume(key)
                return job.info
            job = _Job(DownloadInfo(key, label or label_for(key)), pull_name=name, plan=plan)
            self._finished.pop(key, None)
            self._jobs[key] = job
            self._emit(ADDED, job.info)
            self._run_queue()
            return job.info

    def resume(self, name: str) -> None:
        with self._lock:
            job = self._jobs.get(name)
            if job is None or self._closed:
                return
            if job.info.status == PAUSING:
                job.resume_after_stop = True
            elif job.info.status in (PAUSED, FAILED):
                self._update(job, status=QUEUED, message="", error="", rate=0.0, eta=None)
                self._run_queue()

    def pause(self, name: str) -> None:
        """Stop the transfer (or take it out of the queue); the partial file stays for resume."""
        with self._lock:
            job = self._jobs.get(name)
            if job is None:
                return
            job.resume_after_stop = False
            if job.info.status == QUEUED:
                self._update(job, status=PAUSED)
                self._emit(PAUSED_EVENT, job.info)
                self._remember(job)
            elif job.info.status in RUNNING:
                job.cancel.set()
                self._update(job, status=PAUSING)

    def cancel(self, name: str) -> None:
        """Stop the transfer and delete its partial file; the download leaves the list."""
        with self._lock:
            job = self._jobs.get(name)
            if job is None or job.info.status == CANCELLING:
                return
            job.resume_after_stop = False
            job.discard.set()
            running = job.info.status in RUNNING or job.info.status == PAUSING
            self._update(job, status=CANCELLING)
            if running:
                job.cancel.set()  # the worker deletes the partial file when it stops
            else:  # nothing runs: delete its partial file on a thread (it may be large)
                self._spawn(job, discard_only=True)

    def pause_all(self) -> None:
        for info in self.downloads():
            self.pause(info.name)

    def wait(self, name: str, timeout: float | None = None) -> DownloadInfo | None:
        """Block until `name` is no longer queued or running; its state then (None once cancelled)."""
        with self._changed:
            self._changed.wait_for(lambda: not self.is_active(name), timeout)
            return self.get(name)

    def shutdown(self, wait_s: float = 5.0) -> None:
        """Pause every download and wait for its thread: the partial files stay, to resume next time."""
        with self._lock:
            self._closed = True
            self.pause_all()
            threads = [j.thread for j in self._jobs.values() if j.thread is not None]
        for thread in threads:
            thread.join(wait_s)

    def _check_open(self) -> None:
        if self._closed:
            raise UserError("The app is closing; start the download again next time.")

    # --- after a restart: the record and the partial files in the cache
    def restore(self) -> list[str]:
        """Show the pulls recorded and the partial files in the Hub cache as paused; returns their names."""
        try:
            partials = download.partial_downloads()
        except OSError as exc:
            log.warning("the Hugging Face cache cannot be read for partial downloads: %s", exc)
            partials = []
        try:
            installed = {m.name: m for m in registry.list_installed()}
        except UserError as exc:  # an unreadable list: its models are simply not known to be installed
            log.warning("restoring downloads without the installed list: %s", exc)
            installed = {}
        known_repos = {e.repo.lower() for e in catalogue.entries() if e.repo}
        known_repos |= {m.repo.lower() for m in installed.values() if m.repo}
        names: list[str] = []
        claimed: set[tuple[str, str]] = set()
        try:
            with _changing_records() as records:
                self._restore_records(records, partials, installed, claimed, names)
        except (OSError, Timeout) as exc:  # a read-only data dir: show what is recorded, change nothing
            log.warning("the record of unfinished downloads cannot be updated: %s", exc)
            self._restore_records(load_records(), partials, installed, claimed, names)
        for p in partials:
            if (p.repo_id, p.etag) in claimed or p.repo_id.lower() not in known_repos:
                continue  # ours and restored above, or another tool's download of a model this app does not know
            entry = catalogue.get(p.repo_id)
            label = f"{labels.family_name(entry)} from {p.repo_id}" if entry else p.repo_id
            info = DownloadInfo(f"{p.repo_id}@{p.etag[:12]}", label, PAUSED, p.size, repo=p.repo_id, sha256=p.etag,
                                found_in_cache=True)
            if self._adopt(_Job(info, None)):
                names.append(info.name)
        return names

    def _restore_records(self, records: dict, partials: list, installed: dict, claimed: set, names: list) -> None:
        """Adopt the recorded pulls, paused, with the bytes their partial files hold; drop those done since."""
        for name, rec in list(records.items()):
            partial = next((p for p in partials if p.repo_id == rec.get("repo") and p.etag == rec.get("sha256")), None)
            if partial is None and _installed_present(installed, rec.get("installs_as") or name):
                del records[name]  # finished by another process since
                continue
            if partial is not None:
                claimed.add((partial.repo_id, partial.etag))
            info = DownloadInfo(name, rec.get("label") or label_for(name), PAUSED, partial.size if partial else 0,
                                rec.get("size"), repo=rec.get("repo"), filename=rec.get("filename"),
                                sha256=rec.get("sha256"))
            if self._adopt(_Job(info, rec.get("pull_name") or name)):
                names.append(name)

    def _adopt(self, job: _Job) -> bool:
        with self._lock:
            if job.info.name in self._jobs:
                return False
            self._jobs[job.info.name] = job
            self._emit(ADDED, job.info)
            return True

    # --- the queue and the workers
    def _run_queue(self) -> None:
        with self._lock:
            if self._closed:
                return
            busy = sum(1 for j in self._jobs.values() if j.info.status in BUSY and not j.discard.is_set())
            for job in list(self._jobs.values()):
                if busy >= self.max_active:
                    break
                if job.info.status == QUEUED:
                    self._spawn(job)
                    busy += 1

    def _spawn(self, job: _Job, discard_only: bool = False) -> None:
        if not discard_only:
            job.cancel, job.discard = threading.Event(), threading.Event()
            self._update(job, status=STARTING, message="", error="", rate=0.0, eta=None)
        job.thread = threading.Thread(target=self._work, args=(job, job.cancel, job.discard, discard_only),
                                      name=f"pull {job.info.name}", daemon=True)
        job.thread.start()

    def _work(self, job: _Job, cancel: threading.Event, discard: threading.Event, discard_only: bool) -> None:
        if discard_only:
            self._discard_files(job)
            self._cancelled(job)
            return
        try:
            pull_name, plan = self._plan(job)
            repo, sha = plan.target.repo_id, plan.sha256 or job.info.sha256
            before = frozenset(p.etag for p in download.partial_downloads() if p.repo_id == repo and p.etag != sha)
            if cancel.is_set():
                raise download.DownloadCancelled("stopped before the transfer began")
            self._planned(job, pull_name, plan, sha, before)
            model, result = library.pull(pull_name, cancel=cancel, plan=plan,
                                         on_progress=lambda *figures: self._progress(job, *figures))
        except download.DownloadCancelled:
            if discard.is_set():
                self._discard_files(job)
                self._cancelled(job)
            else:
                self._stopped(job, PAUSED)
        except Exception as exc:  # every failure becomes a sentence on the download
            if not isinstance(exc, UserError):
                log.exception("the download of %s failed", job.info.name)
            if discard.is_set():
                self._discard_files(job)
                self._cancelled(job)
            else:
                self._stopped(job, FAILED, describe_error(exc), str(exc).strip() or type(exc).__name__)
        else:
            self._installed(job, model.name, result)

    def _plan(self, job: _Job) -> tuple[str, library.PullPlan]:
        """(name to pull, PullPlan with the file's SHA-256 where the Hub lists it): runs on the worker."""
        info = job.info
        if job.pull_name is None:  # a partial file found in the cache: which file of the repo is it?
            assert info.repo is not None
            published = hub.list_gguf_files(info.repo)
            found = next((f for f in published.files if f.sha256 == info.sha256), None)
            if found is None:
                raise UserError(f"The file this partial download belongs to is no longer published in {info.repo}; "
                                "cancel it to free its space.")
            entry = catalogue.get(f"{info.repo}/{found.path}")
            name = entry.name if entry is not None else f"{info.repo}/{found.path}"
            return name, library.PullPlan(library.pull_target(name), found.path, found.size, found.sha256)
        plan = job.plan or library.plan_pull(library.pull_target(job.pull_name))
        target = plan.target
        if plan.sha256 is None and not hub.is_offline():
            # Knowing the SHA-256 names the partial file (to delete it on cancel, to find it after a restart),
            # and the pull checks the finished file against it.
            listing: hub.RepoListing | None = None
            try:
                listing = hub.list_gguf_files(target.repo_id, target.revision)
            except UserError:
                pass  # the pull reports why (or finds the file in the cache)
            found = next((f for f in listing.files if f.path == plan.filename), None) if listing else None
            if found is not None:
                plan = replace(plan, size=found.size, sha256=found.sha256)
        return job.pull_name, plan

    def _planned(self, job: _Job, pull_name: str, plan: library.PullPlan, sha: str | None, before: frozenset) -> None:
        with self._lock:
            job.pull_name, job.plan, job.partials_before = pull_name, plan, before
            status = DOWNLOADING if job.info.status == STARTING else job.info.status
            self._update(job, status=status, repo=plan.target.repo_id, filename=plan.filename, sha256=sha,
                         total=plan.size or job.info.total)
            self._absorb_duplicates(job)
            self._remember(job)

    def _absorb_duplicates(self, job: _Job) -> None:
        """A paused entry for the same file (found in the cache under another name) is this download now."""
        for other in list(self._jobs.values()):
            if (other is not job and other.info.stopped and other.info.sha256 and other.info.sha256 == job.info.sha256
                    and other.info.repo == job.info.repo):
                del self._jobs[other.info.name]
                self._forget(other)
                self._emit(REMOVED, other.info)

    def _progress(self, job: _Job, done: int, total: int, rate: float, eta: float | None) -> None:
        with self._lock:
            status = DOWNLOADING if job.info.status == STARTING else job.info.status
            self._update(job, None, status=status, done=done, total=total, rate=float(rate or 0.0), eta=eta)
            if job.info.sha256 is None:
                self._find_partial(job)
            self._emit(PROGRESS, job.info)

    def _find_partial(self, job: _Job) -> None:
        """A file the Hub listing gave no SHA-256 for: its partial file is the one this pull created."""
        if job.partials_before is None:
            return
        new = [p for p in download.partial_downloads()
               if p.repo_id == job.info.repo and p.etag not in job.partials_before]
        if len(new) == 1:
            self._update(job, None, sha256=new[0].etag)
            self._remember(job)

    def _stopped(self, job: _Job, status: str, message: str = "", error: str = "") -> None:
        with self._lock:
            kept = self._kept_bytes(job)  # what the partial file holds: the last report may be behind it
            if status == FAILED:
                job.plan = None  # a retry asks the Hub again: the failure may have been the plan's
            self._update(job, status=status, message=message, error=error, rate=0.0, eta=None,
                         done=kept if kept is not None else job.info.done)
            self._emit(PAUSED_EVENT if status == PAUSED else FAILED_EVENT, job.info)
            self._remember(job)
            if job.resume_after_stop and status == PAUSED and not self._closed:
                job.resume_after_stop = False
                self._update(job, status=QUEUED)
            self._run_queue()

    def _installed(self, job: _Job, installed_as: str, result: download.DownloadResult) -> None:
        with self._lock:
            self._forget(job)
            self._jobs.pop(job.info.name, None)
            info = self._update(job, status=DONE, installed_as=installed_as, done=result.size, total=result.size,
                                rate=0.0, eta=None, resumed_from=result.resumed_from, from_cache=result.from_cache)
            self._finished[info.name] = info
            self._emit(FINISHED, info)
            self._emit(REMOVED, info)
            self._run_queue()

    def _cancelled(self, job: _Job) -> None:
        with self._lock:
            self._forget(job)
            self._jobs.pop(job.info.name, None)
            self._emit(CANCELLED, job.info)
            self._emit(REMOVED, job.info)
            self._run_queue()

    def _kept_bytes(self, job: _Job) -> int | None:
        """Bytes of the partial file after a stop (0 when it was deleted, as a bad checksum does)."""
        if not (job.info.repo and job.info.sha256):
            return None
        partial = download.repo_folder(job.info.repo, hub.cache_dir()) / "blobs" / f"{job.info.sha256}.incomplete"
        try:
            return partial.stat().st_size
        except OSError:
            return 0

    @staticmethod
    def _discard_files(job: _Job) -> None:
        repo, sha, before = job.info.repo, job.info.sha256, job.partials_before
        try:
            if repo and sha:
                download.discard_partial(repo, sha)
            if repo and before is not None:  # the partial files this pull created (its projector's too)
                for p in download.partial_downloads():
                    if p.repo_id == repo and p.etag not in before:
                        download.discard_partial(p.repo_id, p.etag)
        except (OSError, UserError):
            log.exception("could not remove the partial files of a cancelled download")

    # --- the record
    def _remember(self, job: _Job) -> None:
        info = job.info
        try:
            with _changing_records() as records:
                records[info.name] = {"label": info.label, "pull_name": job.pull_name, "repo": info.repo,
                                      "filename": info.filename, "sha256": info.sha256, "size": info.total,
                                      "installs_as": job.plan.name if job.plan else None}
        except Exception as exc:  # a read-only data dir: the download goes on, only its name is not remembered
            log.warning("could not record the download of %s: %s", info.name, exc)

    def _forget(self, job: _Job) -> None:
        try:
            with _changing_records() as records:
                records.pop(job.info.name, None)
        except Exception as exc:
            log.warning("could not update the record of downloads: %s", exc)


def _installed_present(installed: dict, name: str) -> bool:
    m = installed.get(name)
    return m is not None and not m.is_builtin and Path(m.path).exists()
