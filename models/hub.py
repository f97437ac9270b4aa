"""The Hugging Face Hub, through huggingface_hub's API: names, search, a repo's GGUF files, tokens, errors.

huggingface_hub reads HF_ENDPOINT, HF_HOME and HF_HUB_OFFLINE once, when it is
imported; this module reads them at each call and passes them on explicitly, so
a test (or a user who changes them) is obeyed. Every failure leaves here as a
`UserError` whose message a person can act on.

Names a user can pull (the forms llama.cpp's `-hf` and Ollama use):
  owner/repo:QUANT          the repo's file of that quant (Q4_K_M if no quant)
  owner/repo/path/file.gguf that exact file
  hf.co/owner/repo:QUANT    the same, Ollama's spelling
"""

from __future__ import annotations

import os
import re
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from common.errors import ModelNotFoundError, UserError
from common.terminal import safe_text
from models import repo_path

DEFAULT_ENDPOINT = "https://huggingface.co"
DEFAULT_QUANT = "Q4_K_M"
# When a repo has no Q4_K_M, the next best 4-bit choices, in order.
FALLBACK_QUANTS = ("Q4_K_M", "Q4_K_S", "Q4_K_L", "IQ4_XS", "Q4_0", "IQ4_NL", "Q4_K_XL")
API_TIMEOUT_S = 15.0


class HubUnreachableError(UserError):
    """The Hub cannot be reached: offline mode, no network, or the Hub is down."""


class HubAuthError(UserError):
    """A gated or private repo that needs a (different) Hugging Face token."""


class HubNotFoundError(ModelNotFoundError):
    """No such repo, revision or file on the Hub."""


# --- settings, read at call time -------------------------------------------------------


def _truthy(value: str | None) -> bool:
    return (value or "").strip().upper() in {"1", "ON", "YES", "TRUE"}


def endpoint() -> str:
    return (os.environ.get("HF_ENDPOINT") or DEFAULT_ENDPOINT).rstrip("/")


def is_offline() -> bool:
    return _truthy(os.environ.get("HF_HUB_OFFLINE")) or _truthy(os.environ.get("TRANSFORMERS_OFFLINE"))


def hf_home() -> Path:
    default = Path(os.environ.get("XDG_CACHE_HOME", "~/.cache")).expanduser() / "huggingface"
    return Path(os.path.expandvars(os.environ.get("HF_HOME") or default)).expanduser()


def cache_dir() -> Path:
    """The Hub cache that huggingface_hub and other tools share (models--owner--name/…)."""
    explicit = os.environ.get("HF_HUB_CACHE") or os.environ.get("HUGGINGFACE_HUB_CACHE")
    return Path(os.path.expandvars(explicit)).expanduser() if explicit else hf_home() / "hub"


def token() -> str | None:
    """HF_TOKEN, else the token that `hf auth login` stored; None if neither."""
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN"):
        value = (os.environ.get(var) or "").strip()
        if value:
            return value
    path = os.environ.get("HF_TOKEN_PATH") or str(hf_home() / "token")
    try:
        value = Path(os.path.expandvars(path)).expanduser().read_text().strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value or None


def ensure_online() -> None:
    if is_offline():
        raise HubUnreachableError(
            "Offline mode is on (HF_HUB_OFFLINE), so the Hugging Face Hub is not contacted; installed models still work."
        )


def http():
    """The HTTP library under huggingface_hub's session: httpx (huggingface_hub 1.x) or its fork httpx2 (2.x)."""
    import importlib

    from huggingface_hub.utils import get_session

    return importlib.import_module(type(get_session()).__module__.split(".")[0])


def configure_hf() -> None:
    """A private app: no user-agent telemetry (huggingface_hub fetches an agent registry for it) unless asked."""
    from huggingface_hub import constants

    if os.environ.get("HF_HUB_DISABLE_TELEMETRY", "1").strip().upper() not in {"0", "OFF", "NO", "FALSE"}:
        constants.HF_HUB_DISABLE_TELEMETRY = True


def api():
    from huggingface_hub import HfApi

    configure_hf()
    tok = token()
    # token=False, not None: None would make huggingface_hub look for a token itself, at import-time paths.
    return HfApi(endpoint=endpoint(), token=tok if tok else False, library_name="hearthchat")


