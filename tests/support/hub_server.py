"""A local HTTP server that speaks the part of the Hugging Face Hub protocol that huggingface_hub uses.

It serves real GGUF files (the starter model, generated random-weight ones) so the
model commands can be tested without the Hub, which these machines cannot reach.
Point HF_ENDPOINT at `HubServer.url`.

Endpoints, as the Hub answers them:
  GET  /api/models?search=&filter=&sort=&limit=      list_models
  GET  /api/models/{repo}[/revision/{rev}]            model_info (siblings; sizes and LFS with ?blobs=true)
  GET  /api/models/{repo}/tree/{rev}[/{path}]         list_repo_tree (LFS oid = SHA-256, size)
  HEAD /api/models                                     a reachability probe
  HEAD|GET /{repo}/resolve/{rev}/{path}               X-Repo-Commit, ETag/X-Linked-Etag, X-Linked-Size,
                                                       Accept-Ranges, Range → 206/416
  HEAD|GET /cdn/{sha256}                               where resolve redirects LFS files when `redirect_lfs`
Errors carry X-Error-Code (RepoNotFound, GatedRepo, EntryNotFound, RevisionNotFound) as the Hub's do.

Faults for tests (attributes, changeable while it runs): `throttle_bps`, `drop_after`
(close the connection after that many body bytes), `short_body` (a body cut short
but correctly framed), `fault_count` (how many GETs get the fault; None = all),
`corrupt` (serve other bytes than the published SHA-256), `ignore_range`.
Hostile answers, as a mirror or proxy could give: a repo's files may have any path at
all (absolute, `..`, control characters: `add_repo` takes them as given, and the
listing names them), and `commit_header` replaces every X-Repo-Commit value.
Every request is logged in `log` (method, path, Range, auth, status, body bytes sent).
"""

from __future__ import annotations

import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

_SHA_CACHE: dict[tuple[str, int, int], str] = {}


def _sha256_of(path: Path) -> str:
    st = path.stat()
    key = (str(path), st.st_size, st.st_mtime_ns)
    if key not in _SHA_CACHE:
        h = hashlib.sha256()
        with open(path, "rb") as f:
            for block in iter(lambda: f.read(1 << 22), b""):
                h.update(block)
        _SHA_CACHE[key] = h.hexdigest()
    return _SHA_CACHE[key]


@dataclass
class HubFile:
    path: str
    source: Path | bytes
    sha256: str = ""
    size: int = 0
    lfs: bool = True

    def __post_init__(self):
        if isinstance(self.source, bytes):
            self.size = len(self.source)
            self.sha256 = self.sha256 or hashlib.sha256(self.source).hexdigest()
        else:
            self.source = Path(self.source)
            self.size = self.source.stat().st_size
            self.sha256 = self.sha256 or _sha256_of(self.source)

    @property
    def git_oid(self) -> str:
        # The Hub's "oid" of an LFS file is the git blob id of its pointer; any stable id will do here.
        return hashlib.sha1(f"pointer {self.sha256}".encode()).hexdigest()  # noqa: S324

    @property
    def etag(self) -> str:
        if self.lfs:
            return self.sha256
        data = self.read(0, self.size)
        return hashlib.sha1(b"blob %d\0" % self.size + data).hexdigest()  # noqa: S324

    def read(self, start: int, end: int) -> bytes:
        if isinstance(self.source, bytes):
            return self.source[start:end]
        with open(self.source, "rb") as f:
            f.seek(start)
            return f.read(end - start)


@dataclass
class HubRepo:
    repo_id: str
    files: dict[str, HubFile]
    commit: str = field(default_factory=lambda: secrets.token_hex(20))
    gated: bool = False
    private: bool = False
    downloads: int = 0
    allowed_tokens: set[str] = field(default_factory=set)


@dataclass
class LoggedRequest:
    method: str
    path: str
    range: str | None
    authorization: str | None
    status: int = 0
    body_bytes: int = 0


