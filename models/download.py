"""Resumable, verified downloads of one Hub file into the shared Hugging Face cache.

huggingface_hub (≥1.18) writes each attempt to a new, unique `.incomplete` file and
deletes it on failure, so a killed or interrupted download starts again from zero;
it also checks only the size. This module keeps huggingface_hub's URL and metadata
helpers and its cache layout, and does the transfer itself:

  blobs/<etag>.incomplete   one stable name per file, reused by every process, so a
                            later pull continues it with `Range: bytes=N-`
  blobs/<etag>              moved into place only after the SHA-256 matched
  snapshots/<commit>/<file> a relative symlink to the blob, as huggingface_hub makes
  refs/<revision>           the commit the revision pointed to

so `huggingface_hub.try_to_load_from_cache` and other tools find the file, and a file
that other tools already downloaded is used (after one hash check) without a download.

The core never prints: progress goes to `on_progress(done, total, bytes_per_s, eta_s)`
and a `threading.Event` cancels; the CLI draws the bar and the window will too.
"""

from __future__ import annotations

import errno
import hashlib
import json
import logging
import os
import re
import shutil
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urljoin

from common.errors import UserError
from common.formatting import format_bytes
from common.paths import models_dir
from common.terminal import safe_text
from models import atomic_file, hub, repo_path

log = logging.getLogger(__name__)

ProgressCallback = Callable[[int, int, float, "float | None"], None]

CHUNK_BYTES = 1 << 16  # small enough that a cancel is seen within milliseconds
HASH_BLOCK = 1 << 22
DISK_RESERVE_BYTES = 64 << 20  # left free, so that a pull never fills the disk to the last byte
MAX_STALLED_ATTEMPTS = 4  # retries in a row that bring no new byte
RETRY_BASE_S = 0.5  # the wait before a retry doubles each time, up to 8 s
CONNECT_TIMEOUT_S = 15.0
READ_TIMEOUT_S = 60.0
PROGRESS_INTERVAL_S = 0.1

_SHA256_RE = re.compile(r"^[0-9a-f]{64}$")
_GIT_SHA1_RE = re.compile(r"^[0-9a-f]{40}$")


class DownloadCancelled(UserError):
    """The user cancelled; the part downloaded is kept for the next pull."""


class DownloadInterrupted(UserError):
    """The connection failed again and again; the part downloaded is kept."""


class ChecksumMismatchError(UserError):
    """The finished file is not the one the Hub published; it was deleted."""


class DiskFullError(UserError):
    """The disk filled up during the download; the part downloaded is kept."""


class NotEnoughSpaceError(UserError):
    """Too little free space to start; nothing was written."""


@dataclass(frozen=True)
class DownloadResult:
    path: Path  # the snapshot path (a symlink into blobs/ where symlinks work)
    repo_id: str
    filename: str
    revision: str
    commit: str
    sha256: str | None  # None only for a small non-LFS file, checked by its git SHA-1 instead
    size: int
    downloaded_bytes: int  # fetched by this call: 0 when the cache already had it
    resumed_from: int  # bytes that an earlier, interrupted attempt had left
    from_cache: bool


# --- cache layout ---------------------------------------------------------------------


def repo_folder(repo_id: str, cache: Path) -> Path:
    return cache / ("models--" + repo_id.replace("/", "--"))


def cached_file(repo_id: str, filename: str, revision: str = "main", cache: Path | None = None) -> Path | None:
    """The cached file for `revision` (a branch through refs/, or a commit), or None."""
    from huggingface_hub import try_to_load_from_cache

    found = try_to_load_from_cache(repo_id, filename, cache_dir=str(cache or hub.cache_dir()), revision=revision)
    return Path(found) if isinstance(found, str) else None


def _commit_of(storage: Path, revision: str) -> str | None:
    if _GIT_SHA1_RE.match(revision):
        return revision
    try:
        return (storage / "refs" / revision).read_text().strip() or None
    except OSError:
        return None


def _write_ref(storage: Path, revision: str, commit: str) -> None:
    if revision == commit:
        return
    ref = storage / "refs" / revision
    ref.parent.mkdir(parents=True, exist_ok=True)
    if ref.exists() and ref.read_text() == commit:
        return
    atomic_file.write_bytes(ref, commit.encode("ascii"))


