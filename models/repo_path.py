"""Names that a Hub server gives (file paths, revisions, commits), checked before anything touches the disk.

A file's path in a repo becomes a path under the Hugging Face cache
(`models--owner--name/snapshots/<commit>/<path>`). The real Hub only lists plain
relative paths, but a mirror, a proxy or an `HF_ENDPOINT` can list anything: an
absolute path (`/home/me/notes.txt`) makes `cache / path` that very file, `..`
climbs out of the cache, a drive letter or a backslash does the same on Windows,
and control characters rewrite the terminal that prints the name. So every such
name must be a relative path inside the repository: segments of ordinary
characters joined by `/`, none empty, none `.` or `..`.
"""

from __future__ import annotations

import re
import unicodedata

from common.errors import UserError
from common.terminal import safe_text

MAX_PATH_BYTES = 1024
MAX_SEGMENT_BYTES = 255  # most file systems' limit for one name
_DRIVE_RE = re.compile(r"^[A-Za-z]:")
_REPO_PART_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
_COMMIT_RE = re.compile(r"^[0-9a-f]{40}$")


class UnsafeRepoPathError(UserError):
    """A name from the Hub (or typed by the user) that would lead outside the repository's folder."""


def problem(path: object) -> str | None:
    """Why `path` is not a safe relative path inside a repository, or None if it is."""
    if not isinstance(path, str):
        return "not text"
    if not path:
        return "empty"
    for ch in path:
        if unicodedata.category(ch) in ("Cc", "Cf", "Cs", "Zl", "Zp"):
            return f"it contains a control character ({safe_text(ch)})"
    if len(path.encode("utf-8")) > MAX_PATH_BYTES:
        return f"longer than {MAX_PATH_BYTES} bytes"
    if path.startswith("/"):
        return "an absolute path"
    if _DRIVE_RE.match(path):
        return "a Windows drive path"
    if "\\" in path:
        return "it contains a backslash, which Windows reads as a folder separator"
    if ":" in path:
        return "it contains a colon, which Windows reads as a drive or a stream"
    for segment in path.split("/"):
        if segment == "":
            return "it has an empty folder name (// or a / at either end)"
        if segment in (".", ".."):
            return f"it has a {segment!r} segment, which leads outside the repository"
        if segment.strip(". ") == "" or segment.endswith((".", " ")):
            return "a name ends in a dot or a space, which Windows changes"
        if len(segment.encode("utf-8")) > MAX_SEGMENT_BYTES:
            return f"a name is longer than {MAX_SEGMENT_BYTES} bytes"
    return None


def require_file_path(path: object, repo_id: str, *, typed: bool = False) -> str:
    """`path` itself if it is a safe file path inside `repo_id`; else UnsafeRepoPathError with a sentence.

    `typed`: the user typed the name (else a server gave it, which says something about the server).
    """
    reason = problem(path)
    if reason is None:
        return path  # type: ignore[return-value]
    shown = safe_text(repr(path))
    if not typed:
        raise UnsafeRepoPathError(
            f"The Hub's file list for {safe_text(repo_id)} names the file {shown}, which cannot be used: {reason}; "
            "nothing was written. The real Hugging Face Hub never lists such a name: check HF_ENDPOINT "
            "and any mirror or proxy."
        )
    raise UnsafeRepoPathError(
        f"The file name {shown} for {safe_text(repo_id)} cannot be used: {reason}; "
        "a file in a repository is a relative path like folder/model.gguf."
    )


def require_revision(revision: object, repo_id: str) -> str:
    """A branch, tag or commit name that stays one folder under refs/ (slashes allowed, as in refs/pr/1)."""
    reason = problem(revision)
    if reason is None:
        return revision  # type: ignore[return-value]
    raise UnsafeRepoPathError(
        f"The revision {safe_text(repr(revision))} of {safe_text(repo_id)} cannot be used: {reason}."
    )


def require_repo_id(repo_id: object) -> str:
    """`owner/name`, each part of letters, digits, `.`, `_` and `-`, starting with a letter or digit."""
    parts = repo_id.split("/") if isinstance(repo_id, str) else []
    if len(parts) != 2 or not all(_REPO_PART_RE.match(p) for p in parts) or ".." in str(repo_id):
        raise UnsafeRepoPathError(
            f"{safe_text(repr(repo_id))} is not a Hugging Face repository name like owner/name."
        )
    return repo_id  # type: ignore[return-value]


def require_commit(commit: object, repo_id: str, endpoint: str) -> str:
    """The commit a Hub server says a file is at: 40 hexadecimal digits, as git's SHA-1 ids are."""
    if isinstance(commit, str) and _COMMIT_RE.match(commit):
        return commit
    raise UnsafeRepoPathError(
        f"The server at {safe_text(endpoint)} gave {safe_text(repr(commit))} as the commit of "
        f"{safe_text(repo_id)}, which is not a git commit id; nothing was written. Check HF_ENDPOINT "
        "and any mirror or proxy."
    )