class HubServer:
    def __init__(self, host: str = "127.0.0.1"):
        self.repos: dict[str, HubRepo] = {}
        self.valid_tokens: set[str] = set()
        self.log: list[LoggedRequest] = []
        self.throttle_bps: float | None = None
        self.drop_after: int | None = None
        self.short_body: int | None = None
        self.fault_count: int | None = None  # GETs of file bodies that get the fault; None: all
        self.corrupt = False
        self.ignore_range = False
        self.redirect_lfs = False
        self.commit_header: str | None = None  # a hostile X-Repo-Commit for every resolve answer
        self._faults_done = 0
        self._lock = threading.Lock()
        self._httpd = ThreadingHTTPServer((host, 0), _make_handler(self))
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever, daemon=True)

    # --- set-up ---
    @property
    def url(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def cdn_url(self) -> str:
        # Another origin than `url`, as the Hub's CDN is: the client must not send it the token.
        return f"http://localhost:{self._httpd.server_address[1]}"

    def add_repo(self, repo_id: str, files: dict[str, Path | bytes], **kwargs) -> HubRepo:
        repo = HubRepo(repo_id, {p: HubFile(p, src) for p, src in files.items()}, **kwargs)
        self.repos[repo_id] = repo
        return repo

    def start(self) -> HubServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc):
        self.stop()

    # --- what tests look at ---
    def file_requests(self, filename: str | None = None, method: str = "GET") -> list[LoggedRequest]:
        return [
            r for r in self.log
            if r.method == method and ("/resolve/" in r.path or r.path.startswith("/cdn/"))
            and (filename is None or r.path.endswith(filename) or r.path.startswith("/cdn/"))
        ]

    def body_bytes_served(self, filename: str | None = None) -> int:
        return sum(r.body_bytes for r in self.file_requests(filename))

    def take_fault(self) -> bool:
        with self._lock:
            if self.fault_count is not None and self._faults_done >= self.fault_count:
                return False
            self._faults_done += 1
            return True

    def reset_faults(self) -> None:
        with self._lock:
            self._faults_done = 0
        self.drop_after = self.short_body = None
        self.throttle_bps = None
        self.fault_count = None
        self.corrupt = self.ignore_range = False