def _require_inside(path: Path, storage: Path) -> None:
    """A last check, after the names were checked one by one: `path` lies under the repo's cache folder."""
    if not os.path.normpath(path).startswith(os.path.normpath(storage) + os.sep):
        raise repo_path.UnsafeRepoPathError(
            f"{safe_text(path)} is outside the Hugging Face cache folder {storage}, so nothing was written there."
        )


def _link_snapshot(blob: Path, pointer: Path, storage: Path) -> Path:
    if not pointer.parent.resolve().is_relative_to(storage.resolve()):
        # A folder on the way is a link out of the cache (not made by this app): never write through it.
        raise repo_path.UnsafeRepoPathError(
            f"The folder {safe_text(pointer.parent)} leads outside the Hugging Face cache, so nothing was written there."
        )
    pointer.parent.mkdir(parents=True, exist_ok=True)
    if pointer.is_symlink() or pointer.exists():
        pointer.unlink()
    try:
        os.symlink(os.path.relpath(blob, pointer.parent), pointer)
    except OSError:
        # No symlinks (Windows without developer mode): keep the file in the snapshot, as huggingface_hub does.
        shutil.copyfile(blob, pointer)
    return pointer


# --- verification ---------------------------------------------------------------------


def _stamps_path() -> Path:
    return models_dir() / "verified-downloads.json"


_stamp_lock = threading.Lock()


def _load_stamps() -> dict:
    try:
        return json.loads(_stamps_path().read_text())
    except (OSError, ValueError):
        return {}


def _stamp_key(path: Path) -> str:
    return str(path.resolve())


def _is_stamped(path: Path, digest: str) -> bool:
    """True if this exact file (size and mtime) already passed the hash check."""
    try:
        st = path.resolve().stat()
    except OSError:
        return False
    seen = _load_stamps().get(_stamp_key(path))
    return seen == {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "digest": digest}


def _stamp(path: Path, digest: str) -> None:
    st = path.resolve().stat()
    with _stamp_lock:
        stamps = _load_stamps()
        stamps[_stamp_key(path)] = {"size": st.st_size, "mtime_ns": st.st_mtime_ns, "digest": digest}
        atomic_file.write_json(_stamps_path(), stamps)


def _new_hasher(etag: str, size: int):
    if _SHA256_RE.match(etag):
        return hashlib.sha256()
    if _GIT_SHA1_RE.match(etag):
        # A small file kept in git, not LFS: its ETag is the git blob id.
        h = hashlib.sha1()  # noqa: S324 - git's own object id, not a security check
        h.update(b"blob %d\0" % size)
        return h
    raise UserError(f"The Hub gave no checksum for this file (ETag {etag!r}), so it cannot be verified.")


def _hash_into(hasher, path: Path, cancel: threading.Event | None, limit: int | None = None) -> None:
    with open(path, "rb") as f:
        left = limit
        while left is None or left > 0:
            block = f.read(HASH_BLOCK if left is None else min(HASH_BLOCK, left))
            if not block:
                break
            hasher.update(block)
            if left is not None:
                left -= len(block)
            if cancel is not None and cancel.is_set():
                raise DownloadCancelled("The download was cancelled.")


def verify_file(path: Path, etag: str, cancel: threading.Event | None = None) -> bool:
    """Whether the file's content matches `etag` (its SHA-256, or its git blob id). Remembered per size and mtime."""
    if _is_stamped(path, etag):
        return True
    size = path.resolve().stat().st_size
    hasher = _new_hasher(etag, size)
    _hash_into(hasher, path, cancel)
    if hasher.hexdigest() != etag:
        return False
    _stamp(path, etag)
    return True


# --- progress ---------------------------------------------------------------------------


class _Progress:
    """Throttled progress reports with a rate over the last few seconds."""

    def __init__(self, callback: ProgressCallback | None, total: int, start: int):
        self.callback = callback
        self.total = total
        self.samples: deque[tuple[float, int]] = deque([(time.monotonic(), start)])
        self.last_report = 0.0

    def update(self, done: int, force: bool = False) -> None:
        if self.callback is None:
            return
        now = time.monotonic()
        if not force and now - self.last_report < PROGRESS_INTERVAL_S:
            return
        self.samples.append((now, done))
        while len(self.samples) > 2 and now - self.samples[0][0] > 3.0:
            self.samples.popleft()
        t0, d0 = self.samples[0]
        rate = (done - d0) / (now - t0) if now > t0 else 0.0
        eta = (self.total - done) / rate if rate > 0 else None
        self.last_report = now
        self.callback(done, self.total, rate, eta)