def auth_token_arg() -> str | bool:
    configure_hf()
    tok = token()
    return tok if tok else False


# --- names ------------------------------------------------------------------------------

_REPO_PART = r"[A-Za-z0-9][A-Za-z0-9._-]*"
_REPO_RE = re.compile(rf"^(?P<repo>{_REPO_PART}/{_REPO_PART})(?::(?P<quant>[A-Za-z0-9_.-]+))?$")
_FILE_RE = re.compile(rf"^(?P<repo>{_REPO_PART}/{_REPO_PART})/(?P<file>.+\.gguf)$", re.IGNORECASE)
_SHARD_RE = re.compile(r"-(\d{5})-of-(\d{5})\.gguf$", re.IGNORECASE)
_QUANT_RE = re.compile(
    r"(?<![A-Za-z0-9])((?:I|T|UD-)?Q[1-8](?:_[0-9A-Z]{1,2})*|BF16|FP16|F16|F32|MXFP4)(?![A-Za-z0-9])",
    re.IGNORECASE,
)


@dataclass(frozen=True)
class HubRef:
    repo_id: str
    filename: str | None = None  # an exact file, or
    quant: str | None = None  # a quant to pick from the repo's files
    revision: str = "main"

    @property
    def name(self) -> str:
        """The name the model is installed and used under: what the user typed, normalised."""
        if self.filename:
            return f"{self.repo_id}/{self.filename}"
        return f"{self.repo_id}:{(self.quant or DEFAULT_QUANT).upper()}"


def parse_ref(spec: str) -> HubRef | None:
    """`owner/repo[:QUANT]` or `owner/repo/file.gguf` (optionally behind hf.co/ or a Hub URL); None otherwise."""
    s = spec.strip()
    if not s or Path(s).expanduser().exists():  # a local file or folder is never a Hub name
        return None
    for prefix in ("https://huggingface.co/", "http://huggingface.co/", "huggingface.co/", "hf.co/"):
        if s.lower().startswith(prefix):
            s = s[len(prefix):]
            break
    # A copied web address: owner/repo/blob/main/file.gguf or .../resolve/main/file.gguf
    m = re.match(rf"^({_REPO_PART}/{_REPO_PART})/(?:blob|resolve)/([^/]+)/(.+\.gguf)$", s, re.IGNORECASE)
    if m:
        return HubRef(m.group(1), filename=m.group(3), revision=m.group(2))
    m = _FILE_RE.match(s)
    if m:
        return HubRef(m.group("repo"), filename=m.group("file"))
    m = _REPO_RE.match(s)
    if m:
        quant = m.group("quant")
        return HubRef(m.group("repo"), quant=quant.upper() if quant else None)
    return None


def shard_of_filename(filename: str) -> tuple[int, int] | None:
    """(index, count) of a split model's part ("…-00001-of-00003.gguf"), or None."""
    m = _SHARD_RE.search(filename)
    return (int(m.group(1)), int(m.group(2))) if m else None


def quant_of_filename(filename: str) -> str | None:
    """The quant a GGUF file name states ("…-Q4_K_M.gguf" → "Q4_K_M"), or None."""
    stem = _SHARD_RE.sub("", Path(filename).name)
    stem = re.sub(r"\.gguf$", "", stem, flags=re.IGNORECASE)
    found = _QUANT_RE.findall(stem)
    if not found:
        return None
    q = found[-1].upper().removeprefix("UD-")
    return "F16" if q == "FP16" else q


def _norm_quant(q: str) -> str:
    q = q.upper()
    return "F16" if q == "FP16" else q


def _same_quant(a: str | None, b: str | None) -> bool:
    return a is not None and b is not None and _norm_quant(a) == _norm_quant(b)


# --- a repo's GGUF files ----------------------------------------------------------------


@dataclass(frozen=True)
class RemoteGGUF:
    path: str
    size: int
    sha256: str | None  # the LFS object id: the file's SHA-256
    quant: str | None
    shard: tuple[int, int] | None = None  # (index, count) of a split model

    @property
    def is_projector(self) -> bool:
        return Path(self.path).name.lower().startswith("mmproj")