def _make_handler(server: HubServer):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):  # quiet
            pass

        # --- plumbing ---
        def _entry(self) -> LoggedRequest:
            entry = LoggedRequest(
                self.command, self.path, self.headers.get("Range"), self.headers.get("Authorization")
            )
            server.log.append(entry)
            return entry

        def _token(self) -> str | None:
            auth = self.headers.get("Authorization") or ""
            return auth[7:] if auth.lower().startswith("bearer ") else None

        def _send(self, entry, status, body=b"", headers=None, content_type="application/json"):
            entry.status = status
            self.send_response(status)
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.command != "HEAD" and body:
                self.wfile.write(body)
                entry.body_bytes += len(body)

        def _json(self, entry, obj, status=200, headers=None):
            self._send(entry, status, json.dumps(obj).encode(), headers)

        def _error(self, entry, status, code, message, extra=None):
            headers = {"X-Error-Message": message, **(extra or {})}
            if code:
                headers["X-Error-Code"] = code
            self._send(entry, status, json.dumps({"error": message}).encode(), headers)

        def _authorize(self, entry, repo: HubRepo | None, repo_id: str) -> bool:
            token = self._token()
            if token is not None and token not in server.valid_tokens:
                self._error(entry, 401, "", "Invalid credentials in Authorization header")
                return False
            if repo is None or (repo.private and token is None):
                self._error(entry, 401, "RepoNotFound", "Repository not found")
                return False
            return True

        def _authorize_files(self, entry, repo: HubRepo) -> bool:
            if not repo.gated:
                return True
            token = self._token()
            if token is None:
                self._error(
                    entry, 401, "GatedRepo",
                    f"Access to model {repo.repo_id} is restricted. You must have access to it and be authenticated.",
                )
                return False
            if token not in repo.allowed_tokens:
                self._error(entry, 403, "GatedRepo", f"Access to model {repo.repo_id} is restricted and you are not in the authorized list.")
                return False
            return True

        # --- routes ---
        def do_HEAD(self):
            self._route()

        def do_GET(self):
            self._route()

        def _route(self):
            entry = self._entry()
            url = urlsplit(self.path)
            path = unquote(url.path)
            query = parse_qs(url.query)
            try:
                if path == "/api/models":
                    return self._list_models(entry, query)
                m = re.match(r"^/api/models/([^/]+/[^/]+)/tree/([^/]+)(?:/(.*))?$", path)
                if m:
                    return self._tree(entry, m.group(1), m.group(2), m.group(3) or "", query)
                m = re.match(r"^/api/models/([^/]+/[^/]+)(?:/revision/([^/]+))?$", path)
                if m:
                    return self._model_info(entry, m.group(1), m.group(2), query)
                m = re.match(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$", path)
                if m:
                    return self._resolve(entry, m.group(1), m.group(2), m.group(3))
                m = re.match(r"^/cdn/([0-9a-f]{64})$", path)
                if m:
                    return self._cdn(entry, m.group(1))
                self._error(entry, 404, "", "Not found")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _repo(self, repo_id):
            return server.repos.get(repo_id)

        def _list_models(self, entry, query):
            if self.command == "HEAD":
                return self._send(entry, 200)
            search = (query.get("search") or [""])[0].lower()
            filters = query.get("filter") or []
            limit = int((query.get("limit") or ["1000"])[0])
            found = []
            for repo in server.repos.values():
                if repo.private and self._token() is None:
                    continue
                if search and search not in repo.repo_id.lower():
                    continue
                has_gguf = any(p.endswith(".gguf") for p in repo.files)
                if "gguf" in filters and not has_gguf:
                    continue
                found.append(repo)
            found.sort(key=lambda r: -r.downloads)
            self._json(entry, [self._summary(r) for r in found[:limit]])

        def _summary(self, repo: HubRepo) -> dict:
            return {
                "_id": repo.commit[:24],
                "id": repo.repo_id,
                "modelId": repo.repo_id,
                "author": repo.repo_id.split("/")[0],
                "sha": repo.commit,
                "private": repo.private,
                "gated": "manual" if repo.gated else False,
                "disabled": False,
                "downloads": repo.downloads,
                "likes": 0,
                "tags": ["gguf"],
                "library_name": "gguf",
                "lastModified": "2025-01-01T00:00:00.000Z",
                "createdAt": "2025-01-01T00:00:00.000Z",
            }

        def _model_info(self, entry, repo_id, revision, query):
            repo = self._repo(repo_id)
            if not self._authorize(entry, repo, repo_id):
                return
            if revision not in (None, "main", repo.commit):
                return self._error(entry, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            blobs = (query.get("blobs") or ["false"])[0].lower() == "true"
            siblings = []
            for f in repo.files.values():
                s = {"rfilename": f.path}
                if blobs:
                    s.update(size=f.size, blobId=f.git_oid)
                    if f.lfs:
                        s["lfs"] = {"sha256": f.sha256, "size": f.size, "pointerSize": 134}
                siblings.append(s)
            self._json(entry, {**self._summary(repo), "siblings": siblings})

        def _tree(self, entry, repo_id, revision, sub, query):
            repo = self._repo(repo_id)
            if not self._authorize(entry, repo, repo_id):
                return
            if revision not in ("main", repo.commit):
                return self._error(entry, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            recursive = (query.get("recursive") or ["false"])[0].lower() == "true"
            prefix = sub.strip("/") + "/" if sub else ""
            items, folders = [], set()
            for f in sorted(repo.files.values(), key=lambda f: f.path):
                if not f.path.startswith(prefix):
                    continue
                rest = f.path[len(prefix):]
                if "/" in rest and not recursive:
                    folders.add(prefix + rest.split("/")[0])
                    continue
                item = {"type": "file", "oid": f.git_oid, "size": f.size, "path": f.path}
                if f.lfs:
                    item["lfs"] = {"oid": f.sha256, "size": f.size, "pointerSize": 134}
                items.append(item)
            items += [{"type": "directory", "oid": "0" * 40, "size": 0, "path": d} for d in sorted(folders)]
            self._json(entry, items)

        def _resolve(self, entry, repo_id, revision, filename):
            repo = self._repo(repo_id)
            if not self._authorize(entry, repo, repo_id):
                return
            if revision not in ("main", repo.commit):
                return self._error(entry, 404, "RevisionNotFound", f"Invalid rev id: {revision}")
            if not self._authorize_files(entry, repo):
                return
            f = repo.files.get(filename)
            if f is None:
                return self._error(entry, 404, "EntryNotFound", f"{filename} does not exist",
                                   {"X-Repo-Commit": repo.commit})
            meta = {
                "X-Repo-Commit": server.commit_header or repo.commit,
                "ETag": f'"{f.etag}"',
                "Accept-Ranges": "bytes",
            }
            if f.lfs:
                meta["X-Linked-Etag"] = f'"{f.sha256}"'
                meta["X-Linked-Size"] = str(f.size)
            if f.lfs and server.redirect_lfs:
                meta["Location"] = f"{server.cdn_url}/cdn/{f.sha256}"
                return self._send(entry, 302, b"", meta)
            self._serve_file(entry, f, meta)

        def _cdn(self, entry, sha):
            for repo in server.repos.values():
                for f in repo.files.values():
                    if f.sha256 == sha:
                        return self._serve_file(entry, f, {"ETag": f'"{sha}"', "Accept-Ranges": "bytes"})
            self._error(entry, 404, "", "Not found")

        def _serve_file(self, entry, f: HubFile, headers: dict):
            total = f.size
            start, end = 0, total
            status = 200
            rng = self.headers.get("Range")
            if rng and not server.ignore_range:
                m = re.match(r"bytes=(\d+)-(\d*)$", rng.strip())
                if m:
                    start = int(m.group(1))
                    end = min(int(m.group(2)) + 1, total) if m.group(2) else total
                    if start >= total:
                        return self._send(entry, 416, b"", {**headers, "Content-Range": f"bytes */{total}"})
                    status = 206
                    headers = {**headers, "Content-Range": f"bytes {start}-{end - 1}/{total}"}
            length = end - start
            faulty = self.command == "GET" and (
                server.drop_after is not None or server.short_body is not None or server.corrupt
            ) and server.take_fault()
            declared = length
            if faulty and server.short_body is not None:
                declared = min(length, server.short_body)
            entry.status = status
            self.send_response(status)
            for k, v in headers.items():
                self.send_header(k, v)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(declared))
            self.end_headers()
            if self.command == "HEAD":
                return
            self._send_body(entry, f, start, start + declared, faulty)

        def _send_body(self, entry, f: HubFile, start: int, end: int, faulty: bool):
            pos = start
            chunk = 1 << 16
            sent = 0
            t0 = time.monotonic()
            while pos < end:
                n = min(chunk, end - pos)
                if faulty and server.drop_after is not None and sent + n > server.drop_after:
                    n = server.drop_after - sent
                data = f.read(pos, pos + n)
                if faulty and server.corrupt and pos <= f.size // 2 < pos + n:
                    i = f.size // 2 - pos
                    data = data[:i] + bytes([data[i] ^ 0xFF]) + data[i + 1:]
                if data:
                    self.wfile.write(data)
                    self.wfile.flush()
                sent += len(data)
                entry.body_bytes += len(data)
                pos += len(data)
                if faulty and server.drop_after is not None and sent >= server.drop_after:
                    # Hang up in the middle of the promised body, as a dropped connection does.
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                if server.throttle_bps:
                    ahead = sent / server.throttle_bps - (time.monotonic() - t0)
                    if ahead > 0:
                        time.sleep(ahead)

    return Handler


# --- pytest fixtures (import them into a test module to use them) ---------------------------------

import pytest  # noqa: E402


@pytest.fixture
def hub_env(tmp_path, monkeypatch):
    """An empty Hugging Face home (cache and token) under tmp, online, with no token."""
    hf_home = tmp_path / "hf-home"
    monkeypatch.setenv("HF_HOME", str(hf_home))
    for var in ("HF_TOKEN", "HUGGING_FACE_HUB_TOKEN", "HF_HUB_OFFLINE", "TRANSFORMERS_OFFLINE",
                "HF_HUB_CACHE", "HUGGINGFACE_HUB_CACHE", "HF_TOKEN_PATH"):
        monkeypatch.delenv(var, raising=False)
    return hf_home


@pytest.fixture
def hub(hub_env, monkeypatch):
    """A running local Hub with HF_ENDPOINT pointing at it (no repos yet)."""
    server = HubServer().start()
    monkeypatch.setenv("HF_ENDPOINT", server.url)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture(scope="session")
def medium_model_path(tmp_path_factory):
    """A random llama of about 20M parameters at Q4_K_M (14 MB): big enough to interrupt mid-download."""
    from tests.support.tiny_gguf import write_random_llama

    return write_random_llama(tmp_path_factory.mktemp("medium") / "medium-Q4_K_M.gguf", 20e6, quant="Q4_K_M")