# --- the download -------------------------------------------------------------------------


def download(
    repo_id: str,
    filename: str,
    *,
    revision: str = "main",
    cache: Path | None = None,
    on_progress: ProgressCallback | None = None,
    cancel: threading.Event | None = None,
) -> DownloadResult:
    """Download `filename` of `repo_id` into the Hub cache, resuming any earlier attempt, and verify it.

    Raises a UserError: HubUnreachableError, HubAuthError, HubNotFoundError,
    NotEnoughSpaceError (nothing written), DiskFullError, DownloadInterrupted or
    DownloadCancelled (the part downloaded is kept), ChecksumMismatchError (deleted).
    """
    # Names become paths under the cache: each is checked before anything touches the disk.
    repo_path.require_repo_id(repo_id)
    repo_path.require_file_path(filename, repo_id, typed=True)
    repo_path.require_revision(revision, repo_id)
    cache = Path(cache or hub.cache_dir())
    storage = repo_folder(repo_id, cache)

    if hub.is_offline():
        found = _from_cache_offline(repo_id, filename, revision, cache, storage, cancel)
        if found:
            return found
        hub.ensure_online()

    meta = _metadata(repo_id, filename, revision, cache, storage, cancel)
    if isinstance(meta, DownloadResult):
        return meta
    commit, etag, size, location = meta
    repo_path.require_commit(commit, repo_id, hub.endpoint())
    sha256 = etag if _SHA256_RE.match(etag) else None
    _new_hasher(etag, size)  # refuse early a file that could not be verified (and an ETag that is not a hash)

    blob = storage / "blobs" / etag
    pointer = storage / "snapshots" / commit / filename
    _require_inside(pointer, storage)
    blob.parent.mkdir(parents=True, exist_ok=True)
    _write_ref(storage, revision, commit)

    def result(downloaded: int, resumed: int, from_cache: bool) -> DownloadResult:
        return DownloadResult(pointer, repo_id, filename, revision, commit, sha256, size, downloaded, resumed, from_cache)

    # Already there, from this app or another tool: check it once, then use it.
    for existing in (pointer, blob):
        if existing.exists() and existing.resolve().stat().st_size == size:
            if verify_file(existing, etag, cancel):
                if existing == blob or not pointer.exists():
                    _link_snapshot(blob, pointer, storage)
                return result(0, 0, True)
            _remove_bad(existing, pointer)

    lock = _file_lock(cache, storage, etag,
                      f"Another download of {filename} is running; wait for it to finish.")
    try:
        if blob.exists() and blob.stat().st_size == size and verify_file(blob, etag, cancel):
            # Another process finished it while this one waited for the lock.
            _link_snapshot(blob, pointer, storage)
            return result(0, 0, True)
        incomplete = blob.with_name(blob.name + ".incomplete")
        resumed = _transfer(
            repo_id, filename, revision, etag, size, location, incomplete, on_progress, cancel, cache
        )
        os.replace(incomplete, blob)
        _set_permissions(blob)
        _stamp(blob, etag)
        _link_snapshot(blob, pointer, storage)
        return result(size - resumed, resumed, False)
    finally:
        lock.release()


def _from_cache_offline(repo_id, filename, revision, cache, storage, cancel) -> DownloadResult | None:
    found = cached_file(repo_id, filename, revision, cache)
    if not found:
        return None
    commit = _commit_of(storage, revision) or revision
    etag = Path(os.path.realpath(found)).name
    if (_SHA256_RE.match(etag) or _GIT_SHA1_RE.match(etag)) and not verify_file(found, etag, cancel):
        return None
    sha = etag if _SHA256_RE.match(etag) else None
    return DownloadResult(found, repo_id, filename, revision, commit, sha, found.stat().st_size, 0, 0, True)


