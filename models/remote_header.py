"""Read a remote GGUF's header with HTTP range requests, without downloading its weights.

The header (metadata, vocabulary, tensor table) is at the start of the file: a
few hundred KB to ~10 MB for a large vocabulary, out of gigabytes. The prefix
starts at 1 MiB and grows by exactly what `read_gguf_header` says it still
needs, so a header costs one to three requests.
"""

from __future__ import annotations

from dataclasses import dataclass

from common.errors import ModelFileError, UserError
from models import hub
from models.gguf_file import GGUFInfo, HeaderIncompleteError, read_gguf_header
from models.shape import ModelShape, from_gguf

FIRST_BYTES = 2 << 20
GROWTH = 4  # each further request fetches up to 4× what is held: headers run from 100 KB to ~20 MB
MAX_HEADER_BYTES = 256 << 20  # no real header comes near; a hostile one is refused here
TIMEOUT_S = 30.0


@dataclass(frozen=True)
class RemoteHeader:
    info: GGUFInfo
    shape: ModelShape
    repo_id: str
    filename: str
    commit: str | None
    sha256: str | None
    bytes_read: int  # how much of the file was fetched
    requests: int


def read_remote_header(repo_id: str, filename: str, revision: str = "main") -> RemoteHeader:
    """The header of `filename` in `repo_id`, fetched by range requests; raises a UserError."""
    from huggingface_hub import get_hf_file_metadata, hf_hub_url
    from huggingface_hub.utils import build_hf_headers, get_session, hf_raise_for_status

    hub.ensure_online()
    url = hf_hub_url(repo_id, filename, revision=revision, endpoint=hub.endpoint())
    try:
        meta = get_hf_file_metadata(url, token=hub.auth_token_arg(), timeout=TIMEOUT_S, endpoint=hub.endpoint())
    except Exception as exc:
        raise hub.translate_error(exc, repo_id, filename) from exc
    total = meta.size
    if not total:
        raise UserError(f"The Hub did not say how big {filename} is, so its header cannot be read.")
    location = meta.location
    headers = build_hf_headers(token=hub.auth_token_arg(), library_name="hearthchat")
    headers["Accept-Encoding"] = "identity"
    if _origin(location) != _origin(hub.endpoint()):
        headers.pop("authorization", None)  # a signed CDN address must not receive the token

    source = f"{repo_id}/{filename}"
    data = bytearray()
    want = min(FIRST_BYTES, total)
    requests = 0
    session = get_session()
    while True:
        try:
            data += _fetch(session, location, headers, len(data), want, hf_raise_for_status)
        except UserError:
            raise
        except Exception as exc:  # transport and HTTP errors, as sentences
            raise hub.translate_error(exc, repo_id, filename) from exc
        requests += 1
        try:
            info = read_gguf_header(bytes(data), total, source)
        except HeaderIncompleteError as exc:
            if len(data) >= min(total, MAX_HEADER_BYTES):
                raise ModelFileError(source, f"its header is larger than {MAX_HEADER_BYTES >> 20} MB") from exc
            # The parser's figure is a lower bound (it cannot see past the string it stopped in):
            # grow geometrically, so a big vocabulary takes two or three requests.
            want = min(max(exc.needed_bytes, GROWTH * len(data)), total, MAX_HEADER_BYTES)
            continue
        break
    shape = from_gguf(info)  # the header carries the tensor table: experts, lookups, types by architecture
    sha = meta.etag if meta.etag and len(meta.etag) == 64 else None
    return RemoteHeader(info, shape, repo_id, filename, meta.commit_hash, sha, len(data), requests)


def _fetch(session, url: str, headers: dict, start: int, end: int, raise_for_status) -> bytes:
    """Bytes [start, end) of the file; reads no further even if the server ignores Range."""
    httpx = hub.http()
    h = dict(headers, Range=f"bytes={start}-{end - 1}")
    out = bytearray()
    timeout = httpx.Timeout(TIMEOUT_S)
    with session.stream("GET", url, headers=h, timeout=timeout, follow_redirects=True) as response:
        if response.status_code >= 400:
            response.read()
            raise_for_status(response)
        skip = start if response.status_code == 200 else 0  # Range ignored: the body starts at byte 0
        for chunk in response.iter_bytes(1 << 16):
            if skip:
                cut = min(skip, len(chunk))
                chunk, skip = chunk[cut:], skip - cut
            out += chunk
            if len(out) >= end - start:
                break
    if len(out) < end - start:
        raise httpx.RemoteProtocolError(f"the server sent {len(out)} of the {end - start} bytes asked for")
    return bytes(out[: end - start])


def _origin(url: str):
    from urllib.parse import urlsplit

    p = urlsplit(url)
    return p.scheme, p.hostname, p.port