@dataclass(frozen=True)
class RepoListing:
    repo_id: str
    commit: str
    gated: bool
    private: bool
    files: tuple[RemoteGGUF, ...]

    @property
    def models(self) -> list[RemoteGGUF]:
        """Model files: no vision projectors, one entry per split model (its first part)."""
        return [f for f in self.files if not f.is_projector and (f.shard is None or f.shard[0] == 1)]

    def quants(self) -> list[str]:
        seen: list[str] = []
        for f in self.models:
            if f.quant and f.quant not in seen:
                seen.append(f.quant)
        return seen


def translate_error(exc: BaseException, repo_id: str, filename: str | None = None) -> UserError:
    """A huggingface_hub or network exception as a sentence a person can act on."""
    from huggingface_hub.errors import (
        GatedRepoError,
        HfHubHTTPError,
        OfflineModeIsEnabled,
        RemoteEntryNotFoundError,
        RepositoryNotFoundError,
        RevisionNotFoundError,
    )

    page = f"{endpoint()}/{repo_id}"
    have_token = token() is not None
    if isinstance(exc, UserError):
        return exc
    if isinstance(exc, OfflineModeIsEnabled):
        return HubUnreachableError(
            "Offline mode is on (HF_HUB_OFFLINE), so the Hugging Face Hub is not contacted; installed models still work."
        )
    if isinstance(exc, (http().TransportError, ConnectionError, TimeoutError)):
        return HubUnreachableError(
            f"The Hugging Face Hub ({endpoint()}) cannot be reached ({type(exc).__name__}); "
            "check the network connection. Installed models still work."
        )
    if isinstance(exc, GatedRepoError):
        if not have_token:
            return HubAuthError(
                f"{repo_id} is a gated model: accept its terms at {page}, then set HF_TOKEN "
                "or run `hf auth login` so that this app can download it."
            )
        return HubAuthError(
            f"Your Hugging Face token has no access to the gated model {repo_id}: "
            f"accept its terms at {page} with the same account."
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubNotFoundError(f"{repo_id} on the Hugging Face Hub has no such revision.")
    if isinstance(exc, RemoteEntryNotFoundError):
        return HubNotFoundError(f"{repo_id} on the Hugging Face Hub has no file named {filename or '(unknown)'}.")
    if isinstance(exc, RepositoryNotFoundError):
        if not have_token:
            return HubNotFoundError(
                f"No model named {repo_id} was found on the Hugging Face Hub; if it is private, "
                "set HF_TOKEN or run `hf auth login`."
            )
        return HubNotFoundError(f"No model named {repo_id} was found on the Hugging Face Hub that your token can see.")
    if isinstance(exc, HfHubHTTPError) and exc.response is not None:
        status = exc.response.status_code
        if status == 401:
            return HubAuthError("The Hugging Face Hub refused your token (HF_TOKEN or `hf auth login`); it may have expired.")
        if status == 403:
            return HubAuthError(f"Your Hugging Face token is not allowed to read {repo_id}.")
        if status == 429 or status >= 500:
            return HubUnreachableError(f"The Hugging Face Hub answered with an error ({status}); try again later.")
        return UserError(f"The Hugging Face Hub answered {status} for {repo_id}.")
    return UserError(
        f"Talking to the Hugging Face Hub about {safe_text(repo_id)} failed: {type(exc).__name__}: {safe_text(exc)}."
    )


def _hub_call(fn, repo_id: str, filename: str | None = None):
    ensure_online()
    try:
        return fn()
    except Exception as exc:  # translated, never swallowed
        raise translate_error(exc, repo_id, filename) from exc


def list_gguf_files(repo_id: str, revision: str = "main") -> RepoListing:
    """A repo's GGUF files with sizes and SHA-256, at the commit `revision` points to now.

    Raises UnsafeRepoPathError if the listing names any path outside the repository.
    """
    repo_path.require_repo_id(repo_id)
    repo_path.require_revision(revision, repo_id)
    hf = api()
    # model_info first: one request without retries, so an unreachable Hub fails fast,
    # and it names the commit so the tree listing cannot race a new push.
    info = _hub_call(lambda: hf.model_info(repo_id, revision=revision, timeout=API_TIMEOUT_S), repo_id)
    commit = info.sha or revision
    tree = _hub_call(lambda: list(hf.list_repo_tree(repo_id, recursive=True, revision=commit)), repo_id)
    # Every name is checked before any is used: a listing that names a path outside the repository
    # comes from a hostile or broken server, and none of it is trusted.
    for item in tree:
        repo_path.require_file_path(getattr(item, "path", None), repo_id)
    files = []
    for item in tree:
        path = item.path
        if not path.lower().endswith(".gguf") or not hasattr(item, "size"):
            continue
        lfs = getattr(item, "lfs", None)
        files.append(
            RemoteGGUF(
                path=path,
                size=int(lfs.size if lfs else item.size),
                sha256=lfs.sha256 if lfs else None,
                quant=quant_of_filename(path),
                shard=shard_of_filename(path),
            )
        )
    files.sort(key=lambda f: f.path)
    return RepoListing(repo_id, commit, bool(info.gated), bool(info.private), tuple(files))


def choose_file(listing: RepoListing, quant: str | None = None, filename: str | None = None) -> RemoteGGUF:
    """The file a pull means: the exact `filename`, else the `quant` (Q4_K_M, or the next best 4-bit)."""
    models = listing.models
    if filename:
        for f in listing.files:
            if f.path == filename:
                return _single_file(f, listing)
        names = ", ".join(f.path for f in models[:12]) or "none"
        raise HubNotFoundError(f"{listing.repo_id} has no file {filename}; its GGUF files are: {names}.")
    if not models:
        raise HubNotFoundError(f"{listing.repo_id} on the Hugging Face Hub has no GGUF model file.")
    wanted = [quant] if quant else list(FALLBACK_QUANTS)
    for q in wanted:
        matches = [f for f in models if _same_quant(f.quant, q)]
        if matches:
            # Files at the repo's root before those in folders, as llama.cpp's -hf does.
            matches.sort(key=lambda f: (f.path.count("/"), f.path))
            return _single_file(matches[0], listing)
    if quant:
        offered = ", ".join(listing.quants()) or "none"
        raise HubNotFoundError(f"{listing.repo_id} has no {quant} file; the quants it offers are: {offered}.")
    return _single_file(min(models, key=lambda f: f.size), listing)


def _single_file(f: RemoteGGUF, listing: RepoListing) -> RemoteGGUF:
    if f.shard and f.shard[1] > 1:
        raise UserError(
            f"{listing.repo_id}'s {f.quant or f.path} model is split into {f.shard[1]} files, "
            "which this app cannot download yet; pick a quant that is one file."
        )
    return f


# --- search ------------------------------------------------------------------------------


@dataclass(frozen=True)
class SearchHit:
    repo_id: str
    downloads: int | None
    likes: int | None
    gated: bool
    files: tuple[RemoteGGUF, ...] = field(default_factory=tuple)
    error: str | None = None  # why its files could not be listed, if they could not


def search(query: str, limit: int = 10, with_files: bool = True) -> list[SearchHit]:
    """GGUF repos on the Hub that match `query`, most downloaded first, each with its model files."""
    hf = api()
    probe(query)
    models = _hub_call(
        lambda: list(hf.list_models(search=query, filter="gguf", sort="downloads", limit=limit)), query
    )
    hits = [
        SearchHit(m.id, m.downloads, m.likes, bool(m.gated))
        for m in models
    ]
    if not with_files or not hits:
        return hits

    def files_of(hit: SearchHit) -> SearchHit:
        try:
            listing = list_gguf_files(hit.repo_id)
        except UserError as exc:
            return SearchHit(hit.repo_id, hit.downloads, hit.likes, hit.gated, (), str(exc))
        return SearchHit(hit.repo_id, hit.downloads, hit.likes, hit.gated or listing.gated, tuple(listing.models))

    with ThreadPoolExecutor(max_workers=4) as pool:
        return list(pool.map(files_of, hits))


def probe(context: str) -> None:
    """Fail fast when the Hub is unreachable: list_models would retry for ~20 s first."""
    ensure_online()
    from huggingface_hub.utils import get_session

    try:
        get_session().head(f"{endpoint()}/api/models", timeout=API_TIMEOUT_S)
    except Exception as exc:  # a transport error, or OfflineModeIsEnabled from huggingface_hub's own switch
        raise translate_error(exc, context) from exc