def _metadata(repo_id, filename, revision, cache, storage, cancel):
    """(commit, etag, size, location) from a HEAD on the resolve URL; the cached file if the Hub is unreachable."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub.endpoint())
    try:
        meta = get_hf_file_metadata(
            url, token=hub.auth_token_arg(), timeout=CONNECT_TIMEOUT_S, endpoint=hub.endpoint(),
            library_name="hearthchat",
        )
    except Exception as exc:
        error = hub.translate_error(exc, repo_id, filename)
        if isinstance(error, hub.HubUnreachableError):
            found = _from_cache_offline(repo_id, filename, revision, cache, storage, cancel)
            if found:
                return found
        raise error from exc
    if not meta.commit_hash or not meta.etag:
        raise UserError(
            f"The server at {hub.endpoint()} did not answer like the Hugging Face Hub "
            "(no X-Repo-Commit or ETag header); check HF_ENDPOINT and any proxy."
        )
    if meta.size is None:
        raise UserError(f"The Hub did not say how big {filename} is, so its download cannot be checked.")
    return meta.commit_hash, meta.etag, int(meta.size), urljoin(url, meta.location)


def _remove_bad(existing: Path, pointer: Path) -> None:
    """A cached copy that fails its hash check: remove it (and the snapshot link to it)."""
    target = existing.resolve()
    for p in {pointer, existing}:
        if p.is_symlink() or p.exists():
            p.unlink()
    if target.exists():
        target.unlink()


def _set_permissions(path: Path) -> None:
    # Like huggingface_hub: a blob is readable by whoever the user's umask allows.
    umask = os.umask(0o022)
    os.umask(umask)
    try:
        os.chmod(path, 0o666 & ~umask)
    except OSError:
        pass


def _check_space(directory: Path, needed: int, filename: str) -> None:
    free = shutil.disk_usage(directory).free
    if needed + DISK_RESERVE_BYTES > free:
        raise NotEnoughSpaceError(
            f"{filename} needs {format_bytes(needed)} more disk space but only {format_bytes(free)} is free "
            f"in {directory}; free some space and pull again."
        )


def _transfer(repo_id, filename, revision, etag, size, location, incomplete: Path, on_progress, cancel, cache) -> int:
    """Fill `incomplete` up to `size` bytes, resuming what is there; verify it. Returns the bytes it started with."""
    from huggingface_hub.utils import build_hf_headers, get_session

    httpx = hub.http()

    have = incomplete.stat().st_size if incomplete.exists() else 0
    if have > size:  # not a prefix of this file: start again
        incomplete.unlink()
        have = 0
    resumed = have
    _check_space(incomplete.parent, size - have, filename)

    hasher = _new_hasher(etag, size)
    if have:
        _hash_into(hasher, incomplete, cancel, limit=have)
    progress = _Progress(on_progress, size, have)
    progress.update(have, force=True)

    stalled = 0
    url = location
    while have < size:
        if cancel is not None and cancel.is_set():
            raise _cancelled(filename, have, size)
        headers = build_hf_headers(token=hub.auth_token_arg(), library_name="hearthchat")
        headers["Accept-Encoding"] = "identity"  # the byte offsets must be those of the file itself
        if not _same_origin(url, hub.endpoint()):
            headers.pop("authorization", None)  # a signed CDN address must not receive the token
        if have:
            headers["Range"] = f"bytes={have}-"
        before = have
        try:
            have, hasher = _stream_once(
                get_session(), url, headers, incomplete, have, size, hasher, etag, progress, cancel, filename
            )
        except (httpx.TransportError, ConnectionError, TimeoutError) as exc:
            have = incomplete.stat().st_size if incomplete.exists() else 0
            if have == before:
                stalled += 1
            else:
                stalled = 0
            if stalled >= MAX_STALLED_ATTEMPTS:
                raise DownloadInterrupted(
                    f"The download of {filename} keeps failing ({type(exc).__name__}); "
                    f"{format_bytes(have)} of {format_bytes(size)} is kept, and pulling again resumes from there."
                ) from exc
            time.sleep(min(RETRY_BASE_S * 2**stalled, 8.0))
            url = _fresh_location(repo_id, filename, revision, etag) or url  # signed addresses expire
            continue
        if have == before:
            stalled += 1
            if stalled >= MAX_STALLED_ATTEMPTS:
                raise DownloadInterrupted(
                    f"The Hub keeps ending the download of {filename} early; {format_bytes(have)} of "
                    f"{format_bytes(size)} is kept, and pulling again resumes from there."
                )
        else:
            stalled = 0

    progress.update(have, force=True)
    if hasher.hexdigest() != etag:
        incomplete.unlink(missing_ok=True)
        raise ChecksumMismatchError(
            f"The downloaded {filename} does not match the checksum the Hub published for it "
            f"(expected {etag[:12]}…, got {hasher.hexdigest()[:12]}…), so it was deleted; pull it again."
        )
    return resumed


def _stream_once(session, url, headers, incomplete: Path, have, size, hasher, etag, progress, cancel, filename):
    """One GET from offset `have`; returns the new offset and the hasher (restarted if the server ignored Range)."""
    from huggingface_hub.utils import hf_raise_for_status

    httpx = hub.http()
    timeout = httpx.Timeout(READ_TIMEOUT_S, connect=CONNECT_TIMEOUT_S)
    with session.stream("GET", url, headers=headers, timeout=timeout, follow_redirects=True) as response:
        if response.status_code == 416 and have:
            # The server has nothing past `have`: what we hold is not this file. Start again.
            incomplete.unlink(missing_ok=True)
            return 0, _new_hasher(etag, size)
        if response.status_code >= 400:
            response.read()
            hf_raise_for_status(response)
        start = 0
        if response.status_code == 206:
            start = _content_range_start(response.headers.get("Content-Range"))
        if start != have:
            # Range ignored (200) or answered from elsewhere: rewrite from what the server sends.
            if start > have:
                raise httpx.RemoteProtocolError(f"asked for bytes from {have}, got them from {start}")
            with open(incomplete, "r+b" if incomplete.exists() else "wb") as f:
                f.truncate(start)
            hasher = _new_hasher(etag, size)
            if start:
                _hash_into(hasher, incomplete, cancel, limit=start)
            have = start
        with open(incomplete, "ab", buffering=0) as out:
            for chunk in response.iter_bytes(CHUNK_BYTES):
                if cancel is not None and cancel.is_set():
                    raise _cancelled(filename, have, size)
                chunk = chunk[: size - have]  # never past the published size
                _write_all(out, chunk, incomplete, filename, have, size)
                hasher.update(chunk)
                have += len(chunk)
                progress.update(have)
                if have >= size:
                    break
    return have, hasher


def _write_all(out, data: bytes, incomplete: Path, filename: str, have: int, size: int) -> None:
    view = memoryview(data)
    try:
        while view:
            written = out.write(view)
            view = view[written:]
    except OSError as exc:
        if exc.errno in (errno.ENOSPC, errno.EFBIG, errno.EDQUOT):
            kept = incomplete.stat().st_size if incomplete.exists() else have
            raise DiskFullError(
                f"The disk is full ({os.strerror(exc.errno)}) after {format_bytes(kept)} of "
                f"{format_bytes(size)} of {filename}; the part downloaded is kept in {incomplete.parent}, "
                "so free some space and pull again to resume."
            ) from exc
        raise


def _content_range_start(value: str | None) -> int:
    m = re.match(r"bytes (\d+)-\d+/(\d+|\*)", value or "")
    return int(m.group(1)) if m else 0


def _same_origin(a: str, b: str) -> bool:
    from urllib.parse import urlsplit

    pa, pb = urlsplit(a), urlsplit(b)
    return (pa.scheme, pa.hostname, pa.port) == (pb.scheme, pb.hostname, pb.port)


def _fresh_location(repo_id, filename, revision, etag) -> str | None:
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    try:
        url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub.endpoint())
        meta = get_hf_file_metadata(url, token=hub.auth_token_arg(), timeout=CONNECT_TIMEOUT_S, endpoint=hub.endpoint())
    except Exception:  # the next GET reports the failure
        return None
    if meta.etag != etag:
        raise UserError(f"{filename} changed on the Hub during the download; pull it again.")
    return urljoin(url, meta.location)


def _cancelled(filename: str, have: int, size: int) -> DownloadCancelled:
    return DownloadCancelled(
        f"The download of {filename} was cancelled at {format_bytes(have)} of {format_bytes(size)}; "
        "pulling it again resumes from there."
    )


# --- removal ------------------------------------------------------------------------------


def _storage_of(path: Path, cache: Path) -> Path | None:
    """The `models--owner--name` folder of the cache that holds `path` (its folders resolved), or None."""
    path = Path(path)
    path = path.parent.resolve() / path.name  # resolve the folders, not the link itself
    return next((p for p in path.parents if p.parent == cache and p.name.startswith("models--")), None)


def in_cache(path: Path, cache: Path | None = None) -> bool:
    """Whether `path` is a file in a repo folder of the Hugging Face cache (the only place this app downloads to)."""
    return _storage_of(path, Path(cache or hub.cache_dir()).resolve()) is not None


def delete_cached(path: Path, cache: Path | None = None) -> int:
    """Delete a snapshot file and its blob, unless another snapshot still links to the blob. Returns bytes freed.

    Only ever deletes inside the Hugging Face cache: a path elsewhere is refused, and a link
    that points out of its repo's blobs is removed without touching what it points to.
    """
    path = Path(path)
    path = path.parent.resolve() / path.name  # resolve the folders, not the link itself
    cache = Path(cache or hub.cache_dir()).resolve()
    if not (path.is_symlink() or path.exists()):
        return 0
    storage = _storage_of(path, cache)
    if storage is None or not path.is_relative_to(storage / "snapshots"):
        raise UserError(f"{safe_text(path)} is not a model file in the Hugging Face cache, so it was not deleted.")
    if path.is_symlink():
        target = path.resolve()
        path.unlink()
        still_used = any(p.resolve() == target for p in (storage / "snapshots").rglob("*") if p.is_symlink())
        freed = 0
        if not target.is_relative_to(storage / "blobs"):
            log.warning("%s pointed outside its repo's blobs (%s); only the link was removed", path, target)
        elif target.exists() and not still_used:
            freed = target.stat().st_size
            target.unlink()
    else:  # a copy in the snapshot (no symlinks on this system)
        freed = path.stat().st_size
        path.unlink()
    # Drop folders left empty, up to the snapshot; the repo's folder too once nothing is left in it
    # (an interrupted download's .incomplete file keeps it).
    for parent in path.parents:
        if parent == storage / "snapshots" or not parent.is_relative_to(storage / "snapshots"):
            break
        try:
            parent.rmdir()
        except OSError:
            break
    if not any((storage / "blobs").glob("*")) and not any((storage / "snapshots").glob("*")):
        shutil.rmtree(storage, ignore_errors=True)
    return freed


# --- partial downloads ---------------------------------------------------------------------


@dataclass(frozen=True)
class PartialDownload:
    """An interrupted download's `blobs/<etag>.incomplete` file, which the next pull of that file resumes."""

    repo_id: str
    etag: str  # the SHA-256 the finished file must have (the Hub's LFS object id)
    path: Path
    size: int  # bytes kept


def partial_downloads(cache: Path | None = None) -> list[PartialDownload]:
    """Every partial download in the Hub cache, from this app or another tool using this module's layout."""
    cache = Path(cache or hub.cache_dir())
    found = []
    for path in sorted(cache.glob("models--*/blobs/*.incomplete")):
        owner, _, name = path.parent.parent.name.removeprefix("models--").partition("--")
        etag = path.name.removesuffix(".incomplete")
        if not (owner and name and (_SHA256_RE.match(etag) or _GIT_SHA1_RE.match(etag))):
            continue  # huggingface_hub's own temporary names: not resumable by this module
        try:
            size = path.stat().st_size
        except OSError:
            continue
        found.append(PartialDownload(f"{owner}/{name}", etag, path, size))
    return found


def discard_partial(repo_id: str, etag: str, cache: Path | None = None) -> int:
    """Delete a partial download (a cancelled pull), unless a download of it is running. Returns bytes freed."""
    cache = Path(cache or hub.cache_dir())
    storage = repo_folder(repo_id, cache)
    incomplete = storage / "blobs" / f"{etag}.incomplete"
    if not incomplete.exists():
        return 0
    lock = _file_lock(cache, storage, etag,
                      f"A download of this file from {repo_id} is still running; stop it first.")
    try:
        freed = incomplete.stat().st_size if incomplete.exists() else 0
        incomplete.unlink(missing_ok=True)
    finally:
        lock.release()
    # Like delete_cached: the repo's folder goes once nothing is left in it.
    if not any((storage / "blobs").glob("*")) and not any((storage / "snapshots").glob("*")):
        shutil.rmtree(storage, ignore_errors=True)
        shutil.rmtree(cache / ".locks" / storage.name, ignore_errors=True)
    return freed


def _file_lock(cache: Path, storage: Path, etag: str, busy_message: str):
    """The per-file lock (the one huggingface_hub also uses), taken or a UserError saying who holds it."""
    from filelock import FileLock, Timeout

    lock_path = cache / ".locks" / storage.name / f"{etag}.lock"
    lock_path.parent.mkdir(parents=True, exist_ok=True)
    lock = FileLock(str(lock_path), timeout=1)
    try:
        lock.acquire()
    except Timeout:
        raise UserError(busy_message) from None
    return lock
